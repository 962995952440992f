"""A fast AL-RNN forward and backward pass for CPU training, tested against ``ALRNN.forward``.

:func:`alrnn_forward_fast` computes exactly what :meth:`ALRNN.forward
<neuroalrnn.models.ALRNN.forward>` computes (same equation, same parameters,
same noise draw), but arranged for speed at the sizes cognitive-task models
use (M = 64..256 units, 32..128 trials, ~100 steps), where the cost of a
training step is mostly per-operation overhead rather than arithmetic:

* the input term C s_t + h for every t is one matrix product before the loop,
  and the readout B z_t + b for every t one matrix product after it;
* the recurrence runs inside :class:`ALRNNRecurrence`, a custom
  ``torch.autograd.Function``: the forward loop builds no autograd graph and
  keeps only the latents (time-major); backpropagation through time does one
  matrix product and two elementwise operations per step, and the weight
  gradients are single large matrix products over all (time × batch) rows
  after the loop.

Folding the diagonal A into the matrix, A ⊙ z + W Φ*(z) = (W + diag A_lin) Φ*(z)
+ A_nl ⊙ z_nl, where A_lin (A_nl) is A on the linear (nonlinear) units and zero
elsewhere, because Φ*(z) = z on the linear units. With P = 0 a step is a single
``addmm`` forward and backward.
"""

from __future__ import annotations

import torch

from .models import ALRNN, _check_inputs

