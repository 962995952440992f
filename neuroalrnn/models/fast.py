"""A fast AL-RNN forward and backward pass for CPU training, tested against ``ALRNN.forward``.

:func:`alrnn_forward_fast` computes what :meth:`ALRNN.forward
<neuroalrnn.models.ALRNN.forward>` computes (same equation, same parameters,
same noise draw) with fewer torch operations per time step, for the sizes
cognitive-task models use (M = 64..256 units, 32..128 trials, ~100 steps).
:class:`ALRNNFunction` is a ``torch.autograd.Function`` for the whole model:
its forward and backward passes are written out as the loops below, every
operation a public torch operation.

Forward: one time-major buffer S holds the row blocks
S_t = [0 (padding), s_t, 1, ψ_{t-1}, z_{t-1}], ψ = φ(z_nl) the nonlinear units'
φ (z_nl: the last P units). Then

    A ⊙ z + W Φ*(z) + C s + h = [0, s, 1, ψ, z] V  (+ A_nl ⊙ z_nl),
    V = [0; Cᵀ; hᵀ; W_nlᵀ; W_linᵀ + diag A_lin; diag A_nl]

with W_lin and W_nl W's linear and nonlinear columns. Step t is one product
written straight into the z columns of S_{t+1} (σ_rec ξ_t added in it) and
one φ into its ψ columns. While batch × M × P ≤ ``FOLD_LIMIT`` the rows
diag A_nl take A_nl ⊙ z_nl into the product ("folded"); beyond, it is a
third, element-wise operation per step. The latents are a view of S; the
outputs are one product Z Bᵀ + b after the loop. The padding columns make
rows of S a multiple of 8 numbers long.

Backward through time: a buffer H holds [∂L/∂ψ_t, ∂L/∂z_t, ∂L/∂y_{t-1}];
per step one product with R (V's ψ and z rows, transposed, and B, so that
the readout's gradient rides along) gives H_{t-1}, and one ``addcmul_`` adds
φ'(z) ⊙ ∂L/∂ψ into ∂L/∂z on the nonlinear units (φ'(0) = α, as in
``ALRNN.phi``). Unfolded, the product covers the linear units' columns only:
A_nl ⊙ ∂L/∂z_nl is one more element-wise operation per step, and B_nlᵀ ∂L/∂y
one product before the loop. The gradients of A, W, C, h, B and b are one
product [G, ∂L/∂Y]ᵀ S over all (time × batch) rows after the loop. Rows of H
are padded to a multiple of 8 numbers.

Buffers: S is new in every call (the graph saves it for the backward pass
and the latents are a view of it), so no result ever shares memory with
another call's. The backward pass's buffers (H, and φ' of every step) never
leave it: each thread keeps its own, with their per-step views, for the next
call of the same sizes (up to ``KEEP_BYTES`` each). ``neuroalrnn bench``
measures the result against ``torch.nn.RNN`` (docs/performance.md).
"""

from __future__ import annotations

import threading

import torch
from torch.autograd.function import once_differentiable

from .alrnn import ALRNN, _check_inputs, recurrent_noise

__all__ = ["ALRNNFunction", "alrnn_forward_fast"]


