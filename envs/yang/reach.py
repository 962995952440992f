"""Yang et al.'s (2019) reach tasks: go, rtgo, dlygo and their anti versions, as in the authors' code.

Yang GR, Joglekar MR, Song HF, Newsome WT, Wang X-J (2019). Nature
Neuroscience 22, 297-306 (code: github.com/gyyang/multitask, ``task.py``:
``fdgo_``, ``reactgo_``, ``delaygo_``).

One stimulus, at a direction drawn uniformly on the circle, is shown on one
ring (modality 1 or 2, drawn once per block); the response is its direction
(go) or the opposite one (anti, θ + π).

=========  ==================================================  ==============================
task       epochs: durations in ms                             stimulus shown
=========  ==================================================  ==============================
go, anti   fixation U(300, 700), stimulus U(500, 1500),        from stimulus onset to the end
           decision 500                                        (on through the response)
rt...      fixation U(500, 2500), decision 500                 from the start of decision to
                                                               the end; fixation input on the
                                                               whole trial: the stimulus is
                                                               the go cue
dly...     fixation {300, 500, 700}, stimulus {200, 400,       during ``stimulus`` only
           600}, delay {200, 400, 800, 1600}, decision 500
=========  ==================================================  ==============================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .task import Stimulus, YangTask, check_direction, check_modality

__all__ = ["DelayedGo", "Go", "ReactionTimeGo"]


class _Reach(YangTask):
    """A reach task: respond toward the stimulus (``anti=False``) or away from it (``anti=True``).

    Conditions: ``stim_theta`` (radians), ``modality`` (ring 1 or 2, drawn
    per block), ``response_theta``; pin any of them, or ``<epoch>_ms``, with
    ``new_trial(...)``.
    """

    block_variables = ("modality",)
    trial_variables = ("stim_theta",)

    def __init__(self, anti: bool = False, **options: Any) -> None:
        if not isinstance(anti, bool):
            raise ValueError(f"anti must be True or False, got {anti!r}")
        self.anti = anti
        super().__init__(**options)
        tags = ["perceptual", "motor"] + (["delayed response", "working memory"] if "delay" in self.timing else [])
        self.metadata = {**type(self).metadata, "tags": [*type(self).metadata["tags"], *tags]}

    def _draw_block(self, rng: np.random.RandomState) -> dict[str, Any]:
        return {"modality": int(rng.choice([1, 2]))}

    def _draw_trial(self, rng: np.random.RandomState) -> dict[str, Any]:
        return {"stim_theta": float(rng.uniform(0, 2 * np.pi))}

    def _stimulus_steps(self, starts: dict[str, int]) -> tuple[int, int | None]:
        raise NotImplementedError

    def _design(self, values: dict[str, Any], starts: dict[str, int]) -> tuple[list[Stimulus], float, dict]:
        theta = check_direction("stim_theta", values["stim_theta"])
        modality = check_modality("modality", values["modality"])
        response = float(np.mod(theta + np.pi, 2 * np.pi)) if self.anti else theta
        stimulus = Stimulus(modality, theta, 1.0, *self._stimulus_steps(starts))
        return [stimulus], response, {"stim_theta": theta, "modality": float(modality)}


class Go(_Reach):
    """go / anti (Yang's fdgo / fdanti): the stimulus stays on; respond when the fixation input goes off."""

    timing_spec = {  # noqa: RUF012
        "fixation": ("uniform", (300, 700)),
        "stimulus": ("uniform", (500, 1500)),
        "decision": 500,
    }

    def _stimulus_steps(self, starts: dict[str, int]) -> tuple[int, int | None]:
        return starts["stimulus"], None


class ReactionTimeGo(_Reach):
    """rtgo / rtanti (Yang's reactgo / reactanti): respond as soon as the stimulus appears; fixation input stays on."""

    timing_spec = {"fixation": ("uniform", (500, 2500)), "decision": 500}  # noqa: RUF012
    fixation_to_end = True

    def _stimulus_steps(self, starts: dict[str, int]) -> tuple[int, int | None]:
        return starts["decision"], None


class DelayedGo(_Reach):
    """dlygo / dlyanti (Yang's delaygo / delayanti): a brief stimulus, a delay, then respond at the go cue."""

    timing_spec = {  # noqa: RUF012
        "fixation": ("choice", (300, 500, 700)),
        "stimulus": ("choice", (200, 400, 600)),
        "delay": ("choice", (200, 400, 800, 1600)),
        "decision": 500,
    }

    def _stimulus_steps(self, starts: dict[str, int]) -> tuple[int, int | None]:
        return starts["stimulus"], starts["delay"]
