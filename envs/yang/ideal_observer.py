r"""Accuracy ceilings of Yang et al.'s decision tasks: an ideal observer of the noisy inputs, in closed form.

The observer knows a trial's generative model — the stimulus directions θ1,
θ2, the steps on which each stimulus is shown, which ring(s) count, the
noise level σ — and sees the noisy inputs; it does not know the strengths.

Derivation. While a stimulus is shown, ring r of the input at step t is

    x_t = a_1 b(θ1) + a_2 b(θ2) + ε_t,    ε_t ~ N(0, σ² I), independent over units and steps,

with b(θ) the (n_ring,) tuning bump (:func:`~neuroalrnn.envs.yang.ring.bump`)
and a_i the strengths of stimulus i on that ring (a term is absent on steps
when its stimulus is off). The answer is the sign of the evidence difference
D: a_1 − a_2 on the attended ring (dm, ctxdm and their delayed versions; the
other ring's strengths are drawn independently, so they carry no information),
or (a_1 + c_1) − (a_2 + c_2) summed over both rings (multidm, multidlydm).

The observer estimates the strengths by least squares, the maximum-likelihood
(best linear unbiased) estimate under white Gaussian noise, and answers
sign(D̂). D̂ ~ N(D, V), so P(correct) = Φ(|D| / √V), with, per ring and
g_ij = b(θi)·b(θj):

* stimuli shown together for T steps (dm family): the step average
  x̄ ~ N(B a, σ²/T I) with B = [b(θ1) b(θ2)], â = (BᵀB)⁻¹Bᵀx̄, and
  V_ring = σ²/T · (1, −1)(BᵀB)⁻¹(1, −1)ᵀ = σ²/T · (g11 + g22 + 2 g12) / (g11 g22 − g12²);
* stimulus 1 alone for T1 steps, then stimulus 2 alone for T2 (delayed
  family): â_i = b(θi)·x̄_i / g_ii and V_ring = σ²/(T1 g11) + σ²/(T2 g22);
* multisensory tasks add two independent rings' estimates: V = 2 V_ring.

sign(D̂) is the Bayes decision, not only the best linear one, when the
observer's prior on the nuisance strengths (the pair's mean; in multisensory
tasks also the split between rings) is flat: integrating a flat nuisance out
of a linear Gaussian model leaves the likelihood N(D̂; D, V) of the quantity
of interest, and for a prior over D symmetric about 0 (±2c, ±4c) its
likelihood ratio between the two answers is monotone in D̂. Yang's bounded
priors (mean U(0.8, 1.2), split U(0.2, 0.8)) would let an observer gain a
hair near their edges; this ceiling ignores that.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm

from .ring import bump

__all__ = ["DECISION_TASKS", "evidence_accuracy", "ideal_observer_accuracy"]

# Task name -> (how the two stimuli are shown, the ring whose evidence counts or "both").
DECISION_TASKS = {
    "dm1": ("together", 1), "dm2": ("together", 2), "ctxdm1": ("together", 1), "ctxdm2": ("together", 2),
    "multidm": ("together", "both"), "dlydm1": ("in turn", 1), "dlydm2": ("in turn", 2),
    "ctxdlydm1": ("in turn", 1), "ctxdlydm2": ("in turn", 2), "multidlydm": ("in turn", "both"),
}  # fmt: skip


def _steps(batch, epoch: str) -> np.ndarray:
    """(trial,) the number of steps each trial spends in ``epoch`` (0 where the batch has no such epoch)."""
    return batch.epoch_mask(epoch).sum(1) if epoch in batch.epoch_names else np.zeros(batch.n_trials, int)


def _noise_levels(batch, noise_std: Any) -> np.ndarray:
    """(trial,) σ: ``noise_std``, or the batch's ``input_noise`` condition when it is None."""
    if noise_std is None:
        if "input_noise" not in batch.conditions:
            raise ValueError("noise_std is None and the batch records no 'input_noise' condition; pass noise_std")
        return np.asarray(batch.conditions["input_noise"], dtype=np.float64)
    real = isinstance(noise_std, int | float) and not isinstance(noise_std, bool)
    if not real or not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    return np.full(batch.n_trials, float(noise_std))


