"""Sample whole trials from a NeuroGym TrialEnv into padded, batch-major arrays.

``ngym.Dataset`` concatenates trials and drops their boundaries and epochs, so
trials are built here from ``env.unwrapped.new_trial()`` and the env's
``ob``/``gt``/``start_ind``/``end_ind``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from .base import SCORINGS, task_interface
from .epochs import canonical_epoch_map
from .yang.ring import ring_choice_correct

__all__ = [
    "WEIGHTINGS",
    "TrialBatch",
    "decision_choice",
    "sample_trials",
    "target_at_last_step",
    "trial_scores",
    "yang_cost_mask",
]

WEIGHTINGS = ("epoch", "uniform", "yang")
PAD_EPOCH = -1
# Yang et al. (2019)'s cost mask (github.com/gyyang/multitask, task.py, Trial.add_c_mask): no cost in
# the first 100 ms, 1 before the response, none in a 100 ms grace period after it starts, 5 after.
YANG_UNCHECKED_MS = 100.0
YANG_PRE_RESPONSE_COST = 1.0
YANG_POST_RESPONSE_COST = 5.0



@dataclass(frozen=True)
class TrialBatch:
    """N trials as padded arrays, batch-major (trial, time, ...).

    Attributes:
        inputs: (trial, time, input) float32; zero after a trial ends.
        targets: (trial, time) int64 class labels for ``target_kind="class"``,
            (trial, time, output) float32 for ``"regression"``; 0 after a trial ends.
        mask: (trial, time) bool, True on a trial's valid steps.
        weight: (trial, time) float32 per-step loss weight (0 where masked).
        epoch: (trial, time) int16 index into ``epoch_names``; -1 where masked.
        epoch_names: ordered epoch names.
        task: (trial,) int64 index into ``task_names``.
        task_names: task names.
        conditions: per-trial conditions, name -> (trial,) array.
        dt: time step in ms.
        input_names, output_names: labels of the input and output dimensions.
        target_kind: ``"class"`` or ``"regression"``.
        scoring: how a trial is scored over its ``decision`` epoch:
            ``"choice"`` (majority vote of the argmax vs the target at the last
            decision step), ``"steps"`` (each decision step's argmax vs its own
            target; a trial scores the fraction correct) or ``"regression"``
            (correct when every decision output is within ``tolerance`` of its target)
            or ``"ring"`` (Yang et al.'s ``get_perf`` at the last step; see :func:`trial_scores`).
        tolerance: the regression tolerance.
        canonical_epochs: each of ``epoch_names`` -> its canonical epoch (see ``envs.epochs``).
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    weight: np.ndarray
    epoch: np.ndarray
    epoch_names: tuple[str, ...]
    task: np.ndarray
    task_names: tuple[str, ...]
    conditions: dict[str, np.ndarray] = field(default_factory=dict)
    dt: float = 100.0
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    target_kind: str = "class"
    scoring: str = "choice"
    tolerance: float = 0.0
    canonical_epochs: dict[str, str] = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return self.inputs.shape[0]

    @property
    def n_steps(self) -> int:
        return self.inputs.shape[1]

    def take(self, indices: np.ndarray) -> TrialBatch:
        """The trials at ``indices``, padding trimmed to the longest of them."""
        indices = np.asarray(indices)
        mask = self.mask[indices]
        n_steps = int(mask.any(axis=0).nonzero()[0].max()) + 1 if mask.any() else 0
        return dataclasses.replace(
            self,
            inputs=self.inputs[indices, :n_steps],
            targets=self.targets[indices, :n_steps],
            mask=mask[:, :n_steps],
            weight=self.weight[indices, :n_steps],
            epoch=self.epoch[indices, :n_steps],
            task=self.task[indices],
            conditions={name: values[indices] for name, values in self.conditions.items()},
        )

    def save(self, path) -> None:
        """Write the batch to ``path`` as an uncompressed ``.npz`` (no pickles), atomically."""
        import json
        import os
        import tempfile
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAY_FIELDS}
        for name, values in self.conditions.items():
            arrays[f"condition/{name}"] = values.astype(str) if values.dtype.kind == "O" else values
        meta = {name: getattr(self, name) for name in _META_FIELDS}
        arrays["meta"] = np.asarray(json.dumps(meta))
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path) -> TrialBatch:
        """Read a batch written by :meth:`save`."""
        import json

        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            arrays = {name: stored[name] for name in _ARRAY_FIELDS}
            conditions = {
                key.removeprefix("condition/"): stored[key] for key in stored.files if key.startswith("condition/")
            }
        for name in ("epoch_names", "task_names", "input_names", "output_names"):
            meta[name] = tuple(meta[name])
        return cls(**arrays, **meta, conditions=conditions)

    def epoch_mask(self, name: str) -> np.ndarray:
        """(trial, time) bool: the steps that belong to epoch ``name``."""
        if name not in self.epoch_names:
            raise ValueError(f"no epoch {name!r}; epochs: {list(self.epoch_names)}")
        return self.epoch == self.epoch_names.index(name)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """(trial,) :func:`trial_scores` of a model's ``outputs`` (trial, time, output) on these trials."""
        return trial_scores(outputs, self.targets, self.epoch_mask("decision"), self.scoring, self.tolerance)

    def correct_choice(self, decision_epoch: str = "decision") -> np.ndarray:
        """(trial,) the target label of each trial's last decision step."""
        return target_at_last_step(self.targets, self.epoch_mask(decision_epoch), decision_epoch)


