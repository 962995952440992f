"""Ring geometry of Yang et al.'s (2019) tasks: preferred directions, tuning bumps, targets and their read-out.

Facts from the authors' code (github.com/gyyang/multitask, ``task.py`` and
``network.py``), restated:

* a ring of ``n_ring`` units prefers the directions 2πk/n_ring, k = 0 … n_ring−1;
* a stimulus at direction θ drives unit k by 0.8·exp(−d²/2), with d the
  circular distance between θ and the unit's direction in units of π/8,
  times the stimulus strength (1 unless the task varies it);
* least-squares targets are 0.05 everywhere, except the fixation output, 0.8
  while the network must fixate, and the ring outputs from the response on,
  0.05 + 0.8·exp(−d²/2) around the response direction;
* a response is read out at a trial's last step: the network fixates when its
  fixation output exceeds 0.5; otherwise its direction is the population
  vector of the ring outputs, correct within 0.2π of the target's.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BUMP_HEIGHT", "BUMP_WIDTH", "FIXATE_TARGET", "RESPONSE_TOLERANCE", "TARGET_BASELINE", "bump",
    "RING_OUTCOMES", "STIMULUS_DIRECTIONS", "circular_distance", "nearest_unit", "population_vector",
    "preferred_directions", "ring_choice_correct", "ring_outcome",
]  # fmt: skip

BUMP_HEIGHT = 0.8
BUMP_WIDTH = np.pi / 8  # the unit of d in exp(-d²/2)
TARGET_BASELINE = 0.05  # every target output's value when it is not driven
FIXATE_TARGET = 0.8  # the fixation output's target while fixating (a sigmoid output never reaches 1)
RESPONSE_TOLERANCE = 0.2 * np.pi  # a response within this angle of the target's is correct
STIMULUS_DIRECTIONS = ("stim_theta", "stim1_theta", "stim2_theta", "sample_theta", "test_theta")
"""The trial conditions that hold the directions of the stimuli a trial shows (NaN where a task has none)."""
RING_OUTCOMES = ("correct", "withheld", "distractor", "elsewhere", "responded")
"""The kinds of :func:`ring_outcome`, in this order."""


def preferred_directions(n_ring: int) -> np.ndarray:
    """(n_ring,) the units' preferred directions 2πk/n_ring in radians."""
    return 2 * np.pi * np.arange(n_ring) / n_ring


def circular_distance(a, b) -> np.ndarray:
    """|a − b| on the circle, in [0, π] (radians; arrays broadcast)."""
    difference = np.mod(np.abs(np.asarray(a, dtype=np.float64) - b), 2 * np.pi)
    return np.minimum(difference, 2 * np.pi - difference)


def bump(theta, n_ring: int) -> np.ndarray:
    """(..., n_ring) 0.8·exp(−d²/2) with d = circular distance from ``theta`` (...) to each unit, over π/8."""
    d = circular_distance(np.asarray(theta, dtype=np.float64)[..., None], preferred_directions(n_ring)) / BUMP_WIDTH
    return BUMP_HEIGHT * np.exp(-(d**2) / 2)


def nearest_unit(theta, n_ring: int) -> np.ndarray:
    """The index of the ring unit whose preferred direction is closest to ``theta``."""
    theta = np.asarray(theta, dtype=np.float64)[..., None]
    return np.argmin(circular_distance(theta, preferred_directions(n_ring)), axis=-1)


def population_vector(activity: np.ndarray) -> np.ndarray:
    """(...) the direction in [0, 2π) read from ``activity`` (..., n_ring) as Yang's ``popvec`` reads it.

    The cosine and sine sums are divided by the summed activity before
    ``arctan2``, as in the original: a negative sum turns the direction by π.
    NaN where the summed activity is 0.
    """
    activity = np.asarray(activity, dtype=np.float64)
    directions = preferred_directions(activity.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        total = activity.sum(-1)
        cosine = (activity * np.cos(directions)).sum(-1) / total
        sine = (activity * np.sin(directions)).sum(-1) / total
        return np.mod(np.arctan2(sine, cosine), 2 * np.pi)


def ring_choice_correct(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(...) bool: Yang's ``get_perf`` for one step's ``output`` and ``target`` (..., 1 + n_ring).

    The target asks to fixate when its fixation entry exceeds 0.5; else its
    direction is the population vector of its ring entries. Correct: fixating
    when asked to, or not fixating and within 0.2π of the target direction.
    """
    output, target = np.asarray(output, dtype=np.float64), np.asarray(target, dtype=np.float64)
    fixating = output[..., 0] > 0.5
    should_fixate = target[..., 0] > 0.5
    with np.errstate(invalid="ignore"):
        close = circular_distance(population_vector(output[..., 1:]), population_vector(target[..., 1:]))
        close = close < RESPONSE_TOLERANCE
    return np.where(should_fixate, fixating, close & ~fixating)


def ring_outcome(output: np.ndarray, target: np.ndarray, shown: np.ndarray | None = None) -> np.ndarray:
    """(...) the kind of each response, one of :data:`RING_OUTCOMES`, by the read-out of :func:`ring_choice_correct`.

    ``output`` and ``target`` are (..., 1 + n_ring) at the scored step (the
    output after the sigmoid); ``shown`` (..., K) holds the directions of the
    stimuli the trial showed (NaN for none). A trial that should respond is
    ``correct`` (:func:`ring_choice_correct`), ``withheld`` (still fixating),
    ``distractor`` (its direction is within 0.2π of a shown stimulus that is
    not within 0.2π of the target: the other stimulus of a decision, the
    stimulus itself in an anti task) or ``elsewhere`` (any other direction,
    e.g. between two stimuli); one that should fixate is ``correct`` or
    ``responded``. The two error kinds of a decision task tell a wrong choice
    (``distractor``) from no choice (``elsewhere``: two bumps read out between them).
    """
    output, target = np.asarray(output, dtype=np.float64), np.asarray(target, dtype=np.float64)
    correct = ring_choice_correct(output, target)
    should_fixate = target[..., 0] > 0.5
    fixating = output[..., 0] > 0.5
    distractor = np.zeros(correct.shape, dtype=bool)
    if shown is not None:
        shown = np.asarray(shown, dtype=np.float64).reshape(*correct.shape, -1)
        with np.errstate(invalid="ignore"):
            response = population_vector(output[..., 1:])[..., None]
            aim = population_vector(target[..., 1:])[..., None]
            lure = (circular_distance(shown, aim) >= RESPONSE_TOLERANCE) & np.isfinite(shown)
            distractor = (lure & (circular_distance(response, shown) < RESPONSE_TOLERANCE)).any(-1)
    return np.select([correct, should_fixate, fixating, distractor],
                     ["correct", "responded", "withheld", "distractor"], default="elsewhere")
