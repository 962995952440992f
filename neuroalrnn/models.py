"""Recurrent models: the almost-linear RNN (AL-RNN) and baselines behind one interface.

Every model maps inputs ``(batch, time, n_inputs)`` to
``(outputs, latents)`` with shapes ``(batch, time, n_outputs)`` and
``(batch, time, n_units)``. The initial state is zero; the first latent state
returned is z_1, computed from the first input s_1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = [
    "ALRNN",
    "GRUBaseline",
    "LSTMBaseline",
    "MODEL_KINDS",
    "TanhRNN",
    "build_model",
    "regime_codes",
]

INITIALISATIONS = ("stable", "reference")


class ALRNN(nn.Module):
    r"""Almost-linear RNN (Brenner et al., NeurIPS 2024).

    Update equation, for t = 1..T with z_0 = 0::

        z_t = A ⊙ z_{t-1} + W Φ*(z_{t-1}) + C s_t + h  (+ σ_rec ξ_t while training)
        Φ*(z) = [z_1, ..., z_{M-P}, φ(z_{M-P+1}), ..., φ(z_M)]
        φ(x) = max(x, 0) + α min(x, 0)          (α = 0: ReLU)
        y_t = B z_t + b

    Symbols and attributes: ``A`` (M,) diagonal of the linear self-coupling,
    ``W`` (M, M), ``h`` (M,), ``C`` (M, K) input weights, ``B`` (O, M) and
    ``b`` (O,) the linear readout; M = ``n_units``, P = ``n_nonlinear``,
    K = ``n_inputs``, O = ``n_outputs``, α = ``slope``, σ_rec = ``noise_std``,
    ξ_t ~ N(0, I). The nonlinear units are the last P units: P = 0 is an
    exactly linear RNN, P = M a fully piecewise-linear ReLU RNN (PLRNN).

    Within a regime Ω (the sign pattern of the P nonlinear units) the map is
    affine, z_t = W_Ω z_{t-1} + C s_t + h with W_Ω = diag(A) + W D_Ω; see
    :func:`regime_codes` for the integer code of Ω.

    Initialisations (``init``):

    * ``"stable"`` (default) — A = 0.9, W ~ N(0, 0.3²/M), h = 0: slow
      forgetting from the start (a long time constant suits delay tasks). On
      stimulus selection it reaches 0.92 held-out accuracy in 250 steps where
      the reference scheme reaches 0.86 (median of 3 seeds,
      ``benchmarks/compare_inits.py``); both end at 0.94.
    * ``"reference"`` — the AL-RNN reference code: R ~ N(0, 1)^{M×M},
      K = RᵀR/M + I divided by its largest |eigenvalue|, A = diag(K),
      W ~ N(0, 0.01²), h = 0.

    In both, C ~ U(±1/√K), B ~ U(±1/√M), b = 0.
    """

    kind = "alrnn"

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        n_units: int,
        n_nonlinear: int,
        *,
        noise_std: float = 0.0,
        slope: float = 0.0,
        init: str = "stable",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(n_inputs=n_inputs, n_outputs=n_outputs, n_units=n_units)
        if isinstance(n_nonlinear, bool) or not isinstance(n_nonlinear, int | np.integer):
            raise TypeError(f"n_nonlinear must be an integer, got {n_nonlinear!r}")
        if not 0 <= n_nonlinear <= n_units:
            raise ValueError(
                f"n_nonlinear (P) must lie in [0, n_units={n_units}], got {n_nonlinear}"
            )
        if not noise_std >= 0:  # also rejects NaN
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if not 0.0 <= slope <= 1.0:
            raise ValueError(f"slope (alpha) must lie in [0, 1], got {slope}")
        if init not in INITIALISATIONS:
            raise ValueError(f"init must be one of {INITIALISATIONS}, got {init!r}")
        self.n_inputs, self.n_outputs = int(n_inputs), int(n_outputs)
        self.n_units, self.n_nonlinear = int(n_units), int(n_nonlinear)
        self.noise_std, self.slope, self.init = float(noise_std), float(slope), init

        M, K, O = self.n_units, self.n_inputs, self.n_outputs
        self.A = nn.Parameter(torch.empty(M))
        self.W = nn.Parameter(torch.empty(M, M))
        self.h = nn.Parameter(torch.zeros(M))
        self.C = nn.Parameter(torch.empty(M, K))
        self.B = nn.Parameter(torch.empty(O, M))
        self.b = nn.Parameter(torch.zeros(O))
        # Boolean mask rather than slicing: `z[..., -0:]` would select every unit.
        nonlinear = torch.zeros(M, dtype=torch.bool)
        nonlinear[M - self.n_nonlinear :] = True
        self.register_buffer("nonlinear_mask", nonlinear, persistent=False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        M, K = self.n_units, self.n_inputs
        if self.init == "reference":
            R = torch.randn(M, M, generator=generator, dtype=torch.float64)
            K_mat = R.T @ R / M + torch.eye(M, dtype=torch.float64)
            K_mat = K_mat / torch.linalg.eigvalsh(K_mat).abs().max()
            self.A.copy_(torch.diagonal(K_mat))
            self.W.copy_(torch.randn(M, M, generator=generator) * 0.01)
        else:
            self.A.fill_(0.9)
            self.W.copy_(torch.randn(M, M, generator=generator) * (0.3 / math.sqrt(M)))
        self.h.zero_()
        self.C.copy_((torch.rand(M, K, generator=generator) * 2 - 1) / math.sqrt(K))
        self.B.copy_((torch.rand(self.n_outputs, M, generator=generator) * 2 - 1) / math.sqrt(M))
        self.b.zero_()

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        """Φ*(z): identity on the first M−P units, φ on the last P."""
        if self.n_nonlinear == 0:
            return z
        negative = self.nonlinear_mask & (z <= 0)
        return torch.where(negative, self.slope * z, z)

    def step(self, z: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """One update z_{t-1} -> z_t, given drive = C s_t + h (+ noise)."""
        return self.A * z + self.phi(z) @ self.W.T + drive

    def forward(
        self, inputs: torch.Tensor, z0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = _check_inputs(inputs, self.n_inputs)
        batch, n_steps, _ = inputs.shape
        # The input term C s_t + h for every t in one matrix product.
        drive = inputs @ self.C.T + self.h
        if self.training and self.noise_std > 0:
            drive = drive + self.noise_std * torch.randn_like(drive)
        z = inputs.new_zeros(batch, self.n_units) if z0 is None else z0
        latents = []
        for t in range(n_steps):
            z = self.step(z, drive[:, t])
            latents.append(z)
        latents_t = torch.stack(latents, dim=1)
        return latents_t @ self.B.T + self.b, latents_t

    def regimes(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Regime code of each latent state; see :func:`regime_codes`."""
        return regime_codes(latents, self.n_nonlinear)


