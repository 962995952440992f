"""Computational primitives read off an AL-RNN's regimes: integration, gating, transients.

Each test is a function of the model's parameters (:class:`ALRNNParams`) and,
where it needs behaviour, of a trials Dataset. Definitions (also in each
function's docstring):

* **Integration** — regime Ω has a real eigenvalue λ close enough to 1 that
  its mode keeps what it integrates over the horizon T (an epoch's length):
  r ≤ λ^T ≤ 1/r with r = ``min_retention`` (0.25: at T = 15 steps,
  0.912 ≤ λ ≤ 1.097; a line attractor has λ = 1), and the mode is driven by
  input k and read by the output. With right/left eigenvectors v, u
  (‖v‖ = 1, uᵀv = 1), the mode's readout of input k after T steps of unit
  input is e_k = ‖B v‖ · |uᵀ C e_k| · Σ_{t<T} λ^t; integration of k is flagged
  when e_k ≥ ``min_effect`` (output units; 2 logits multiply an output's odds
  by e² ≈ 7.4).
* **Gating** — the recurrent response of the outputs to input k in regime Ω
  over T steps, R_Ω = Σ_{t=1}^{T} B W_Ω^t C: the finite-horizon form of the
  gain B (I − W_Ω)^{-1} C (which diverges at λ = 1) without its t = 0 term
  B C, the direct feed that is the same in every regime (the readout reads
  z_t before the nonlinearity, so regimes act only through the recurrence).
  Averaged over the regimes visited under condition value c with their
  occupancy:
  G_c(k) = Σ_Ω p(Ω | c) ‖R_Ω[:, k]‖. Between two condition values a, b the
  gating index of k is (G_a(k) − G_b(k)) / (G_a(k) + G_b(k)) ∈ [−1, 1]; a
  regime switch gates k when |index| ≥ ``min_index``.
* **Transients** — (a) regimes visited briefly at epoch boundaries: mean
  dwell ≤ ``max_dwell`` steps and at least ``min_boundary_fraction`` of their
  visits start within ``window`` steps of an epoch change; (b) transient
  amplification: ‖W_Ω^k‖₂ > 1 for some k while the spectral radius ρ(W_Ω) < 1,
  which holds exactly when ‖W_Ω‖₂ > 1 and ρ(W_Ω) < 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..models import ALRNNParams, codes_to_bits
from .core import regime_labels, validate_trials
from .dynamics import eigenvalues_parallel, operator_norms

__all__ = [
    "accumulated_response",
    "boundary_transients",
    "gating",
    "integration_modes",
    "transient_amplification",
]


def _codes(codes: Sequence[int]) -> np.ndarray:
    return np.unique(np.asarray(list(codes), dtype=np.int64))


def accumulated_response(params: ALRNNParams, codes: Sequence[int], horizon: int) -> xr.DataArray:
    """R_Ω = Σ_{t=1}^{T} B W_Ω^t C for each regime code: (regime, output, input).

    The recurrent part of the outputs' response to a unit step in input k held
    for T steps within regime Ω (the direct term B C, equal in every regime,
    is left out).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    codes = _codes(codes)
    W = params.regime_matrix(codes_to_bits(codes, params.n_nonlinear))
    term = W @ params.C  # W^t C, t = 1
    total = term.copy()
    for _ in range(horizon - 1):
        term = W @ term
        total += term
    response = params.B @ total
    return xr.DataArray(response, dims=("regime", "output", "input"), coords={"regime": codes},
                        name="accumulated_response", attrs={"horizon": horizon})


