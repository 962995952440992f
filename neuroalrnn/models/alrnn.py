"""The almost-linear RNN (AL-RNN), its NumPy parameter container and its regime codes.

The update equation is written twice, once per array library: in torch by
:meth:`ALRNN.step` (used by :meth:`ALRNN.forward`) and in NumPy by
:meth:`ALRNNParams.step`, the parameter container that analyses work on
(:meth:`ALRNN.params` and :meth:`ALRNN.from_params` convert). Regime codes are
encoded by :func:`bits_to_codes` and decoded by :func:`codes_to_bits`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "ALRNN",
    "ALRNNParams",
    "INITIALISATIONS",
    "MAX_INTEGER_CODE_BITS",
    "PARAMETER_NAMES",
    "STABLE_COUPLING_NORM",
    "STABLE_SELF_COUPLING",
    "bits_to_codes",
    "codes_to_bits",
    "phi_star",
    "regime_codes",
]

INITIALISATIONS = ("stable", "reference")
PARAMETER_NAMES = ("A", "W", "h", "C", "B", "b")
"""The AL-RNN's weights, named as in its update equation."""
MAX_INTEGER_CODE_BITS = 62
"""Regime codes are int64 integers up to this many nonlinear units P, packed bytes above."""
STABLE_SELF_COUPLING = 0.7
"""A of the ``"stable"`` initialisation (every unit)."""
STABLE_COUPLING_NORM = 0.25
"""Largest singular value ‖W‖₂ of the ``"stable"`` initialisation's W."""


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

    * ``"stable"`` (default) — A = a = 0.7 on every unit, W = c G / ‖G‖₂
      with G ~ N(0, 1)^{M×M} and c = 0.25 (a Gaussian matrix scaled to
      largest singular value c), h = 0. Since ‖D_Ω‖₂ ≤ 1 and |φ(x)| ≤ |x|,
      every regime's map has ‖W_Ω‖₂ ≤ a + c = 0.95 < 1 at any M: the map
      contracts in every regime and, from z_0 = 0,
      ‖z_t‖₂ ≤ max_τ ‖C s_τ + h‖₂ / (1 − a − c) on trials of any length.
      Constants: :data:`STABLE_SELF_COUPLING`, :data:`STABLE_COUPLING_NORM`.
    * ``"reference"`` — the AL-RNN reference code: R ~ N(0, 1)^{M×M},
      K = RᵀR/M + I divided by its largest |eigenvalue|, A = diag(K),
      W ~ N(0, 0.01²), h = 0.

    In both, C ~ U(±1/√K), B ~ U(±1/√M), b = 0.

    :meth:`params` returns the weights as an :class:`ALRNNParams` (NumPy,
    float64) and :meth:`from_params` builds a model from one.
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
            self.A.fill_(STABLE_SELF_COUPLING)
            gaussian = torch.randn(M, M, generator=generator, dtype=torch.float64)
            largest = torch.linalg.matrix_norm(gaussian, ord=2).clamp_min(torch.finfo(torch.float64).tiny)
            self.W.copy_(gaussian * (STABLE_COUPLING_NORM / largest))
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
            drive = drive + self.noise_std * recurrent_noise(drive.shape, drive)
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

    def params(self) -> ALRNNParams:
        """The weights as float64 NumPy arrays (copies), with P and α: an :class:`ALRNNParams`."""
        arrays = {name: getattr(self, name).detach().cpu().numpy().astype(np.float64) for name in PARAMETER_NAMES}
        return ALRNNParams(**arrays, n_nonlinear=self.n_nonlinear, slope=self.slope)

    @classmethod
    def from_params(
        cls, params: ALRNNParams, *, noise_std: float = 0.0, dtype: torch.dtype = torch.float32
    ) -> ALRNN:
        """An AL-RNN holding ``params``' weights (cast to ``dtype``); K and O are read off C and B.

        ``noise_std`` is the training noise σ_rec (not part of the parameters).
        ``ALRNN.from_params(model.params())`` reproduces ``model``'s weights exactly.
        """
        if not isinstance(params, ALRNNParams):
            raise TypeError(f"params must be an ALRNNParams (see ALRNN.params()), got {type(params).__name__}")
        # A fixed generator: building the model must not draw from torch's global random stream.
        model = cls(params.n_inputs, params.n_outputs, params.n_units, params.n_nonlinear, noise_std=noise_std,
                    slope=params.slope, generator=torch.Generator().manual_seed(0)).to(dtype)
        with torch.no_grad():
            for name in PARAMETER_NAMES:
                getattr(model, name).copy_(torch.from_numpy(getattr(params, name)))
        return model


