"""A fast AL-RNN forward and backward pass for CPU training, tested against ``ALRNN.forward``.

:func:`alrnn_forward_fast` computes what :meth:`ALRNN.forward
<neuroalrnn.models.ALRNN.forward>` computes (same equation, same parameters,
same noise draw) but arranged for speed at the sizes cognitive-task models use
(M = 64..256 units, 32..128 trials, ~100 steps). There a time step is one small
matrix product (32 × 144 by 144 × 128 takes ~10 µs) and every further torch
operation in the time loop costs 1–3 µs of dispatch, so
:class:`ALRNNFunction`, a ``torch.autograd.Function`` for the whole model,
does as few operations per time step as the equation allows.

Forward: one time-major buffer S holds the row blocks
S_t = [s_t, 1, ψ_{t-1}, z_{t-1}], ψ = φ(z_nl) the nonlinear units' φ
(z_nl: the last P units). Then

    A ⊙ z + W Φ*(z) + C s + h = [s, 1, ψ, z] V  (+ A_nl ⊙ z_nl),
    V = [Cᵀ; hᵀ; W_nlᵀ; W_linᵀ + diag A_lin; diag A_nl]

with W_lin and W_nl W's linear and nonlinear columns. Step t is one product
written straight into the z columns of S_{t+1} (σ_rec ξ_t added in it) and
one φ into its ψ columns. With P ≤ M / 8 the rows diag A_nl take A_nl ⊙ z_nl
into the product ("folded"); with more nonlinear units those P extra rows
cost more than the element-wise product they replace, which is then a third
operation per step. The latents are a view of S; the outputs are one product
B Zᵀ after the loop.

Backward through time: a buffer H holds [∂L/∂ψ_t, ∂L/∂z_t] and, folded,
∂L/∂y_{t-1}; per step one product with R (V's ψ and z rows, transposed, and
B, so that the readout's gradient rides along) gives H_{t-1}, and one
``addcmul_`` adds φ'(z) ⊙ ∂L/∂ψ into ∂L/∂z on the nonlinear units
(φ'(0) = α, as in ``ALRNN.phi``). Unfolded, A_nl ⊙ ∂L/∂z_nl is one more
element-wise operation and the readout's gradient one product before the
loop. The gradients of A, W, C and h are one product Gᵀ S over all
(time × batch) rows after the loop.

Where the compiled library of :mod:`neuroalrnn.native` builds, the same
operations on the same buffers run as C, with the matrix products from
torch's own BLAS: the forward pass (V, S, the loop, the readout) is one call,
and so is the backward pass in the training step's case (a loss on the
outputs only, no gradient for z0: R, H, the loop, the weight gradients); in
other cases the backward loop and R are compiled and the rest stays in
torch. Otherwise, or with ``USE_COMPILED = False``, everything runs as the
torch operations described above. Compiled, a training step at M = 128,
batch 32, 100 steps makes ~450 fewer torch calls; the two agree to rounding,
and both are tested against ``ALRNN.forward``. Rows of H are padded to a
multiple of 8 numbers, which makes its products ~12 % faster.

Buffers and their per-step views are kept between calls, per thread: making
the ~100 views of a buffer costs as much as five time steps. A kept buffer is
reused only when nothing else holds its storage (no latents kept by the
caller, no autograd graph alive), so results never alias; about
2 × time × batch × (M + P + K) numbers stay allocated (at most 256 MB).
``neuroalrnn bench`` measures the result against ``torch.nn.RNN``.
"""

from __future__ import annotations

import threading

import torch
from torch.autograd.function import once_differentiable