def regime_codes(latents: torch.Tensor | np.ndarray, n_nonlinear: int) -> np.ndarray:
    r"""Integer code of the linear regime (subregion) Ω of each state.

    With d_i = [z_{M-P+i} > 0] for the P nonlinear units (i = 0 for the first
    one, unit M−P), the code is Σ_i d_i 2^i. Returns int64 with the leading
    shape of ``latents`` for P ≤ 62; for P > 62 the bits are packed
    little-endian into uint8 bytes, giving an extra last axis of ceil(P/8).
    P = 0 gives code 0 everywhere (a single regime).
    """
    z = latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)
    n_units = z.shape[-1]
    if not 0 <= n_nonlinear <= n_units:
        raise ValueError(f"n_nonlinear must lie in [0, {n_units}], got {n_nonlinear}")
    bits = z[..., n_units - n_nonlinear :] > 0
    if n_nonlinear > 62:
        return np.packbits(bits, axis=-1, bitorder="little")
    weights = np.left_shift(np.int64(1), np.arange(n_nonlinear, dtype=np.int64))
    return (bits.astype(np.int64) * weights).sum(axis=-1)


class _TorchRecurrentBaseline(nn.Module):
    """A torch.nn recurrent layer plus a linear readout, same interface as ALRNN."""

    kind = ""
    _layer: type[nn.RNNBase]
    _layer_kwargs: dict = {}

    def __init__(self, n_inputs: int, n_outputs: int, n_units: int, **_ignored) -> None:
        super().__init__()
        _check_sizes(n_inputs=n_inputs, n_outputs=n_outputs, n_units=n_units)
        self.n_inputs, self.n_outputs, self.n_units = n_inputs, n_outputs, n_units
        self.n_nonlinear = n_units
        self.rnn = self._layer(n_inputs, n_units, batch_first=True, **self._layer_kwargs)
        self.readout = nn.Linear(n_units, n_outputs)

    def forward(self, inputs: torch.Tensor, z0=None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = _check_inputs(inputs, self.n_inputs)
        latents, _ = self.rnn(inputs) if z0 is None else self.rnn(inputs, z0)
        return self.readout(latents), latents

    def regimes(self, latents) -> None:
        """Smooth nonlinearities have no linear regimes."""
        return None


class TanhRNN(_TorchRecurrentBaseline):
    """Vanilla RNN, z_t = tanh(W_in s_t + W z_{t-1} + b); readout y_t = B z_t + b."""

    kind = "tanh"
    _layer = nn.RNN
    _layer_kwargs = {"nonlinearity": "tanh"}


class GRUBaseline(_TorchRecurrentBaseline):
    """Gated recurrent unit network (torch.nn.GRU) with a linear readout."""

    kind = "gru"
    _layer = nn.GRU


class LSTMBaseline(_TorchRecurrentBaseline):
    """LSTM network (torch.nn.LSTM) with a linear readout; latents are the hidden states h_t."""

    kind = "lstm"
    _layer = nn.LSTM


MODEL_KINDS = {
    "alrnn": "almost-linear RNN: M units, the last P of them ReLU",
    "linear": "AL-RNN with P = 0 (an exactly linear RNN)",
    "plrnn": "AL-RNN with P = M (every unit ReLU)",
    "tanh": "vanilla tanh RNN (torch.nn.RNN)",
    "gru": "GRU (torch.nn.GRU)",
    "lstm": "LSTM (torch.nn.LSTM)",
}
_BASELINES = {cls.kind: cls for cls in (TanhRNN, GRUBaseline, LSTMBaseline)}


def build_model(
    kind: str,
    n_inputs: int,
    n_outputs: int,
    n_units: int,
    n_nonlinear: int | None = None,
    **options,
) -> nn.Module:
    """Build a model by kind name (see ``MODEL_KINDS``).

    ``n_nonlinear`` is required for ``alrnn`` and fixed for ``linear`` (0) and
    ``plrnn`` (M); ``options`` (noise_std, slope, init, generator) go to the
    AL-RNN. Baselines accept only ``generator`` (it seeds torch's default
    initialisation); any other non-default option is an error.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; valid models: {', '.join(MODEL_KINDS)}")
    if kind in _BASELINES:
        generator = options.pop("generator", None)
        unsupported = {
            name: value for name, value in options.items()
            if value != {"noise_std": 0.0, "slope": 0.0, "init": INITIALISATIONS[0]}.get(name)
        }
        if unsupported:
            raise ValueError(
                f"options {sorted(unsupported)} apply to AL-RNNs only; model {kind!r} uses torch's own "
                "layer and initialisation"
            )
        # torch.nn layers draw from the global RNG: seed it from the generator, then restore it.
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(generator.initial_seed())
            return _BASELINES[kind](n_inputs, n_outputs, n_units)
    if kind == "linear":
        n_nonlinear = 0
    elif kind == "plrnn":
        n_nonlinear = n_units
    elif n_nonlinear is None:
        raise ValueError("model 'alrnn' needs n_nonlinear (P, the number of ReLU units)")
    return ALRNN(n_inputs, n_outputs, n_units, n_nonlinear, **options)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_inputs(inputs: torch.Tensor, n_inputs: int) -> torch.Tensor:
    if inputs.ndim != 3 or inputs.shape[-1] != n_inputs:
        raise ValueError(
            f"inputs must have shape (batch, time, n_inputs={n_inputs}), got {tuple(inputs.shape)}"
        )
    return inputs
