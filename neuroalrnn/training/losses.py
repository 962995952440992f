"""The training objective and the scores a training step reports: losses on a batch's outputs, accuracy per task.

:func:`task_loss` picks the loss from the batch's targets and scoring (cross-entropy, squared error,
Yang et al.'s least squares on sigmoid outputs); :func:`decision_accuracy` and :func:`accuracy_by_task`
score outputs by the batch's own scoring. Used by the Trainer, the PackTrainer and the evaluation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import envs

__all__ = [
    "YANG_FIXATION_COST", "accuracy_by_task", "decision_accuracy", "task_loss", "weighted_cross_entropy",
    "weighted_squared_error", "yang_squared_error",
]  # fmt: skip


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = Σ_{n,t} w_{n,t} CE(y_{n,t}, target_{n,t}) / #{(n,t): w_{n,t} > 0}.

    ``weight`` is zero on padded steps, and the sum is divided by the number of
    weighted steps, so the scale of the loss does not depend on padding.
    """
    # (trial, output, time) layout: log-softmax over a short last axis is a slow kernel path.
    per_step = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (per_step * weight).sum() / (weight > 0).sum().clamp(min=1)


def weighted_squared_error(outputs: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = Σ_{n,t} w_{n,t} (1/O) Σ_o (y_{n,t,o} − target_{n,t,o})² / #{(n,t): w_{n,t} > 0}, for regression targets."""
    per_step = (outputs - targets).square().mean(dim=-1).flatten()
    weight = weight.flatten()
    return (per_step * weight).sum() / (weight > 0).sum().clamp(min=1)


YANG_FIXATION_COST = 2.0
"""Yang et al.'s cost-mask factor on the fixation output (task.py, ``Trial.add_c_mask``: "Fixation is important")."""


def yang_squared_error(outputs: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """Yang et al. (2019)'s least-squares loss: L = Σ_{n,t,o} (c_{n,t,o} (target_{n,t,o} − σ(y_{n,t,o})))² / (N_valid · O).

    σ is the logistic sigmoid (his outputs are sigmoid units), c_{n,t,o} =
    w_{n,t} · f_o with w the cost mask (``weighting="yang"``) and f_0 = 2 on
    the fixation output (output 0), f_o = 1 on the ring outputs. As in his
    code (``network.py``: ``reduce_mean(square((y − ŷ) · c_mask))``) the mask
    multiplies the error inside the square, and the mean runs over every
    valid step and output, the unweighted ones included (N_valid = number of
    valid steps, so padding does not change the scale).
    """
    factor = torch.ones(outputs.shape[-1], dtype=outputs.dtype, device=outputs.device)
    factor[0] = YANG_FIXATION_COST
    cost = weight.to(outputs.dtype).unsqueeze(-1) * factor
    error = (cost * (targets - torch.sigmoid(outputs))).square().sum()
    return error / (mask.sum().clamp(min=1) * outputs.shape[-1])


def task_loss(outputs: torch.Tensor, batch: envs.TrialBatch) -> torch.Tensor:
    """The batch's loss, set by its targets and scoring.

    Class targets: :func:`weighted_cross_entropy`; regression targets:
    :func:`weighted_squared_error`; Yang et al.'s ring targets (scoring
    ``"ring"``): :func:`yang_squared_error` on sigmoid outputs, the objective
    his ``get_perf`` scoring is defined for.
    """
    device = outputs.device
    targets = torch.from_numpy(batch.targets).to(device)
    weight = torch.from_numpy(batch.weight).to(device)
    if batch.scoring == "ring":
        return yang_squared_error(outputs, targets.to(outputs.dtype), weight, torch.from_numpy(batch.mask).to(device))
    if batch.target_kind == "regression":
        return weighted_squared_error(outputs, targets.to(outputs.dtype), weight)
    return weighted_cross_entropy(outputs, targets, weight)


def decision_accuracy(outputs: np.ndarray, batch: envs.TrialBatch) -> float:
    """The mean trial score over the batch (:meth:`TrialBatch.scores`: choice, steps or regression)."""
    return float(np.mean(batch.scores(outputs)))


def accuracy_by_task(outputs: np.ndarray, batch: envs.TrialBatch) -> dict[str, float]:
    """Mean trial score per task of the batch (tasks without trials are left out)."""
    per_trial = batch.scores(outputs)
    return {
        name: float(per_trial[batch.task == code].mean())
        for code, name in enumerate(batch.task_names)
        if (batch.task == code).any()
    }
