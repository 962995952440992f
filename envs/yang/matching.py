"""Yang et al.'s (2019) matching tasks: dms, dnms, dmc, dnmc, as in the authors' code.

Yang GR, Joglekar MR, Song HF, Newsome WT, Wang X-J (2019). Nature
Neuroscience 22, 297-306 (code: github.com/gyyang/multitask, ``task.py``:
``dms_`` and ``dmc_``; Yang's dmsgo, dmsnogo, dmcgo, dmcnogo).

A sample, a delay, then a test that stays on to the trial's end. The sample
and the test each appear on a ring of their own (1 or 2, drawn independently,
once per block). The fixation input stays on the whole trial: the test's
onset is the go cue, and ``decision`` starts with it. A "go" trial asks for a
response toward the test; a "no-go" trial asks for fixation to the end (its
fixation target stays 0.8 and its ring targets 0.05 throughout).

* dms / dnms: sample θ ~ U(0, 2π); match with probability 1/2, when the test
  is at θ, else at θ ± U(π/9, 17π/9), 20° to 180° away (a comment in Yang's
  code says 10°; π/9 is 20°). dms: go on a match; dnms: go on a non-match.
* dmc / dnmc: sample and test each drawn from 0.1π, 0.3π, … 1.9π; category
  (θ < π) vs (θ > π); match when the categories agree (probability 1/2).
  dmc: go on a match; dnmc: go on a non-match.

Timing (ms): fixation {200, 400, 600}, sample {200, 400, 600}, delay {200,
400, 800, 1600}, decision 500 (dms/dnms) or {200, 400, 600} (dmc/dnmc).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ring import circular_distance
from .task import Stimulus, YangTask, check_direction, check_modality

__all__ = ["CATEGORY_DIRECTIONS", "MatchToCategory", "MatchToSample"]

CATEGORY_DIRECTIONS = np.pi * np.arange(0.1, 2.0, 0.2)  # 0.1π, 0.3π ... 1.9π


class _Matching(YangTask):
    """Sample, delay, test; go toward the test on a match (``nonmatch=False``) or on a non-match (``True``).

    Conditions: ``sample_theta``, ``test_theta``, ``sample_modality``,
    ``test_modality``, ``match`` (1.0 or 0.0), ``go``, ``response_theta``
    (the test's direction in a go trial, NaN in a no-go trial).
    """

    block_variables = ("sample_modality", "test_modality")
    fixation_to_end = True

    def __init__(self, nonmatch: bool = False, **options: Any) -> None:
        if not isinstance(nonmatch, bool):
            raise ValueError(f"nonmatch must be True or False, got {nonmatch!r}")
        self.nonmatch = nonmatch
        super().__init__(**options)
        tags = ["working memory", "go-no-go", "delayed response"]
        self.metadata = {**type(self).metadata, "tags": [*type(self).metadata["tags"], *tags]}

    def _draw_block(self, rng: np.random.RandomState) -> dict[str, Any]:
        return {"sample_modality": int(rng.choice([1, 2])), "test_modality": int(rng.choice([1, 2]))}

    def _match(self, values: dict[str, Any]) -> tuple[float, float, bool]:
        """(sample θ, test θ, whether they match)."""
        raise NotImplementedError

    def _design(self, values: dict[str, Any], starts: dict[str, int]) -> tuple[list[Stimulus], float, dict]:
        sample, test, match = self._match(values)
        modalities = [check_modality(name, values[name]) for name in ("sample_modality", "test_modality")]
        stimuli = [
            Stimulus(modalities[0], sample, 1.0, starts["sample"], starts["delay"]),
            Stimulus(modalities[1], test, 1.0, starts["decision"], None),
        ]
        go = match != self.nonmatch
        conditions = {
            "sample_theta": sample, "test_theta": test, "sample_modality": float(modalities[0]),
            "test_modality": float(modalities[1]), "match": float(match),
        }  # fmt: skip
        return stimuli, test if go else np.nan, conditions


class MatchToSample(_Matching):
    """dms (``nonmatch=False``) / dnms (``True``); pin ``sample_theta``, ``match`` or ``test_theta``.

    A pinned ``test_theta`` decides ``match`` (same direction within 1e-9 rad)
    unless ``match`` is pinned too, in which case the two must agree.
    """

    timing_spec = {  # noqa: RUF012
        "fixation": ("choice", (200, 400, 600)),
        "sample": ("choice", (200, 400, 600)),
        "delay": ("choice", (200, 400, 800, 1600)),
        "decision": 500,
    }
    trial_variables = ("sample_theta", "match", "test_theta")

    def _draw_trial(self, rng: np.random.RandomState) -> dict[str, Any]:
        match = bool(rng.choice([0, 1]))
        offset = rng.uniform(np.pi / 9, 17 * np.pi / 9) * rng.choice([-1, 1])
        sample = float(rng.uniform(0, 2 * np.pi))
        return {"sample_theta": sample, "match": match, "_offset": float(offset)}

    def _match(self, values: dict[str, Any]) -> tuple[float, float, bool]:
        sample = check_direction("sample_theta", values["sample_theta"])
        match = values["match"]
        if match not in (0, 1):  # also True and False
            raise ValueError(f"match must be True or False, got {match!r}")
        if "test_theta" not in values:
            return sample, float(np.mod(sample + values["_offset"] * (1 - match), 2 * np.pi)), bool(match)
        test = check_direction("test_theta", values["test_theta"])
        same = bool(circular_distance(sample, test) < 1e-9)
        if "match" in self._pinned and same != bool(match):
            raise ValueError(f"match={match!r} contradicts sample_theta={sample!r} and test_theta={test!r}")
        return sample, test, same


class MatchToCategory(_Matching):
    """dmc (``nonmatch=False``) / dnmc (``True``); pin ``sample_theta`` or ``test_theta`` (category: θ < π or not)."""

    timing_spec = {**MatchToSample.timing_spec, "decision": ("choice", (200, 400, 600))}  # noqa: RUF012
    trial_variables = ("sample_theta", "test_theta")

    def _draw_trial(self, rng: np.random.RandomState) -> dict[str, Any]:
        sample, test = rng.choice(CATEGORY_DIRECTIONS, 2)
        return {"sample_theta": float(sample), "test_theta": float(test)}

    def _match(self, values: dict[str, Any]) -> tuple[float, float, bool]:
        sample, test = (check_direction(name, values[name]) for name in ("sample_theta", "test_theta"))
        return sample, test, bool((sample < np.pi) == (test < np.pi))
