"""The task interface: what a trial-based task declares beyond NeuroGym's ``TrialEnv``.

The sampler (:func:`~neuroalrnn.envs.trials.sample_trials`), the multi-task
env and everything downstream need to know more about a task than NeuroGym
records: its epochs, how its targets are read and scored, and names for its
input and output dimensions. Our tasks declare these on :class:`TaskEnv`;
:func:`task_interface` reads them from any env in one place, supplying
:class:`TaskEnv`'s defaults for NeuroGym environments that do not inherit
from it (``neurogym:<EnvId>`` tasks and Yang et al.'s sub-tasks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from gymnasium.spaces import Discrete
from neurogym.core import TrialEnv

__all__ = [
    "REGRESSION_SCORINGS", "SCORINGS", "TARGET_KINDS", "TaskEnv", "TaskInterface", "ideal_observer_accuracy",
    "space_labels", "task_interface",
]  # fmt: skip

TARGET_KINDS = ("class", "regression")
SCORINGS = ("choice", "steps", "regression", "ring")
REGRESSION_SCORINGS = ("regression", "ring")


class TaskEnv(TrialEnv):
    """A NeuroGym ``TrialEnv`` that declares the task interface.

    A subclass overrides these class attributes, at class level or in
    ``__init__`` where they depend on its options; the values here are the
    defaults, and also what :func:`task_interface` assumes of a NeuroGym env
    that is not a ``TaskEnv``.

    Attributes:
        epoch_names: ordered epoch names; every scored task has a ``decision``
            epoch, the steps where the output is scored. ``()``: the epochs
            are learnt from the trials as they come.
        canonical_epochs: epoch name -> canonical epoch (the vocabulary of
            :mod:`neuroalrnn.envs.epochs`); names left out fall back to the
            common epoch names, then to ``other``.
        target_kind: ``"class"`` (``gt`` is (time,) integer class labels) or
            ``"regression"`` (``gt`` is (time, output) float32 values).
        scoring: how a trial counts as correct over its ``decision`` epoch:
            ``"choice"`` (the majority vote of the argmax equals the target at
            the epoch's last step), ``"steps"`` (the fraction of decision steps
            whose argmax equals that step's target) or ``"regression"``
            (every output at every decision step within ``tolerance`` of its
            target: |error| < tolerance).
        tolerance: the regression tolerance; unused (0.0) for class targets.
        input_names, output_names: one label per input (observation) and
            output (action) dimension. ``()``: read from the spaces' NeuroGym
            ``name`` dicts (:func:`space_labels`).
        task_names: the sub-tasks of a multi-task env, in the order of their
            rule inputs; each trial dict then holds ``"task"``. ``()``: one task.
        metadata: Gymnasium/NeuroGym metadata; ``tags`` use NeuroGym's
            vocabulary (``neurogym.utils.info.all_tags()``).
    """

    metadata: dict[str, Any] = {"render_modes": [], "tags": ["supervised"]}  # noqa: RUF012
    epoch_names: tuple[str, ...] = ()
    canonical_epochs: Mapping[str, str] = MappingProxyType({})
    target_kind: str = "class"
    scoring: str = "choice"
    tolerance: float = 0.0
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    task_names: tuple[str, ...] = ()

    def ideal_observer_accuracy(self, batch: Any) -> np.ndarray | None:
        """(trial,) the probability that an ideal observer answers each trial of ``batch`` correctly; None: not defined.

        A task with noisy evidence overrides this: the observer knows the
        task's generative model (its conditions' distribution, the noise, the
        timing) and sees the trial's noisy inputs, so its accuracy is the
        ceiling no network can beat. ``batch`` is a
        :class:`~neuroalrnn.envs.trials.TrialBatch` sampled from this env;
        entries may be NaN for trials of a task without noisy evidence.
        """
        return None

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Gymnasium reset; a ``seed`` also re-seeds the trials (``self.seed``), so a seeded reset repeats them.

        NeuroGym's own ``reset`` seeds only Gymnasium's ``np_random``, not
        ``self.rng``, the generator NeuroGym tasks draw their trials from.
        """
        if seed is not None:
            self.seed(seed)
        return super().reset(seed=seed, options=options)