from . import native
from .models import ALRNN, _check_inputs

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
        ``(batch, n_units)`` initial state; ``None`` means zero.
    noise
        ``(batch, time, n_units)``, added to the drive C s_t + h in place of
        the model's own draw. ``None``: while ``model.training`` and
        ``model.noise_std > 0`` the noise is drawn as
        ``model.noise_std * torch.randn(batch, time, n_units)``, the draw
        ``ALRNN.forward`` makes, so both give the same result from the same
        torch seed; otherwise there is no noise.

    Returns
    -------
    outputs, latents
        ``(batch, time, n_outputs)`` and ``(batch, time, n_units)`` as from
        ``ALRNN.forward``. Both are strided views of time-major buffers (not
        contiguous): use ``.reshape`` rather than ``.view`` on them.
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
        # The draw of torch.randn_like(drive) in ALRNN.forward (same shape, order and dtype);
        # σ_rec multiplies it inside the matrix products, which saves a pass over it.
        noise = torch.randn(batch, n_steps, n_units, dtype=inputs.dtype, device=inputs.device)
        noise_scale = model.noise_std
    if noise is not None and tuple(noise.shape) != (batch, n_steps, n_units):
        raise ValueError(
            f"noise must have shape (batch, time, n_units) = {(batch, n_steps, n_units)}, got {tuple(noise.shape)}"
        )
    return ALRNNFunction.apply(
        inputs, z0, noise, model.A, model.W, model.h, model.C, model.B, model.b,
        model.n_nonlinear, model.slope, noise_scale,
    )


# With at most M / FOLD_RATIO nonlinear units, A_nl ⊙ z_nl rides along in the step's product (two
# operations per step); with more, those P extra product rows and columns cost more than the
# element-wise operations they save. Measured per training step: folding saves 2–3 % up to P = M/4
# at M = 128 (batch 32) and up to P = M/8 at M = 256 (batch 128), costs 3 % at P = M/4 there and
# 12 % at P = M (M = 128).
FOLD_RATIO = 8


class _Layout:
    """Columns of a row block S_t = [0 (padding), s_t (K), 1, ψ_{t-1} (P), z_{t-1} (M)], ψ = φ(z_nl).

    z comes last and its nonlinear units (the last P) last of all, so that a product can stop
    before them (``rows``): ``fold`` says whether A_nl ⊙ z_nl is done in the product (through
    rows diag(A_nl)) or by an element-wise operation.
    """

    def __init__(self, n_units: int, n_nonlinear: int, n_inputs: int) -> None:
        self.n_units, self.n_nonlinear, self.n_inputs = n_units, n_nonlinear, n_inputs
        self.start = n_units - n_nonlinear  # the first nonlinear unit
        used = n_inputs + 1 + n_nonlinear + n_units
        self.inputs = -used % 8  # zero columns first: rows of S are multiples of 8 long (BLAS alignment)
        self.one = self.inputs + n_inputs
        self.psi = self.one + 1
        self.z = self.psi + n_nonlinear
        self.nonlinear = self.z + self.start
        self.width = self.z + n_units
        self.fold = n_nonlinear * FOLD_RATIO <= n_units
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
    """R: [g_t, ∂L/∂y_{t-1}] R = ∂L/∂[ψ, z]_{t-1} before φ' (folded), or g_t R = ∂L/∂[ψ, z_lin]_{t-1}.

    Folded: R = [[W_nl, W D_lin + diag A], [0, B]], (M + O) × (P + M), where W D_lin is W with its
    nonlinear columns zeroed; otherwise R = [W_nl, W_lin + diag A_lin], M × M.
    """
    n_units, n_nonlinear, start = layout.n_units, layout.n_nonlinear, layout.start
    n_outputs = B.shape[0] if layout.fold else 0
    R = A.new_empty(n_units + n_outputs, n_nonlinear + (n_units if layout.fold else start))
    R.narrow(0, 0, n_units).narrow(1, 0, n_nonlinear).copy_(W.narrow(1, start, n_nonlinear))
    recurrent = R.narrow(0, 0, n_units).narrow(1, n_nonlinear, R.shape[1] - n_nonlinear)
    recurrent.narrow(1, 0, start).copy_(W.narrow(1, 0, start))
    if layout.fold:
        recurrent.narrow(1, start, n_nonlinear).zero_()
        R.narrow(0, n_units, n_outputs).narrow(1, 0, n_nonlinear).zero_()
        R.narrow(0, n_units, n_outputs).narrow(1, n_nonlinear, n_units).copy_(B)
    recurrent.diagonal().add_(A.narrow(0, 0, recurrent.shape[1]))
    return R


