"""The 20 tasks of Yang et al. (2019) as one environment, re-implemented from the authors' code.

Yang GR, Joglekar MR, Song HF, Newsome WT, Wang X-J (2019). Task
representations in neural networks trained to perform many cognitive tasks.
Nature Neuroscience 22, 297-306; code: github.com/gyyang/multitask
(``task.py``, ``train.py``'s default hyper-parameters, ``network.py``'s
``get_perf``). The ``yang19`` preset (:mod:`neuroalrnn.envs.yang19`) builds
the same task names from NeuroGym instead, with NeuroGym's timing, noise and
stimuli; this suite follows Yang's training distribution (``mode='random'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..multitask import MultiTaskEnv
from ..options import check_integer, check_number
from ..yang19 import YANG19_TASKS, task_list
from .decision import DecisionMaking, DelayedDecisionMaking
from .matching import MatchToCategory, MatchToSample
from .reach import DelayedGo, Go, ReactionTimeGo
from .task import EPOCH_TO_CANONICAL, YangTask, check_dt

__all__ = ["TAGS", "YANG_RULE_NAMES", "input_noise_std", "yang19_faithful_suite", "yang19_faithful_task"]

# Our task name -> the name in Yang's code (rules_dict['all']); the order is the rule inputs' order.
YANG_RULE_NAMES = dict(zip(YANG19_TASKS, (
    "fdgo", "reactgo", "delaygo", "fdanti", "reactanti", "delayanti", "dm1", "dm2", "contextdm1", "contextdm2",
    "multidm", "delaydm1", "delaydm2", "contextdelaydm1", "contextdelaydm2", "multidelaydm",
    "dmsgo", "dmsnogo", "dmcgo", "dmcnogo",
), strict=True))  # fmt: skip
TAGS = (
    "perceptual", "context dependent", "working memory", "delayed response", "go-no-go", "two-alternative",
    "motor", "supervised", "continuous action space", "multidimensional action space",
)  # fmt: skip
_BUILDERS = {
    "go": (Go, {}), "rtgo": (ReactionTimeGo, {}), "dlygo": (DelayedGo, {}),
    "anti": (Go, {"anti": True}), "rtanti": (ReactionTimeGo, {"anti": True}), "dlyanti": (DelayedGo, {"anti": True}),
    "dm1": (DecisionMaking, {"attend": 1}), "dm2": (DecisionMaking, {"attend": 2}),
    "ctxdm1": (DecisionMaking, {"attend": 1, "context": True}),
    "ctxdm2": (DecisionMaking, {"attend": 2, "context": True}),
    "multidm": (DecisionMaking, {"attend": "both"}),
    "dlydm1": (DelayedDecisionMaking, {"attend": 1}), "dlydm2": (DelayedDecisionMaking, {"attend": 2}),
    "ctxdlydm1": (DelayedDecisionMaking, {"attend": 1, "context": True}),
    "ctxdlydm2": (DelayedDecisionMaking, {"attend": 2, "context": True}),
    "multidlydm": (DelayedDecisionMaking, {"attend": "both"}),
    "dms": (MatchToSample, {}), "dnms": (MatchToSample, {"nonmatch": True}),
    "dmc": (MatchToCategory, {}), "dnmc": (MatchToCategory, {"nonmatch": True}),
}  # fmt: skip


def input_noise_std(sigma_x: float, dt: float, tau: float) -> float:
    """Yang's per-step input noise: sigma_x·sqrt(2/alpha) with alpha = dt/tau (0.01·√10 ≈ 0.0316 by default)."""
    return float(sigma_x * np.sqrt(2 * tau / dt))


def yang19_faithful_task(name: str, **options: Any) -> YangTask:
    """One task of the suite by our name (``go`` … ``dnmc``), without rule inputs; ``options``: YangTask's."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(YANG19_TASKS)}")
    task_class, settings = _BUILDERS[name]
    return task_class(**settings, **options)


def yang19_faithful_suite(
    tasks: str | Iterable[str] | None = None,
    weights: Mapping[str, float] | None = None,
    *,
    dt: int = 20,
    n_ring: int = 32,
    sigma_x: float = 0.01,
    tau: float = 100,
    trials_per_draw: int = 1,
    dim_ring: int | None = None,
) -> MultiTaskEnv:
    """Yang et al.'s tasks, as his code generates them for training, as one :class:`MultiTaskEnv`.

    Inputs: fixation, ring 1 (``mod1_0`` …), ring 2 (``mod2_0`` …), then one
    rule input per task (``1 + 2·n_ring + n_tasks``: 85 with all 20 tasks at
    32 units per ring); outputs: ``fixate`` and one ``choice_k`` per ring unit
    (33), least-squares targets (regression, scoring ``"ring"``: Yang's
    ``get_perf`` at the trial's last step). Every input, rule inputs included,
    gets N(0, sigma_x·sqrt(2·tau/dt)) at every step (:func:`input_noise_std`).

    Args:
        tasks: task names from ``YANG19_TASKS`` (all 20 if ``None``), in the
            order of the rule inputs; Yang's names in :data:`YANG_RULE_NAMES`.
        weights: task name -> sampling weight (tasks left out weigh 1), as
            Yang's ``rule_prob_map``.
        dt: time step in ms, a whole number in (0, 100] (Yang: 20).
        n_ring: units per ring (Yang: 32); ``dim_ring`` is the same option
            under the name the NeuroGym-based ``yang19`` suite uses.
        sigma_x: Yang's input noise parameter (0.01); tau: his time constant
            in ms (100), which with ``dt`` sets alpha = dt/tau.
        trials_per_draw: consecutive trials sharing the task, the timing and
            the per-block stimulus modality, as Yang's batches of 64 do
            (``trials_per_draw=64``); 1: every trial draws its own.
    """
    names = task_list(tasks)
    dt = check_dt(dt)
    if dim_ring is not None:
        if check_integer("dim_ring", dim_ring, 2) != n_ring and n_ring != 32:
            raise ValueError(f"dim_ring and n_ring name one option; got dim_ring={dim_ring!r}, n_ring={n_ring!r}")
        n_ring = dim_ring
    n_ring = check_integer("n_ring", n_ring, 2)
    noise = input_noise_std(check_number("sigma_x", sigma_x, 0.0), dt, check_number("tau", tau, 0.0, low_open=True))
    trials_per_draw = check_integer("trials_per_draw", trials_per_draw, 1)
    envs = {name: yang19_faithful_task(name, dt=dt, n_ring=n_ring, trials_per_draw=trials_per_draw) for name in names}
    return MultiTaskEnv(
        envs,
        weights,
        canonical_epochs=EPOCH_TO_CANONICAL,
        tags=TAGS,
        input_noise=noise,
        trials_per_draw=trials_per_draw,
    )