def integration_modes(
    params: ALRNNParams,
    codes: Sequence[int],
    *,
    horizon: int = 15,
    min_retention: float = 0.25,
    min_effect: float = 2.0,
    eigenvalues: np.ndarray | None = None,
) -> xr.Dataset:
    """Slow modes (λ real, r ≤ λ^T ≤ 1/r) of each regime and the inputs they integrate.

    Returns (regime, input) ``effect`` e_k = ‖B v‖ |uᵀ C e_k| Σ_{t<T} λ^t of the
    slowest qualifying mode (0 where the regime has none), ``eigenvalue`` (regime;
    NaN where none), ``integrates`` (regime, input) = effect ≥ min_effect, and
    ``mode`` (regime, unit) the right eigenvector v (largest |entry| positive).
    ``eigenvalues`` (regime, mode), in the order of the sorted unique codes, may
    be passed when already computed (e.g. from :func:`regime_dynamics`); the
    eigenvectors are then found by inverse iteration for qualifying regimes only.
    """
    codes = _codes(codes)
    matrices = params.regime_matrix(codes_to_bits(codes, params.n_nonlinear))
    if eigenvalues is None:
        eigenvalues = eigenvalues_parallel(matrices)
    M, K = params.n_units, params.n_inputs
    effect = np.zeros((len(codes), K))
    slowest = np.full(len(codes), np.nan)
    modes = np.full((len(codes), M), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_retention = horizon * np.log(np.abs(eigenvalues.real))
    qualifies = (
        (np.abs(eigenvalues.imag) <= 1e-9) & (eigenvalues.real > 0) & (np.abs(log_retention) <= -np.log(min_retention))
    )
    for i in np.flatnonzero(qualifies.any(axis=1)):
        candidates = np.flatnonzero(qualifies[i])
        lam = float(eigenvalues[i, candidates[np.argmin(np.abs(log_retention[i, candidates]))]].real)
        v = _null_vector(matrices[i], lam)
        u = _null_vector(matrices[i].T, lam)
        if v is None or u is None or abs(u @ v) < 1e-12:
            continue  # defective or ill-conditioned: no well-defined mode
        u = u / (u @ v)
        steps = horizon if abs(lam - 1) < 1e-12 else (1 - lam**horizon) / (1 - lam)
        effect[i] = np.linalg.norm(params.B @ v) * np.abs(u @ params.C) * steps
        slowest[i] = lam
        modes[i] = v if v[np.argmax(np.abs(v))] > 0 else -v
    return xr.Dataset(
        {
            "effect": (("regime", "input"), effect),
            "eigenvalue": ("regime", slowest),
            "integrates": (("regime", "input"), effect >= min_effect),
            "mode": (("regime", "unit"), modes),
        },
        coords={"regime": codes},
        attrs={"horizon": horizon, "min_retention": min_retention, "min_effect": min_effect},
    )


def _null_vector(matrix: np.ndarray, eigenvalue: float, iterations: int = 3) -> np.ndarray | None:
    """Unit eigenvector of a real eigenvalue by inverse iteration (one LU, a few solves)."""
    from scipy.linalg import lu_factor, lu_solve

    M = matrix.shape[0]
    shift = eigenvalue + 1e-10 * max(1.0, abs(eigenvalue))
    with np.errstate(all="ignore"):
        factors = lu_factor(matrix - shift * np.eye(M), check_finite=False)
        vector = np.ones(M) / np.sqrt(M)
        for _ in range(iterations):
            vector = lu_solve(factors, vector, check_finite=False)
            norm = np.linalg.norm(vector)
            if not np.isfinite(norm) or norm == 0:
                return None
            vector /= norm
    residual = np.linalg.norm(matrix @ vector - eigenvalue * vector)
    return vector if residual <= 1e-6 * max(1.0, np.linalg.norm(matrix, 1)) else None


def gating(
    params: ALRNNParams,
    trials: xr.Dataset,
    condition: str,
    *,
    epoch: str | None = None,
    horizon: int = 15,
    min_index: float = 0.5,
) -> xr.Dataset:
    """Occupancy-weighted input gains per condition value and the gating index between them.

    G_c(k) = Σ_Ω p(Ω | c[, epoch]) ‖R_Ω[:, k]‖ with R_Ω = Σ_{t=1}^{T} B W_Ω^t C.
    Returns ``gain`` (condition_value, input), ``index`` (condition_value,
    condition_value_other, input) = (G_a − G_b)/(G_a + G_b) with a the
    ``condition_value`` and b the ``condition_value_other``, and ``gated``
    (input) = any |index| ≥ min_index.
    The condition must be a per-trial coordinate (e.g. ``context``).
    """
    validate_trials(trials, variables=("regime", "mask"), coords=(condition,))
    if trials[condition].dims != ("trial",):
        raise ValueError(f"condition {condition!r} must be a per-trial coordinate, has dims {trials[condition].dims}")
    labels = regime_labels(trials).values
    valid = trials["mask"].values.astype(bool)
    if epoch is not None:
        valid &= trials["epoch"].values == epoch
        if not valid.any():
            raise ValueError(f"no valid steps in epoch {epoch!r}")
    codes = np.unique(labels[valid])
    response = accumulated_response(params, codes, horizon)
    norms = np.linalg.norm(response.values, axis=1)  # (regime, input)
    values = np.unique(trials[condition].values)
    gains = np.zeros((len(values), params.n_inputs))
    for a, value in enumerate(values):
        steps = valid & (trials[condition].values == value)[:, None]
        visited, counts = np.unique(labels[steps], return_counts=True)
        weights = counts / counts.sum()
        gains[a] = weights @ norms[np.searchsorted(codes, visited)]
    total = gains[:, None, :] + gains[None, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(total > 0, (gains[:, None, :] - gains[None, :, :]) / total, 0.0)
    value_coord = values.astype(str) if values.dtype.kind in "OU" else values
    return xr.Dataset(
        {
            "gain": (("condition_value", "input"), gains),
            "index": (("condition_value", "condition_value_other", "input"), index),
            "gated": ("input", (np.abs(index) >= min_index).any(axis=(0, 1))),
        },
        coords={"condition_value": value_coord, "condition_value_other": value_coord},
        attrs={"condition": condition, "epoch": epoch or "", "horizon": horizon, "min_index": min_index},
    )


def transient_amplification(
    params: ALRNNParams,
    codes: Sequence[int],
    max_power: int = 20,
    peak_regimes: int | None = None,
    dynamics: xr.Dataset | None = None,
) -> xr.Dataset:
    """Per regime: ρ(W_Ω), ‖W_Ω‖₂, the flag ``amplifies`` and the peak of ‖W_Ω^k‖₂ over k ≤ K.

    ``amplifies`` = ρ(W_Ω) < 1 and ‖W_Ω‖₂ > 1. This is exactly "some power
    has ‖W_Ω^k‖₂ > 1 while ρ < 1": ‖W_Ω‖₂ ≤ 1 bounds every power by 1, and
    ‖W_Ω‖₂ > 1 is already k = 1. ``peak_norm`` = max_{k ≤ K} ‖W_Ω^k‖₂ and
    ``peak_step`` its k describe how large and how late the transient is; they
    cost K products per regime, so only the first ``peak_regimes`` codes in the
    given order get them (NaN / 0 for the rest; None = all). ``dynamics``, a
    :func:`regime_dynamics` result covering the codes, saves recomputing ρ and ‖W_Ω‖₂.
    """
    ordered = list(dict.fromkeys(int(c) for c in codes))
    codes = _codes(ordered)
    W = params.regime_matrix(codes_to_bits(codes, params.n_nonlinear))
    if dynamics is not None:
        radius = dynamics["spectral_radius"].sel(regime=codes).values
        norm = dynamics["operator_norm"].sel(regime=codes).values
    else:
        radius = np.abs(eigenvalues_parallel(W)).max(axis=-1)
        norm = operator_norms(W)
    peak = np.full(len(codes), np.nan)
    peak_step = np.zeros(len(codes), dtype=np.int64)
    chosen = np.searchsorted(codes, ordered[:peak_regimes] if peak_regimes is not None else ordered)
    power = W[chosen].copy()
    peak[chosen] = norm[chosen]
    peak_step[chosen] = 1
    for k in range(2, max_power + 1):
        power = power @ W[chosen]
        current = operator_norms(power)
        better = current > peak[chosen]
        peak[chosen] = np.where(better, current, peak[chosen])
        peak_step[chosen] = np.where(better, k, peak_step[chosen])
    return xr.Dataset(
        {
            "spectral_radius": ("regime", radius),
            "operator_norm": ("regime", norm),
            "peak_norm": ("regime", peak),
            "peak_step": ("regime", peak_step),
            "amplifies": ("regime", (norm > 1) & (radius < 1)),
        },
        coords={"regime": codes},
        attrs={"max_power": max_power},
    )


def boundary_transients(
    trials: xr.Dataset,
    *,
    max_dwell: float = 2.0,
    window: int = 1,
    min_boundary_fraction: float = 0.5,
) -> xr.Dataset:
    """Regimes visited briefly around epoch changes.

    For each regime: ``mean_dwell`` (steps per visit), ``boundary_fraction``
    (visits starting within ``window`` steps of an epoch change), and
    ``transient`` = mean_dwell ≤ max_dwell and boundary_fraction ≥
    min_boundary_fraction.
    """
    validate_trials(trials, variables=("regime", "mask"), coords=("epoch",))
    labels = regime_labels(trials).values
    valid = trials["mask"].values.astype(bool)
    epochs = trials["epoch"].values
    n_trials, n_steps = labels.shape
    starts = np.zeros_like(valid)
    starts[:, 0] = valid[:, 0]
    starts[:, 1:] = valid[:, 1:] & ((labels[:, 1:] != labels[:, :-1]) | ~valid[:, :-1])
    change = np.zeros_like(valid)
    change[:, 1:] = valid[:, 1:] & valid[:, :-1] & (epochs[:, 1:] != epochs[:, :-1])
    near = change.copy()
    for shift in range(1, window + 1):
        near[:, shift:] |= change[:, :-shift]
        near[:, :-shift] |= change[:, shift:]
    # Every valid step belongs to a visit that starts on a valid step, so both give the same sorted codes.
    codes, visit_regime, n_visits = np.unique(labels[starts], return_inverse=True, return_counts=True)
    _, n_steps_in = np.unique(labels[valid], return_counts=True)
    # Visits starting near an epoch change, per regime: one pass (P = M visits about one regime per step).
    n_boundary = np.bincount(visit_regime.ravel(), weights=near[starts], minlength=codes.size).astype(np.int64)
    mean_dwell = n_steps_in / n_visits
    boundary_fraction = n_boundary / n_visits
    return xr.Dataset(
        {
            "n_visits": ("regime", n_visits),
            "mean_dwell": ("regime", mean_dwell),
            "boundary_fraction": ("regime", boundary_fraction),
            "transient": ("regime", (mean_dwell <= max_dwell) & (boundary_fraction >= min_boundary_fraction)),
        },
        coords={"regime": codes},
        attrs={"max_dwell": max_dwell, "window": window, "min_boundary_fraction": min_boundary_fraction},
    )
