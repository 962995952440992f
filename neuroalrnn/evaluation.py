"""Decision accuracy and psychometric curves, from plain arrays or a trials Dataset.

A trial's *choice* is the majority of the per-step argmax outputs over its
decision epoch; ties go to the lowest output index (fixate), so an undecided
trial never counts as correct. *Decision accuracy* is the mean trial score
(:func:`neuroalrnn.envs.trials.trial_scores`): for choice tasks the fraction of
trials whose choice equals the target label at the trial's last decision step;
for sequence tasks scored step by step the fraction of decision steps right;
for regression tasks the fraction of trials whose decision outputs all lie
within the task's tolerance of their targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .envs.trials import decision_choice, target_at_last_step, trial_scores
from .storage import save_figure

__all__ = [
    "accuracy_by",
    "choices",
    "decision_choice",
    "decision_mse",
    "plot_psychometric",
    "psychometric",
    "scores",
]


def choices(trials: xr.Dataset, decision_epoch: str = "decision") -> xr.Dataset:
    """Per-trial ``choice``, ``correct_choice`` and ``correct`` of a trials Dataset."""
    in_decision = (trials["epoch"] == decision_epoch).values & trials["mask"].values
    correct_choice = target_at_last_step(trials["targets"].values, in_decision, decision_epoch)
    choice = decision_choice(trials["outputs"].values, in_decision)
    return xr.Dataset(
        {
            "choice": ("trial", choice),
            "correct_choice": ("trial", correct_choice),
            "correct": ("trial", choice == correct_choice),
        },
        coords={name: coord for name, coord in trials.coords.items() if coord.dims == ("trial",)},
    )


def scores(trials: xr.Dataset) -> xr.DataArray:
    """(trial,) score in [0, 1] of each trial, by the task's scoring (attribute ``scoring``, default choice)."""
    in_decision = (trials["epoch"] == "decision").values & trials["mask"].values
    values = trial_scores(
        trials["outputs"].values, trials["targets"].values, in_decision,
        trials.attrs.get("scoring", "choice"), float(trials.attrs.get("tolerance", 0.0)),
    )
    coords = {name: coord for name, coord in trials.coords.items() if coord.dims == ("trial",)}
    return xr.DataArray(values, dims="trial", coords=coords, name="score")


def decision_mse(trials: xr.Dataset) -> float:
    """Mean squared error (y − target)² over the decision steps and outputs (regression tasks)."""
    if trials["targets"].ndim != 3:
        raise ValueError("decision_mse needs regression targets (trial, time, output)")
    in_decision = ((trials["epoch"] == "decision") & trials["mask"]).values
    error = trials["outputs"].values - trials["targets"].values
    return float(np.mean(error[in_decision] ** 2))


def accuracy_by(trials: xr.Dataset, by: str | None = None) -> xr.DataArray:
    """Decision accuracy overall (``by=None``) or per value of the trial coordinate ``by``."""
    correct = scores(trials)
    if by is None:
        return correct.mean("trial")
    if by not in correct.coords:
        valid = [name for name, c in trials.coords.items() if c.dims == ("trial",)]
        raise ValueError(f"no trial condition {by!r}; conditions: {valid}")
    return correct.groupby(by).mean()


def psychometric(
    trials: xr.Dataset,
    coherences: tuple[str, ...] = ("coh_motion", "coh_colour"),
    context: str = "context",
    choice_label: str = "right",
) -> xr.DataArray:
    """P(choice = ``choice_label``) per context, modality and signed coherence.

    Returns a DataArray (context, modality, coherence); NaN where a combination
    was never sampled.
    """
    missing = [name for name in (*coherences, context) if name not in trials.coords]
    if missing:
        raise ValueError(f"trials lack the conditions {missing} needed for a psychometric curve")
    labels = list(trials["output"].values)
    if choice_label not in labels:
        raise ValueError(f"no output named {choice_label!r}; outputs: {labels}")
    chose = (choices(trials)["choice"] == labels.index(choice_label)).astype(float)
    curves = []
    for name in coherences:
        by_coherence = chose.groupby([context, name]).mean().rename({name: "coherence"})
        curves.append(by_coherence.expand_dims(modality=[name]))
    return xr.concat(curves, dim="modality", join="outer").rename("p_choice")


def plot_psychometric(curve: xr.DataArray, path: str | Path, title: str = "") -> Path:
    """One panel per context: P(right) against each modality's signed coherence."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    contexts = list(curve["context"].values)
    fig = Figure(figsize=(4.2 * len(contexts), 3.6))
    axes = fig.subplots(1, len(contexts), sharey=True, squeeze=False)
    for ax, context in zip(axes[0], contexts, strict=True):
        for modality in curve["modality"].values:
            line = curve.sel(context=context, modality=modality).dropna("coherence")
            label = str(modality).removeprefix("coh_")
            ax.plot(line["coherence"], line, marker="o", label=label)
        ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
        ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
        ax.set_title(f"context: {context}")
        ax.set_xlabel("signed coherence")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("P(right)")
    axes[0][-1].legend(title="evidence", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
