"""Evaluating a trained run: decision accuracy, psychometric curves, and the one path that simulates test trials.

A trial's *choice* is the majority of the per-step argmax outputs over its
decision epoch; ties go to the lowest output index (fixate), so an undecided
trial never counts as correct. *Decision accuracy* is the mean trial score
(:func:`neuroalrnn.envs.trials.trial_scores`): for choice tasks the fraction of
trials whose choice equals the target label at the trial's last decision step;
for sequence tasks scored step by step the fraction of decision steps right;
for regression tasks the fraction of trials whose decision outputs all lie
within the task's tolerance of their targets.

**One path.** :func:`evaluate_run` simulates a run's held-out test trials and
summarises them; ``neuroalrnn evaluate``, ``neuroalrnn analyze``,
``neuroalrnn compare`` and the sweep all go through it, with one default
number of trials, :data:`DEFAULT_TEST_TRIALS`. :func:`current_trials` is what
the analyses read: the stored ``trials.nc`` when it is current (simulated
without noise from the run's present checkpoint step, and with the number of
trials asked, if one was), else fresh trials from :func:`evaluate_run`. A
stale ``trials.nc`` is therefore never analysed: it is simulated again, and
the reason is reported through ``progress``.

**One result, one file.** An evaluation is stored as one atomic unit: the
summary is an attribute of ``trials.nc`` (``evaluation``, JSON), and
``evaluation.json`` is a copy derived from it for people and scripts.
``trials.nc`` is written first (atomically), ``evaluation.json`` after it. A
process killed between the two writes leaves a new ``trials.nc`` beside an
old ``evaluation.json``; :func:`read_evaluation` (called by every command
that reads ``trials.nc``) takes the summary from ``trials.nc`` and rewrites
``evaluation.json`` whenever the two disagree, so no reader ever pairs files
of two different evaluations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import envs
from ..envs.trials import decision_choice, ring_read_out, target_at_last_step, trial_scores
from ..formats import FORMAT_VERSION, StaleTrialsError, check_trials_match
from ..storage import atomic_write, file_group, save_figure
from ..system import jsonable, resolve_device
from ..training import TEST_SEED_OFFSET, LoadedRun, load_run, task_loss
from ..training.config import (
    DEFAULT_TEST_TRIALS,
    NON_NEGATIVE_INTEGER,
    POSITIVE_INTEGER,
)
from ..training.rundir import read_metrics
from .simulate import read_trials, simulate_batch, write_trials

__all__ = [
    "DEFAULT_TEST_TRIALS",
    "EVALUATION_FILE",
    "SUMMARY_ATTRIBUTE",
    "TRIALS_FILE",
    "accuracy_by",
    "accuracy_by_congruence",
    "accuracy_by_strength",
    "choices",
    "current_trials",
    "decision_choice",
    "decision_mse",
    "evaluate_run",
    "outcomes",
    "outcomes_by_task",
    "plot_psychometric",
    "psychometric",
    "read_evaluation",
    "scores",
    "write_evaluation",
]

TRIALS_FILE = "trials.nc"
EVALUATION_FILE = "evaluation.json"
SUMMARY_ATTRIBUTE = "evaluation"
"""The ``trials.nc`` attribute holding the evaluation summary (JSON); ``evaluation.json`` is derived from it."""

Progress = Callable[[str], None] | None


def _in_decision(trials: xr.Dataset, decision_epoch: str = "decision") -> np.ndarray:
    """(trial, time) bool: the valid steps of the trials' ``decision_epoch``."""
    return (trials["epoch"] == decision_epoch).values & trials["mask"].values


def _trial_tasks(trials: xr.Dataset) -> np.ndarray:
    """(trial,) each trial's task name ("task" for every trial of a single-task run without the coordinate)."""
    return trials["task"].values if "task" in trials.coords else np.full(trials.sizes["trial"], "task")


def choices(trials: xr.Dataset, decision_epoch: str = "decision") -> xr.Dataset:
    """Per-trial ``choice``, ``correct_choice`` and ``correct`` of a trials Dataset."""
    in_decision = _in_decision(trials, decision_epoch)
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
    values = trial_scores(
        trials["outputs"].values, trials["targets"].values, _in_decision(trials),
        trials.attrs.get("scoring", "choice"), float(trials.attrs.get("tolerance", 0.0)),
    )
    coords = {name: coord for name, coord in trials.coords.items() if coord.dims == ("trial",)}
    return xr.DataArray(values, dims="trial", coords=coords, name="score")


