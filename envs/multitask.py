"""Several NeuroGym trial tasks as one environment, with a one-hot rule input per task.

:class:`MultiTaskEnv` draws a task for every trial (with configurable
weights), builds that task's trial, and appends a rule input that names the
task, as in the multi-task networks of Yang et al. (2019, Nat Neurosci 22:297).
Trials are read the way :func:`neuroalrnn.envs.trials.sample_trials` reads any
NeuroGym ``TrialEnv``: after ``env.unwrapped.new_trial()`` the env's ``ob``,
``gt``, ``start_ind`` and ``end_ind`` hold the trial.

:func:`seed_trial_env` seeds a NeuroGym env or wrapper stack so that its trials
are reproducible, including ``ScheduleEnvs`` (whose own ``seed`` gives every
scheduled env the same seed and leaves the schedule where it was).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Discrete
from neurogym.core import OBNOW, TrialEnv
from neurogym.utils import spaces
from neurogym.wrappers.block import MultiEnvs, ScheduleEnvs

from .base import TaskEnv, TaskInterface, ideal_observer_accuracy, task_interface
from .epochs import CANONICAL_EPOCHS, canonical_epoch_map
from .options import check_integer, check_number

__all__ = ["MultiTaskEnv", "seed_trial_env"]


def _seed_int(seed_sequence: np.random.SeedSequence) -> int:
    """A 32-bit integer seed (what ``np.random.RandomState`` accepts) drawn from ``seed_sequence``."""
    return int(seed_sequence.generate_state(1, dtype=np.uint32)[0])


def seed_trial_env(env: Any, seed: int | np.random.SeedSequence | None) -> None:
    """Seed a NeuroGym ``TrialEnv``, or a wrapper stack over one, so its trials are reproducible.

    * a ``TrialEnv``, or a wrapper whose class defines ``seed``: its ``seed``;
    * ``ScheduleEnvs`` / ``MultiEnvs``: every scheduled env gets its own seed
      (NeuroGym's ``ScheduleEnvs.seed`` gives them all the same one, so two
      modalities would draw the same conditions in turn), the schedule is
      re-seeded and restarted, and the first env is made current again;
    * any other gymnasium wrapper: the env it wraps.

    Seeds are derived with ``numpy.random.SeedSequence``, so the same ``seed``
    gives the same trials whatever state the env was in.
    """
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    if isinstance(env, ScheduleEnvs | MultiEnvs):
        schedule_seed, *child_seeds = sequence.spawn(1 + len(env.envs))
        for child, child_seed in zip(env.envs, child_seeds, strict=True):
            seed_trial_env(child, child_seed)
        schedule = vars(env).get("schedule")
        if schedule is not None:
            schedule.seed(_seed_int(schedule_seed))
            schedule.reset()
        env.set_i(0)
        if "next_i_env" in vars(env):
            env.next_i_env = 0
    elif isinstance(env, TrialEnv) or callable(getattr(type(env), "seed", None)):
        env.seed(_seed_int(sequence))
    elif isinstance(env, gymnasium.Wrapper):
        seed_trial_env(env.env, sequence)
    else:
        raise TypeError(f"cannot seed {env!r}: it is neither a NeuroGym TrialEnv nor a wrapper over one")


def _period_order(base: TrialEnv) -> list[str]:
    """The env's current periods by start, ties (zero-length periods) in the order they were added."""
    names = list(base.start_ind)
    return sorted(names, key=lambda name: (base.start_ind[name], names.index(name)))


def _merge_orders(orders: list[list[str]], rank: Mapping[str, int] | None = None) -> tuple[str, ...]:
    """One order of all names that respects each given order where they agree.

    A topological sort of the "comes before" relations of every list; among
    names that may come next, the lowest ``rank`` wins, then the one seen
    first. Contradicting orders fall back to first appearance.
    """
    rank = rank or {}
    first_seen: dict[str, int] = {}
    for order in orders:
        for name in order:
            first_seen.setdefault(name, len(first_seen))
    before: dict[str, set[str]] = {name: set() for name in first_seen}
    for order in orders:
        for earlier, later in zip(order, order[1:], strict=False):
            if earlier != later:
                before[later].add(earlier)
    merged: list[str] = []
    while len(merged) < len(first_seen):
        ready = [name for name in first_seen if name not in merged and before[name] <= set(merged)]
        if not ready:  # the orders contradict each other
            return tuple(first_seen)
        merged.append(min(ready, key=lambda name: (rank.get(name, len(rank)), first_seen[name])))
    return tuple(merged)


