"""Sample whole trials from a NeuroGym TrialEnv into padded, batch-major arrays.

``ngym.Dataset`` concatenates trials and drops their boundaries and epochs, so
trials are built here from ``env.unwrapped.new_trial()`` and the env's
``ob``/``gt``/``start_ind``/``end_ind``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

__all__ = ["WEIGHTINGS", "TrialBatch", "sample_trials", "target_at_last_step"]

WEIGHTINGS = ("epoch", "uniform")
PAD_EPOCH = -1


@dataclass(frozen=True)
class TrialBatch:
    """N trials as padded arrays, batch-major (trial, time, ...).

    Attributes:
        inputs: (trial, time, input) float32; zero after a trial ends.
        targets: (trial, time) int64 class labels (0 after a trial ends).
        mask: (trial, time) bool, True on a trial's valid steps.
        weight: (trial, time) float32 per-step loss weight (0 where masked).
        epoch: (trial, time) int16 index into ``epoch_names``; -1 where masked.
        epoch_names: ordered epoch names.
        task: (trial,) int64 index into ``task_names``.
        task_names: task names.
        conditions: per-trial conditions, name -> (trial,) array.
        dt: time step in ms.
        input_names, output_names: labels of the input and output dimensions.
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

    def epoch_mask(self, name: str) -> np.ndarray:
        """(trial, time) bool: the steps that belong to epoch ``name``."""
        if name not in self.epoch_names:
            raise ValueError(f"no epoch {name!r}; epochs: {list(self.epoch_names)}")
        return self.epoch == self.epoch_names.index(name)

    def correct_choice(self, decision_epoch: str = "decision") -> np.ndarray:
        """(trial,) the target label of each trial's last decision step."""
        return target_at_last_step(self.targets, self.epoch_mask(decision_epoch), decision_epoch)


def target_at_last_step(targets: np.ndarray, in_epoch: np.ndarray, epoch_name: str = "decision") -> np.ndarray:
    """(trial,) ``targets`` (trial, time) at each trial's last step where ``in_epoch`` is True."""
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
    * ``weighting="uniform"`` — w_t = 1.

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

    observations, ground_truths, epochs, trial_infos = [], [], [], []
    epoch_names: list[str] = list(getattr(base, "epoch_names", ()))
    for _ in range(n_trials):
        trial = base.new_trial()
        ob = np.asarray(base.ob, dtype=np.float32)
        gt = np.asarray(base.gt)
        if gt.ndim != 1:
            raise ValueError("only discrete (class-label) ground truths are supported so far")
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
    inputs = np.zeros((n_trials, n_steps, n_inputs), dtype=np.float32)
    targets = np.zeros((n_trials, n_steps), dtype=np.int64)
    epoch = np.full((n_trials, n_steps), PAD_EPOCH, dtype=np.int16)
    mask = np.zeros((n_trials, n_steps), dtype=bool)
    for i, (ob, gt, ep) in enumerate(zip(observations, ground_truths, epochs, strict=True)):
        inputs[i, : len(ob)] = ob
        targets[i, : len(gt)] = gt
        epoch[i, : len(ep)] = ep
        mask[i, : len(ob)] = True

    weight = _loss_weights(epoch, mask, weighting)
    if "decision" in epoch_names:
        weight[epoch == epoch_names.index("decision")] *= decision_weight

    return TrialBatch(
        inputs=inputs,
        targets=targets,
        mask=mask,
        weight=weight.astype(np.float32),
        epoch=epoch,
        epoch_names=tuple(epoch_names),
        task=np.zeros(n_trials, dtype=np.int64),
        task_names=(task_name,),
        conditions=_collect_conditions(trial_infos),
        dt=float(base.dt),
        input_names=tuple(getattr(base, "input_names", _space_names(base.observation_space, n_inputs))),
        output_names=tuple(getattr(base, "output_names", _space_names(base.action_space, None))),
    )


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


def _collect_conditions(trials: list[dict]) -> dict[str, np.ndarray]:
    """Scalar entries of the trial dicts, one (trial,) array per key."""
    keys = [
        key
        for key in trials[0]
        if all(key in t and np.ndim(t[key]) == 0 for t in trials)
    ]
    return {key: np.asarray([t[key] for t in trials]) for key in keys}


def _space_names(space, size: int | None) -> tuple[str, ...]:
    """Per-dimension labels from a NeuroGym space's ``name`` dict."""
    size = size if size is not None else int(getattr(space, "n", 0))
    labels = [str(i) for i in range(size)]
    for name, where in (getattr(space, "name", None) or {}).items():
        indices = [where] if np.ndim(where) == 0 else list(where)
        for k, index in enumerate(indices):
            labels[int(index)] = name if len(indices) == 1 else f"{name}_{k}"
    return tuple(labels)
