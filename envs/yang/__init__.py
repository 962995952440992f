"""Yang et al. (2019)'s 20 tasks re-implemented from the authors' code: the ``yang19-faithful`` suite.

One module per task family: :mod:`.ring` (tuning bumps, targets, read-out),
:mod:`.task` (what every task shares), :mod:`.reach` (go, rt, dly; go and
anti), :mod:`.decision` (dm, ctxdm, multidm and their delayed versions),
:mod:`.matching` (dms, dnms, dmc, dnmc), :mod:`.suite` (all of them as one
:class:`~neuroalrnn.envs.multitask.MultiTaskEnv`) and :mod:`.ideal_observer`
(the accuracy ceiling of the decision tasks).
"""

from __future__ import annotations

from .decision import DecisionMaking, DelayedDecisionMaking
from .ideal_observer import ideal_observer_accuracy
from .matching import MatchToCategory, MatchToSample
from .reach import DelayedGo, Go, ReactionTimeGo
from .suite import YANG_RULE_NAMES, input_noise_std, yang19_faithful_suite, yang19_faithful_task
from .task import YangTask

__all__ = [
    "YANG_RULE_NAMES", "DecisionMaking", "DelayedDecisionMaking", "DelayedGo", "Go", "MatchToCategory",
    "MatchToSample", "ReactionTimeGo", "YangTask", "ideal_observer_accuracy", "input_noise_std",
    "yang19_faithful_suite", "yang19_faithful_task",
]  # fmt: skip