def _group_labels(labels: tuple[str, ...]) -> dict[str, Any]:
    """A NeuroGym ``name`` dict from labels: ``mod1_0, mod1_1`` -> ``{"mod1": [1, 2]}``, others alone."""
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        prefix, _, suffix = label.rpartition("_")
        key = prefix if prefix and suffix.isdigit() else label
        groups.setdefault(key, []).append(index)
    return {key: indices[0] if len(indices) == 1 else indices for key, indices in groups.items()}


class MultiTaskEnv(TaskEnv):
    """Trials of several tasks in one env: shared inputs and outputs, plus a one-hot rule input.

    Inputs: the sub-tasks' common observation (K dimensions), then one rule
    input per task in the order of ``envs`` (``rule_<task>``), 1 for the
    trial's task on every step of the trial. Outputs: the sub-tasks' common
    actions. Targets, epochs (the sub-task's own names, zero-length
    ones dropped) and the trial dict come from the sub-task; the trial dict
    also holds ``"task"``.

    Stepping (gymnasium use) delegates to the current sub-task's own
    ``_step``, so each task keeps NeuroGym's rewards. Sub-tasks that change
    their observation online in ``_step`` are not supported: the observation
    is the pre-built trial's.

    Args:
        envs: ordered mapping task name -> NeuroGym ``TrialEnv`` or a wrapper
            over one (e.g. ``ScheduleEnvs``). All must share ``dt``, the
            observation size and the number of actions.
        weights: task name -> sampling weight; tasks left out weigh 1, as in
            Yang et al.'s ``rule_prob_map``. ``None``: uniform.
        input_names: labels of the K shared inputs; default: the first
            sub-task's ``input_names``, else its observation space's names.
        output_names: labels of the actions; default likewise.
        canonical_epochs: epoch name -> canonical epoch (see
            :mod:`neuroalrnn.envs.epochs`), over what sub-tasks declare in
            their own ``canonical_epochs``.
        tags: the env's ``metadata["tags"]``, in NeuroGym's vocabulary.
        input_noise: standard deviation of Gaussian noise added to every input,
            rule inputs included, at every step (drawn from this env's own
            generator); 0: none. When positive, each trial dict records it as
            ``"input_noise"``.
        trials_per_draw: consecutive trials that share one task draw (Yang
            et al. train on batches of one task); a block starts at every
            ``seed``. A trial whose task is pinned (``new_trial(task=...)``)
            leaves the block as it is. 1: every trial draws its task.

    Sub-tasks with a discrete action space give this env the same number of
    discrete actions; sub-tasks with a continuous (``Box``) action space must
    all share its shape, and this env takes it.

    The sub-tasks' task interfaces (:func:`~neuroalrnn.envs.base.task_interface`)
    must agree on ``scoring``, ``target_kind`` and ``tolerance``, which become this env's.

    Attributes:
        task_names: tuple of task names; position = index of the rule input.
        task: the current trial's task name.
        epoch_names: every epoch name of the sub-tasks, in an order that
            respects each task's order.
        canonical_epochs: epoch name -> canonical epoch, for every epoch name.
        input_names, output_names: per-dimension labels.
        probabilities: (task,) sampling probability of each task.
    """

    def __init__(
        self,
        envs: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        *,
        input_names: tuple[str, ...] | None = None,
        output_names: tuple[str, ...] | None = None,
        canonical_epochs: Mapping[str, str] | None = None,
        tags: Sequence[str] = ("supervised",),
        input_noise: float = 0.0,
        trials_per_draw: int = 1,
    ) -> None:
        if not isinstance(envs, Mapping) or not envs:
            raise ValueError(f"envs must be a non-empty mapping task name -> TrialEnv, got {envs!r}")
        bad_names = [name for name in envs if not isinstance(name, str) or not name]
        if bad_names:
            raise ValueError(f"task names must be non-empty strings, got {bad_names}")
        self.task_names = tuple(envs)
        self.envs = dict(envs)
        bases = {name: self._base(name) for name in self.task_names}
        first = self.task_names[0]
        dt = bases[first].dt
        n_inputs, n_actions = self._sizes(first)
        for name in self.task_names[1:]:
            if bases[name].dt != dt:
                raise ValueError(f"task {name!r} has dt={bases[name].dt}, but {first!r} has dt={dt}; all must match")
            inputs, actions = self._sizes(name)
            if inputs != n_inputs:
                raise ValueError(
                    f"task {name!r} has {inputs} observation dimensions, but {first!r} has {n_inputs}; all must match"
                )
            if actions != n_actions:
                raise ValueError(f"task {name!r} has {actions} actions, but {first!r} has {n_actions}; all must match")
        interfaces = {name: task_interface(self.envs[name]) for name in self.task_names}
        for field in ("scoring", "target_kind", "tolerance"):
            declared_values = {name: getattr(interface, field) for name, interface in interfaces.items()}
            if len(set(declared_values.values())) > 1:
                raise ValueError(f"the tasks must share one {field}; they declare {declared_values}")
        super().__init__(dt=dt)
        self.metadata = {**type(self).metadata, "tags": list(tags)}
        self.scoring = interfaces[first].scoring
        self.target_kind = interfaces[first].target_kind
        self.tolerance = interfaces[first].tolerance
        self.input_noise = check_number("input_noise", input_noise, 0.0)
        self.trials_per_draw = check_integer("trials_per_draw", trials_per_draw, 1)
        self._block_task, self._block_left = first, 0
        self.n_shared_inputs = n_inputs
        filled = self._filled_weights(weights)
        if sum(filled) <= 0:
            raise ValueError(f"weights must not all be zero, got {dict(weights or {})}")
        self.weights = dict(zip(self.task_names, filled, strict=True))
        self.probabilities = np.asarray(filled) / sum(filled)

        first_env = self.envs[first]
        shared_inputs = tuple(input_names if input_names is not None else interfaces[first].input_names)
        if len(shared_inputs) != n_inputs:
            raise ValueError(f"input_names has {len(shared_inputs)} labels, but the tasks have {n_inputs} inputs")
        self.input_names = shared_inputs + tuple(f"rule_{name}" for name in self.task_names)
        self.output_names = tuple(output_names if output_names is not None else interfaces[first].output_names)
        if len(self.output_names) != n_actions:
            raise ValueError(
                f"output_names has {len(self.output_names)} labels, but the tasks have {n_actions} actions"
            )
        self.observation_space = spaces.Box(
            -np.inf, np.inf, shape=(len(self.input_names),), dtype=np.float32, name=_group_labels(self.input_names)
        )
        action_names = getattr(first_env.action_space, "name", None)
        if isinstance(first_env.action_space, Discrete):
            self.action_space = spaces.Discrete(n_actions, name=action_names)
        else:
            first_space = first_env.action_space
            self.action_space = spaces.Box(
                first_space.low, first_space.high, shape=first_space.shape, dtype=first_space.dtype, name=action_names
            )

        epoch_orders = [self._declared_epochs(name, interfaces[name]) for name in self.task_names]
        declared: dict[str, str] = {}
        for name in self.task_names:
            for epoch, canonical in interfaces[name].canonical_epochs.items():
                if declared.setdefault(epoch, canonical) != canonical:
                    raise ValueError(
                        f"task {name!r} maps epoch {epoch!r} to {canonical!r}, another task to {declared[epoch]!r}"
                    )
        declared.update(canonical_epochs or {})
        canonical = canonical_epoch_map({name for order in epoch_orders for name in order}, declared)
        # between epochs no task orders, the canonical order decides (stimulus before delay ...)
        self.epoch_names = _merge_orders(
            epoch_orders, {name: CANONICAL_EPOCHS.index(value) for name, value in canonical.items()}
        )
        self.canonical_epochs = canonical_epoch_map(self.epoch_names, declared)
        self._declared_canonical = declared
        self.task = first
        one_hot = np.eye(len(self.task_names), dtype=np.float32)
        self._rule = dict(zip(self.task_names, one_hot, strict=True))

    def _post_init(self, allow_empty_timing: bool = True) -> None:
        # Timing lives in the sub-tasks; this env has none of its own.
        super()._post_init(allow_empty_timing=allow_empty_timing)

    # -------------------------------------------------------------- helpers

    def _base(self, name: str) -> TrialEnv:
        env = self.envs[name]
        base = getattr(env, "unwrapped", None)
        if not isinstance(base, TrialEnv) or not callable(getattr(type(env), "new_trial", None)):
            raise ValueError(f"task {name!r} is not a NeuroGym TrialEnv or a wrapper over one: {env!r}")
        return base

    def _sizes(self, name: str) -> tuple[int, int]:
        env = self.envs[name]
        shape = env.observation_space.shape
        if shape is None or len(shape) != 1:
            raise ValueError(f"task {name!r} has observation shape {shape}; only 1-D observations are supported")
        actions, first = env.action_space, self.envs[self.task_names[0]].action_space
        if isinstance(actions, Discrete | Box) and type(actions) is not type(first):
            raise ValueError(f"task {name!r} has action space {actions}, but {self.task_names[0]!r} has {first}")
        if isinstance(actions, Discrete):
            return int(shape[0]), int(actions.n)
        if isinstance(actions, Box) and actions.shape is not None and len(actions.shape) == 1:
            return int(shape[0]), int(actions.shape[0])
        raise ValueError(
            f"task {name!r} has action space {actions}; only discrete actions or 1-D boxes are supported"
        )

    def _declared_epochs(self, name: str, interface: TaskInterface) -> list[str]:
        """The task's epoch names: its ``epoch_names`` if it declares them, else a probe trial's non-empty ones."""
        if interface.epoch_names:
            return list(interface.epoch_names)
        self.envs[name].new_trial()
        base = self._base(name)  # after the trial: a wrapper may have switched envs
        return [p for p in _period_order(base) if base.end_ind[p] > base.start_ind[p]]

    def _filled_weights(self, weights: Mapping[str, float] | None) -> list[float]:
        if weights is None:
            return [1.0] * len(self.task_names)
        if not isinstance(weights, Mapping):
            raise ValueError(f"weights must be a mapping task name -> weight or None, got {weights!r}")
        unknown = [name for name in weights if name not in self.task_names]
        if unknown:
            raise ValueError(f"weights name unknown tasks {unknown}; valid tasks: {list(self.task_names)}")
        return [check_number(f"weights[{name!r}]", weights.get(name, 1.0), 0.0) for name in self.task_names]

    def ideal_observer_accuracy(self, batch: Any) -> np.ndarray | None:
        """(trial,) each trial's ideal-observer accuracy by its sub-task (NaN where none); None if no task has one.

        The trials of each task (``batch.task``) go, as one sub-batch, to that
        sub-task's ``ideal_observer_accuracy``.
        """
        accuracy = np.full(batch.n_trials, np.nan)
        defined = False
        for code, name in enumerate(self.task_names):
            rows = np.flatnonzero(np.asarray(batch.task) == code)
            if rows.size:
                sub = ideal_observer_accuracy(self.envs[name], batch.take(rows))
                if sub is not None:
                    accuracy[rows], defined = sub, True
        return accuracy if defined else None

    # ---------------------------------------------------------- the trials

    def seed(self, seed: int | None = None) -> list:
        """Seed task choice and every sub-task, with seeds derived from ``seed`` (``SeedSequence``)."""
        own, *children = np.random.SeedSequence(seed).spawn(1 + len(self.task_names))
        super().seed(_seed_int(own))
        self._block_left = 0
        for name, child in zip(self.task_names, children, strict=True):
            seed_trial_env(self.envs[name], child)
        return [seed]

    def _new_trial(self, task: str | None = None, **kwargs):
        """Draw a task (or use ``task``) and build its trial; ``kwargs`` go to the sub-task's ``new_trial``."""
        if task is None:
            if self._block_left == 0:
                self._block_task = self.task_names[self.rng.choice(len(self.task_names), p=self.probabilities)]
                self._block_left = self.trials_per_draw
            self._block_left -= 1
            task = self._block_task
        elif task not in self.envs:
            raise ValueError(f"unknown task {task!r}; valid tasks: {list(self.task_names)}")
        env = self.envs[task]
        sub_trial = env.new_trial(**kwargs)
        base = env.unwrapped  # for ScheduleEnvs, the env that just built the trial
        ob = np.asarray(base.ob, dtype=np.float32)
        if ob.ndim != 2 or ob.shape[1] != self.n_shared_inputs:
            raise RuntimeError(
                f"task {task!r} built observations of shape {ob.shape}, expected (time, {self.n_shared_inputs})"
            )
        rule = np.broadcast_to(self._rule[task], (len(ob), len(self.task_names)))
        self.ob = np.concatenate([ob, rule], axis=1)
        if self.input_noise > 0:
            self.ob += (self.rng.standard_normal(self.ob.shape) * self.input_noise).astype(self.ob.dtype)
        self.gt = np.array(base.gt, copy=True)
        self._ob_built = self._gt_built = True

        periods = [p for p in _period_order(base) if base.end_ind[p] > base.start_ind[p]]
        self.start_ind = {p: base.start_ind[p] for p in periods}
        self.end_ind = {p: base.end_ind[p] for p in periods}
        self.start_t = {p: base.start_t[p] for p in periods}
        self.end_t = {p: base.end_t[p] for p in periods}
        self._duration = {p: self.end_t[p] - self.start_t[p] for p in periods}
        self._tmax, self.tmax = base.tmax, base.tmax
        new_epochs = [p for p in periods if p not in self.epoch_names]
        if new_epochs:  # a period the probe trial did not show
            self.epoch_names = (*self.epoch_names, *new_epochs)
            self.canonical_epochs = canonical_epoch_map(self.epoch_names, self._declared_canonical)

        self.task = task
        base.performance = 0
        noise = {"input_noise": self.input_noise} if self.input_noise > 0 else {}
        return {**sub_trial, **noise, "task": task}

    def _step(self, action):
        base = self.envs[self.task].unwrapped
        base.t, base.t_ind = self.t, self.t_ind  # the sub-task judges the action at our time
        _, reward, terminated, truncated, info = base._step(action)  # noqa: SLF001
        self.performance = base.performance
        return OBNOW, reward, terminated, truncated, {**info, "task": self.task}