def alrnn_forward_fast(
    model: ALRNN,
    inputs: torch.Tensor,
    z0: torch.Tensor | None = None,
    *,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.forward(inputs, z0)``, computed faster; gradients reach every parameter.

    Parameters
    ----------
    model
        The AL-RNN whose parameters ``A, W, h, C, B, b`` are used.
    inputs
        ``(batch, time, n_inputs)``, the model's dtype.
    z0
        ``(batch, n_units)`` initial state, the model's dtype; ``None`` means zero.
    noise
        ``(batch, time, n_units)``, the model's dtype, added to the drive
        C s_t + h in place of the model's own draw. ``None``: while
        ``model.training`` and ``model.noise_std > 0`` the noise is drawn as
        ``model.noise_std * torch.randn(batch, time, n_units)``, the draw
        ``ALRNN.forward`` makes, so both give the same result from the same
        torch seed; otherwise there is no noise.

    Returns
    -------
    outputs, latents
        ``(batch, time, n_outputs)`` and ``(batch, time, n_units)`` as from
        ``ALRNN.forward``. Both are strided views of time-major buffers of
        their own (not contiguous): use ``.reshape`` rather than ``.view`` on
        them.
    """
    if not isinstance(model, ALRNN):
        raise TypeError(f"model must be an ALRNN, got {type(model).__name__}; other models have no fast path")
    inputs = _check_inputs(inputs, model.n_inputs)
    batch, n_steps, _ = inputs.shape
    n_units = model.n_units
    if n_steps == 0:
        raise ValueError("inputs must have at least one time step, got shape " f"{tuple(inputs.shape)}")
    if inputs.dtype != model.A.dtype:
        raise TypeError(f"inputs must have the model's dtype {model.A.dtype}, got {inputs.dtype}")
    if z0 is not None and tuple(z0.shape) != (batch, n_units):
        raise ValueError(f"z0 must have shape (batch, n_units) = {(batch, n_units)}, got {tuple(z0.shape)}")
    for name, tensor in (("z0", z0), ("noise", noise)):
        if tensor is not None and tensor.dtype != inputs.dtype:
            raise TypeError(f"{name} must have the model's dtype {inputs.dtype}, got {tensor.dtype}")
    noise_scale = 1.0
    if noise is None and model.training and model.noise_std > 0:
        # The draw ALRNN.forward makes (same shape, order and dtype);
        # σ_rec multiplies it as it goes into S, which saves a pass over it.
        noise = recurrent_noise((batch, n_steps, n_units), inputs)
        noise_scale = model.noise_std
    if noise is not None and tuple(noise.shape) != (batch, n_steps, n_units):
        raise ValueError(
            f"noise must have shape (batch, time, n_units) = {(batch, n_steps, n_units)}, got {tuple(noise.shape)}"
        )
    return ALRNNFunction.apply(
        inputs, z0, noise, model.A, model.W, model.h, model.C, model.B, model.b,
        model.n_nonlinear, model.slope, noise_scale,
    )


# Folding A_nl ⊙ z_nl into the step's products adds P rows to the forward product and P columns to
# the backward one (2 × batch × M × P more multiply-adds per step) and saves an element-wise
# operation in each: it pays while batch × M × P is at most this (measured: docs/performance.md).
FOLD_LIMIT = 100_000


class _Layout:
    """Columns of a row block S_t = [0 (padding), s_t (K), 1, ψ_{t-1} (P), z_{t-1} (M)], ψ = φ(z_nl).

    z comes last and its nonlinear units (the last P) last of all, so that a product can stop
    before them (``rows``): ``fold`` says whether A_nl ⊙ z_nl is done in the product (through
    rows diag(A_nl)) or by an element-wise operation.
    """

    def __init__(self, n_units: int, n_nonlinear: int, n_inputs: int, batch: int) -> None:
        self.n_units, self.n_nonlinear, self.n_inputs = n_units, n_nonlinear, n_inputs
        self.start = n_units - n_nonlinear  # the first nonlinear unit
        used = n_inputs + 1 + n_nonlinear + n_units
        self.inputs = -used % 8  # zero columns first: rows of S are multiples of 8 long (BLAS alignment)
        self.one = self.inputs + n_inputs
        self.psi = self.one + 1
        self.z = self.psi + n_nonlinear
        self.nonlinear = self.z + self.start
        self.width = self.z + n_units
        self.fold = batch * n_units * n_nonlinear <= FOLD_LIMIT
        self.rows = self.width if self.fold else self.nonlinear  # columns of S_t in the step's product


def _step_matrix(A, W, h, C, layout: _Layout) -> torch.Tensor:
    """V (rows × M) with S_t[:, :rows] V = A ⊙ z + W Φ*(z) + C s + h, less A_nl ⊙ z_nl unless folded."""
    n_units, n_nonlinear, start = layout.n_units, layout.n_nonlinear, layout.start
    V = A.new_empty(layout.rows, n_units)
    V.narrow(0, 0, layout.inputs).zero_()
    V.narrow(0, layout.inputs, layout.n_inputs).copy_(C.t())
    V.select(0, layout.one).copy_(h)
    V.narrow(0, layout.psi, n_nonlinear).copy_(W.narrow(1, start, n_nonlinear).t())
    V.narrow(0, layout.z, start).copy_(W.narrow(1, 0, start).t())
    diagonal = layout.rows - layout.z  # M when folded (the nonlinear z rows are diag A_nl), else M − P
    V.narrow(0, layout.nonlinear, layout.rows - layout.nonlinear).zero_()
    V.narrow(0, layout.z, diagonal).diagonal().add_(A.narrow(0, 0, diagonal))
    return V


def _back_matrix(A, W, B, layout: _Layout) -> torch.Tensor:
    """R, (M + O) × (P + columns): [g_t, ∂L/∂y_{t-1}] R = [∂L/∂ψ_{t-1}, ∂L/∂z_{t-1}] over ``columns`` of z.

    Folded (all M columns): R = [[W_nl, W D_lin + diag A], [0, B]], where W D_lin is W with its
    nonlinear columns zeroed. Otherwise (the M − P linear columns): R = [[W_nl, W_lin + diag A_lin],
    [0, B_lin]]; the nonlinear units' A_nl ⊙ g_nl and B_nlᵀ ∂L/∂y are then added element-wise.
    """
    n_units, n_nonlinear, start = layout.n_units, layout.n_nonlinear, layout.start
    n_outputs = B.shape[0]
    columns = n_units if layout.fold else start
    R = A.new_empty(n_units + n_outputs, n_nonlinear + columns)
    R.narrow(0, 0, n_units).narrow(1, 0, n_nonlinear).copy_(W.narrow(1, start, n_nonlinear))
    recurrent = R.narrow(0, 0, n_units).narrow(1, n_nonlinear, columns)
    recurrent.narrow(1, 0, start).copy_(W.narrow(1, 0, start))
    recurrent.narrow(1, start, columns - start).zero_()
    recurrent.diagonal().add_(A.narrow(0, 0, columns))
    R.narrow(0, n_units, n_outputs).narrow(1, 0, n_nonlinear).zero_()
    R.narrow(0, n_units, n_outputs).narrow(1, n_nonlinear, columns).copy_(B.narrow(1, 0, columns))
    return R


def _phi(z: torch.Tensor, slope: float, out: torch.Tensor) -> None:
    """``out`` = φ(z), ``ALRNN.phi`` on the nonlinear units: max(z, α z) for α = ``slope`` in [0, 1]."""
    if slope == 0.0:
        torch.clamp(z, min=0, out=out)
    else:
        torch.maximum(z, torch.mul(z, slope, out=out), out=out)


def _phi_derivative(psi: torch.Tensor, slope: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """φ'(z) read off ψ = φ(z): 1 where ψ > 0, else the slope (φ'(0) = α, as in ``ALRNN.phi``)."""
    if out is None:
        out = torch.empty_like(psi)
    torch.gt(psi, 0, out=out)  # 1.0 where ψ > 0, else 0.0
    return out if slope == 0.0 else out.mul_(1.0 - slope).add_(slope)


# The backward pass's buffers, kept between calls, one per slot and thread (see the module docstring).
_WORKSPACE = threading.local()
KEEP_BYTES = 256 * 2**20  # larger buffers are not kept: they cost far more to fill than to allocate


class _Buffer:
    """A (blocks, batch, width) tensor and the per-block views of its named column ranges."""

    def __init__(self, key: tuple, shape: tuple[int, int, int], like: torch.Tensor, columns: dict[str, slice]):
        self.key = key
        self.tensor = like.new_empty(shape)
        self.views = {name: self.tensor[:, :, cols].unbind(0) for name, cols in columns.items()}


def _backward_buffer(slot: str, key: tuple, shape: tuple[int, int, int], like: torch.Tensor,
                     columns: dict[str, slice]) -> _Buffer:
    """This thread's kept buffer for ``slot`` if its key matches and it has ``shape[0]`` blocks, else a new one.

    Only the backward pass uses these: nothing it returns is a view of them, and one thread runs one
    backward pass at a time, so a kept buffer is always free.
    """
    key = (*key, shape[1:], like.dtype, like.device)
    kept = getattr(_WORKSPACE, slot, None)
    if kept is not None and kept.key == key and kept.tensor.shape[0] >= shape[0]:
        return kept
    new = _Buffer(key, shape, like, columns)
    if new.tensor.nbytes <= KEEP_BYTES:
        setattr(_WORKSPACE, slot, new)
    return new


class ALRNNFunction(torch.autograd.Function):
    """The AL-RNN from inputs to (outputs, latents), with a hand-written backward pass.

    ``apply(inputs, z0, noise, A, W, h, C, B, b, n_nonlinear, slope, noise_scale)``:
    inputs ``(batch, time, K)``, z0 ``(batch, M)`` or ``None`` (zero), noise
    ``(batch, time, M)`` or ``None``, of which ``noise_scale * noise`` is added
    to the drive; returns outputs ``(batch, time, O)`` and latents
    ``(batch, time, M)``, both strided views of time-major buffers allocated
    by this call. Gradients flow to every tensor argument.
    """

    @staticmethod
    def forward(ctx, inputs, z0, noise, A, W, h, C, B, b, n_nonlinear: int, slope: float, noise_scale: float):
        batch, n_steps, n_inputs = inputs.shape
        layout = _Layout(A.shape[0], n_nonlinear, n_inputs, batch)
        ctx.set_materialize_grads(False)
        with torch.no_grad():
            # S[t] = S_t for t < T; S[T] holds z_T and ψ_T only (its other columns are never read).
            S = A.new_empty(n_steps + 1, batch, layout.width)
            outputs = _forward(S, layout, inputs, z0, noise, noise_scale, A, W, h, C, B, b, slope)
            outputs = outputs.view(n_steps, batch, -1).transpose(0, 1)
            latents = S[1:, :, layout.z :].transpose(0, 1)
        ctx.save_for_backward(S, z0, A, W, C, B)
        ctx.n_nonlinear, ctx.slope, ctx.noise_scale = n_nonlinear, slope, noise_scale
        return outputs, latents

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs, grad_latents):
        return _backward(ctx, grad_outputs, grad_latents)


def _forward(S, layout: _Layout, inputs, z0, noise, noise_scale: float, A, W, h, C, B, b,
             slope: float) -> torch.Tensor:
    """Fill S and run the time loop; returns the outputs as (time × batch, O)."""
    n_steps, batch = S.shape[0] - 1, S.shape[1]
    n_nonlinear, z, psi, nonlinear = layout.n_nonlinear, layout.z, layout.psi, layout.nonlinear
    V = _step_matrix(A, W, h, C, layout)
    S[:n_steps, :, : layout.inputs].zero_()  # zero_ and fill_: assigning a number is a slower copy_
    S[:n_steps, :, layout.inputs : layout.one] = inputs.transpose(0, 1)
    S[:n_steps, :, layout.one].fill_(1)
    if noise is not None:  # into z_{t+1}'s columns; each step's product adds onto it
        torch.mul(noise.transpose(0, 1), noise_scale, out=S[1:, :, z:])
    if z0 is None:
        S[0, :, psi:].zero_()
    else:
        S[0, :, z:] = z0
        if n_nonlinear:
            _phi(z0[:, layout.start :], slope, out=S[0, :, psi:z])
    # Per-step views, made in one call each: step t reads in_blocks[t] and writes the blocks [t + 1].
    in_blocks = S[:n_steps, :, : layout.rows].unbind(0)
    z_blocks = S[:, :, z:].unbind(0)
    separate = n_nonlinear and not layout.fold
    if n_nonlinear:
        nonlinear_blocks, psi_blocks = S[:, :, nonlinear:].unbind(0), S[:, :, psi:z].unbind(0)
        A_nonlinear = A[layout.start :]
    for t in range(n_steps):
        if noise is None:
            torch.mm(in_blocks[t], V, out=z_blocks[t + 1])
        else:
            z_blocks[t + 1].addmm_(in_blocks[t], V)
        if separate:
            nonlinear_blocks[t + 1].addcmul_(nonlinear_blocks[t], A_nonlinear)
        if n_nonlinear:
            _phi(nonlinear_blocks[t + 1], slope, out=psi_blocks[t + 1])
    latents = S[1:].view(n_steps * batch, layout.width)[:, z:]
    # In this orientation (Bᵀ a transposed view) a product with few outputs is fastest (docs/performance.md).
    return torch.addmm(b, latents, B.t())


def _backward(ctx, grad_outputs, grad_latents):
    S, z0, A, W, C, B = ctx.saved_tensors
    n_nonlinear, slope = ctx.n_nonlinear, ctx.slope
    need = dict(zip(("inputs", "z0", "noise", "A", "W", "h", "C", "B", "b"), ctx.needs_input_grad))
    (n_outputs, n_units), n_inputs = B.shape, C.shape[1]
    n_steps, batch = S.shape[0] - 1, S.shape[1]
    rows, last = n_steps * batch, n_steps - 1
    layout = _Layout(n_units, n_nonlinear, n_inputs, batch)
    start, fold = layout.start, layout.fold
    # H[t] = [∂L/∂ψ_t (P), ∂L/∂z_t (M), ∂L/∂y_{t-1} (O)]: the product of H[t]'s last M + O
    # columns with R is H[t-1]'s first P + M (folded) or P + M − P, the readout's gradient riding
    # along. ∂L/∂z_t is final (g_t) once φ'(z_t) ⊙ ∂L/∂ψ_t is added.
    P, M, O = n_nonlinear, n_units, n_outputs
    with torch.no_grad():
        columns = {"in": slice(P, P + M + O), "out": slice(0, P + (M if fold else start))}
        if P:
            columns.update(nonlinear=slice(P + start, P + M), psi=slice(0, P))
        width = P + M + O + (-(P + M + O) % 8)  # rows a multiple of 8 numbers long
        buffer = _backward_buffer("H", (M, P, O, fold), (n_steps, batch, width), S, columns)
        H = buffer.tensor[:n_steps]
        R = _back_matrix(A, W, B, layout)
        in_blocks, out_blocks = buffer.views["in"], buffer.views["out"]
        flat = H.view(rows, -1)
        # g_t (each block final once the loop has passed it) and ∂L/∂y_{t-1}, (time × batch) rows
        G, dy = flat[:, P : P + M], flat[:, P + M : P + M + O]
        have_y = grad_outputs is not None
        last_y = grad_outputs[:, last] if have_y else None
        # H[0]'s ∂L/∂y_{-1} is 0; the last g has nothing after it: B ∂L/∂y_last (+ the latents' gradient).
        H[0, :, P + M : P + M + O].zero_()
        if have_y:
            grad_y = grad_outputs.transpose(0, 1).reshape(rows, O)  # time-major
            dy[batch:].copy_(grad_y[: rows - batch])
            torch.mm(last_y, B, out=H[last, :, P : P + M])
        else:
            dy.zero_()
            H[last, :, P : P + M].zero_()
        accumulate = grad_latents is not None  # the products add onto ∂L/∂z_t from the latents
        if accumulate:
            H[:last, :, P : P + M] = grad_latents[:, :last].transpose(0, 1)
            H[:last, :, :P].zero_()
            H[last, :, P : P + M] += grad_latents[:, last]
        if P and not fold and last > 0:  # B_nlᵀ ∂L/∂y_t on the nonlinear units, outside the products
            readout = G[: rows - batch, start:]
            if not have_y:
                if not accumulate:
                    readout.zero_()
            elif accumulate:
                readout.addmm_(grad_y[: rows - batch], B[:, start:])
            else:
                torch.mm(grad_y[: rows - batch], B[:, start:], out=readout)
        if P:
            nonlinear_blocks, psi_blocks = buffer.views["nonlinear"], buffer.views["psi"]
            A_nonlinear = A[start:]
            # φ'(z_t) from ψ_t = φ(z_t) in S[t + 1]: 1 where ψ > 0, else the slope.
            masks = _backward_buffer("mask", (), (n_steps + 1, batch, P), S, {"all": slice(None)})
            _phi_derivative(S[:, :, layout.psi : layout.z], slope, out=masks.tensor[: n_steps + 1])
            mask_blocks = masks.views["all"]
        for t in range(last, 0, -1):
            if P and t < last:
                nonlinear_blocks[t].addcmul_(psi_blocks[t], mask_blocks[t + 1])
            if accumulate:
                out_blocks[t - 1].addmm_(in_blocks[t], R)
            else:
                torch.mm(in_blocks[t], R, out=out_blocks[t - 1])
            if P and not fold:
                nonlinear_blocks[t - 1].addcmul_(nonlinear_blocks[t], A_nonlinear)
        if P and last > 0:
            nonlinear_blocks[0].addcmul_(psi_blocks[0], mask_blocks[1])

        grad_z0 = None
        if need["z0"] and z0 is not None:
            # One more step of the loop, into a fresh [∂L/∂ψ, ∂L/∂z] of z0 (H[0]'s ∂L/∂y_{-1} is 0).
            before = S.new_zeros(batch, P + M)
            before.narrow(1, 0, R.shape[1]).addmm_(in_blocks[0], R)
            if P:
                if not fold:
                    before[:, P + start :].addcmul_(nonlinear_blocks[0], A_nonlinear)
                before[:, P + start :].addcmul_(before[:, :P], _phi_derivative(S[0, :, layout.psi : layout.z], slope))
            grad_z0 = before[:, P:]

        grad_A = grad_W = grad_h = grad_C = grad_B = grad_b = None
        # The product below also takes Σ_t ∂L/∂y_{t-1}ᵀ S_t, the readout's gradient but for the last
        # step, from the ∂L/∂y columns of H (cheaper than a pass over the latents of its own).
        readout_along = have_y and (need["B"] or need["b"])
        if need["A"] or need["W"] or need["C"] or need["h"] or readout_along:
            # Σ_t g_tᵀ S_t = ∂L/∂Vᵀ over the columns of S_t in the product, the (zero) padding columns
            # included so that the product starts aligned. Unfolded, A_nl's gradient is the diagonal
            # of the columns left out: an element-wise product.
            G_rows = flat[:, P : P + M + (O if readout_along else 0)]
            products = torch.mm(G_rows.t(), S[:n_steps].view(rows, -1)[:, : layout.rows])
            grad_W = products.new_empty(M, M)
            grad_W.narrow(1, 0, start).copy_(products[:M, layout.z : layout.nonlinear])
            grad_W.narrow(1, start, P).copy_(products[:M, layout.psi : layout.z])
            grad_A = products[:M, layout.z :].diagonal()
            if P and not fold:
                z_nonlinear, g_nonlinear = S[:n_steps, :, layout.nonlinear :], H[:, :, P + start : P + M]
                grad_A = torch.cat([grad_A, torch.linalg.vecdot(z_nonlinear, g_nonlinear, dim=1).sum(0)])
            grad_C = products[:M, layout.inputs : layout.one]  # views: autograd copies them into .grad
            grad_h = products[:M, layout.one]
        if readout_along:
            latents_last = S[n_steps, :, layout.z :]
            grad_B = torch.addmm(products[M:, layout.z :], last_y.t(), latents_last[:, : layout.rows - layout.z])
            if not fold:  # the nonlinear units' columns, left out of the product
                nonlinear_columns = torch.mm(dy.t(), S[:n_steps].view(rows, -1)[:, layout.nonlinear :])
                grad_B = torch.cat([grad_B, nonlinear_columns.addmm_(last_y.t(), latents_last[:, start:])], dim=1)
            grad_b = products[M:, layout.one] + last_y.sum(0)
        grad_inputs = grad_noise = None
        if need["inputs"]:
            grad_inputs = torch.mm(G, C).view(n_steps, batch, n_inputs).transpose(0, 1)
        if need["noise"]:
            grad_noise = (G * ctx.noise_scale).view(n_steps, batch, n_units).transpose(0, 1)
    return grad_inputs, grad_z0, grad_noise, grad_A, grad_W, grad_h, grad_C, grad_B, grad_b, None, None, None
