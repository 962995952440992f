"""Context-dependent stimulus selection after Mante, Sussillo, Shenoy & Newsome (2013).

Mante V, Sussillo D, Shenoy KV, Newsome WT (2013). Context-dependent
computation by recurrent dynamics in prefrontal cortex. Nature 503, 78-84.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from neurogym.utils import spaces
from scipy.stats import norm

from .base import TaskEnv
from .options import check_number, check_timing

CONTEXTS = ("motion", "colour")
DEFAULT_TIMING = {
    "fixation": 300,
    "context": 350,
    "stimulus": 750,
    "delay": ("choice", [300, 450, 600]),
    "decision": 200,
}


class StimulusSelection(TaskEnv):
    """Report the sign of the contextually relevant evidence after a delay.

    Epochs: ``fixation`` → ``context`` (cue only) → ``stimulus`` (noisy motion
    and colour evidence, both present on every trial) → ``delay`` (variable) →
    ``decision``. The fixation input is 1 until the decision epoch; its going
    off is the go cue. The context input (one-hot over motion/colour) is on from
    the context cue to the end of the trial.

    Inputs (``observation_space.name``): ``fixation`` (0), ``context``
    (1: motion, 2: colour), ``motion`` (3), ``colour`` (4). During the stimulus
    epoch the motion input is ``coh_motion + sigma ξ`` and the colour input
    ``coh_colour + sigma ξ``, ξ ~ N(0, 1) drawn independently per step; the sign
    of a coherence is the side it favours (positive: right). This is the input
    layout of Mante et al.'s own network model.

    Actions: 0 fixate, 1 left, 2 right. The target is "fixate" until the
    decision epoch and then the side favoured by the context's modality.

    Differences from NeuroGym's ``ContextDecisionMaking-v0``: an explicit
    context input and a go cue (fixation off), and a delay between stimulus
    and decision.

    Args:
        dt: time step in ms, > 0.
        cohs: unsigned coherences; each trial draws a sign and a magnitude
            independently for motion and colour. Zero is not allowed (the
            correct choice must be defined).
        sigma: standard deviation of the input noise per time step. With the
            default timing (15 stimulus steps) the ideal observer is correct
            on ~83 % of trials at coherence 0.05 and ≥ 99.8 % at 0.15.
        timing: durations in ms per epoch (NeuroGym timing specs, see
            :func:`~neuroalrnn.envs.options.check_timing`) replacing those of
            :data:`DEFAULT_TIMING`; the decision epoch must last at least one step.

    Trial conditions (keys of the dict returned by ``new_trial``):
    ``context`` ("motion"/"colour"), ``coh_motion``, ``coh_colour`` (signed),
    ``coh_relevant`` (the signed coherence of the context's modality),
    ``ground_truth`` (1 left, 2 right).
    """

    metadata = {  # noqa: RUF012
        "paper_link": "https://www.nature.com/articles/nature12742",
        "paper_name": "Context-dependent computation by recurrent dynamics in prefrontal cortex",
        "tags": ["perceptual", "context dependent", "two-alternative", "supervised"],
        "render_modes": [],
    }
    epoch_names = ("fixation", "context", "stimulus", "delay", "decision")
    condition_names = ("context", "coh_motion", "coh_colour", "coh_relevant", "ground_truth")

    def __init__(
        self,
        dt: float = 50,
        cohs: tuple[float, ...] = (0.05, 0.15, 0.5),
        sigma: float = 0.2,
        timing: dict | None = None,
    ) -> None:
        check_number("dt", dt, 0.0, low_open=True)
        super().__init__(dt=dt)
        if isinstance(cohs, str) or not isinstance(cohs, Collection) or not cohs:
            raise ValueError(f"cohs must be a non-empty list of unsigned coherences > 0, got {cohs!r}")
        self.cohs = np.asarray([check_number("cohs", coh, 0.0, low_open=True) for coh in cohs])
        self.sigma = check_number("sigma", sigma, 0.0)
        self.timing = check_timing(timing, DEFAULT_TIMING, self.dt, one_step_at_least=("decision",))
        self.observation_space = spaces.Box(
            -np.inf,
            np.inf,
            shape=(5,),
            dtype=np.float32,
            name={"fixation": 0, "context": [1, 2], "motion": 3, "colour": 4},
        )
        self.action_space = spaces.Discrete(3, name={"fixation": 0, "choice": [1, 2]})
        self.input_names = ("fixation", "context_motion", "context_colour", "motion", "colour")
        self.output_names = ("fixate", "left", "right")

    def _new_trial(self, **kwargs):
        rng = self.rng
        trial = {
            "context": CONTEXTS[rng.randint(2)],
            "coh_motion": float(rng.choice([-1, 1]) * rng.choice(self.cohs)),
            "coh_colour": float(rng.choice([-1, 1]) * rng.choice(self.cohs)),
        }
        trial.update(kwargs)
        if trial["context"] not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {trial['context']!r}")
        relevant = trial["coh_motion"] if trial["context"] == "motion" else trial["coh_colour"]
        if relevant == 0:
            raise ValueError("the relevant coherence must be non-zero")
        trial["coh_relevant"] = relevant
        trial["ground_truth"] = 2 if relevant > 0 else 1

        self.add_period(list(self.epoch_names))
        self.add_ob(1, period=["fixation", "context", "stimulus", "delay"], where="fixation")
        context_input = np.array([1.0, 0.0]) if trial["context"] == "motion" else np.array([0.0, 1.0])
        self.add_ob(context_input, period=["context", "stimulus", "delay", "decision"], where="context")
        self.add_ob(trial["coh_motion"], period="stimulus", where="motion")
        self.add_ob(trial["coh_colour"], period="stimulus", where="colour")
        self.add_randn(0, self.sigma, period="stimulus", where="motion")
        self.add_randn(0, self.sigma, period="stimulus", where="colour")
        self.set_groundtruth(trial["ground_truth"], period="decision")
        return trial

    def ideal_observer_accuracy(self, batch) -> np.ndarray:
        """(trial,) Φ(|c| √n / σ): the ideal observer's accuracy on each trial.

        c is the trial's relevant coherence (``coh_relevant``), n its number
        of stimulus steps and σ the noise std per step. The observer knows
        the context, σ and that the sign of c is ± with equal probability
        and its magnitude is drawn from ``cohs`` independently of the sign;
        the likelihood ratio of "right" over "left" then grows with the
        summed relevant input Σ_t x_t ~ N(n c, n σ²), so the optimal answer
        is its sign, correct with probability Φ(|c| √n / σ) (1 at σ = 0).
        """
        steps = batch.epoch_mask("stimulus").sum(axis=1)
        signal = np.abs(np.asarray(batch.conditions["coh_relevant"], dtype=np.float64)) * np.sqrt(steps)
        if self.sigma == 0:
            return np.where(signal > 0, 1.0, 0.5)
        return norm.cdf(signal / self.sigma)

    def _step(self, action):
        reward = 0.0
        new_trial = False
        gt = self.gt_now
        if self.in_period("decision") and action != 0:
            new_trial = True
            reward = 1.0 if action == gt else 0.0
            self.performance = float(action == gt)
        elif not self.in_period("decision") and action != 0:
            reward = -0.1
        return self.ob_now, reward, False, False, {"new_trial": new_trial, "gt": gt}