def outcomes(trials: xr.Dataset) -> xr.DataArray:
    """(trial,) the kind of each response of ring-scored trials (:func:`neuroalrnn.envs.yang.ring.ring_outcome`).

    Read at each trial's last decision step, after the sigmoid, as the ring
    scoring reads it; the shown stimuli are the trial conditions named in
    :data:`~neuroalrnn.envs.yang.ring.STIMULUS_DIRECTIONS`.
    """
    from ..envs.yang.ring import STIMULUS_DIRECTIONS, ring_outcome

    if trials.attrs.get("scoring") != "ring":
        raise ValueError(f"outcomes need ring-scored trials (Yang's read-out), not {trials.attrs.get('scoring')!r}")
    output, target = ring_read_out(trials["outputs"].values, trials["targets"].values, _in_decision(trials))
    names = [name for name in STIMULUS_DIRECTIONS if name in trials.coords]
    shown = np.stack([trials[name].values.astype(np.float64) for name in names], -1) if names else None
    coords = {name: coord for name, coord in trials.coords.items() if coord.dims == ("trial",)}
    return xr.DataArray(ring_outcome(output, target, shown), dims="trial", coords=coords, name="outcome")


def outcomes_by_task(trials: xr.Dataset) -> dict[str, dict[str, float]]:
    """task -> {outcome kind -> fraction of the task's trials} (every kind of :data:`RING_OUTCOMES`; sums to 1)."""
    from ..envs.yang.ring import RING_OUTCOMES

    kinds = outcomes(trials).values
    tasks = _trial_tasks(trials)
    return {str(task): {kind: float(np.mean(kinds[tasks == task] == kind)) for kind in RING_OUTCOMES}
            for task in dict.fromkeys(tasks.tolist())}


def decision_mse(trials: xr.Dataset) -> float:
    """Mean squared error (y − target)² over the decision steps and outputs (regression tasks)."""
    if trials["targets"].ndim != 3:
        raise ValueError("decision_mse needs regression targets (trial, time, output)")
    in_decision = _in_decision(trials)
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


STRENGTH_DECIMALS = 6
"""Evidence strengths are grouped after rounding to this many decimals (float noise in drawn values)."""


def accuracy_by_strength(trials: xr.Dataset, condition: str = "coherence") -> dict[str, dict[str, float]]:
    """Accuracy per task and per |strength| of the trial condition ``condition`` (e.g. Yang's ``coherence``).

    Returns task -> {|strength| as text: accuracy}, for the tasks whose trials give the condition a finite
    value (others are left out); strengths are rounded to :data:`STRENGTH_DECIMALS` decimals. Empty when
    the trials have no such condition. A psychometric view of the tasks with graded evidence: an accuracy
    that rises with strength but stays below the ideal observer is evidence integrated too weakly.
    """
    if condition not in trials.coords or trials[condition].dims != ("trial",):
        return {}
    values = np.asarray(trials[condition].values)
    if values.dtype.kind not in "fiu":
        return {}
    correct = scores(trials).values
    tasks = _trial_tasks(trials)
    result: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(tasks.tolist()):
        members = (tasks == task) & np.isfinite(values)
        if not members.any():
            continue
        strength = np.round(np.abs(values[members]), STRENGTH_DECIMALS)
        result[str(task)] = {f"{level:g}": float(correct[members][strength == level].mean())
                             for level in np.unique(strength)}
    return result


def accuracy_by_congruence(trials: xr.Dataset) -> dict[str, dict[str, float]]:
    """Accuracy per task on congruent and on conflict trials of two-modality decisions with one modality attended.

    For trials with the conditions ``stim<i>_mod<r>_strength`` (i, r = 1, 2) and
    ``modality`` = 1 or 2 (the attended ring, as in Yang's ctxdm and ctxdlydm
    tasks): with Δ_r = stim1_mod<r>_strength − stim2_mod<r>_strength, a trial
    is *congruent* when the unattended modality's Δ has the attended one's sign
    and a *conflict* trial when it has the opposite sign (trials with either Δ
    zero are left out). Returns task -> {"congruent": accuracy, "conflict":
    accuracy, "n_conflict": trials}, for the tasks that have both kinds; empty
    when the trials lack the conditions. Accuracy that holds on congruent
    trials and falls towards or below 0.5 on conflict trials is a network
    that follows the unattended modality: context gating, not integration, fails.
    """
    names = [f"stim{i}_mod{r}_strength" for i in (1, 2) for r in (1, 2)]
    if not all(name in trials.coords and trials[name].dims == ("trial",) for name in [*names, "modality"]):
        return {}
    strength = {name: np.asarray(trials[name].values, dtype=np.float64) for name in names}
    delta = {r: strength[f"stim1_mod{r}_strength"] - strength[f"stim2_mod{r}_strength"] for r in (1, 2)}
    attended = np.asarray(trials["modality"].values, dtype=np.float64)
    relevant = np.where(attended == 1, delta[1], delta[2])
    other = np.where(attended == 1, delta[2], delta[1])
    signed = np.isin(attended, (1, 2)) & (np.sign(relevant) * np.sign(other) != 0)
    conflict = np.sign(relevant) != np.sign(other)
    correct = scores(trials).values
    tasks = _trial_tasks(trials)
    result: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(tasks.tolist()):
        members = (tasks == task) & signed
        if (members & conflict).any() and (members & ~conflict).any():
            result[str(task)] = {"congruent": float(correct[members & ~conflict].mean()),
                                 "conflict": float(correct[members & conflict].mean()),
                                 "n_conflict": int((members & conflict).sum())}
    return result


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


