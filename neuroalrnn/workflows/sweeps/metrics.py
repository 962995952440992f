"""What a sweep measures of each run: the fixed result variables and the registry of extra metrics.

``RESULT_VARIABLES`` are the numbers every run's ``result.json`` holds and
``results.nc`` stores as variables (name -> (description, units)).
``METRICS`` maps a name to a function ``(trials, model, config) -> float`` of a
run's test trials (the ``trials.nc`` Dataset), its trained model and its
TrainConfig; an experiment selects some with ``[evaluate] metrics = [...]``.
The functions must be importable (module level): the runs happen in other
processes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from ...training.config import TrainConfig

__all__ = ["METRICS", "RESULT_VARIABLES", "MetricFunction", "sharing_index"]

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
    return float(sharing_analysis(trials)["sharing_index"])


#: Extra per-run metrics by name; add one with ``METRICS["name"] = function``.
METRICS: dict[str, MetricFunction] = {"sharing_index": sharing_index}