_ARRAY_FIELDS = ("inputs", "targets", "mask", "weight", "epoch", "task")
_META_FIELDS = (
    "epoch_names", "task_names", "dt", "input_names", "output_names", "target_kind", "scoring", "tolerance",
    "canonical_epochs",
)


def decision_choice(outputs: np.ndarray, decision_mask: np.ndarray) -> np.ndarray:
    """(trial,) choices: the majority of argmax ``outputs`` (trial, time, output) over ``decision_mask``.

    Ties go to the lowest output index (fixate), so an undecided trial never counts as correct.
    """
    n_trials, n_outputs = outputs.shape[0], outputs.shape[-1]
    rows, steps = np.nonzero(decision_mask)
    predicted = outputs[rows, steps].argmax(axis=-1)
    votes = np.bincount(rows * n_outputs + predicted, minlength=n_trials * n_outputs).reshape(n_trials, n_outputs)
    return votes.argmax(axis=1)


def trial_scores(
    outputs: np.ndarray,
    targets: np.ndarray,
    decision_mask: np.ndarray,
    scoring: str = "choice",
    tolerance: float = 0.0,
) -> np.ndarray:
    """(trial,) score in [0, 1] of ``outputs`` (trial, time, output) over each trial's decision steps.

    * ``"choice"``: 1 if the majority vote of argmax_o y_{t,o} over the decision
      steps (ties to the lowest index, "fixate") equals the target at the last
      decision step, else 0;
    * ``"steps"``: the fraction of decision steps t with argmax_o y_{t,o} = target_t;
    * ``"regression"``: 1 if max over decision steps and outputs of
      |y_{t,o} − target_{t,o}| < ``tolerance``, else 0;
    * ``"ring"``: Yang et al. (2019)'s ``get_perf`` (github.com/gyyang/multitask,
      ``network.py``) at each trial's last decision step, on ŷ = sigmoid(y), for
      outputs laid out as [fixation, ring of R directions at 2πr/R]: the
      network fixates iff ŷ_fix > 0.5, and its response direction is the
      population vector arg(Σ_r ŷ_r e^{i2πr/R}). The target says "fixate" iff
      target_fix > 0.5, else its direction is the population vector of the
      target ring (Yang's targets: a bump at the response direction over a
      flat 0.05, so this is the direction itself). A trial scores 1 if it
      should fixate and does, or should respond, does not fixate and responds
      within 0.2π of the target direction
      (:func:`neuroalrnn.envs.yang.ring.ring_choice_correct`).
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if not decision_mask.any(axis=1).all():
        raise ValueError("some trials have no 'decision' epoch to score")
    if scoring == "choice":
        choice = decision_choice(outputs, decision_mask)
        return (choice == target_at_last_step(targets, decision_mask)).astype(np.float64)
    if scoring == "steps":
        hits = (outputs.argmax(axis=-1) == targets) & decision_mask
        return hits.sum(axis=1) / decision_mask.sum(axis=1)
    if scoring == "ring":
        return ring_choice_correct(*ring_read_out(outputs, targets, decision_mask)).astype(np.float64)
    error = np.abs(outputs - targets).max(axis=-1)
    worst = np.where(decision_mask, error, 0.0).max(axis=1)
    return (worst < tolerance).astype(np.float64)


def ring_read_out(outputs: np.ndarray, targets: np.ndarray, decision_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(response, target) (trial, 1 + n_ring) that ring scoring reads: the sigmoid of the outputs (logits) and the
    targets, each at the trial's last decision step."""
    last_output = np.asarray(target_at_last_step(outputs, decision_mask), dtype=np.float64)
    return expit(last_output), target_at_last_step(targets, decision_mask)  # expit: the sigmoid, without overflow


