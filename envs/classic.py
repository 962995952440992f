"""What the classic sequence benchmarks share: a TrialEnv base class and argument checks.

The tasks themselves live one per file: ``adding.py`` (adding problem),
``copy_memory.py`` (copy memory / delayed recall), ``flipflop.py`` (n-bit
flip-flop) and ``sequential_digits.py`` (8×8 digits read row by row or pixel
by pixel). They count time in steps: every epoch lasts a whole number of steps
of ``dt`` ms, so ``dt`` only labels the time axis.

Attributes every task defines (read by the sampler and the trainer):

* ``epoch_names`` — ordered epoch names; every task has a ``decision`` epoch,
  the steps where the output is scored; ``canonical_epochs`` maps each name to
  the vocabulary of :mod:`.epochs`.
* ``target_kind`` — ``"class"`` (``gt`` is (time,) int class labels, class 0
  meaning "no answer yet") or ``"regression"`` (``gt`` is (time, output)
  float32).
* ``scoring`` — how a trial counts as correct: ``"choice"`` (majority vote of
  the argmax over the decision epoch equals the target at its last step),
  ``"steps"`` (accuracy is the fraction of decision steps whose argmax equals
  that step's target) or ``"regression"`` (correct when every output at every
  decision step is within ``tolerance`` of its target: |error| < tolerance).
* ``tolerance`` (regression tasks only), ``input_names``, ``output_names``.
"""

from __future__ import annotations

import numbers

import numpy as np
from neurogym.core import TrialEnv

__all__ = ["SCORINGS", "TARGET_KINDS", "SequenceTask", "check_integer", "check_number"]

TARGET_KINDS = ("class", "regression")
SCORINGS = ("choice", "steps", "regression")


def check_integer(name: str, value, minimum: int) -> int:
    """``value`` as an int; ``ValueError`` naming ``name`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value, low: float, high: float = np.inf, *, low_open: bool = False) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless in [low, high] ((low, high] if ``low_open``)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not (value > low if low_open else value >= low) or not value <= high:  # NaN fails both
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


class SequenceTask(TrialEnv):
    """A trial-based task timed in steps, scored online in its ``decision`` epoch.

    Subclasses set the class attributes ``epoch_names``, ``canonical_epochs``,
    ``target_kind`` and ``scoring``, call :meth:`_set_steps` in ``__init__``
    and build each trial in ``_new_trial`` with ``add_period``/``add_ob``/
    ``set_groundtruth``.

    Stepping through ``step`` (reinforcement-learning style) rewards each
    decision step 1 when it is correct by the task's rule (argmax equal to the
    target, or every output within ``tolerance``) and 0 otherwise; at the end
    of a trial ``info["performance"]`` is the trial's score under ``scoring``.

    ``reset(seed=s)`` also re-seeds ``self.rng``, the generator NeuroGym tasks
    draw their trials from, so a seeded reset gives the same trials.
    """

    epoch_names: tuple[str, ...] = ()
    canonical_epochs: dict[str, str] = {}  # noqa: RUF012
    target_kind: str = "class"
    scoring: str = "choice"

    def __init__(self, dt: int = 10) -> None:
        real = isinstance(dt, numbers.Real) and not isinstance(dt, bool)
        if not real or not (np.isfinite(dt) and dt > 0 and float(dt).is_integer()):
            # epochs are placed at multiples of dt; whole milliseconds keep step counts exact
            raise ValueError(f"dt must be a positive whole number of ms, got {dt!r}")
        super().__init__(dt=int(dt))
        self._decision_actions: list = []
        self._decision_hits: list[bool] = []

    def _set_steps(self, **steps: int) -> None:
        """Fix each epoch's duration, given in steps, in the order of ``epoch_names``."""
        self.timing = {name: steps[name] * self.dt for name in self.epoch_names}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.seed(seed)
        return super().reset(seed=seed, options=options)

    def new_trial(self, **kwargs):
        self._decision_actions, self._decision_hits = [], []
        return super().new_trial(**kwargs)

    def _step(self, action):
        reward = 0.0
        gt = self.gt_now
        if self.in_period("decision"):
            if self.target_kind == "regression":
                hit = bool(np.all(np.abs(np.asarray(action, dtype=np.float64) - gt) < self.tolerance))
            else:
                hit = int(action) == int(gt)
            self._decision_actions.append(action)
            self._decision_hits.append(hit)
            reward = float(hit)
            self.performance = self._trial_score()
        return self.ob_now, reward, False, False, {"new_trial": False, "gt": gt}

    def _trial_score(self) -> float:
        """The score of the decision steps taken so far; the trial's score once the trial ends."""
        if self.scoring == "steps":
            return float(np.mean(self._decision_hits))
        if self.scoring == "regression":
            return float(all(self._decision_hits))
        votes = np.bincount(np.asarray(self._decision_actions, dtype=np.int64))
        return float(np.argmax(votes) == self.gt[self.end_ind["decision"] - 1])