def evaluate_run(
    run_dir: str | os.PathLike,
    n_trials: int = DEFAULT_TEST_TRIALS,
    noise: bool = False,
    seed: int | None = None,
    *,
    save: bool = True,
    device: str = "cpu",
    progress: Progress = None,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Simulate ``n_trials`` held-out test trials of the run in ``run_dir`` and summarise them.

    The trials come from the run's task (its held-out version, e.g. unseen
    digit images) drawn with ``seed`` (default: the run's seed +
    ``TEST_SEED_OFFSET``, apart from training and held-out evaluation trials),
    by the model at its checkpoint, noiseless unless ``noise=True``.

    Returns ``(trials, summary)``: the ``trials.nc`` Dataset (its attribute
    :data:`SUMMARY_ATTRIBUTE` holds the summary as JSON) and the summary, a
    dict of:

    - ``accuracy``: decision accuracy (:func:`accuracy_by`); ``accuracy_by_task``
      (task -> accuracy, in the task's order), ``mean_over_tasks``,
      ``min_over_tasks``; ``accuracy_by_coherence`` (:func:`accuracy_by_strength`:
      task -> |coherence| -> accuracy, for trials with a ``coherence`` condition, else {});
    - ``decision_mse``: :func:`decision_mse` for tasks scored ``regression``, else None;
    - ``test_loss``: the training loss (with the run's weighting and decision
      weight) on the test trials; ``final_loss``: the loss of the last
      training step in metrics.csv (None without one);
    - ``ceiling`` and ``ceiling_by_task``: the ideal observer's accuracy on
      the same trials (the task's ``ideal_observer_accuracy``), for tasks with
      noisy evidence; None / {} where no task has one;
    - ``regimes_used`` and ``switch_fraction``: distinct regimes on valid
      steps and the fraction of consecutive valid steps at which any
      nonlinear unit changes sign
      (:func:`neuroalrnn.analyses.regimes.regime_statistics`; None for
      tanh/GRU/LSTM);
    - ``n_trials``, ``seed``, ``noise``, ``scoring``, ``checkpoint_step``,
      ``steps`` (the configured total) and ``stopped_early``
      (checkpoint_step < steps);
    - ``format_version`` of the ``evaluation.json`` format (:mod:`neuroalrnn.formats`).

    ``save=True`` writes ``trials.nc`` and ``evaluation.json`` as one unit
    (:func:`write_evaluation`). ``device``: where the model runs (cpu,
    cuda, auto; see :func:`neuroalrnn.system.resolve_device`); recurrent noise
    is drawn on the CPU, so the trials do not depend on it beyond rounding. ``progress`` receives one line per stage
    (e.g. ``print``); None is silent.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    run.model.to(resolve_device(device))
    return _evaluate(run_dir, run, n_trials, noise, seed, save=save, progress=progress)


def _evaluate(
    run_dir: Path, run: LoadedRun, n_trials: int, noise: bool, seed: int | None, *, save: bool, progress: Progress
) -> tuple[xr.Dataset, dict[str, Any]]:
    POSITIVE_INTEGER.check("n_trials", n_trials)
    from ..fitting import evaluate_fit, is_fit_run

    if is_fit_run(run_dir):  # scored on its own held-out recorded trials, not on fresh task trials
        return evaluate_fit(run_dir, save=save, progress=progress)
    seed = run.config.seed + TEST_SEED_OFFSET if seed is None else seed
    NON_NEGATIVE_INTEGER.check("seed", seed)
    # Sampled with the run's loss weights, so the test loss needs no second draw of the same trials.
    batch = _test_batch(run.env, run.config, n_trials, seed)
    trials = simulate_batch(run.model, batch, seed=seed, noise=bool(noise), checkpoint_step=run.step,
                            config=run.config.to_dict())
    summary = _summary(trials, run, run_dir, seed=seed, noise=bool(noise), test_loss=_test_loss(trials, batch))
    summary.update(_ceilings(envs.ideal_observer_accuracy(run.env, batch), batch, summary["accuracy_by_task"]))
    trials.attrs[SUMMARY_ATTRIBUTE] = _summary_json(summary)
    if progress is not None:
        how = "with recurrent noise" if noise else "noiseless"
        progress(f"simulated {n_trials} {how} test trials (seed {seed}) at checkpoint step {run.step}")
    if save:
        write_evaluation(run_dir, trials)
    return trials, json.loads(trials.attrs[SUMMARY_ATTRIBUTE])


_TEST_BATCHES: dict[str, envs.TrialBatch] = {}
_TEST_BATCHES_KEPT = 2


def _test_batch(env, config, n_trials: int, seed: int) -> envs.TrialBatch:
    """The test trials of a run: sampled, or the same draw reused within this process.

    Runs of one task, loss weighting and seed get the same test trials (the seed is the run's seed plus
    an offset, whatever its P): a sweep's runs of one seed, evaluated one after another in a worker or a
    pack, sample them once (the last two draws are kept).
    """
    key = json.dumps([config.task, config.task_kwargs, config.weighting, config.decision_weight, n_trials, seed],
                     sort_keys=True, default=str)
    if key not in _TEST_BATCHES:
        batch = envs.sample_trials(env, n_trials, seed=seed, task_name=config.task, weighting=config.weighting,
                                   decision_weight=config.decision_weight)
        while len(_TEST_BATCHES) >= _TEST_BATCHES_KEPT:
            _TEST_BATCHES.pop(next(iter(_TEST_BATCHES)))
        _TEST_BATCHES[key] = batch
    kept = _TEST_BATCHES[key]
    return kept.take(np.arange(kept.n_trials))  # a copy: no caller can change another's trials


def _summary(
    trials: xr.Dataset, run: LoadedRun, run_dir: Path, *, seed: int, noise: bool, test_loss: float
) -> dict[str, Any]:
    from ..analyses.regimes import regime_statistics

    per_task = accuracy_by(trials, "task").to_series()
    order = [name for name in json.loads(trials.attrs.get("task_names", "[]")) if name in per_task.index]
    by_task = {str(name): float(per_task[name]) for name in order or per_task.index}
    rows = read_metrics(run_dir)
    summary = {
        "accuracy": float(accuracy_by(trials)),
        "accuracy_by_task": by_task,
        "mean_over_tasks": float(np.mean(list(by_task.values()))),
        "min_over_tasks": min(by_task.values()),
        "accuracy_by_coherence": accuracy_by_strength(trials),
        "outcomes_by_task": outcomes_by_task(trials) if trials.attrs.get("scoring") == "ring" else {},
        "accuracy_by_congruence": accuracy_by_congruence(trials),
        # for regression scoring only: ring-scored outputs are logits, their error to the targets means nothing
        "decision_mse": decision_mse(trials) if trials.attrs.get("scoring") == "regression" else None,
        "test_loss": test_loss,
        "final_loss": float(rows[-1]["loss"]) if rows else None,
        "regimes_used": None,
        "switch_fraction": None,
        "n_trials": int(trials.sizes["trial"]),
        "seed": int(seed),
        "noise": noise,
        "scoring": str(trials.attrs.get("scoring", "choice")),
        "checkpoint_step": run.step,
        "steps": run.config.steps,
        "stopped_early": run.step < run.config.steps,
        "format_version": FORMAT_VERSION,
    }
    if "regime" in trials:
        statistics = regime_statistics(trials, transitions=False)
        summary["regimes_used"] = int(statistics["n_regimes"])
        summary["switch_fraction"] = float(statistics["switch_fraction"])
    return summary


def _ceilings(accuracy: np.ndarray | None, batch: envs.TrialBatch, by_task: dict[str, float]) -> dict[str, Any]:
    """``ceiling`` and ``ceiling_by_task``: the ideal observer's mean accuracy overall and per task (defined ones only)."""
    if accuracy is None or np.isnan(accuracy).all():
        return {"ceiling": None, "ceiling_by_task": {}}
    names = [name for name in by_task if name in batch.task_names]
    per_task = {name: accuracy[batch.task == batch.task_names.index(name)] for name in names}
    return {
        "ceiling": float(np.nanmean(accuracy)),
        "ceiling_by_task": {name: float(np.mean(values)) for name, values in per_task.items()
                            if len(values) and not np.isnan(values).any()},
    }


def _test_loss(trials: xr.Dataset, batch: envs.TrialBatch) -> float:
    """The training loss (the batch's loss weights) of the simulated trials' outputs."""
    outputs = torch.from_numpy(np.ascontiguousarray(trials["outputs"].values))
    with torch.no_grad():
        return float(task_loss(outputs, batch))


def _summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_evaluation(run_dir: str | os.PathLike, trials: xr.Dataset) -> dict[str, Path]:
    """Write an evaluation (trials whose :data:`SUMMARY_ATTRIBUTE` holds the summary) as one unit.

    ``trials.nc`` and ``evaluation.json`` (derived from the summary) are one
    file group (:func:`neuroalrnn.storage.file_group`): a kill leaves the
    previous pair or the new one. Returns both paths (keys ``trials`` and
    ``evaluation``).
    """
    run_dir = Path(run_dir)
    if SUMMARY_ATTRIBUTE not in trials.attrs:
        raise ValueError(f"trials to write as an evaluation need the attribute {SUMMARY_ATTRIBUTE!r}; "
                         "make them with evaluate_run")
    with file_group(run_dir) as staging:
        write_trials(trials, staging / TRIALS_FILE)
        atomic_write(staging / EVALUATION_FILE, trials.attrs[SUMMARY_ATTRIBUTE])
    return {"trials": run_dir / TRIALS_FILE, "evaluation": run_dir / EVALUATION_FILE}


def _derive_json(run_dir: Path, summary_text: str) -> None:
    """Make ``evaluation.json`` hold ``summary_text`` (rewritten only when it holds anything else)."""
    path = run_dir / EVALUATION_FILE
    try:
        current = path.read_text()
    except OSError:
        current = None
    if current != summary_text:
        atomic_write(path, summary_text)


def read_evaluation(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The summary of the evaluation in ``run_dir/trials.nc``; None when it holds none (or there is no trials.nc).

    ``evaluation.json`` is brought in line with it: rewritten when it is
    missing or holds another evaluation (an ``evaluate`` killed between its
    two writes).
    """
    path = Path(run_dir) / TRIALS_FILE
    if not path.is_file():
        return None
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        summary_text = opened.attrs.get(SUMMARY_ATTRIBUTE)
    if summary_text is None:
        return None
    _derive_json(Path(run_dir), str(summary_text))
    return json.loads(summary_text)


def current_trials(run_dir: str | os.PathLike, n_trials: int | None = None, *, progress: Progress = None) -> xr.Dataset:
    """The run's test trials as the analyses need them: noiseless, from its present checkpoint.

    The stored ``trials.nc`` is used when its provenance matches (simulated
    without noise at the checkpoint's step, and with ``n_trials`` trials
    unless ``n_trials`` is None); otherwise (stale, noisy, another number, an
    unversioned file, or none) :func:`evaluate_run` simulates ``n_trials``
    (default :data:`DEFAULT_TEST_TRIALS`) and saves them. The model is loaded
    either way, so a checkpoint with non-finite weights is refused.
    """
    run_dir = Path(run_dir)
    if n_trials is not None:
        POSITIVE_INTEGER.check("n_trials", n_trials)
    run = load_run(run_dir)
    path = run_dir / TRIALS_FILE
    if path.is_file():
        trials = read_trials(path)
        try:
            check_trials_match(trials, n_trials=n_trials, noise=False, checkpoint_step=run.step)
        except StaleTrialsError:
            if progress is not None:
                asked = f"{n_trials or 'any number of'} trials without noise from checkpoint step {run.step}"
                progress(f"{path} holds {_provenance(trials)}, not {asked}; simulating again")
        else:
            read_evaluation(run_dir)
            if progress is not None:
                progress(f"read {path} ({trials.sizes['trial']} trials)")
            return trials
    trials, _ = _evaluate(run_dir, run, n_trials or DEFAULT_TEST_TRIALS, False, None, save=True, progress=progress)
    return trials


def _provenance(trials: xr.Dataset) -> str:
    """Where stored trials came from, in words (unknown parts named as such)."""
    attrs = trials.attrs
    if "simulated_with_noise" not in attrs or "checkpoint_step" not in attrs:
        return f"{trials.sizes['trial']} trials of unknown provenance (written before format version 1)"
    noise = "with" if int(attrs["simulated_with_noise"]) else "without"
    step = int(attrs["checkpoint_step"])
    return f"{trials.sizes['trial']} trials {noise} noise from checkpoint step {step if step >= 0 else 'unknown'}"