def target_at_last_step(targets: np.ndarray, in_epoch: np.ndarray, epoch_name: str = "decision") -> np.ndarray:
    """(trial, ...) ``targets`` (trial, time, ...) at each trial's last step where ``in_epoch`` is True."""
    if not in_epoch.any(axis=1).all():
        raise ValueError(f"some trials have no {epoch_name!r} epoch")
    last = in_epoch.shape[1] - 1 - np.argmax(in_epoch[:, ::-1], axis=1)
    return targets[np.arange(len(last)), last]


def sample_trials(
    env,
    n_trials: int,
    seed: int | None = None,
    *,
    task_name: str = "task",
    weighting: str = "epoch",
    decision_weight: float = 1.0,
) -> TrialBatch:
    """Draw ``n_trials`` trials from ``env`` and pad them into a :class:`TrialBatch`.

    The env's random state is re-seeded with ``seed``, so the same seed gives
    the same trials. Per-step loss weights:

    * ``weighting="epoch"`` — every epoch of a trial weighs the same in total:
      w_t = L / (E · n_e(t)), with L the trial's length, E its number of epochs
      and n_e the length of the epoch containing t (a one-step decision epoch
      counts as much as a long fixation);
    * ``weighting="uniform"`` — w_t = 1;
    * ``weighting="yang"`` — Yang et al. (2019)'s cost mask, from the
      ``decision`` epoch's start t_go and dt: 0 for the first 100 ms, 1 until
      t_go, 0 for 100 ms after it, then 5 (his ``pre_offs = t_go``,
      ``post_ons = t_go + 100 ms``). A step's weight multiplies the error
      inside the square in :func:`neuroalrnn.training.task_loss`'s ``"yang"``
      loss, as in his code.

    Steps in the ``decision`` epoch are then multiplied by ``decision_weight``.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer) or n_trials <= 0:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not decision_weight >= 0:  # also rejects NaN
        raise ValueError(f"decision_weight must be >= 0, got {decision_weight}")
    base = env.unwrapped
    if seed is not None:
        base.seed(int(seed))
    interface = task_interface(env)
    target_kind = interface.target_kind
    task_names = interface.task_names or (task_name,)

    observations, ground_truths, epochs, trial_infos = [], [], [], []
    epoch_names: list[str] = list(interface.epoch_names)
    for _ in range(n_trials):
        trial = base.new_trial()
        ob = np.asarray(base.ob, dtype=np.float32)
        gt = np.asarray(base.gt)
        if gt.ndim != (1 if target_kind == "class" else 2):
            raise ValueError(
                f"{type(base).__name__} is a {target_kind} task but its ground truth has shape {gt.shape}; "
                "class tasks need (time,) labels, regression tasks (time, output) values"
            )
        epoch = np.full(len(ob), PAD_EPOCH, dtype=np.int16)
        periods = sorted(base.start_ind, key=lambda p: base.start_ind[p])
        for period in periods:
            start, end = base.start_ind[period], min(base.end_ind[period], len(ob))
            if end <= start:
                continue
            if period not in epoch_names:
                epoch_names.append(period)
            epoch[start:end] = epoch_names.index(period)
        observations.append(ob)
        ground_truths.append(gt)
        epochs.append(epoch)
        trial_infos.append(trial)

    n_steps = max(len(ob) for ob in observations)
    n_inputs = observations[0].shape[1]
    if len(interface.input_names) != n_inputs:
        raise ValueError(
            f"{type(base).__name__} names {len(interface.input_names)} inputs {list(interface.input_names)}, "
            f"but its observations have {n_inputs}"
        )
    inputs = np.zeros((n_trials, n_steps, n_inputs), dtype=np.float32)
    if target_kind == "class":
        targets = np.zeros((n_trials, n_steps), dtype=np.int64)
    else:
        targets = np.zeros((n_trials, n_steps, ground_truths[0].shape[1]), dtype=np.float32)
    epoch = np.full((n_trials, n_steps), PAD_EPOCH, dtype=np.int16)
    mask = np.zeros((n_trials, n_steps), dtype=bool)
    for i, (ob, gt, ep) in enumerate(zip(observations, ground_truths, epochs, strict=True)):
        inputs[i, : len(ob)] = ob
        targets[i, : len(gt)] = gt
        epoch[i, : len(ep)] = ep
        mask[i, : len(ob)] = True

    if weighting == "yang":
        decision = epoch == epoch_names.index("decision") if "decision" in epoch_names else np.zeros_like(mask)
        weight = yang_cost_mask(decision, mask, float(base.dt))
    else:
        weight = _loss_weights(epoch, mask, weighting)
    if "decision" in epoch_names:
        weight[epoch == epoch_names.index("decision")] *= decision_weight

    if len(task_names) > 1 or "task" in trial_infos[0]:
        task = _task_codes(trial_infos, task_names)
    else:
        task = np.zeros(n_trials, dtype=np.int64)
    conditions = _collect_conditions(trial_infos)
    conditions.pop("task", None)  # it is the batch's task code

    return TrialBatch(
        inputs=inputs,
        targets=targets,
        mask=mask,
        weight=weight.astype(np.float32),
        epoch=epoch,
        epoch_names=tuple(epoch_names),
        task=task,
        task_names=task_names,
        conditions=conditions,
        dt=float(base.dt),
        input_names=interface.input_names,
        output_names=interface.output_names,
        target_kind=target_kind,
        scoring=interface.scoring,
        tolerance=interface.tolerance,
        canonical_epochs=canonical_epoch_map(epoch_names, interface.canonical_epochs),
    )


def _task_codes(trials: list[dict], task_names: tuple[str, ...]) -> np.ndarray:
    names = [trial.get("task") for trial in trials]
    unknown = sorted({str(name) for name in names} - set(task_names))
    if unknown:
        raise ValueError(f"trials name tasks {unknown} outside the env's task_names {list(task_names)}")
    return np.asarray([task_names.index(name) for name in names], dtype=np.int64)


def _loss_weights(epoch: np.ndarray, mask: np.ndarray, weighting: str) -> np.ndarray:
    if weighting == "uniform":
        return mask.astype(np.float64)
    n_trials = epoch.shape[0]
    n_codes = int(epoch.max()) + 2 if epoch.size else 1  # the last bucket: valid steps outside any epoch
    code = np.where(mask, np.where(epoch < 0, n_codes - 1, epoch), 0).astype(np.int64)
    slot = np.arange(n_trials)[:, None] * n_codes + code
    counts = np.bincount(slot[mask], minlength=n_trials * n_codes).reshape(n_trials, n_codes)
    length = counts.sum(axis=1, keepdims=True)  # L, steps per trial
    n_epochs = (counts > 0).sum(axis=1, keepdims=True)  # E
    per_step = np.take_along_axis(counts, code, axis=1)  # n_e(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = length / (n_epochs * per_step)
    return np.where(mask, weight, 0.0)


def yang_cost_mask(decision: np.ndarray, mask: np.ndarray, dt: float) -> np.ndarray:
    """(trial, time) Yang et al.'s cost mask (see :func:`sample_trials`) given each trial's ``decision`` steps.

    The step counts are Yang's: ``int(100 / dt)`` unchecked and grace steps.
    """
    if not decision.any(axis=1).all():
        raise ValueError("weighting='yang' needs a 'decision' epoch (the response) in every trial")
    n_steps = decision.shape[1]
    step = np.arange(n_steps)[None, :]
    go = np.argmax(decision, axis=1)[:, None]
    skipped = int(YANG_UNCHECKED_MS / dt)
    weight = np.zeros(decision.shape, dtype=np.float64)
    weight[step >= go + skipped] = YANG_POST_RESPONSE_COST
    weight[(step >= skipped) & (step < go)] = YANG_PRE_RESPONSE_COST
    return np.where(mask, weight, 0.0)


def _collect_conditions(trials: list[dict]) -> dict[str, np.ndarray]:
    """Scalar entries of the trial dicts, one (trial,) array per key."""
    keys = [
        key
        for key in trials[0]
        if all(key in t and np.ndim(t[key]) == 0 for t in trials)
    ]
    return {key: np.asarray([t[key] for t in trials]) for key in keys}