def _back_matrix_of(compiled: native.Loops | None, layout: _Layout, A, W, B) -> torch.Tensor:
    """R (see :func:`_back_matrix`), built by the compiled library when there is one (the same matrix, tested)."""
    if compiled is None:
        return _back_matrix(A, W, B, layout)
    M, P = layout.n_units, layout.n_nonlinear
    A, W, B = (tensor.contiguous() for tensor in (A, W, B))  # alive through the call
    shape = (M + B.shape[0], P + M) if layout.fold else (M, M)
    R = A.new_empty(shape)
    compiled.back_matrix[A.dtype](R.data_ptr(), *shape, M, layout.start, A.data_ptr(), W.data_ptr(), B.data_ptr())
    return R


def _phi(z: torch.Tensor, slope: float, out: torch.Tensor) -> None:
    """``out`` = φ(z), ``ALRNN.phi`` on the nonlinear units."""
    if slope == 0.0:
        torch.clamp(z, min=0, out=out)
    else:
        torch._C._nn.leaky_relu(z, slope, out=out)  # F.leaky_relu without an out= argument


def _phi_derivative(psi: torch.Tensor, slope: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """φ'(z) read off ψ = φ(z): 1 where ψ > 0, else the slope (φ'(0) = α, as in ``ALRNN.phi``)."""
    if out is None:
        out = torch.empty_like(psi)
    if slope == 0.0:
        return torch.sign(psi, out=out)  # ψ ≥ 0
    return out.copy_(psi > 0).mul_(1.0 - slope).add_(slope)


# Set to False to run the time loops as torch operations even where the compiled ones load (tests, bench).
USE_COMPILED = True


def _compiled_loops(like: torch.Tensor, numbers: int = 0) -> native.Loops | None:
    """The compiled loops for ``like``'s dtype and device, if wanted and available (``neuroalrnn.native``).

    ``numbers``: the size of the largest buffer; from 2³¹ on, 32-bit BLAS sizes would overflow.
    """
    if not USE_COMPILED or like.device.type != "cpu" or numbers >= 2**31:
        return None
    loops = native.loops()
    return loops if loops is not None and loops.supports(like.dtype) else None


def _largest_buffer(n_steps: int, batch: int, layout: _Layout, n_outputs: int) -> int:
    """An upper bound on the numbers in S or H (H's rows: P + M + O, padded to 8, ≤ S's + O + 8)."""
    return (n_steps + 1) * batch * (layout.width + n_outputs + 8)


# Buffers kept between calls, one per slot and thread (see the module docstring).
_WORKSPACE = threading.local()
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)  # private; without it, no reuse
KEEP_BYTES = 256 * 2**20  # larger buffers are not kept: they cost far more to fill than to allocate


def _storage_users(tensor: torch.Tensor) -> int:
    return _storage_use_count(tensor.untyped_storage()._cdata)


class _Buffer:
    """A (blocks, batch, width) buffer and the per-block views of its named column ranges."""

    def __init__(self, key: tuple, shape: tuple[int, int, int], like: torch.Tensor, columns: dict[str, slice]):
        self.key = key
        self.tensor = like.new_empty(shape)
        self.views = {name: self.tensor[:, :, cols].unbind(0) for name, cols in columns.items()}
        self.idle_users = _storage_users(self.tensor) if _storage_use_count is not None else None


def _buffer(slot: str, key: tuple, shape: tuple[int, int, int], like: torch.Tensor,
            columns: dict[str, slice]) -> tuple[_Buffer, bool]:
    """An idle buffer of at least ``shape`` from this thread's workspace, or a new one; True if new."""
    key = (*key, shape[1:], like.dtype, like.device)
    kept = getattr(_WORKSPACE, slot, None)
    if (
        kept is not None
        and kept.key == key
        and kept.tensor.shape[0] >= shape[0]
        and _storage_users(kept.tensor) == kept.idle_users
    ):
        return kept, False
    new = _Buffer(key, shape, like, columns)
    if new.idle_users is not None and new.tensor.nbytes <= KEEP_BYTES:
        setattr(_WORKSPACE, slot, new)
    return new, True