def evidence_accuracy(batch, shown: str, counted: int | str, noise_std: float | None = None) -> np.ndarray:
    """(trial,) the ideal observer's accuracy, every trial of ``batch`` taken as a trial of one decision task.

    Args:
        batch: a :class:`~neuroalrnn.envs.trials.TrialBatch` with the suite's
            inputs (``mod1_<k>`` …), epochs and conditions (``stim<i>_theta``,
            ``stim<i>_mod<r>_strength``).
        shown: ``"together"`` (both stimuli in the ``stimulus`` epoch) or
            ``"in turn"`` (stimulus 1 in ``stim1``, stimulus 2 in ``stim2``).
        counted: the ring whose evidence counts, 1 or 2, or ``"both"`` (summed).
        noise_std: σ per input and step; ``None``: the ``input_noise`` condition.

    NaN for trials without the conditions or epochs it needs.
    """
    n_ring = sum(name.startswith("mod1_") for name in batch.input_names)
    if n_ring == 0:
        raise ValueError(f"batch has no ring inputs 'mod1_<k>'; its inputs begin {list(batch.input_names)[:5]}")
    if shown not in ("together", "in turn") or counted not in (1, 2, "both"):
        raise ValueError(
            f"shown must be 'together' or 'in turn' and counted 1, 2 or 'both'; got {shown!r}, {counted!r}"
        )
    sigma = _noise_levels(batch, noise_std)
    conditions = {name: np.asarray(values, dtype=np.float64) for name, values in batch.conditions.items()}
    needed = ["stim1_theta", "stim2_theta", *(f"stim{i}_mod{r}_strength" for i in (1, 2) for r in (1, 2))]
    if any(name not in conditions for name in needed):
        return np.full(batch.n_trials, np.nan)
    b1, b2 = bump(conditions["stim1_theta"], n_ring), bump(conditions["stim2_theta"], n_ring)
    g11, g22, g12 = (b1 * b1).sum(1), (b2 * b2).sum(1), (b1 * b2).sum(1)
    rings = (1, 2) if counted == "both" else (counted,)
    with np.errstate(divide="ignore", invalid="ignore"):
        if shown == "together":
            per_ring = sigma**2 / _steps(batch, "stimulus") * (g11 + g22 + 2 * g12) / (g11 * g22 - g12**2)
            has_steps = _steps(batch, "stimulus") > 0
        else:
            per_ring = sigma**2 / (_steps(batch, "stim1") * g11) + sigma**2 / (_steps(batch, "stim2") * g22)
            has_steps = (_steps(batch, "stim1") > 0) & (_steps(batch, "stim2") > 0)
        variance = len(rings) * per_ring
        difference = sum(conditions[f"stim1_mod{r}_strength"] - conditions[f"stim2_mod{r}_strength"] for r in rings)
        z = np.abs(difference) / np.sqrt(variance)
    z = np.where(variance > 0, z, np.where(difference != 0, np.inf, 0.0))  # σ = 0: certain unless tied
    valid = has_steps & np.isfinite(difference) & np.isfinite(g11 + g22)
    return np.where(valid, norm.cdf(z), np.nan)


def ideal_observer_accuracy(batch, noise_std: float | None = None) -> np.ndarray:
    """(trial,) the ideal observer's probability of a correct answer; NaN for tasks without noisy evidence.

    Args:
        batch: a :class:`~neuroalrnn.envs.trials.TrialBatch` of the
            ``yang19-faithful`` suite; each trial's task is read from
            ``task_names`` (:data:`DECISION_TASKS`), so a single task's batch
            must be sampled with ``task_name="dm1"`` etc.
        noise_std: the per-step input noise σ; ``None``: the batch's
            ``input_noise`` condition, which the suite records.

    Raises ``ValueError`` when the batch has no ring inputs, or no noise level
    is given or recorded.
    """
    if noise_std is not None:
        _noise_levels(batch, noise_std)  # a bad value is an error even without decision trials
    tasks = np.asarray(batch.task_names)[batch.task]
    accuracy = np.full(batch.n_trials, np.nan)
    for task, (shown, counted) in DECISION_TASKS.items():
        rows = tasks == task
        if rows.any():
            accuracy[rows] = evidence_accuracy(batch, shown, counted, noise_std)[rows]
    return accuracy
