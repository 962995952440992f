"""The 20-task suite of Yang et al. (2019) as one environment, built from NeuroGym's tasks.

Yang GR, Joglekar MR, Song HF, Newsome WT, Wang X-J (2019). Task
representations in neural networks trained to perform many cognitive tasks.
Nature Neuroscience 22, 297-306.

``yang19_suite()`` returns a :class:`~neuroalrnn.envs.multitask.MultiTaskEnv`
over NeuroGym's ``neurogym.envs.collections.yang19`` tasks. Inputs: fixation,
two modalities of ``dim_ring`` direction-tuned units each, then one rule input
per task (``1 + 2·dim_ring + n_tasks``: 53 for the ``fast`` preset with all 20
tasks, 85 for ``faithful``, Yang's layout); outputs: fixate, then one choice
per ring direction (17 and 33). The target is "fixate" (0) until the
``decision`` epoch, then the correct choice.

Epochs and their canonical epochs (:mod:`neuroalrnn.envs.epochs`):

============================ =========================================== =======================================
tasks                        epochs, in order                            canonical
============================ =========================================== =======================================
go, anti                     fixation, stimulus, decision                fixation, stimulus, decision
rtgo, rtanti                 fixation, decision (stimulus shown here)    fixation, decision
dlygo, dlyanti               fixation, stimulus, delay, decision         fixation, stimulus, delay, decision
dm1, dm2, ctxdm1, ctxdm2,    fixation, stimulus, decision                fixation, stimulus, decision
multidm
dlydm1, dlydm2, ctxdlydm1,   fixation, stim1, delay, stim2, decision     fixation, stimulus, delay, stimulus,
ctxdlydm2, multidlydm                                                    decision
dms, dnms, dmc, dnmc         fixation, sample, delay, test, decision     fixation, stimulus, delay, stimulus,
                                                                         decision
============================ =========================================== =======================================

The rule input is on for the whole trial, so no epoch is a ``context`` epoch.
In dms/dnms/dmc/dnmc, a trial whose answer is "no go" (dms: non-match; dnms:
match; likewise by category) has target fixate (0) in the decision epoch
too: the network must keep fixating although the fixation input is off.

NeuroGym pitfalls, and what this module does about them:

* go/anti/dms families are ``ScheduleEnvs`` over two per-modality envs. Its
  ``RandomSchedule`` over two envs strictly alternates the modality; its
  ``seed`` gives both modality envs the same seed (so consecutive trials repeat
  each other's conditions in pairs) and does not restart the schedule; and
  ``env.unwrapped.new_trial()`` bypasses the schedule, so the modality never
  changes. Here the modality is drawn independently on every trial, each
  modality env has its own seed, and the trial dict records ``modality``
  (1 or 2; pin it with ``new_trial(task=..., modality=...)``).
* Those per-modality envs are ``1 + dim_ring`` wide until NeuroGym's
  ``_MultiModalityStimulus`` wrapper widens them; the wrapped envs are used,
  so every task is ``1 + 2·dim_ring`` wide.
* ``dm1`` sets its own timing (stimulus 200/400/600 ms) but ``dm2``,
  ``ctxdm1``, ``ctxdm2`` and ``multidm`` keep a fixed 500 ms stimulus: all five
  use dm1's timing (:data:`DM_TIMING`) here.
* DMC/DNMC category boundary: NeuroGym gives a sample at ring index i the
  category ``i > dim_ring/2``, so a sample at π is category 0, while a test
  drawn at π is category 1; a sample and a test both at π can be labelled
  "non-match". Directions at 0 and π lie on the boundary between the two
  categories (0, π) and (π, 2π). Here trials with a sample or test direction on
  the boundary are drawn again, as in Yang et al., whose DMC directions
  (0.1π, 0.3π, ... 1.9π in github.com/gyyang/multitask, ``task.py``) never lie
  on it: each category has ``dim_ring/2 - 1`` directions, and the label always
  follows the category of the directions shown.
* multidm / multidlydm: the summed evidence for the two directions can tie
  exactly (1/8 of multidm and 1/6 of multidlydm trials), and NeuroGym then
  picks the target by ±1e-6 noise, a coin flip no network can learn. Such
  trials are drawn again.
* Fixation input: NeuroGym's DM and matching tasks switch it off when the
  ``fixation`` epoch ends, although the target stays "fixate" until the
  decision epoch; its go/anti tasks keep it on until then. Here it is on until
  the decision epoch in every task, as in Yang et al., so its offset is the go
  cue everywhere.
* ``_Reach`` (go, anti) has a 0 ms ``delay`` period; zero-length epochs are
  dropped from each trial's ``start_ind``/``end_ind``.
* Stimulus noise: DM and matching tasks add N(0, sigma/√dt) per step to the
  stimulus channels (so the per-step noise grows at small dt); the go/anti
  tasks have none and take no ``sigma``.
* DM stimuli may lie at any two distinct ring directions, neighbours included
  (their bumps then overlap); this is kept as NeuroGym has it.
* Rewards (only for gymnasium stepping) are NeuroGym's: a no-go trial of the
  matching tasks can never be rewarded, since only a non-fixate action in the
  decision epoch is judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from neurogym.core import TrialEnv, TrialWrapper
from neurogym.envs.collections import yang19 as neurogym_yang19
from neurogym.wrappers.block import ScheduleEnvs

from .multitask import MultiTaskEnv, seed_trial_env
from .options import check_integer, check_number, check_timing

__all__ = [
    "DM_TIMING", "EPOCH_TO_CANONICAL", "OVERRIDES", "PRESETS", "TAGS", "YANG19_TASKS", "YANG19_TASK_DESCRIPTIONS",
    "yang19_suite",
]  # fmt: skip

# Task name -> one line on what the network must do; the order is Yang et al.'s (and the rule inputs').
YANG19_TASK_DESCRIPTIONS = {
    "go": "at the go cue, respond in the direction of the stimulus",
    "rtgo": "reaction-time go: respond in the stimulus direction as soon as the stimulus appears",
    "dlygo": "delayed go: a brief stimulus, a delay, then respond in its direction at the go cue",
    "anti": "at the go cue, respond opposite to the stimulus direction",
    "rtanti": "reaction-time anti: respond opposite to the stimulus as soon as it appears",
    "dlyanti": "delayed anti: respond opposite to a remembered stimulus at the go cue",
    "dm1": "decision making: choose the stronger of two stimuli in modality 1",
    "dm2": "decision making: choose the stronger of two stimuli in modality 2",
    "ctxdm1": "context-dependent decision making: both modalities shown, judge modality 1 only",
    "ctxdm2": "context-dependent decision making: both modalities shown, judge modality 2 only",
    "multidm": "multisensory decision making: choose the direction with more evidence summed over both modalities",
    "dlydm1": "delayed decision making: two stimuli in modality 1 one after the other, choose the stronger",
    "dlydm2": "delayed decision making: two stimuli in modality 2 one after the other, choose the stronger",
    "ctxdlydm1": "context-dependent delayed decision making on modality 1, ignoring modality 2",
    "ctxdlydm2": "context-dependent delayed decision making on modality 2, ignoring modality 1",
    "multidlydm": "multisensory delayed decision making: evidence summed over both modalities",
    "dms": "delayed match-to-sample: respond toward the test if its direction matches the sample, else fixate",
    "dnms": "delayed non-match-to-sample: respond toward the test if it differs from the sample, else fixate",
    "dmc": "delayed match-to-category: respond toward the test if it is in the sample's half-ring category",
    "dnmc": "delayed non-match-to-category: respond toward the test if its category differs from the sample's",
}
YANG19_TASKS = tuple(YANG19_TASK_DESCRIPTIONS)
PRESETS = {"fast": {"dt": 100, "dim_ring": 16}, "faithful": {"dt": 20, "dim_ring": 32}}
OVERRIDES = ("dt", "dim_ring", "sigma", "rewards")
TAGS = (
    "perceptual", "context dependent", "working memory", "delayed response", "go-no-go", "n-alternative", "supervised",
)  # fmt: skip
# Each of the suite's epoch names -> its canonical epoch (neuroalrnn.envs.epochs).
EPOCH_TO_CANONICAL = {
    "fixation": "fixation",
    "stimulus": "stimulus",
    "stim1": "stimulus",
    "stim2": "stimulus",
    "sample": "stimulus",
    "test": "stimulus",
    "delay": "delay",
    "decision": "decision",
}
DM_TIMING = {"fixation": ("uniform", (200, 500)), "stimulus": ("choice", [200, 400, 600]), "decision": 200}

_REACH_TASKS = ("go", "rtgo", "dlygo", "anti", "rtanti", "dlyanti")
_DM_TASKS = ("dm1", "dm2", "ctxdm1", "ctxdm2", "multidm")
_DELAY_DM_TASKS = ("dlydm1", "dlydm2", "ctxdlydm1", "ctxdlydm2", "multidlydm")
_CATEGORY_TASKS = ("dmc", "dnmc")
_MAX_DRAWS = 1000
# Epochs that must not vanish at a coarse dt: without them a trial shows no evidence or asks for no answer.
_ONE_STEP_AT_LEAST = ("stimulus", "stim1", "stim2", "sample", "test", "decision")
_TIE_TOLERANCE = 1e-6  # NeuroGym breaks ties with uniform(-1e-6, 1e-6) noise


def _ring_index(theta: float, dim_ring: int) -> int:
    return int(round(theta / (2 * np.pi / dim_ring))) % dim_ring


def _on_category_boundary(trial: dict, base: TrialEnv) -> bool:
    """Whether the sample or the test direction lies at 0 or π, between the two categories."""
    return any(_ring_index(trial[key], base.dim_ring) % base.half_ring == 0 for key in ("sample_theta", "test_theta"))


def _evidence_tied(trial: dict, base: TrialEnv) -> bool:
    """Whether the weighted evidence for the two directions of a DM trial is equal."""
    difference = 0.0
    for modality, (shown, weight) in enumerate(((base.stim_mod1, base.w_mod1), (base.stim_mod2, base.w_mod2)), 1):
        if shown:
            difference += weight * (trial[f"coh1_mod{modality}"] - trial[f"coh2_mod{modality}"])
    return abs(difference) < _TIE_TOLERANCE


class _Yang19Task(TrialWrapper):
    """One Yang et al. task: a modality variant drawn per trial, ambiguous trials drawn again.

    ``variants``: the task's per-modality NeuroGym envs (one for the DM
    tasks). ``is_ambiguous(trial, base)``: True for a trial without a
    well-defined answer; such trials are replaced by a fresh draw.
    """

    def __init__(
        self, variants: list, is_ambiguous: Callable[[dict, TrialEnv], bool] | None = None
    ) -> None:
        super().__init__(variants[0])
        self.variants = tuple(variants)
        for variant in self.variants:
            variant.unwrapped.set_top(self)
        self.is_ambiguous = is_ambiguous
        self.rng = np.random.RandomState()

    def seed(self, seed: int | np.random.SeedSequence | None = None) -> None:
        sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        own, *children = sequence.spawn(1 + len(self.variants))
        self.rng = np.random.RandomState(int(own.generate_state(1)[0]))
        for variant, child in zip(self.variants, children, strict=True):
            seed_trial_env(variant, child)

    def new_trial(self, modality: int | None = None, **kwargs) -> dict:
        n_variants = len(self.variants)
        if modality is None:
            index = int(self.rng.randint(n_variants)) if n_variants > 1 else 0
        elif n_variants > 1 and modality in range(1, n_variants + 1):
            index = int(modality) - 1
        else:
            valid = list(range(1, n_variants + 1)) if n_variants > 1 else "none (this task has no modality choice)"
            raise ValueError(f"modality must be one of {valid}, got {modality!r}")
        self.env = self.variants[index]
        for _ in range(_MAX_DRAWS):
            trial = self.env.new_trial(**kwargs)
            if self.is_ambiguous is None or not self.is_ambiguous(trial, self.env.unwrapped):
                break
        else:
            raise RuntimeError(f"no unambiguous trial in {_MAX_DRAWS} draws with conditions {kwargs}")
        base = self.env.unwrapped
        # Yang et al.'s go cue: fixation input on until the decision epoch (NeuroGym's DM and
        # matching tasks switch it off when the fixation epoch ends).
        base.ob[: base.start_ind["decision"], base.observation_space.name["fixation"]] = 1.0
        if n_variants > 1:
            trial["modality"] = index + 1
        return trial


def _build_task(name: str, dt: float, dim_ring: int, sigma: float | None, rewards: Mapping | None) -> _Yang19Task:
    kwargs: dict[str, Any] = {"dt": dt, "dim_ring": dim_ring}
    if rewards is not None:
        kwargs["rewards"] = dict(rewards)
    if sigma is not None and name not in _REACH_TASKS:
        kwargs["sigma"] = sigma
    if name in _DM_TASKS:
        kwargs["timing"] = dict(DM_TIMING)
    env = getattr(neurogym_yang19, name)(**kwargs)
    variants = list(env.envs) if isinstance(env, ScheduleEnvs) else [env]
    for variant in variants:
        try:
            check_timing(None, variant.unwrapped.timing, dt, one_step_at_least=_ONE_STEP_AT_LEAST)
        except ValueError as error:
            raise ValueError(f"task {name!r}: {error}") from None
    if name in _CATEGORY_TASKS:
        return _Yang19Task(variants, _on_category_boundary)
    if name in _DM_TASKS or name in _DELAY_DM_TASKS:
        return _Yang19Task(variants, _evidence_tied)
    return _Yang19Task(variants)


def task_list(tasks: str | Iterable[str] | None) -> list[str]:
    """The task names ``tasks`` stands for (None: all 20, in Yang's order), checked: known, not repeated."""
    if tasks is None:
        return list(YANG19_TASKS)
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [name for name in names if name not in YANG19_TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; valid tasks: {', '.join(YANG19_TASKS)}")
    if not names:
        raise ValueError(f"tasks must name at least one task; valid tasks: {', '.join(YANG19_TASKS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"tasks must not repeat, got {repeated} more than once")
    return names


def yang19_suite(
    tasks: str | Iterable[str] | None = None,
    preset: str = "fast",
    weights: Mapping[str, float] | None = None,
    **overrides: Any,
) -> MultiTaskEnv:
    """Yang et al.'s tasks as one :class:`MultiTaskEnv`.

    Args:
        tasks: task names from :data:`YANG19_TASKS` (all 20 if ``None``; what each
            asks in :data:`YANG19_TASK_DESCRIPTIONS`); their
            order is the order of the rule inputs.
        preset: ``"fast"`` (dt = 100 ms, 16 ring directions) or ``"faithful"``
            (dt = 20 ms, 32 directions, Yang et al.'s sizes).
        weights: task name -> sampling weight; tasks left out weigh 1.
        **overrides: any of :data:`OVERRIDES`: ``dt`` (ms) and ``dim_ring``
            (even) replace the preset's; ``sigma`` (stimulus noise of the DM
            and matching tasks, per step sigma/√dt; NeuroGym's default 1) and
            ``rewards`` (NeuroGym reward dict) go to every task that takes them.
    """
    names = task_list(tasks)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(
            f"unknown options {unknown}; valid: {', '.join(OVERRIDES)} "
            "(for per-task timing, build a MultiTaskEnv from your own envs)"
        )
    options = {**PRESETS[preset], **overrides}
    dt, dim_ring = options["dt"], options["dim_ring"]
    check_number("dt", dt, 0.0, low_open=True)
    if check_integer("dim_ring", dim_ring, 2) % 2:
        raise ValueError(f"dim_ring must be an even integer >= 2, got {dim_ring!r}")
    if len(np.arange(0, 2 * np.pi, 2 * np.pi / dim_ring)) != dim_ring:
        # NeuroGym's _Reach builds its ring with np.arange, which rounds to one direction too many here
        raise ValueError(f"dim_ring={dim_ring} breaks NeuroGym's go/anti tasks; choose another even number")
    sigma = options.get("sigma")
    if sigma is not None:
        check_number("sigma", sigma, 0.0)
    rewards = options.get("rewards")
    if rewards is not None and not isinstance(rewards, Mapping):
        raise ValueError(f"rewards must be a dict like {{'correct': 1.0, 'fail': 0.0, 'abort': -0.1}}, got {rewards!r}")

    envs = {name: _build_task(name, dt, int(dim_ring), sigma, rewards) for name in names}
    ring = range(int(dim_ring))
    return MultiTaskEnv(
        envs,
        weights,
        input_names=("fixation", *(f"mod1_{i}" for i in ring), *(f"mod2_{i}" for i in ring)),
        output_names=("fixate", *(f"choice_{i}" for i in ring)),
        canonical_epochs=EPOCH_TO_CANONICAL,
        tags=TAGS,
    )
