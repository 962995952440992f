"""Shared pieces of the analyses: AL-RNN parameters as arrays, regime codes, the Dataset validator.

Analyses take a trials Dataset (the ``trials.nc`` layout) and a model's
parameters, never a Trainer. Parameters keep the model's names: with
M units, P of them nonlinear (the last P), K inputs and O outputs,

    z_t = A ⊙ z_{t-1} + W Φ*(z_{t-1}) + C s_t + h,    y_t = B z_t + b.

Within regime Ω (bits d_i = [z_{M-P+i} > 0], code Σ_i d_i 2^i) the map is
affine: z_t = W_Ω z_{t-1} + C s_t + h with W_Ω = diag(A) + W D_Ω, where D_Ω is
diagonal with 1 on the M−P linear units and d_i + α (1 − d_i) on the nonlinear
ones (α = the leaky slope, 0 for ReLU).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = [
    "ALRNNParams",
    "bits_to_codes",
    "codes_to_bits",
    "regime_labels",
    "validate_trials",
]

MAX_INT_BITS = 62


@dataclass(frozen=True)
class ALRNNParams:
    """AL-RNN parameters as float64 NumPy arrays, named as in the model's equation.

    Shapes: ``A`` (M,), ``W`` (M, M), ``h`` (M,), ``C`` (M, K), ``B`` (O, M),
    ``b`` (O,); ``n_nonlinear`` = P; ``slope`` = α.
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
        M = np.shape(self.A)[0] if np.ndim(self.A) == 1 else -1
        expected = {"A": (M,), "W": (M, M), "h": (M,), "B": (np.shape(self.B)[0], M), "b": (np.shape(self.B)[0],)}
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} must have shape {shape} for M={M}, got {np.shape(getattr(self, name))}")
        if np.ndim(self.C) != 2 or np.shape(self.C)[0] != M:
            raise ValueError(f"C must have shape (M={M}, K), got {np.shape(self.C)}")
        if not 0 <= self.n_nonlinear <= M:
            raise ValueError(f"n_nonlinear must lie in [0, {M}], got {self.n_nonlinear}")

    @classmethod
    def from_model(cls, model) -> ALRNNParams:
        """Read A, W, h, C, B, b, n_nonlinear and slope off an AL-RNN (any object with them)."""
        missing = [name for name in ("A", "W", "h", "C", "B", "b", "n_nonlinear") if not hasattr(model, name)]
        if missing:
            raise TypeError(
                f"{type(model).__name__} is not an AL-RNN (no {', '.join(missing)}); "
                "regime analyses need an ALRNN or ALRNNParams"
            )
        arrays = {name: _numpy(getattr(model, name)) for name in ("A", "W", "h", "C", "B", "b")}
        return cls(**arrays, n_nonlinear=int(model.n_nonlinear), slope=float(getattr(model, "slope", 0.0)))

    @property
    def n_units(self) -> int:
        return self.A.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.C.shape[1]

    def gains(self, bits: np.ndarray) -> np.ndarray:
        """(..., M) diagonal of D_Ω for regime bits (..., P)."""
        bits = np.asarray(bits, dtype=float)
        nonlinear = bits + self.slope * (1.0 - bits)
        linear = np.ones((*bits.shape[:-1], self.n_units - self.n_nonlinear))
        return np.concatenate([linear, nonlinear], axis=-1)

    def regime_matrix(self, bits: np.ndarray) -> np.ndarray:
        """W_Ω = diag(A) + W D_Ω for regime bits (..., P); returns (..., M, M)."""
        return np.diag(self.A) + self.W * self.gains(bits)[..., None, :]

    def step(self, z: np.ndarray, s: np.ndarray) -> np.ndarray:
        """One step of the piecewise-linear map (NumPy), z (..., M), s (..., K)."""
        bits = z[..., self.n_units - self.n_nonlinear :] > 0
        phi = z * self.gains(bits)
        return self.A * z + phi @ self.W.T + s @ self.C.T + self.h


def codes_to_bits(codes: Iterable[int] | np.ndarray, n_nonlinear: int) -> np.ndarray:
    """(n, P) bool bits of integer regime codes (bit i = unit M−P+i)."""
    if n_nonlinear > MAX_INT_BITS:
        raise ValueError(f"integer regime codes hold at most {MAX_INT_BITS} bits; got P={n_nonlinear}")
    codes = np.asarray(list(codes) if not isinstance(codes, np.ndarray) else codes, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_nonlinear, dtype=np.int64)) & 1).astype(bool)


def bits_to_codes(bits: np.ndarray) -> np.ndarray:
    """Integer codes Σ_i d_i 2^i of bits (..., P), P ≤ 62."""
    bits = np.asarray(bits, dtype=bool)
    if bits.shape[-1] > MAX_INT_BITS:
        raise ValueError(f"integer regime codes hold at most {MAX_INT_BITS} bits; got P={bits.shape[-1]}")
    return (bits.astype(np.int64) << np.arange(bits.shape[-1], dtype=np.int64)).sum(axis=-1)


def regime_labels(trials: xr.Dataset) -> xr.DataArray:
    """(trial, time) regime label of every step; -1 (or "") on padded steps.

    For P ≤ 62 labels are the int64 codes; for packed codes (P > 62) they are
    the bytes as a hex string (little-endian bit order, as stored).
    """
    validate_trials(trials, variables=("regime", "mask"))
    regime = trials["regime"]
    mask = trials["mask"].values.astype(bool)
    if "regime_byte" in regime.dims:
        packed = regime.transpose("trial", "time", "regime_byte").values
        labels = np.array([[row.tobytes().hex() for row in trial] for trial in packed], dtype=object)
        labels[~mask] = ""
        return xr.DataArray(labels.astype(str), dims=("trial", "time"), coords=regime.coords.to_dataset().coords,
                            name="regime")
    return regime.where(trials["mask"], -1).astype(np.int64)


def validate_trials(
    trials: xr.Dataset,
    dims: tuple[str, ...] = ("trial", "time"),
    variables: tuple[str, ...] = (),
    coords: tuple[str, ...] = (),
) -> xr.Dataset:
    """Check that ``trials`` has the named dimensions, variables and coordinates.

    Raises ``ValueError`` naming what is missing, so a Dataset from elsewhere
    (e.g. with ``dim_0``) fails at the boundary rather than deep inside.
    """
    if not isinstance(trials, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset in the trials.nc layout, got {type(trials).__name__}")
    missing_dims = [d for d in dims if d not in trials.dims]
    missing_vars = [v for v in variables if v not in trials.data_vars]
    missing_coords = [c for c in coords if c not in trials.coords]
    problems = []
    if missing_dims:
        problems.append(f"dimensions {missing_dims} (has {list(trials.dims)})")
    if missing_vars:
        problems.append(f"variables {missing_vars}")
    if missing_coords:
        problems.append(f"coordinates {missing_coords}")
    if problems:
        raise ValueError("trials Dataset lacks " + "; ".join(problems))
    return trials


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)
