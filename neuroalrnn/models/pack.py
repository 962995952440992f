"""N almost-linear RNNs of one size as one batched model, for training a sweep's networks together.

:class:`PackedALRNN` holds N AL-RNNs of the same M, K and O, each with its own
weights, P, slope α and noise σ_rec, and runs them with batched matrix
products: one forward pass (and one backward pass) for all N. It computes
each network's :class:`~neuroalrnn.models.ALRNN` equation unchanged (tested
against ``ALRNN.forward``, for P = 0 .. M); ``from_models`` packs ALRNNs and
``network(i)`` unpacks one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .alrnn import ALRNN, PARAMETER_NAMES, _check_sizes

__all__ = ["PackedALRNN"]


class PackedALRNN(nn.Module):
    r"""N AL-RNNs of the same size, their weights stacked on a leading ``network`` axis.

    For each network n = 0..N−1, with z_0 = 0 and t = 1..T::

        z_t = A_n ⊙ z_{t-1} + W_n Φ*_n(z_{t-1}) + C_n s_t + h_n  (+ σ_n ξ_t while training)
        Φ*_n(z)_i = φ_n(z_i) if ``nonlinear_mask[n, i]`` else z_i
        φ_n(x) = max(x, 0) + α_n min(x, 0)
        y_t = B_n z_t + b_n

    :meth:`ALRNN.forward <neuroalrnn.models.ALRNN.forward>`'s equation, per
    network. Attributes: ``A`` (N, M), ``W`` (N, M, M), ``h`` (N, M), ``C``
    (N, M, K), ``B`` (N, O, M), ``b`` (N, O); buffers ``nonlinear_mask``
    (N, M) bool (True on network n's last P_n units), ``slope`` (N,) α_n and
    ``noise_std`` (N,) σ_n. Lists ``n_nonlinear``, ``slopes``, ``noise_stds``
    and ``inits`` keep the per-network settings as Python numbers.

    The constructor sets the sizes and settings; the weights start at zero.
    Build a pack from initialised networks with :meth:`from_models`, and get
    network n back as an :class:`ALRNN` with :meth:`network`. Every tensor a
    call makes lives on the parameters' device.
    """

    kind = "alrnn-pack"

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        n_units: int,
        n_nonlinear: Sequence[int],
        *,
        noise_std: Sequence[float] | None = None,
        slope: Sequence[float] | None = None,
        init: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(n_inputs=n_inputs, n_outputs=n_outputs, n_units=n_units)
        n_nonlinear = [int(value) for value in n_nonlinear]
        n_networks = len(n_nonlinear)
        if n_networks == 0:
            raise ValueError("a pack needs at least one network; n_nonlinear is empty")
        noise_std = [0.0] * n_networks if noise_std is None else [float(value) for value in noise_std]
        slope = [0.0] * n_networks if slope is None else [float(value) for value in slope]
        init = ["stable"] * n_networks if init is None else list(init)
        for name, values in (("noise_std", noise_std), ("slope", slope), ("init", init)):
            if len(values) != n_networks:
                raise ValueError(f"{name} must give one value per network ({n_networks}), got {len(values)}")
        for n, (P, sigma, alpha) in enumerate(zip(n_nonlinear, noise_std, slope, strict=True)):
            if not 0 <= P <= n_units:
                raise ValueError(f"n_nonlinear[{n}] (P) must lie in [0, n_units={n_units}], got {P}")
            if not sigma >= 0:  # also rejects NaN
                raise ValueError(f"noise_std[{n}] must be >= 0, got {sigma}")
            if not 0.0 <= alpha <= 1.0:
                raise ValueError(f"slope[{n}] (alpha) must lie in [0, 1], got {alpha}")
        self.n_networks = n_networks
        self.n_inputs, self.n_outputs, self.n_units = int(n_inputs), int(n_outputs), int(n_units)
        self.n_nonlinear, self.noise_stds, self.slopes, self.inits = n_nonlinear, noise_std, slope, init

        N, M, K, O = n_networks, self.n_units, self.n_inputs, self.n_outputs
        self.A = nn.Parameter(torch.zeros(N, M))
        self.W = nn.Parameter(torch.zeros(N, M, M))
        self.h = nn.Parameter(torch.zeros(N, M))
        self.C = nn.Parameter(torch.zeros(N, M, K))
        self.B = nn.Parameter(torch.zeros(N, O, M))
        self.b = nn.Parameter(torch.zeros(N, O))
        mask = torch.zeros(N, M, dtype=torch.bool)
        for n, P in enumerate(n_nonlinear):
            mask[n, M - P :] = True  # M − P, never −P: −0 would select every unit
        self.register_buffer("nonlinear_mask", mask, persistent=False)
        self.register_buffer("slope", torch.tensor(slope), persistent=False)
        self.register_buffer("noise_std", torch.tensor(noise_std), persistent=False)

    @classmethod
    def from_models(cls, models: Sequence[ALRNN]) -> PackedALRNN:
        """A pack holding copies of ``models``' weights and settings (same M, K, O; dtype and device of the first)."""
        models = list(models)
        if not models:
            raise ValueError("from_models needs at least one ALRNN, got none")
        for n, model in enumerate(models):
            if not isinstance(model, ALRNN):
                raise TypeError(f"models[{n}] must be an ALRNN, got {type(model).__name__}")
        first = models[0]
        sizes = (first.n_inputs, first.n_outputs, first.n_units)
        for n, model in enumerate(models):
            if (model.n_inputs, model.n_outputs, model.n_units) != sizes:
                raise ValueError(
                    f"models[{n}] has (n_inputs, n_outputs, n_units) = "
                    f"{(model.n_inputs, model.n_outputs, model.n_units)}, models[0] {sizes}: a pack's networks "
                    "share their sizes"
                )
        pack = cls(*sizes, [model.n_nonlinear for model in models],
                   noise_std=[model.noise_std for model in models], slope=[model.slope for model in models],
                   init=[model.init for model in models])
        pack = pack.to(dtype=first.A.dtype, device=first.A.device)
        with torch.no_grad():
            for name in PARAMETER_NAMES:
                getattr(pack, name).copy_(torch.stack([getattr(model, name).detach() for model in models]))
        return pack

    def network(self, index: int) -> ALRNN:
        """Network ``index`` as an :class:`ALRNN` (a copy of its weights, on the pack's device and dtype)."""
        if not -self.n_networks <= index < self.n_networks:
            raise IndexError(f"network index must lie in [0, {self.n_networks}), got {index}")
        index %= self.n_networks
        model = ALRNN(self.n_inputs, self.n_outputs, self.n_units, self.n_nonlinear[index],
                      noise_std=self.noise_stds[index], slope=self.slopes[index], init=self.inits[index],
                      generator=torch.Generator().manual_seed(0))  # never draw from the global stream
        model = model.to(dtype=self.A.dtype, device=self.A.device)
        with torch.no_grad():
            for name in PARAMETER_NAMES:
                getattr(model, name).copy_(getattr(self, name)[index])
        return model.train(self.training)

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        """Φ*_n(z) of states z (N, batch, M): φ_n on network n's nonlinear units, identity on the others."""
        negative = self.nonlinear_mask.unsqueeze(1) & (z <= 0)
        return torch.where(negative, self.slope.view(-1, 1, 1) * z, z)

    def step(self, z: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """One update z_{t-1} -> z_t of every network, z and drive = C s_t + h (+ noise) (N, batch, M).

        The equation as written; :meth:`forward` computes the same map rearranged (see there).
        """
        return torch.baddbmm(self.A.unsqueeze(1) * z, self.phi(z), self.W.transpose(1, 2)) + drive

    def forward(
        self, inputs: torch.Tensor, z0: torch.Tensor | None = None, *, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (N, batch, time, O) and latents (N, batch, time, M) of inputs (N, batch, time, K).

        ``z0``: (N, batch, M) initial states (``None``: zero). ``noise``:
        (N, batch, time, M), added to the drive C_n s_t + h_n as given (already
        scaled by σ_n), in place of the pack's own draw. Without it, while
        training, σ_n ξ_t is drawn from torch's global stream, one
        ``torch.randn`` of (N, batch, time, M).

        Computed as :meth:`step` computes it, rearranged for fewer operations
        per time step (equal to rounding): with r = max(z, 0) and g = α_n on
        the nonlinear units (1 on the others), Φ*_n(z) = g ⊙ z + (1 − g) ⊙ r,
        so the step is two batched products (states as rows),
        z_t = z_{t-1} (diag A_n + diag(g) W_nᵀ) + r_{t-1} (diag(1 − g) W_nᵀ) + C_n s_t + h_n.
        With α = 0 a nonlinear unit reaches W only through r, as in the
        equation. At z = 0 both forms take φ'(0) = α_n.
        """
        self._check_inputs(inputs)
        N, batch, n_steps, _ = inputs.shape
        drives = self._drive(inputs, noise).unbind(0)
        linear, rectified = self._maps()
        latents = []
        z = z0
        for t in range(n_steps):
            if z is None:  # z_0 = 0: z_1 is the drive
                z = drives[0]
            else:
                z_next = torch.baddbmm(drives[t], z, linear)
                z = torch.baddbmm(z_next, torch.relu(z), rectified) if rectified is not None else z_next
            latents.append(z)
        return self._readout(torch.stack(latents, dim=2))

    def _check_inputs(self, inputs: torch.Tensor) -> None:
        if inputs.ndim != 4 or inputs.shape[0] != self.n_networks or inputs.shape[-1] != self.n_inputs:
            raise ValueError(
                f"inputs must have shape (network={self.n_networks}, batch, time, n_inputs={self.n_inputs}), "
                f"got {tuple(inputs.shape)}"
            )

    def _drive(self, inputs: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """C_n s_t + h_n (+ noise), time-major (time, N, batch, M)."""
        N, batch, n_steps, _ = inputs.shape
        M = self.n_units
        drive = torch.baddbmm(self.h.unsqueeze(1), inputs.reshape(N, batch * n_steps, -1), self.C.transpose(1, 2))
        drive = drive.view(N, batch, n_steps, M)
        if noise is not None:
            if tuple(noise.shape) != (N, batch, n_steps, M):
                raise ValueError(f"noise must have shape {(N, batch, n_steps, M)}, got {tuple(noise.shape)}")
            drive = drive + noise
        elif self.training and any(value > 0 for value in self.noise_stds):
            drive = drive + self.noise_std.view(-1, 1, 1, 1) * torch.randn_like(drive)
        return drive.permute(2, 0, 1, 3).contiguous()

    def _maps(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(diag A + diag(g) Wᵀ, diag(1 − g) Wᵀ), each (N, M, M); the second None when no network has P > 0."""
        # g: α on the nonlinear units, 1 on the others.
        gain = torch.where(self.nonlinear_mask, self.slope.unsqueeze(1), torch.ones_like(self.A))
        linear = torch.diag_embed(self.A) + gain.unsqueeze(2) * self.W.transpose(1, 2)
        if not any(P > 0 for P in self.n_nonlinear):
            return linear, None
        return linear, (1 - gain).unsqueeze(2) * self.W.transpose(1, 2)

    def _readout(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, latents) of latents (N, batch, time, M)."""
        N, batch, n_steps, M = latents.shape
        outputs = torch.baddbmm(self.b.unsqueeze(1), latents.reshape(N, batch * n_steps, M), self.B.transpose(1, 2))
        return outputs.view(N, batch, n_steps, self.n_outputs), latents

    def extra_repr(self) -> str:
        return (f"n_networks={self.n_networks}, n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, "
                f"n_units={self.n_units}, n_nonlinear={self.n_nonlinear}")