class ALRNNFunction(torch.autograd.Function):
    """The AL-RNN from inputs to (outputs, latents), with a hand-written backward pass.

    ``apply(inputs, z0, noise, A, W, h, C, B, b, n_nonlinear, slope, noise_scale)``:
    inputs ``(batch, time, K)``, z0 ``(batch, M)`` or ``None`` (zero), noise
    ``(batch, time, M)`` or ``None``, of which ``noise_scale * noise`` is added
    to the drive; returns outputs ``(batch, time, O)`` and latents
    ``(batch, time, M)``, both strided views of time-major buffers. Gradients
    flow to every tensor argument.
    """

    @staticmethod
    def forward(ctx, inputs, z0, noise, A, W, h, C, B, b, n_nonlinear: int, slope: float, noise_scale: float):
        batch, n_steps, n_inputs = inputs.shape
        n_units = A.shape[0]
        layout = _Layout(n_units, n_nonlinear, n_inputs)
        z, nonlinear, psi = layout.z, layout.nonlinear, layout.psi
        ctx.set_materialize_grads(False)
        with torch.no_grad():
            compiled = _compiled_loops(A, _largest_buffer(n_steps, batch, layout, B.shape[0]))
            columns = {"in": slice(0, layout.rows), "z": slice(z, None)}
            if n_nonlinear:
                columns.update(nonlinear=slice(nonlinear, None), psi=slice(psi, z))
            key = (n_units, n_nonlinear, n_inputs, layout.fold)
            buffer, new = _buffer("S", key, (n_steps + 1, batch, layout.width), A, columns)
            # S[t] = S_t for t < T; S[T] holds z_T and ψ_T only (its other columns are never read).
            S = buffer.tensor[: n_steps + 1]
            if noise is not None:  # into z_{t+1}'s columns; each step's product adds onto it
                torch.mul(noise.transpose(0, 1), noise_scale, out=S[1:, :, z:])
            if compiled is not None:  # everything in one call
                outputs = _forward_compiled(compiled, S, layout, inputs, z0, noise is not None, A, W, h, C, B, b, slope)
                latents = S[1:].view(n_steps * batch, layout.width)[:, z:]
            else:
                outputs, latents = _forward_torch(buffer, new, S, layout, inputs, z0, noise is not None,
                                                  A, W, h, C, B, b, slope)
            outputs = outputs.t().view(n_steps, batch, -1).transpose(0, 1)
            latents = latents.view(n_steps, batch, n_units).transpose(0, 1)
        ctx.save_for_backward(S, z0, A, W, C, B)
        ctx.n_nonlinear, ctx.slope, ctx.noise_scale = n_nonlinear, slope, noise_scale
        return outputs, latents

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs, grad_latents):
        return _backward(ctx, grad_outputs, grad_latents)


def _forward_compiled(compiled: native.Loops, S, layout: _Layout, inputs, z0, noise: bool, A, W, h, C, B, b,
                      slope: float) -> torch.Tensor:
    """Build V, fill S, run the loop and the readout in one compiled call; returns outputs (O, time × batch)."""
    n_steps, batch = S.shape[0] - 1, S.shape[1]
    A, W, h, C, B, b = (tensor.contiguous() for tensor in (A, W, h, C, B, b))  # alive through the call
    z0 = None if z0 is None else z0.contiguous()
    V = A.new_empty(layout.rows, layout.n_units)
    outputs = A.new_empty(B.shape[0], n_steps * batch)
    compiled.forward_full[A.dtype](
        compiled.gemm[A.dtype], S.data_ptr(), n_steps, batch, layout.width, layout.rows, V.data_ptr(),
        A.data_ptr(), W.data_ptr(), h.data_ptr(), C.data_ptr(), inputs.data_ptr(), *inputs.stride(),
        None if z0 is None else z0.data_ptr(), layout.n_units, layout.n_inputs, layout.inputs, layout.one,
        layout.psi, layout.z, layout.start, noise, bool(layout.n_nonlinear and not layout.fold), slope,
        B.data_ptr(), b.data_ptr(), B.shape[0], outputs.data_ptr(),
    )
    return outputs