@dataclass(frozen=True)
class TaskInterface:
    """The task interface of one env, resolved: see :class:`TaskEnv` for each field's meaning.

    ``input_names`` and ``output_names`` always hold one label per dimension;
    ``canonical_epochs`` is the declared mapping (resolve a full one with
    :func:`neuroalrnn.envs.epochs.canonical_epoch_map`).
    """

    epoch_names: tuple[str, ...]
    canonical_epochs: Mapping[str, str]
    target_kind: str
    scoring: str
    tolerance: float
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    task_names: tuple[str, ...]


def ideal_observer_accuracy(env: Any, batch: Any) -> np.ndarray | None:
    """(trial,) :meth:`TaskEnv.ideal_observer_accuracy` of ``env`` (a wrapper stack is unwrapped); None for NeuroGym envs."""
    base = env.unwrapped
    if not isinstance(base, TaskEnv):
        return None
    accuracy = base.ideal_observer_accuracy(batch)
    if accuracy is None:
        return None
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.shape != (batch.n_trials,):
        raise ValueError(f"{type(base).__name__}.ideal_observer_accuracy gave shape {accuracy.shape}, "
                         f"expected ({batch.n_trials},)")
    return accuracy


def task_interface(env: Any) -> TaskInterface:
    """The task interface of ``env`` (a NeuroGym ``TrialEnv`` or a wrapper over one).

    A :class:`TaskEnv` gives what it declares; any other NeuroGym env gets
    :class:`TaskEnv`'s defaults. Empty ``input_names``/``output_names`` are
    read from ``env``'s observation and action spaces.

    Raises ``ValueError`` when the env declares a ``target_kind`` or
    ``scoring`` outside :data:`TARGET_KINDS` / :data:`SCORINGS`, or a
    regression target without regression scoring (or the reverse).
    """
    base = env.unwrapped
    declared = base if isinstance(base, TaskEnv) else TaskEnv
    target_kind, scoring = declared.target_kind, declared.scoring
    paired = (target_kind == "regression") == (scoring in REGRESSION_SCORINGS)
    if target_kind not in TARGET_KINDS or scoring not in SCORINGS or not paired:
        raise ValueError(
            f"{type(base).__name__} declares target_kind={target_kind!r}, scoring={scoring!r}; valid: "
            "target_kind 'class' with scoring 'choice' or 'steps', or 'regression' with 'regression' or 'ring'"
        )
    return TaskInterface(
        epoch_names=tuple(declared.epoch_names),
        canonical_epochs=dict(declared.canonical_epochs),
        target_kind=target_kind,
        scoring=scoring,
        tolerance=float(declared.tolerance),
        input_names=tuple(declared.input_names) or space_labels(env.observation_space),
        output_names=tuple(declared.output_names) or space_labels(env.action_space),
        task_names=tuple(declared.task_names),
    )


def space_labels(space: Any) -> tuple[str, ...]:
    """One label per dimension of a NeuroGym space, from its ``name`` dict.

    A name over one index labels that dimension (``fixation``); a name over
    several indices labels them ``<name>_0``, ``<name>_1`` ... in the order
    given; unnamed dimensions, and named indices outside the space, keep or
    get no label beyond their index (``"3"``).
    """
    size = int(space.n) if isinstance(space, Discrete) else int(np.prod(space.shape))
    labels = [str(index) for index in range(size)]
    for name, where in (getattr(space, "name", None) or {}).items():
        indices = [where] if np.ndim(where) == 0 else list(where)
        for position, index in enumerate(indices):
            if 0 <= int(index) < size:
                labels[int(index)] = name if len(indices) == 1 else f"{name}_{position}"
    return tuple(labels)
