"""A fast AL-RNN forward and backward pass for CPU training, tested against ``ALRNN.forward``.

:func:`alrnn_forward_fast` computes what :meth:`ALRNN.forward
<neuroalrnn.models.ALRNN.forward>` computes (same equation, same parameters,
same noise draw) but arranged for speed at the sizes cognitive-task models use
(M = 64..256 units, 32..128 trials, ~100 steps). There a training step costs
per-operation overhead and memory traffic (first touches of freshly allocated
buffers included) more than arithmetic, so :class:`ALRNNFunction`, a
``torch.autograd.Function`` for the whole model, does the following.

* Forward, without an autograd graph: each step is one matrix product of the
  row block S_t = [Φ*(z_{t-1}), s_t, 1] with [W + diag A_lin, C, h]ᵀ (plus
  σ_rec ξ_t, scaled inside the same ``addmm``). A_lin (A_nl) is A on the linear
  (nonlinear) units and zero elsewhere; A ⊙ z + W Φ*(z) = (W + diag A_lin) Φ*(z)
  + A_nl ⊙ z because Φ*(z) = z on the linear units. The readout B z_t + b is one
  matrix product after the loop. Only the latents (and inputs) are kept for the
  backward pass.
* Backward through time, per step: one matrix product g_t W (with the diagonal
  folded in) and, for P > 0, three elementwise operations on the P nonlinear
  units give dL/dz_{t-1} = e_{t-1} + A ⊙ g_t + (g_t W) ⊙ Φ*'(z_{t-1}), where
  g_t = dL/dz_t and e_t is the gradient arriving at z_t from the readout and
  the latents.
* The weight gradients are products over all (time × batch) rows at once, taken
  in chunks of a few steps whose G and S blocks stay in cache and are reused:
  Gᵀ S = [dW, dC, dh] (its diagonal is A's gradient on the linear units).

With P = 0 a step is one copy and one matrix product forward, one ``addmm``
backward. Buffers of size time × batch × M: the latents (returned), and, only
when asked for, the gradients of the inputs and the noise.

Why the input term and the readout are inside the Function rather than left to
autograd: with K ≈ 5 inputs and O ≈ 3 outputs, the skinny products autograd
would run (C s_t over all steps, dC = Gᵀ X, dL/dz = g_y B) take MKL several
times longer than their size suggests, and each writes a fresh time × batch × M
tensor; in S they ride along with products that are done anyway.
``benchmarks/training_speed.py`` measures the result against ``torch.nn.RNN``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .models import ALRNN, _check_inputs

__all__ = ["ALRNNFunction", "alrnn_forward_fast"]

# Chunk length in (time × batch) rows: blocks of ~1,000 rows keep the
# per-chunk matrix products efficient while their buffers stay in cache.
CHUNK_ROWS = 1024


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
        ``ALRNN.forward``. Both are transposed views of time-major buffers
        (not contiguous): use ``.reshape`` rather than ``.view`` on them.
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


def _leaky_relu_(z: torch.Tensor, slope: float) -> torch.Tensor:
    """φ in place: z for z > 0, slope · z otherwise (``ALRNN.phi`` on the nonlinear units)."""
    if slope == 0.0:
        return z.relu_()
    return torch.nn.functional.leaky_relu(z, slope, inplace=True)


def _chunk_length(batch: int, n_steps: int) -> int:
    return max(1, min(n_steps, CHUNK_ROWS // batch))


def _width(n_units: int, n_inputs: int) -> int:
    """Columns of S: [Φ*(z), s, 1], zero-padded to a multiple of 8 (rows aligned for the BLAS kernels)."""
    return -(-(n_units + n_inputs + 1) // 8) * 8


class ALRNNFunction(torch.autograd.Function):
    """The AL-RNN from inputs to (outputs, latents), with a hand-written backward pass.

    ``apply(inputs, z0, noise, A, W, h, C, B, b, n_nonlinear, slope, noise_scale)``:
    inputs ``(batch, time, K)``, z0 ``(batch, M)`` or ``None`` (zero), noise
    ``(batch, time, M)`` or ``None``, of which ``noise_scale * noise`` is added
    to the drive; returns outputs ``(batch, time, O)`` and latents
    ``(batch, time, M)``, both views of time-major buffers. Gradients flow to
    every tensor argument.
    """

    @staticmethod
    def forward(ctx, inputs, z0, noise, A, W, h, C, B, b, n_nonlinear: int, slope: float, noise_scale: float):
        batch, n_steps, n_inputs = inputs.shape
        n_units = A.shape[0]
        start = n_units - n_nonlinear  # the first nonlinear unit
        chunk = _chunk_length(batch, n_steps)
        width = _width(n_units, n_inputs)
        ctx.set_materialize_grads(False)
        with torch.no_grad():
            A_linear = A.clone()
            A_linear[start:] = 0
            weights = A.new_zeros(width, n_units)  # [W + diag A_lin, C, h]ᵀ and zero rows
            weights[:n_units] = (W + torch.diag(A_linear)).t()
            weights[n_units : n_units + n_inputs] = C.t()
            weights[n_units + n_inputs] = h
            A_nonlinear = A[start:]
            # S[i] = [Φ*(z_{t-1}), s_t, 1, 0...] for step t = chunk start + i.
            S = A.new_zeros(chunk, batch, width)
            S[:, :, n_units + n_inputs] = 1
            S_steps, phi_steps = S.unbind(0), S[:, :, :n_units].unbind(0)
            phi_nonlinear_steps = S[:, :, start:n_units].unbind(0)
            latents = A.new_empty(n_steps, batch, n_units)
            latent_steps = latents.unbind(0)
            latent_nonlinear_steps = latents[:, :, start:].unbind(0)
            noise_steps = noise.transpose(0, 1).unbind(0) if noise is not None else None
            inputs_by_time = inputs.transpose(0, 1)
            previous, previous_nonlinear = z0, (None if z0 is None else z0[:, start:])
            for first in range(0, n_steps, chunk):
                end = min(n_steps, first + chunk)
                S[: end - first, :, n_units : n_units + n_inputs] = inputs_by_time[first:end]
                for t in range(first, end):
                    i = t - first
                    if previous is None:
                        phi_steps[i].zero_()
                    elif start == 0 and slope == 0.0:  # P = M: Φ* = relu, one operation
                        torch.clamp(previous, min=0, out=phi_steps[i])
                    else:
                        phi_steps[i].copy_(previous)
                        if n_nonlinear:
                            _leaky_relu_(phi_nonlinear_steps[i], slope)
                    z = latent_steps[t]
                    if noise_steps is None:
                        torch.mm(S_steps[i], weights, out=z)
                    else:
                        torch.addmm(noise_steps[t], S_steps[i], weights, beta=noise_scale, out=z)
                    if n_nonlinear and previous_nonlinear is not None:
                        latent_nonlinear_steps[t].addcmul_(A_nonlinear, previous_nonlinear)
                    previous, previous_nonlinear = z, latent_nonlinear_steps[t]
            outputs = torch.addmm(b, latents.view(n_steps * batch, n_units), B.t())
            outputs = outputs.view(n_steps, batch, -1).transpose(0, 1)
            latents = latents.transpose(0, 1)
        ctx.save_for_backward(inputs, z0, latents, A, W, C, B)
        ctx.n_nonlinear, ctx.slope, ctx.noise_scale = n_nonlinear, slope, noise_scale
        return outputs, latents

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs, grad_latents):
        inputs, z0, latents, A, W, C, B = ctx.saved_tensors
        n_nonlinear, slope = ctx.n_nonlinear, ctx.slope
        need = dict(zip(("inputs", "z0", "noise", "A", "W", "h", "C", "B", "b"), ctx.needs_input_grad))
        batch, n_steps, n_units = latents.shape
        n_inputs, n_outputs = C.shape[1], B.shape[0]
        start = n_units - n_nonlinear
        chunk = _chunk_length(batch, n_steps)
        width = _width(n_units, n_inputs)
        need_z0 = need["z0"] and z0 is not None
        need_products = need["A"] or need["W"] or need["C"] or need["h"]
        with torch.no_grad():
            Z = latents.transpose(0, 1)  # (time, batch, M), contiguous
            new = Z.new_zeros
            # g W_back = A ⊙ g + g W on the linear units; on the nonlinear ones only g W (Φ*' multiplies it).
            A_folded = A.clone()
            A_folded[start:] = 0
            W_back = W + torch.diag(A_folded)
            A_nonlinear = A[start:]
            grad_outputs_by_time = None
            if grad_outputs is not None:
                grad_outputs_by_time = grad_outputs.transpose(0, 1).contiguous()
            grad_latents_by_time = None if grad_latents is None else grad_latents.transpose(0, 1)
            inputs_by_time = inputs.transpose(0, 1)
            z0_or_zero = new(batch, n_units) if z0 is None else z0

            G = Z.new_empty(chunk, batch, n_units)  # G[i] = dL/dz_t for t = chunk start + i
            S = Z.new_zeros(chunk, batch, width)  # as in forward
            S[:, :, n_units + n_inputs] = 1
            G_steps, G_nonlinear_steps = G.unbind(0), G[:, :, start:].unbind(0)
            carry = new(batch, n_units)  # dL/dz_{first-1} from the terms of the chunk that starts at `first`
            carry_nonlinear = carry[:, start:]
            buffer = Z.new_empty(batch, n_units)
            buffer_nonlinear = buffer[:, start:]
            grad_z0 = new(batch, n_units) if need_z0 else None
            products = new(width, n_units) if need_products else None  # Sᵀ G = [dW, dC, dh, 0]ᵀ
            grad_A_nonlinear = new(n_nonlinear)
            grad_B = new(n_outputs, n_units) if grad_outputs is not None and need["B"] else None
            grad_inputs_by_time = Z.new_empty(n_steps, batch, n_inputs) if need["inputs"] else None
            grad_noise_by_time = Z.new_empty(n_steps, batch, n_units) if need["noise"] else None
            slope_t = torch.tensor(slope, dtype=Z.dtype, device=Z.device)
            one = torch.ones((), dtype=Z.dtype, device=Z.device)

            for end in range(n_steps, 0, -chunk):
                first = max(0, end - chunk)
                rows = (end - first) * batch
                G_chunk = G[: end - first]
                # The gradient arriving at z_t from outside the recurrence.
                if grad_outputs_by_time is not None:
                    torch.mm(grad_outputs_by_time[first:end].view(rows, n_outputs), B, out=G_chunk.view(rows, n_units))
                else:
                    G_chunk.zero_()
                if grad_latents_by_time is not None:
                    G_chunk += grad_latents_by_time[first:end]
                if end < n_steps:
                    G_chunk[-1] += carry
                # z_{t-1} for the steps of this chunk, into the Φ* columns of S.
                previous = S[: end - first, :, :n_units]
                if first > 0:
                    previous.copy_(Z[first - 1 : end - 1])
                else:
                    previous[0] = z0_or_zero
                    previous[1:] = Z[: end - 1]
                previous_nonlinear = previous[:, :, start:]
                if n_nonlinear:
                    # Φ*'(z_{t-1}) on the nonlinear units; φ'(0) = slope, as the where() in ALRNN.phi.
                    dphi = torch.where(previous_nonlinear <= 0, slope_t, one).unbind(0)
                for t in range(end - 1, max(first, 0 if need_z0 else 1) - 1, -1):
                    i = t - first
                    g = G_steps[i]
                    if i > 0:  # accumulate into dL/dz_{t-1}
                        if n_nonlinear == 0:
                            G_steps[i - 1].addmm_(g, W_back)
                        elif start == 0:  # P = M: no linear units
                            torch.mm(g, W_back, out=buffer)
                            G_steps[i - 1].addcmul_(buffer, dphi[i])
                            G_steps[i - 1].addcmul_(A_nonlinear, g)
                        else:
                            torch.mm(g, W_back, out=buffer)
                            buffer_nonlinear.mul_(dphi[i])
                            G_steps[i - 1].add_(buffer)
                            G_nonlinear_steps[i - 1].addcmul_(A_nonlinear, G_nonlinear_steps[i])
                    else:  # z_{t-1} lies in the previous chunk (or is z0)
                        target = carry if t > 0 else grad_z0
                        torch.mm(g, W_back, out=target)
                        if n_nonlinear:
                            target_nonlinear = carry_nonlinear if t > 0 else grad_z0[:, start:]
                            target_nonlinear.mul_(dphi[i])
                            target_nonlinear.addcmul_(A_nonlinear, G_nonlinear_steps[i])
                # Weight gradients of this chunk: Gᵀ [Φ*(z_{t-1}), s_t, 1], and dA on the nonlinear units.
                if need_products:
                    if n_nonlinear:
                        grad_A_nonlinear += (G_chunk[:, :, start:] * previous_nonlinear).sum((0, 1))
                        _leaky_relu_(previous_nonlinear, slope)
                    S[: end - first, :, n_units : n_units + n_inputs] = inputs_by_time[first:end]
                    products.addmm_(S[: end - first].view(rows, width).t(), G_chunk.view(rows, n_units))
                if grad_B is not None:
                    chunk_outputs = grad_outputs_by_time[first:end].view(rows, n_outputs)
                    grad_B.addmm_(chunk_outputs.t(), Z[first:end].view(rows, n_units))
                if grad_inputs_by_time is not None:
                    torch.mm(G_chunk.view(rows, n_units), C, out=grad_inputs_by_time[first:end].view(rows, n_inputs))
                if grad_noise_by_time is not None:
                    torch.mul(G_chunk, ctx.noise_scale, out=grad_noise_by_time[first:end])

            grad_A = grad_W = grad_h = grad_C = grad_b = None
            if need_products:
                grad_W = products[:n_units].t().contiguous()
                grad_C = products[n_units : n_units + n_inputs].t().contiguous()
                grad_h = products[n_units + n_inputs].clone()
                grad_A = torch.diagonal(grad_W).clone()
                grad_A[start:] = grad_A_nonlinear
            if grad_outputs_by_time is not None and need["b"]:
                grad_b = grad_outputs_by_time.sum((0, 1))
            grad_inputs = None if grad_inputs_by_time is None else grad_inputs_by_time.transpose(0, 1)
            grad_noise = None if grad_noise_by_time is None else grad_noise_by_time.transpose(0, 1)
        return grad_inputs, grad_z0, grad_noise, grad_A, grad_W, grad_h, grad_C, grad_B, grad_b, None, None, None