def _forward_torch(buffer: _Buffer, new: bool, S, layout: _Layout, inputs, z0, noise: bool,
                   A, W, h, C, B, b, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass as torch operations; returns outputs (O, time × batch) and latents (time × batch, M).

    With ``noise``, z_{t+1}'s columns of S already hold the noise.
    """
    n_steps, batch = S.shape[0] - 1, S.shape[1]
    n_units, n_nonlinear = layout.n_units, layout.n_nonlinear
    z, psi = layout.z, layout.psi
    V = _step_matrix(A, W, h, C, layout)
    if new:
        buffer.tensor[:, :, : layout.inputs] = 0
        buffer.tensor[:, :, layout.one] = 1
    S[:n_steps, :, layout.inputs : layout.one] = inputs.transpose(0, 1)
    if z0 is None:
        S[0, :, psi:] = 0
    else:
        S[0, :, z:] = z0
        if n_nonlinear:
            _phi(z0[:, layout.start :], slope, out=S[0, :, psi:z])
    in_blocks, z_blocks = buffer.views["in"], buffer.views["z"]
    if n_nonlinear:
        nonlinear_blocks, psi_blocks = buffer.views["nonlinear"], buffer.views["psi"]
        A_nonlinear = A[layout.start :]
    separate = n_nonlinear and not layout.fold
    for t in range(n_steps):
        if not noise:
            torch.mm(in_blocks[t], V, out=z_blocks[t + 1])
        else:
            z_blocks[t + 1].addmm_(in_blocks[t], V)
        if separate:
            nonlinear_blocks[t + 1].addcmul_(nonlinear_blocks[t], A_nonlinear)
        if n_nonlinear:
            _phi(nonlinear_blocks[t + 1], slope, out=psi_blocks[t + 1])
    latents = S[1:].view(n_steps * batch, layout.width)[:, z:]
    # (O × M)(M × rows): MKL is several times faster this way round than rows × M by M × O.
    outputs = torch.mm(B, latents.t()).add_(b.unsqueeze(1))
    return outputs, latents


def _backward_compiled(compiled: native.Loops, H, S, layout: _Layout, A, W, C, B, grad_outputs, need: dict,
                       slope: float, noise_scale: float) -> tuple:
    """The backward pass in one compiled call, for a loss on the outputs only and no gradient for z0."""
    n_steps, batch = S.shape[0] - 1, S.shape[1]
    M, P, K, O = layout.n_units, layout.n_nonlinear, layout.n_inputs, B.shape[0]
    A, W, B = (tensor.contiguous() for tensor in (A, W, B))  # alive through the call
    readout = need["B"] or need["b"]
    grad_A, grad_W, grad_h, grad_C = S.new_empty(M), S.new_empty(M, M), S.new_empty(M), S.new_empty(M, K)
    grad_B, grad_b = (S.new_empty(O, M), S.new_empty(O)) if readout else (None, None)
    common = (compiled.gemm[S.dtype], H.data_ptr(), n_steps, batch, H.shape[2])
    problem = (
        A.data_ptr(), W.data_ptr(), B.data_ptr(), O, S.data_ptr(), layout.width, layout.rows, layout.inputs,
        layout.one, layout.psi, layout.z, M, K, layout.start, slope, grad_outputs.data_ptr(), *grad_outputs.stride(),
        readout,
    )
    results = (grad_A.data_ptr(), grad_W.data_ptr(), grad_h.data_ptr(), grad_C.data_ptr(),
               None if grad_B is None else grad_B.data_ptr(), None if grad_b is None else grad_b.data_ptr())
    if layout.fold:
        R = S.new_empty(M + O, P + M)
        products = S.new_empty(M + (O if readout else 0), layout.rows)
        compiled.backward_full[S.dtype](*common, R.data_ptr(), *problem, products.data_ptr(), *results)
    else:
        R, dy = S.new_empty(M, M), S.new_empty(n_steps * batch, O)
        products = S.new_empty(M, layout.rows)
        compiled.backward_full_separate[S.dtype](*common, R.data_ptr(), *problem, dy.data_ptr(), products.data_ptr(),
                                                 *results)
    G = H.view(n_steps * batch, -1)[:, P : P + M]
    grad_inputs = torch.mm(G, C).view(n_steps, batch, K).transpose(0, 1) if need["inputs"] else None
    grad_noise = (G * noise_scale).view(n_steps, batch, M).transpose(0, 1) if need["noise"] else None
    kept = [grad if need[name] else None for name, grad in
            (("A", grad_A), ("W", grad_W), ("h", grad_h), ("C", grad_C), ("B", grad_B), ("b", grad_b))]
    return grad_inputs, None, grad_noise, *kept, None, None, None


def _backward(ctx, grad_outputs, grad_latents):
    S, z0, A, W, C, B = ctx.saved_tensors
    n_nonlinear, slope = ctx.n_nonlinear, ctx.slope
    need = dict(zip(("inputs", "z0", "noise", "A", "W", "h", "C", "B", "b"), ctx.needs_input_grad))
    (n_outputs, n_units), n_inputs = B.shape, C.shape[1]
    n_steps, batch = S.shape[0] - 1, S.shape[1]
    rows, last = n_steps * batch, n_steps - 1
    layout = _Layout(n_units, n_nonlinear, n_inputs)
    start, fold = layout.start, layout.fold
    # H[t] = [∂L/∂ψ_t (P), ∂L/∂z_t (M)] and, folded, ∂L/∂y_{t-1} (O): then the product of
    # H[t]'s last M + O columns with R is H[t-1]'s first P + M, the readout's gradient riding
    # along. ∂L/∂z_t is final (g_t) once φ'(z_t) ⊙ ∂L/∂ψ_t is added.
    P, M, O = n_nonlinear, n_units, (n_outputs if fold else 0)
    with torch.no_grad():
        compiled = _compiled_loops(S, _largest_buffer(n_steps, batch, layout, n_outputs))
        columns = {"in": slice(P, P + M + O), "out": slice(0, P + (M if fold else start))}
        if P:
            columns.update(nonlinear=slice(P + start, P + M), psi=slice(0, P))
        width = P + M + O + (-(P + M + O) % 8)  # rows a multiple of 8 long: ~12 % faster products
        buffer, _ = _buffer("H", (M, P, O, fold), (n_steps, batch, width), S, columns)
        H = buffer.tensor[:n_steps]
        if (compiled is not None and grad_outputs is not None and grad_latents is None
                and not (need["z0"] and z0 is not None)):  # the training step's case: all in one call
            return _backward_compiled(compiled, H, S, layout, A, W, C, B, grad_outputs, need, slope, ctx.noise_scale)
        R = _back_matrix_of(compiled, layout, A, W, B)
        in_blocks, out_blocks = buffer.views["in"], buffer.views["out"]
        G = H.view(rows, -1)[:, P : P + M]  # g_t, each block final once the loop has passed it
        have_y = grad_outputs is not None
        # Folded, the compiled loop copies ∂L/∂y_{t-1} into H[t] itself, just before it is used.
        fill = compiled is not None and fold and have_y
        grad_y = grad_outputs.transpose(0, 1).contiguous() if have_y and not fill else None  # time-major
        last_y = grad_outputs[:, last] if have_y else None
        accumulate = grad_latents is not None or not fold
        if fold:
            if not have_y:
                H[:, :, P + M : P + M + O] = 0
                H[last, :, P:] = 0
            else:
                if not fill:
                    H[0, :, P + M : P + M + O] = 0
                    H[1:, :, P + M : P + M + O] = grad_y[:last]
                torch.mm(last_y, B, out=H[last, :, P : P + M])
            H[last, :, :P] = 0
            if grad_latents is not None:  # the products add onto ∂L/∂z_t from the latents
                H[:last, :, P : P + M] = grad_latents[:, :last].transpose(0, 1)
                H[:last, :, :P] = 0
                H[last, :, P : P + M] += grad_latents[:, last]
        else:
            H[:, :, :P] = 0
            if not have_y:
                G.zero_()
            else:
                torch.mm(grad_y.view(rows, n_outputs), B, out=G)
            if grad_latents is not None:
                G += grad_latents.transpose(0, 1).reshape(rows, M)
        if P:
            nonlinear_blocks, psi_blocks = buffer.views["nonlinear"], buffer.views["psi"]
            A_nonlinear = A[start:].contiguous()
        if compiled is not None:
            compiled.backward[S.dtype](
                compiled.gemm[S.dtype], H.data_ptr(), n_steps, batch, H.shape[2], R.data_ptr(), R.shape[0],
                R.shape[1], P, accumulate, P, start, bool(P and not fold), A_nonlinear.data_ptr() if P else None,
                S.data_ptr(), layout.width, layout.psi, slope,
                grad_outputs.data_ptr() if fill else None, *(grad_outputs.stride() if fill else (0, 0, 0)),
                P + M, O if fill else 0,
            )
        elif P:
            # φ'(z_t) from ψ_t = φ(z_t) in S[t + 1]: 1 where ψ > 0, else the slope.
            masks, _ = _buffer("mask", (), (n_steps + 1, batch, P), S, {"all": slice(None)})
            _phi_derivative(S[:, :, layout.psi : layout.z], slope, out=masks.tensor[: n_steps + 1])
            mask_blocks = masks.views["all"]
        for t in range(last if compiled is None else 0, 0, -1):
            if P and t < last:
                nonlinear_blocks[t].addcmul_(psi_blocks[t], mask_blocks[t + 1])
            if accumulate:
                out_blocks[t - 1].addmm_(in_blocks[t], R)
            else:
                torch.mm(in_blocks[t], R, out=out_blocks[t - 1])
            if P and not fold:
                nonlinear_blocks[t - 1].addcmul_(nonlinear_blocks[t], A_nonlinear)
        if compiled is None and P and last > 0:
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
        # Folded, the product below also takes Σ_t ∂L/∂y_{t-1}ᵀ S_t, the readout's gradient but for
        # the last step, from the ∂L/∂y columns of H (cheaper than a pass over the latents of its own).
        readout_along = fold and have_y and (need["B"] or need["b"])
        if need["A"] or need["W"] or need["C"] or need["h"] or readout_along:
            # Σ_t g_tᵀ S_t = ∂L/∂Vᵀ over the columns of S_t in the product. The (zero) padding columns
            # are included: an aligned start makes the product ~6 % faster than the two columns cost.
            # Unfolded, A_nl's gradient is the diagonal of the columns left out: an element-wise product.
            first = 0
            G_rows = H.view(rows, -1)[:, P : P + M + (O if readout_along else 0)]
            products = torch.mm(G_rows.t(), S[:n_steps].view(rows, -1)[:, first : layout.rows])
            grad_W = products.new_empty(M, M)
            grad_W.narrow(1, 0, start).copy_(products[:M, layout.z - first : layout.nonlinear - first])
            grad_W.narrow(1, start, P).copy_(products[:M, layout.psi - first : layout.z - first])
            grad_A = products[:M, layout.z - first :].diagonal()
            if P and not fold:
                z_nonlinear, g_nonlinear = S[:n_steps, :, layout.nonlinear :], H[:, :, P + start : P + M]
                grad_A = torch.cat([grad_A, torch.linalg.vecdot(z_nonlinear, g_nonlinear, dim=1).sum(0)])
            grad_C = products[:M, layout.inputs - first : layout.one - first]  # views: autograd copies them into .grad
            grad_h = products[:M, layout.one - first]
        if readout_along:
            readout = products[M:]
            grad_B = torch.addmm(readout[:, layout.z - first :], last_y.t(), S[n_steps, :, layout.z :])
            grad_b = readout[:, layout.one - first] + last_y.sum(0)
        elif have_y:
            if need["B"]:
                grad_B = torch.mm(grad_y.view(rows, n_outputs).t(), S[1:].view(rows, -1)[:, layout.z :])
            if need["b"]:
                grad_b = grad_y.sum((0, 1))
        grad_inputs = grad_noise = None
        if need["inputs"]:
            grad_inputs = torch.mm(G, C).view(n_steps, batch, n_inputs).transpose(0, 1)
        if need["noise"]:
            grad_noise = (G * ctx.noise_scale).view(n_steps, batch, n_units).transpose(0, 1)
    return grad_inputs, grad_z0, grad_noise, grad_A, grad_W, grad_h, grad_C, grad_B, grad_b, None, None, None