__all__ = ["ALRNNRecurrence", "alrnn_forward_fast"]


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
        ``(batch, time, n_inputs)``.
    z0
        ``(batch, n_units)`` initial state; ``None`` means zero.
    noise
        ``(batch, time, n_units)``, added to the drive C s_t + h (it replaces
        the model's own draw). ``None``: while ``model.training`` and
        ``model.noise_std > 0`` the noise is drawn as
        ``model.noise_std * torch.randn(batch, time, n_units)`` — the same draw
        ``ALRNN.forward`` makes, so both give the same result from the same
        torch seed; otherwise no noise.

    Returns
    -------
    outputs, latents
        ``(batch, time, n_outputs)`` and ``(batch, time, n_units)``, as from
        ``ALRNN.forward``. Both are views of time-major buffers (not
        contiguous); use ``.reshape`` rather than ``.view`` on them.
    """
    if not isinstance(model, ALRNN):
        raise TypeError(f"model must be an ALRNN, got {type(model).__name__}; other models have no fast path")
    inputs = _check_inputs(inputs, model.n_inputs)
    batch, n_steps, n_inputs = inputs.shape
    n_units = model.n_units
    # Time-major drive (time, batch, M): each step then reads one contiguous block.
    drive = torch.addmm(model.h, inputs.transpose(0, 1).reshape(n_steps * batch, n_inputs), model.C.t())
    drive = drive.view(n_steps, batch, n_units)
    if noise is None and model.training and model.noise_std > 0:
        # The same draw (shape, order, dtype) as torch.randn_like(drive) in ALRNN.forward.
        noise = model.noise_std * torch.randn(batch, n_steps, n_units, dtype=drive.dtype, device=drive.device)
    if noise is not None:
        if tuple(noise.shape) != (batch, n_steps, n_units):
            raise ValueError(
                f"noise must have shape (batch, time, n_units) = {(batch, n_steps, n_units)}, "
                f"got {tuple(noise.shape)}"
            )
        drive = drive + noise.transpose(0, 1)
    if z0 is not None and tuple(z0.shape) != (batch, n_units):
        raise ValueError(f"z0 must have shape (batch, n_units) = {(batch, n_units)}, got {tuple(z0.shape)}")
    latents = ALRNNRecurrence.apply(drive, z0, model.A, model.W, model.n_nonlinear, model.slope)
    outputs = torch.addmm(model.b, latents.view(n_steps * batch, n_units), model.B.t())
    return outputs.view(n_steps, batch, -1).transpose(0, 1), latents.transpose(0, 1)


def _leaky_relu_(z: torch.Tensor, slope: float) -> torch.Tensor:
    """φ in place: z for z > 0, slope · z otherwise (``ALRNN.phi`` on the nonlinear units)."""
    if slope == 0.0:
        return z.relu_()
    return torch.nn.functional.leaky_relu(z, slope, inplace=True)


def _phi(z: torch.Tensor, start: int, slope: float) -> torch.Tensor:
    """Φ*(z) as a new tensor, nonlinear from unit ``start`` on."""
    out = z.clone()
    _leaky_relu_(out[..., start:], slope)
    return out


class ALRNNRecurrence(torch.autograd.Function):
    """z_t = A ⊙ z_{t-1} + W Φ*(z_{t-1}) + drive_t for t = 1..T, all time-major.

    ``apply(drive, z0, A, W, n_nonlinear, slope)`` with drive ``(time, batch,
    M)``, z0 ``(batch, M)`` or ``None`` (zero) returns the latents ``(time,
    batch, M)``. Gradients flow to ``drive``, ``z0``, ``A`` and ``W``.
    """

    @staticmethod
    def forward(ctx, drive, z0, A, W, n_nonlinear: int, slope: float):
        n_steps, batch, n_units = drive.shape
        start = n_units - n_nonlinear
        with torch.no_grad():
            drive = drive.contiguous()
            latents = torch.empty_like(drive)
            previous = drive.new_zeros(batch, n_units) if z0 is None else z0.contiguous()
            A_linear = A.clone()
            A_linear[start:] = 0
            # (W + diag A_lin)ᵀ, contiguous, so each step is one addmm.
            W_folded_t = (W + torch.diag(A_linear)).t().contiguous()
            A_nonlinear = A[start:]
            latent_steps, drive_steps = latents.unbind(0), drive.unbind(0)
            if n_nonlinear == 0:
                for t in range(n_steps):
                    previous = torch.addmm(drive_steps[t], previous, W_folded_t, out=latent_steps[t])
            else:
                phi = torch.empty(batch, n_units, dtype=drive.dtype, device=drive.device)
                phi_nonlinear = phi[:, start:]
                latent_nonlinear = latents[:, :, start:].unbind(0)
                previous_nonlinear = previous[:, start:]
                for t in range(n_steps):
                    phi.copy_(previous)
                    _leaky_relu_(phi_nonlinear, slope)
                    torch.addmm(drive_steps[t], phi, W_folded_t, out=latent_steps[t])
                    latent_nonlinear[t].addcmul_(A_nonlinear, previous_nonlinear)
                    previous, previous_nonlinear = latent_steps[t], latent_nonlinear[t]
        ctx.save_for_backward(latents, z0, A, W)
        ctx.n_nonlinear, ctx.slope = n_nonlinear, slope
        return latents

    @staticmethod
    def backward(ctx, grad_latents):
        latents, z0, A, W = ctx.saved_tensors
        n_nonlinear, slope = ctx.n_nonlinear, ctx.slope
        n_steps, batch, n_units = latents.shape
        start = n_units - n_nonlinear
        need_drive, need_z0, need_A, need_W = ctx.needs_input_grad[:4]
        need_z0 = need_z0 and z0 is not None
        with torch.no_grad():
            grad_latents = grad_latents.contiguous()
            # G[t] = dL/dz_t, filled from the last step backwards.
            G = torch.empty_like(grad_latents)
            G[-1] = grad_latents[-1]
            G_steps, incoming = G.unbind(0), grad_latents.unbind(0)
            A_linear = A.clone()
            A_linear[start:] = 0
            W_folded = W + torch.diag(A_linear)
            last = 0 if need_z0 else 1  # the step t whose g_t is propagated last (to z_{t-1})
            grad_z0 = None
            if n_nonlinear == 0:
                for t in range(n_steps - 1, last - 1, -1):
                    target = G_steps[t - 1] if t > 0 else None
                    if t > 0:
                        torch.addmm(incoming[t - 1], G_steps[t], W_folded, out=target)
                    else:
                        grad_z0 = G_steps[0] @ W_folded
            else:
                # φ'(z_{t-1}) on the nonlinear units, for every t at once (φ'(0) = slope, as in ALRNN.phi).
                previous_nonlinear = latents[:-1, :, start:]
                if need_z0:
                    previous_nonlinear = torch.cat([z0[None, :, start:], previous_nonlinear])
                slope_t = torch.tensor(slope, dtype=latents.dtype)
                one = torch.ones((), dtype=latents.dtype)
                dphi = torch.where(previous_nonlinear <= 0, slope_t, one)
                dphi_steps = dphi.unbind(0)
                offset = 0 if need_z0 else 1  # dphi_steps[t - offset] belongs to z_{t-1}
                A_nonlinear = A[start:]
                buffer = torch.empty(batch, n_units, dtype=latents.dtype, device=latents.device)
                buffer_nonlinear = buffer[:, start:]
                G_nonlinear = G[:, :, start:].unbind(0)
                for t in range(n_steps - 1, last - 1, -1):
                    torch.mm(G_steps[t], W_folded, out=buffer)
                    buffer_nonlinear.mul_(dphi_steps[t - offset])
                    buffer_nonlinear.addcmul_(A_nonlinear, G_nonlinear[t])
                    if t > 0:
                        torch.add(incoming[t - 1], buffer, out=G_steps[t - 1])
                    else:
                        grad_z0 = buffer.clone()
            grad_A = grad_W = None
            rows_G = G[1:].view(-1, n_units)
            previous = latents[:-1].view(-1, n_units)
            if need_W:
                phi_previous = previous if n_nonlinear == 0 else _phi(previous, start, slope)
                grad_W = rows_G.t() @ phi_previous
                if z0 is not None:
                    phi_z0 = z0 if n_nonlinear == 0 else _phi(z0, start, slope)
                    grad_W.addmm_(G[0].t(), phi_z0)
            if need_A:
                grad_A = (rows_G * previous).sum(0)
                if z0 is not None:
                    grad_A += (G[0] * z0).sum(0)
        return (G if need_drive else None), grad_z0, grad_A, grad_W, None, None
