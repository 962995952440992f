"""Yang et al.'s (2019) decision tasks: dm, ctxdm, multidm and their delayed versions, as in the authors' code.

Yang GR, Joglekar MR, Song HF, Newsome WT, Wang X-J (2019). Nature
Neuroscience 22, 297-306 (code: github.com/gyyang/multitask, ``task.py``:
``_dm``, ``_contextdm``, ``_delaydm``, ``_contextdelaydm``, ``contextdm_genstim``).

Two stimuli, at θ1 ~ U(0, 2π) and θ2 = θ1 ± U(π/2, 3π/2) (so 90° to 180°
apart), each with a strength per modality; respond toward the stronger one.

* dm1 / dm2: both stimuli on ring 1 (2) only; strengths m ± c with the mean
  m ~ U(0.8, 1.2), the coherence c drawn from the task's set and a random sign;
* ctxdm1 / ctxdm2: both rings show both stimuli, each ring with its own
  independent m, c and sign; only ring 1 (2) counts;
* multidm: one pair s1, s2 = m ± c; each is split over the two rings as
  s ± Δ/2 and s ∓ Δ/2, with Δ = s·U(0.2, 0.8)·(±1) drawn per stimulus, so the
  summed evidence over the rings is 2·s1 vs 2·s2.

Timing (ms) and coherences: dm family: fixation U(100, 400), stimulus {400,
800, 1600} (both stimuli at once; off at the go cue), decision 500;
c ∈ {0.01, 0.02, 0.04, 0.08}. Delayed family: fixation {200, 400, 600},
stim1 {200, 400, 600}, delay1 {200, 400, 800, 1600}, stim2 {200, 400, 600},
delay2 U(100, 300), decision 500; c ∈ {0.08, 0.16, 0.32}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..options import check_number
from .ideal_observer import evidence_accuracy
from .task import Stimulus, YangTask, check_direction

__all__ = ["ATTEND", "DecisionMaking", "DelayedDecisionMaking"]

ATTEND = (1, 2, "both")


class DecisionMaking(YangTask):
    """Choose the stronger of two simultaneous stimuli: dm1/dm2, ctxdm1/ctxdm2 or multidm.

    Args:
        attend: the ring whose evidence counts: 1, 2 or ``"both"`` (multidm,
            whose evidence is summed over the two rings).
        context: show both rings, with independent strengths, and judge ring
            ``attend`` only (ctxdm); ignored for ``attend="both"``.
        **options: :class:`~neuroalrnn.envs.yang.task.YangTask`'s.

    Conditions: ``stim1_theta``, ``stim2_theta``, ``stim<i>_mod<r>_strength``
    (0 on a ring not shown), ``coherence`` (Yang's c of the evidence that
    counts: |s1 − s2|/2 on the attended ring, the summed difference over 4
    for multidm), ``modality`` (``attend``; 0 for both), ``response_theta``.
    Pin any of the thetas, or the strengths on a ring shown, with ``new_trial(...)``.
    """

    timing_spec = {  # noqa: RUF012
        "fixation": ("uniform", (100, 400)),
        "stimulus": ("choice", (400, 800, 1600)),
        "decision": 500,
    }
    coherences = (0.01, 0.02, 0.04, 0.08)

    def __init__(self, attend: int | str = 1, context: bool = False, **options: Any) -> None:
        if isinstance(attend, bool) or attend not in ATTEND:
            raise ValueError(f"attend must be one of {list(ATTEND)}, got {attend!r}")
        if not isinstance(context, bool):
            raise ValueError(f"context must be True or False, got {context!r}")
        self.attend, self.context = attend, context and attend != "both"
        self.shown = (1, 2) if context or attend == "both" else (attend,)
        strengths = (f"stim{i}_mod{r}_strength" for r in self.shown for i in (1, 2))
        self.trial_variables = ("stim1_theta", "stim2_theta", *strengths)
        super().__init__(**options)
        tags = ["perceptual", "two-alternative"] + (["context dependent"] if self.context else [])
        tags += ["delayed response", "working memory"] if "delay1" in self.timing else []
        self.metadata = {**type(self).metadata, "tags": [*type(self).metadata["tags"], *tags]}

    def ideal_observer_accuracy(self, batch) -> np.ndarray:
        """(trial,) the ideal observer's accuracy (:mod:`~neuroalrnn.envs.yang.ideal_observer`).

        The noise level is the batch's ``input_noise`` condition (which the
        suite records), else this task's own ``input_noise``.
        """
        noise = None if "input_noise" in batch.conditions else self.input_noise
        return evidence_accuracy(batch, "in turn" if "stim1" in self.timing else "together", self.attend, noise)

    def _pair(self, rng: np.random.RandomState) -> np.ndarray:
        """Yang's ``contextdm_genstim``: (s1, s2) = m ± c·sign."""
        mean, coherence, sign = rng.uniform(0.8, 1.2), rng.choice(self.coherences), rng.choice([1, -1])
        return np.array([mean + coherence * sign, mean - coherence * sign])

    def _draw_trial(self, rng: np.random.RandomState) -> dict[str, Any]:
        distance = rng.uniform(0.5 * np.pi, 1.5 * np.pi) * rng.choice([-1, 1])
        theta1 = float(rng.uniform(0, 2 * np.pi))
        strengths = np.zeros((2, 2))  # [ring, stimulus]
        if self.attend == "both":
            pair = self._pair(rng)
            split = pair * rng.uniform(0.2, 0.8, 2) * rng.choice([1, -1], 2)
            strengths[:] = pair + np.array([[0.5], [-0.5]]) * split
        elif self.context:
            strengths[:] = self._pair(rng), self._pair(rng)
        else:
            strengths[self.attend - 1] = self._pair(rng)
        values = {f"stim{i}_mod{r}_strength": float(strengths[r - 1, i - 1]) for r in (1, 2) for i in (1, 2)}
        return {"stim1_theta": theta1, "stim2_theta": float(np.mod(theta1 + distance, 2 * np.pi)), **values}

    def _evidence(self, values: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(2,) the evidence that counts for stimulus 1 and 2, and (2, 2) strengths [ring, stimulus]."""
        strengths = np.array([[check_number(f"stim{i}_mod{r}_strength", values[f"stim{i}_mod{r}_strength"])
                               for i in (1, 2)] for r in (1, 2)])  # fmt: skip
        return (strengths.sum(0) if self.attend == "both" else strengths[self.attend - 1]), strengths

    def _stimulus_steps(self, starts: dict[str, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        return (starts["stimulus"], starts["decision"]), (starts["stimulus"], starts["decision"])

    def _design(self, values: dict[str, Any], starts: dict[str, int]) -> tuple[list[Stimulus], float, dict]:
        thetas = [check_direction(f"stim{i}_theta", values[f"stim{i}_theta"]) for i in (1, 2)]
        evidence, strengths = self._evidence(values)
        steps = self._stimulus_steps(starts)
        stimuli = [Stimulus(ring, thetas[i], strengths[ring - 1, i], *steps[i]) for ring in self.shown for i in (0, 1)]
        response = thetas[0] if evidence[0] > evidence[1] else thetas[1]  # as Yang: a tie goes to stimulus 2
        difference = abs(evidence[0] - evidence[1])
        conditions = {
            "stim1_theta": thetas[0], "stim2_theta": thetas[1],
            **{f"stim{i}_mod{r}_strength": float(strengths[r - 1, i - 1]) for r in (1, 2) for i in (1, 2)},
            "coherence": difference / (4 if self.attend == "both" else 2),
            "modality": 0.0 if self.attend == "both" else float(self.attend),
        }  # fmt: skip
        return stimuli, response, conditions


class DelayedDecisionMaking(DecisionMaking):
    """dlydm1/dlydm2, ctxdlydm1/ctxdlydm2, multidlydm: the two stimuli one after the other, then a gap.

    As :class:`DecisionMaking` (same arguments and conditions), with stimulus
    1 shown in ``stim1``, stimulus 2 in ``stim2``, and Yang's delayed timing
    and coherences.
    """

    timing_spec = {  # noqa: RUF012
        "fixation": ("choice", (200, 400, 600)),
        "stim1": ("choice", (200, 400, 600)),
        "delay1": ("choice", (200, 400, 800, 1600)),
        "stim2": ("choice", (200, 400, 600)),
        "delay2": ("uniform", (100, 300)),
        "decision": 500,
    }
    coherences = (0.08, 0.16, 0.32)

    def _stimulus_steps(self, starts: dict[str, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        return (starts["stim1"], starts["delay1"]), (starts["stim2"], starts["delay2"])