def recurrent_noise(shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of ``shape`` with ``like``'s dtype and device, drawn from torch's CPU generator.

    Drawn on the CPU and then moved, so the same ``torch.manual_seed`` gives
    the same noise on any device, and a checkpoint's CPU RNG state
    (``torch.get_rng_state``) is all a resumed run needs.
    """
    return torch.randn(tuple(shape), dtype=like.dtype).to(like.device, non_blocking=True)


def bits_to_codes(bits: np.ndarray) -> np.ndarray:
    r"""Regime codes of regime bits (..., P): the one encoder of Ω.

    Bit i is d_i = [z_{M-P+i} > 0], unit M−P+i (i = 0 for the first nonlinear
    unit). For P ≤ :data:`MAX_INTEGER_CODE_BITS` the code is the int64
    Σ_i d_i 2^i, with the leading shape of ``bits``; above, the bits are packed
    little-endian into uint8 bytes (``np.packbits(..., bitorder="little")``),
    giving a last axis of ceil(P/8). P = 0 gives code 0 (a single regime).
    """
    bits = np.asarray(bits, dtype=bool)
    n_nonlinear = bits.shape[-1]
    if n_nonlinear > MAX_INTEGER_CODE_BITS:
        return np.packbits(bits, axis=-1, bitorder="little")
    return (bits.astype(np.int64) << np.arange(n_nonlinear, dtype=np.int64)).sum(axis=-1)


def codes_to_bits(codes: Iterable[int] | np.ndarray, n_nonlinear: int) -> np.ndarray:
    """Regime bits (..., P) bool of regime codes: the inverse of :func:`bits_to_codes`.

    For P ≤ :data:`MAX_INTEGER_CODE_BITS`, ``codes`` are integers (any shape,
    or an iterable of them), each in [0, 2^P); for larger P, packed uint8
    codes (..., ceil(P/8)).
    """
    if isinstance(n_nonlinear, bool) or not isinstance(n_nonlinear, int | np.integer) or n_nonlinear < 0:
        raise ValueError(f"n_nonlinear must be a non-negative integer, got {n_nonlinear!r}")
    codes = np.asarray(codes if isinstance(codes, np.ndarray | np.generic | int) else list(codes))
    if n_nonlinear > MAX_INTEGER_CODE_BITS:
        n_bytes = -(-n_nonlinear // 8)
        if codes.dtype != np.uint8 or codes.ndim == 0 or codes.shape[-1] != n_bytes:
            raise ValueError(
                f"for P={n_nonlinear} > {MAX_INTEGER_CODE_BITS} regime codes are packed uint8 bytes with a last axis "
                f"of {n_bytes}; got dtype {codes.dtype}, shape {codes.shape}"
            )
        return np.unpackbits(codes, axis=-1, count=n_nonlinear, bitorder="little").astype(bool)
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"regime codes must be integers for P={n_nonlinear}, got dtype {codes.dtype}")
    codes = codes.astype(np.int64)
    outside = codes[(codes < 0) | (codes >= np.int64(1) << n_nonlinear)]
    if outside.size:
        raise ValueError(
            f"regime codes must lie in [0, 2^P = {2**n_nonlinear}) for P={n_nonlinear}, got {outside[:5].tolist()}"
        )
    return ((codes[..., None] >> np.arange(n_nonlinear, dtype=np.int64)) & 1).astype(bool)


def phi_star(z: np.ndarray, n_nonlinear: int, slope: float = 0.0) -> np.ndarray:
    r"""Φ*(z), the NumPy twin of :meth:`ALRNN.phi`: identity on the first M−P units, φ on the last P.

    φ(x) = x for x > 0 and α x otherwise (α = ``slope``; 0 gives the ReLU).
    This is what unit j passes on to the others through W: its *rate*. The
    result has the dtype of ``z`` (float) and its shape (..., M).
    """
    z = np.asarray(z)
    n_units = z.shape[-1]
    if not 0 <= n_nonlinear <= n_units:
        raise ValueError(f"n_nonlinear must lie in [0, {n_units}], got {n_nonlinear}")
    if not 0.0 <= slope <= 1.0:
        raise ValueError(f"slope (alpha) must lie in [0, 1], got {slope}")
    rates = z.copy()
    tail = rates[..., n_units - n_nonlinear :]  # a view; `-n_nonlinear` would select every unit for P = 0
    np.multiply(tail, slope, out=tail, where=tail <= 0)  # in place: no boolean-indexed temporaries
    return rates


def regime_codes(latents: torch.Tensor | np.ndarray, n_nonlinear: int) -> np.ndarray:
    r"""Code of the linear regime (subregion) Ω of each state (..., M): :func:`bits_to_codes` of its bits.

    With d_i = [z_{M-P+i} > 0] for the P nonlinear units (i = 0 for the first
    one, unit M−P; a state exactly 0 is off), the code is Σ_i d_i 2^i. Returns
    int64 with the leading shape of ``latents`` for P ≤ 62; for P > 62 the bits
    are packed little-endian into uint8 bytes, giving an extra last axis of
    ceil(P/8). P = 0 gives code 0 everywhere (a single regime).
    """
    z = latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)
    n_units = z.shape[-1]
    if not 0 <= n_nonlinear <= n_units:
        raise ValueError(f"n_nonlinear must lie in [0, {n_units}], got {n_nonlinear}")
    # `n_units - n_nonlinear`, never `-n_nonlinear`: -0 would select every unit.
    return bits_to_codes(z[..., n_units - n_nonlinear :] > 0)


@dataclass(frozen=True)
class ALRNNParams:
    r"""AL-RNN parameters as float64 NumPy arrays, named as in the model's equation.

    Shapes: ``A`` (M,), ``W`` (M, M), ``h`` (M,), ``C`` (M, K), ``B`` (O, M),
    ``b`` (O,); ``n_nonlinear`` = P (the last P units are nonlinear);
    ``slope`` = α ∈ [0, 1]. The arrays are converted to float64 and must be
    finite. The map, as :meth:`ALRNN.step` computes it in torch::

        z_t = A ⊙ z_{t-1} + W Φ*(z_{t-1}) + C s_t + h

    Within regime Ω (bits d_i = [z_{M-P+i} > 0], see :func:`bits_to_codes`)
    it is affine: z_t = W_Ω z_{t-1} + C s_t + h with W_Ω = diag(A) + W D_Ω,
    D_Ω diagonal with 1 on the M−P linear units and d_i + α (1 − d_i) on the
    nonlinear ones.
    """

    A: np.ndarray
    W: np.ndarray
    h: np.ndarray
    C: np.ndarray
    B: np.ndarray
    b: np.ndarray
    n_nonlinear: int
    slope: float = 0.0

    def __post_init__(self) -> None:
        for name in PARAMETER_NAMES:
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if not np.isfinite(value).all():
                raise ValueError(f"{name} has NaN or infinite entries; the network's weights must be finite "
                                 "(a diverged training run?)")
            object.__setattr__(self, name, value)
        M = self.A.shape[0] if self.A.ndim == 1 else -1
        n_outputs = self.B.shape[0] if self.B.ndim == 2 else -1
        expected = {"A": (M,), "W": (M, M), "h": (M,), "B": (n_outputs, M), "b": (n_outputs,)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape} for M={M}, got {getattr(self, name).shape}")
        if self.C.ndim != 2 or self.C.shape[0] != M:
            raise ValueError(f"C must have shape (M={M}, K), got {self.C.shape}")
        if isinstance(self.n_nonlinear, bool) or not isinstance(self.n_nonlinear, int | np.integer):
            raise ValueError(f"n_nonlinear must be an integer, got {self.n_nonlinear!r}")
        if not 0 <= self.n_nonlinear <= M:
            raise ValueError(f"n_nonlinear must lie in [0, {M}], got {self.n_nonlinear}")
        object.__setattr__(self, "n_nonlinear", int(self.n_nonlinear))
        if not 0.0 <= self.slope <= 1.0:
            raise ValueError(f"slope (alpha) must lie in [0, 1], got {self.slope}")
        object.__setattr__(self, "slope", float(self.slope))

    @classmethod
    def from_model(cls, model: nn.Module) -> ALRNNParams:
        """``model.params()`` for an :class:`ALRNN`; ``TypeError`` for any other model."""
        if not isinstance(model, ALRNN):
            raise TypeError(
                f"{type(model).__name__} is not an AL-RNN; regime analyses need an ALRNN (or ALRNNParams)"
            )
        return model.params()

    @property
    def n_units(self) -> int:
        return self.A.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.C.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.B.shape[0]

    def gains(self, bits: np.ndarray) -> np.ndarray:
        """(..., M) diagonal of D_Ω for regime bits (..., P)."""
        bits = np.asarray(bits, dtype=float)
        nonlinear = bits + self.slope * (1.0 - bits)
        linear = np.ones((*bits.shape[:-1], self.n_units - self.n_nonlinear))
        return np.concatenate([linear, nonlinear], axis=-1)

    def regime_matrix(self, bits: np.ndarray) -> np.ndarray:
        """W_Ω = diag(A) + W D_Ω for regime bits (..., P); returns (..., M, M)."""
        return np.diag(self.A) + self.W * self.gains(bits)[..., None, :]

    def phi(self, z: np.ndarray) -> np.ndarray:
        """Φ*(z) of states z (..., M): :func:`phi_star` with this network's P and α."""
        return phi_star(z, self.n_nonlinear, self.slope)

    def step(self, z: np.ndarray, s: np.ndarray) -> np.ndarray:
        """One update z_{t-1} -> z_t of the map (NumPy, no noise), z (..., M), s (..., K)."""
        z = np.asarray(z, dtype=np.float64)
        return self.A * z + self.phi(z) @ self.W.T + np.asarray(s, dtype=np.float64) @ self.C.T + self.h


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
