"""What every re-implemented Yang et al. (2019) task shares: timing draws, blocks, inputs, targets, conditions.

Yang GR, Joglekar MR, Song HF, Newsome WT, Wang X-J (2019). Task
representations in neural networks trained to perform many cognitive tasks.
Nature Neuroscience 22, 297-306. The facts restated here come from the
authors' code (github.com/gyyang/multitask, ``task.py``, ``mode='random'``).

A task is a list of epochs, each lasting a duration drawn independently in
ms and floored to whole steps (``int(ms / dt)``, one epoch at a time, as the
original does), the last one ``decision``. Yang draws the timing (and, in
most tasks, the stimulus modality) once per batch; ``trials_per_draw`` trials
in a row share those draws here, and every ``seed`` starts a new block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from neurogym.utils import spaces

from ..base import TaskEnv
from ..options import check_integer, check_number
from .ring import FIXATE_TARGET, TARGET_BASELINE, bump, nearest_unit, ring_choice_correct

__all__ = [
    "CONDITION_NAMES", "DURATION_EPOCHS", "EPOCH_TO_CANONICAL", "Stimulus", "YangTask", "check_direction", "check_dt",
    "check_modality",
]  # fmt: skip

# Every epoch name of the 20 tasks -> its canonical epoch (neuroalrnn.envs.epochs).
EPOCH_TO_CANONICAL = {
    "fixation": "fixation", "stimulus": "stimulus", "stim1": "stimulus", "delay1": "delay", "stim2": "stimulus",
    "delay2": "delay", "sample": "stimulus", "delay": "delay", "decision": "decision",
}  # fmt: skip
DURATION_EPOCHS = tuple(EPOCH_TO_CANONICAL)
# Conditions every trial of every task records (NaN where a task has no such thing), so that
# they survive in a batch mixing tasks; plus "<epoch>_ms" for each of DURATION_EPOCHS (0 if absent).
CONDITION_NAMES = (
    "stim_theta", "stim1_theta", "stim2_theta", "sample_theta", "test_theta",
    "stim1_mod1_strength", "stim2_mod1_strength", "stim1_mod2_strength", "stim2_mod2_strength",
    "coherence", "modality", "sample_modality", "test_modality", "match", "go", "response_theta",
)  # fmt: skip
MAX_DT = 100  # ms: Yang's shortest interval (the unscored 100 ms after the go cue) must last a step


def check_dt(dt: Any) -> int:
    """``dt`` as an int; ``ValueError`` unless it is a whole number of ms in (0, 100]."""
    if not check_number("dt", dt, 0.0, low_open=True).is_integer():
        raise ValueError(f"dt must be a whole number of ms > 0, got {dt!r}")
    if dt > MAX_DT:
        raise ValueError(f"dt must be at most {MAX_DT} ms (Yang's shortest interval is 100 ms), got {dt!r}")
    return int(dt)


@dataclass(frozen=True)
class Stimulus:
    """A bump of ``strength`` at ``theta`` on ring ``modality`` (1 or 2) over steps [start, stop); None: to the end."""

    modality: int
    theta: float
    strength: float
    start: int
    stop: int | None


class YangTask(TaskEnv):
    """Base of the Yang et al. tasks: subclasses declare timing and variables, and design each trial.

    Inputs (``1 + 2·n_ring``): ``fixation`` (1 while the network must hold
    fixation: until the ``decision`` epoch, or the whole trial in the
    reaction-time and matching tasks), ring ``mod1_0 …`` and ring ``mod2_0 …``
    (bumps, :func:`~neuroalrnn.envs.yang.ring.bump`), plus N(0, ``input_noise``)
    on every input at every step (0 by default: the suite adds Yang's noise
    after appending the rule inputs, so that they get it too).
    Outputs and targets (``1 + n_ring``, regression, scoring ``"ring"``):
    ``fixate`` 0.8 until the ``decision`` epoch (the whole trial in a no-go
    trial), then 0.05; ``choice_k`` 0.05, plus the response bump from the start
    of ``decision`` on in a go trial.

    Subclasses set ``timing_spec`` (epoch -> duration in ms: a number,
    ``("uniform", (low, high))`` or ``("choice", values)``; the last epoch is
    ``decision``), ``block_variables`` and ``trial_variables`` (names that
    ``_draw_block``/``_draw_trial`` draw), ``fixation_to_end``, and
    ``_design(values, starts) -> (stimuli, response_theta, conditions)``.

    ``new_trial(**pinned)`` pins any variable or epoch duration (``<epoch>_ms``)
    for that trial; everything is still drawn, so pinning does not shift the
    random stream. The trial dict holds :data:`CONDITION_NAMES`, ``<epoch>_ms``
    for every epoch of :data:`DURATION_EPOCHS` (0 where the task has none) and
    ``ground_truth`` (0: fixate; else 1 + the ring unit nearest the response).
    """

    metadata = {  # noqa: RUF012
        "paper_link": "https://doi.org/10.1038/s41593-018-0310-2",
        "paper_name": "Task representations in neural networks trained to perform many cognitive tasks",
        "tags": ["supervised", "continuous action space", "multidimensional action space"],
        "render_modes": [],
    }
    target_kind = "regression"
    scoring = "ring"
    tolerance = 0.0  # unused: the ring read-out's tolerance is an angle (ring.RESPONSE_TOLERANCE)
    timing_spec: Mapping[str, Any] = {}  # noqa: RUF012
    block_variables: tuple[str, ...] = ()
    trial_variables: tuple[str, ...] = ()
    fixation_to_end = False

    def __init__(self, dt: int = 20, n_ring: int = 32, trials_per_draw: int = 1, input_noise: float = 0.0) -> None:
        super().__init__(dt=check_dt(dt))
        self.n_ring = check_integer("n_ring", n_ring, 2)
        self.trials_per_draw = check_integer("trials_per_draw", trials_per_draw, 1)
        self.input_noise = check_number("input_noise", input_noise, 0.0)
        self.timing = dict(self.timing_spec)
        self.epoch_names = tuple(self.timing_spec)
        self.canonical_epochs = {name: EPOCH_TO_CANONICAL[name] for name in self.epoch_names}
        ring = range(self.n_ring)
        self.input_names = ("fixation", *(f"mod1_{i}" for i in ring), *(f"mod2_{i}" for i in ring))
        self.output_names = ("fixate", *(f"choice_{i}" for i in ring))
        names = {"fixation": 0, "mod1": [1 + i for i in ring], "mod2": [1 + self.n_ring + i for i in ring]}
        shape = (len(self.input_names),)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32, name=names)
        outputs = {"fixate": 0, "choice": [1 + i for i in ring]}
        self.action_space = spaces.Box(0.0, 1.0, shape=(1 + self.n_ring,), dtype=np.float32, name=outputs)
        self._block: dict[str, Any] = {}
        self._draws_left = 0
        self._pinned: frozenset[str] = frozenset()  # what the trial being built pins

    @property
    def pinnable(self) -> tuple[str, ...]:
        """The names ``new_trial`` accepts: variables and ``<epoch>_ms`` durations."""
        return (*self.trial_variables, *self.block_variables, *(f"{epoch}_ms" for epoch in self.epoch_names))

    def seed(self, seed: int | None = None) -> list:
        """Seed the trials; the next trial starts a new block of ``trials_per_draw`` trials."""
        self._draws_left = 0
        return super().seed(seed)

    # -------------------------------------------------------- what subclasses give

    def _draw_block(self, rng: np.random.RandomState) -> dict[str, Any]:
        return {}

    def _draw_trial(self, rng: np.random.RandomState) -> dict[str, Any]:
        raise NotImplementedError

    def _design(self, values: dict[str, Any], starts: dict[str, int]) -> tuple[list[Stimulus], float, dict]:
        raise NotImplementedError

    # ------------------------------------------------------------------ trials

    def _draw_timing(self, rng: np.random.RandomState) -> dict[str, float]:
        durations = {}
        for epoch, spec in self.timing_spec.items():
            if isinstance(spec, tuple) and spec[0] == "uniform":
                durations[f"{epoch}_ms"] = float(rng.uniform(*spec[1]))
            elif isinstance(spec, tuple) and spec[0] == "choice":
                durations[f"{epoch}_ms"] = float(rng.choice(spec[1]))
            else:
                durations[f"{epoch}_ms"] = float(spec)
        return durations

    def _new_trial(self, **pinned: Any) -> dict[str, Any]:
        unknown = sorted(set(pinned) - set(self.pinnable))
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; valid: {list(self.pinnable)}")
        if self._draws_left == 0:
            self._block = {**self._draw_timing(self.rng), **self._draw_block(self.rng)}
            self._draws_left = self.trials_per_draw
        self._draws_left -= 1
        values = {**self._block, **self._draw_trial(self.rng), **pinned}
        self._pinned = frozenset(pinned)
        steps = {}
        for epoch in self.epoch_names:
            key = f"{epoch}_ms"
            steps[epoch] = int(check_number(key, values[key], 0.0) / self.dt)
        if steps["decision"] < 1:
            raise ValueError(
                f"decision_ms must last at least one step of dt = {self.dt} ms, got {values['decision_ms']!r}"
            )
        starts = dict(zip(self.epoch_names, np.cumsum([0, *steps.values()])[:-1].tolist(), strict=True))
        stimuli, response_theta, conditions = self._design(values, starts)

        self.add_period(list(self.epoch_names), duration=[steps[epoch] * self.dt for epoch in self.epoch_names])
        ob = self.view_ob()
        n_steps, decision = len(ob), starts["decision"]
        ob[: n_steps if self.fixation_to_end else decision, 0] = 1.0
        for stimulus in stimuli:
            rings = slice(1 + (stimulus.modality - 1) * self.n_ring, 1 + stimulus.modality * self.n_ring)
            ob[stimulus.start : stimulus.stop, rings] += stimulus.strength * bump(stimulus.theta, self.n_ring)
        if self.input_noise > 0:
            ob += (self.rng.standard_normal(ob.shape) * self.input_noise).astype(ob.dtype)
        go = not np.isnan(response_theta)
        self.set_groundtruth(TARGET_BASELINE)
        self.gt[: decision if go else n_steps, 0] = FIXATE_TARGET
        if go:
            self.gt[decision:, 1:] += bump(response_theta, self.n_ring).astype(self.gt.dtype)

        trial: dict[str, Any] = dict.fromkeys(CONDITION_NAMES, np.nan)
        trial.update({f"{epoch}_ms": 0.0 for epoch in DURATION_EPOCHS})
        trial.update({f"{epoch}_ms": float(steps[epoch] * self.dt) for epoch in self.epoch_names})
        trial.update(conditions, go=float(go), response_theta=float(response_theta))
        trial["ground_truth"] = int(1 + nearest_unit(response_theta, self.n_ring)) if go else 0
        return trial

    def _step(self, action):
        """Reward 1 at the trial's last step if the output is correct by Yang's read-out (ring_choice_correct)."""
        reward = 0.0
        if self.t_ind >= len(self.gt) - 1:
            self.performance = float(ring_choice_correct(np.asarray(action), self.gt[-1]))
            reward = self.performance
        return self.ob[self.t_ind], reward, False, False, {"new_trial": False, "gt": self.gt_now}


def check_modality(name: str, value: Any) -> int:
    """``value`` as 1 or 2; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or value not in (1, 2):
        raise ValueError(f"{name} must be 1 or 2, got {value!r}")
    return int(value)


def check_direction(name: str, value: Any) -> float:
    """``value`` as a direction in [0, 2π); ``ValueError`` naming ``name`` unless it is a finite number (radians)."""
    return float(np.mod(check_number(name, value), 2 * np.pi))
