"""Scores of a model fitted to recordings, as the Neural Latents Benchmark and the Computation-through-Dynamics
benchmark define them.

* **Bits per spike** (NLB, ``nlb_tools.evaluation.bits_per_spike``): with predicted expected counts λ and
  observed counts y over the valid (trial, time) bins of each neuron,
  bps = (NLL_null − NLL_model) / (Σ y · ln 2), where NLL(λ) = Σ λ − y ln λ + ln Γ(y + 1) and the null model
  predicts each neuron's mean count per bin over the same bins. Scored on held-out neurons of held-out trials
  it is the co-smoothing score (co-bps); 0 is the null model, higher is better.
* **PSTH R²** (NLB's ``psth_r2``): trials are grouped by condition; in each group the observed counts and the
  predicted rates are averaged over trials at each time bin from trial start (bins where fewer than
  ``min_trials`` trials of the group are valid are left out), optionally smoothed over time with a Gaussian
  of ``smooth_bins``; the groups' PSTHs are stacked into (group·time, neuron) and scored with
  ``sklearn.metrics.r2_score`` averaged uniformly over neurons.
* **Latent R²** (CtD's state R²): a linear map (least squares with an offset) from the fitted model's latents
  to the true latents is fitted on the training trials' valid steps and scored on the test trials' valid
  steps: R² of every true latent dimension, weighted by its variance (``r2_score(...,
  multioutput="variance_weighted")``).

Inputs are plain arrays (trial, time, ...) with a (trial, time) ``mask``; these functions know nothing of
models or training.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import gammaln
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

__all__ = ["bits_per_spike", "latent_r2", "poisson_nll", "psth_r2"]

_RATE_FLOOR = 1e-9


def poisson_nll(rates: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Σ over bins of λ − y ln λ + ln Γ(y + 1), per neuron; ``rates`` (bin, neuron) λ ≥ 0, ``counts`` y."""
    rates = np.maximum(np.asarray(rates, dtype=np.float64), _RATE_FLOOR)
    counts = np.asarray(counts, dtype=np.float64)
    return (rates - counts * np.log(rates) + gammaln(counts + 1.0)).sum(axis=0)


def bits_per_spike(rates: np.ndarray, counts: np.ndarray, mask: np.ndarray) -> float:
    """Bits per spike of expected counts ``rates`` for ``counts`` (trial, time, neuron) on ``mask`` (trial, time).

    NaN when the bins hold no spike. See the module docstring for the definition.
    """
    rates, counts, mask = _checked(rates, counts, mask)
    if (rates[mask] < 0).any():
        raise ValueError("rates (expected counts per bin) must be >= 0")
    observed = counts[mask]
    total = observed.sum()
    if total <= 0:
        return float("nan")
    null = np.broadcast_to(observed.mean(axis=0), observed.shape)
    gain = poisson_nll(null, observed).sum() - poisson_nll(rates[mask], observed).sum()
    return float(gain / total / np.log(2.0))


def psth_r2(
    predicted: np.ndarray,
    observed: np.ndarray,
    mask: np.ndarray,
    groups: np.ndarray,
    *,
    min_trials: int = 2,
    smooth_bins: float = 0.0,
) -> float:
    """R² of condition-averaged ``predicted`` against condition-averaged ``observed`` (module docstring).

    ``predicted``, ``observed``: (trial, time, neuron); ``mask``: (trial, time); ``groups``: (trial,) a label per
    trial (the condition, or a tuple of conditions joined into one label).
    """
    predicted, observed, mask = _checked(predicted, observed, mask)
    groups = np.asarray(groups)
    if groups.shape != (mask.shape[0],):
        raise ValueError(f"groups must have one label per trial ({mask.shape[0]}), got shape {groups.shape}")
    true_rows, predicted_rows = [], []
    for label in np.unique(groups):
        members = groups == label
        valid = mask[members]
        enough = valid.sum(axis=0) >= min_trials
        if not enough.any():
            continue
        weights = valid[:, :, None].astype(np.float64)
        count = np.maximum(weights.sum(axis=0), 1.0)
        true_psth = (np.where(valid[:, :, None], observed[members], 0.0)).sum(axis=0) / count
        predicted_psth = (np.where(valid[:, :, None], predicted[members], 0.0)).sum(axis=0) / count
        if smooth_bins > 0:
            true_psth = _smooth(true_psth, enough, smooth_bins)
            predicted_psth = _smooth(predicted_psth, enough, smooth_bins)
        true_rows.append(true_psth[enough])
        predicted_rows.append(predicted_psth[enough])
    if not true_rows:
        raise ValueError(f"no condition has {min_trials} or more valid trials at any time bin; group by fewer "
                         "conditions or lower min_trials")
    return float(r2_score(np.concatenate(true_rows), np.concatenate(predicted_rows), multioutput="uniform_average"))


def latent_r2(fitted: np.ndarray, true: np.ndarray, mask: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Variance-weighted R² on ``test`` trials of the linear map from ``fitted`` to ``true`` latents fitted on ``train``.

    ``fitted`` (trial, time, unit), ``true`` (trial, time, true unit), ``mask`` (trial, time), ``train`` and
    ``test``: trial indices (or boolean masks over trials).
    """
    fitted = np.asarray(fitted, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if fitted.shape[:2] != mask.shape or true.shape[:2] != mask.shape:
        raise ValueError(f"fitted {fitted.shape} and true {true.shape} latents must share (trial, time) with the "
                         f"mask {mask.shape}")
    train_mask = np.zeros_like(mask)
    train_mask[np.asarray(train)] = mask[np.asarray(train)]
    test_mask = np.zeros_like(mask)
    test_mask[np.asarray(test)] = mask[np.asarray(test)]
    if not train_mask.any() or not test_mask.any():
        raise ValueError("latent_r2 needs valid steps in both the training and the test trials")
    regression = LinearRegression().fit(fitted[train_mask], true[train_mask])
    return float(r2_score(true[test_mask], regression.predict(fitted[test_mask]), multioutput="variance_weighted"))


def _checked(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if first.shape != second.shape or first.ndim != 3 or first.shape[:2] != mask.shape:
        raise ValueError(f"arrays must be (trial, time, neuron) of one shape with a (trial, time) mask; got "
                         f"{first.shape}, {second.shape} and mask {mask.shape}")
    if not np.isfinite(first[mask]).all() or not np.isfinite(second[mask]).all():
        raise ValueError("values on valid bins must be finite")
    return first, second, mask


def _smooth(psth: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time of a (time, neuron) PSTH, renormalised where bins are left out."""
    weight = gaussian_filter1d(valid.astype(np.float64), sigma, mode="constant")
    smoothed = gaussian_filter1d(np.where(valid[:, None], psth, 0.0), sigma, axis=0, mode="constant")
    return smoothed / np.maximum(weight, 1e-12)[:, None]
