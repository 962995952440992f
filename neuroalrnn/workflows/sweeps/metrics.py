"""What a sweep measures of each run: the fixed result variables and the registry of extra metrics.

``RESULT_VARIABLES`` are the numbers every run's ``result.json`` holds and
``results.nc`` stores as variables (name -> (description, units)).
``METRICS`` maps a name to a function ``(trials, model, config) -> float`` of a
run's test trials (the ``trials.nc`` Dataset), its trained model and its
TrainConfig; an experiment selects some with ``[evaluate] metrics = [...]``.
Besides ``sharing_index``: ``<measure>_vs_shuffled`` and ``<measure>_p`` for
the regime ``sharing_index`` and the regime-free
``mean_covariance_similarity``, the measure relative to its mean under
shuffled task labels and the permutation p-value of "less shared than
chance" (:mod:`neuroalrnn.analyses.sharing_null`).
The functions must be importable (module level): the runs happen in other
processes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from ...training.config import TrainConfig

__all__ = ["METRICS", "RESULT_VARIABLES", "MetricFunction", "sharing_index", "sharing_null_metric"]

RESULT_VARIABLES: dict[str, tuple[str, str]] = {
    "accuracy": ("held-out test accuracy (mean trial score)", ""),
    "test_loss": ("training loss (weighted) on the test trials", ""),
    "final_loss": ("training loss at the last training step", ""),
    "steps_to_criterion": ("first training step whose held-out eval_accuracy >= criterion (NaN: never)", "steps"),
    "steps_trained": ("training steps done (fewer than steps after an early stop)", "steps"),
    "regimes_used": ("distinct regime codes visited on valid test steps (NaN: no regimes)", ""),
    "switch_fraction": ("fraction of consecutive valid test steps at which any nonlinear unit changes sign", ""),
    "wall_time": ("training plus evaluation time", "s"),
}

MetricFunction = Callable[[xr.Dataset, torch.nn.Module, TrainConfig], float]


def sharing_index(trials: xr.Dataset, model: torch.nn.Module, config: TrainConfig) -> float:
    """The network's sharing index across tasks (:func:`neuroalrnn.analyses.sharing.sharing_analysis`).

    NaN for a single-task run or a model without regimes.
    """
    from ...analyses.sharing import sharing_analysis

    if np.unique(trials["task"].values).size < 2 or "regime" not in trials:
        return float("nan")
    return float(sharing_analysis(trials, n_permutations=0)["sharing_index"])


# The last trials Dataset given and its null: the null metrics of one run share one analysis. The Dataset
# itself is kept, and compared by identity, so a later Dataset at a freed one's address is not mistaken for it.
_NULL_CACHE: list[tuple[xr.Dataset, xr.Dataset]] = []


def _sharing_null(trials: xr.Dataset) -> xr.Dataset | None:
    """The null part of the sharing analysis of ``trials`` (computed once per Dataset), or None without regimes."""
    from ...analyses.sharing import sharing_analysis

    if np.unique(trials["task"].values).size < 2 or "regime" not in trials:
        return None
    if not _NULL_CACHE or _NULL_CACHE[0][0] is not trials:
        _NULL_CACHE[:] = [(trials, sharing_analysis(trials)[["null_normalised", "null_p_value"]].load())]
    return _NULL_CACHE[0][1]


def sharing_null_metric(measure: str, statistic: str) -> MetricFunction:
    """A metric: ``statistic`` (``null_normalised`` or ``null_p_value``) of ``measure`` against shuffled task labels.

    See :mod:`neuroalrnn.analyses.sharing_null`; NaN for a single-task run or
    a model without regimes (then also for the regime-free measures, since
    the sharing analysis of such runs is not made here).
    """
    return functools.partial(_null_statistic, measure=measure, statistic=statistic)  # picklable, for workers


def _null_statistic(trials: xr.Dataset, model: torch.nn.Module, config: TrainConfig, *, measure: str,
                    statistic: str) -> float:
    null = _sharing_null(trials)
    return float("nan") if null is None else float(null[statistic].sel(measure=measure))


#: Extra per-run metrics by name; add one with ``METRICS["name"] = function``.
METRICS: dict[str, MetricFunction] = {"sharing_index": sharing_index}
for _measure in ("sharing_index", "mean_covariance_similarity"):
    for _statistic, _suffix in (("null_normalised", "vs_shuffled"), ("null_p_value", "p")):
        METRICS[f"{_measure}_{_suffix}"] = sharing_null_metric(_measure, _statistic)
