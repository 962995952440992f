"""What the classic sequence benchmarks share: a task base class timed in steps.

The tasks themselves live one per file: ``adding.py`` (adding problem),
``copy_memory.py`` (copy memory / delayed recall), ``flipflop.py`` (n-bit
flip-flop) and ``sequential_digits.py`` (8×8 digits read row by row or pixel
by pixel). They count time in steps: every epoch lasts a whole number of steps
of ``dt`` ms, so ``dt`` only labels the time axis. Each declares the task
interface of :class:`~neuroalrnn.envs.base.TaskEnv` (epochs, target kind,
scoring, tolerance, input and output names).
"""

from __future__ import annotations

import numpy as np

from .base import TaskEnv
from .options import check_number

__all__ = ["SequenceTask"]


class SequenceTask(TaskEnv):
    """A trial-based task timed in steps, scored online in its ``decision`` epoch.

    Subclasses declare the :class:`~neuroalrnn.envs.base.TaskEnv` attributes
    (``epoch_names``, ``canonical_epochs``, ``target_kind``, ``scoring`` ...),
    call :meth:`_set_steps` in ``__init__`` and build each trial in
    ``_new_trial`` with ``add_period``/``add_ob``/``set_groundtruth``.

    Stepping through ``step`` (reinforcement-learning style) rewards each
    decision step 1 when it is correct by the task's rule (argmax equal to the
    target, or every output within ``tolerance``) and 0 otherwise; at the end
    of a trial ``info["performance"]`` is the trial's score under ``scoring``.
    """

    def __init__(self, dt: int = 10) -> None:
        # epochs are placed at multiples of dt; whole milliseconds keep step counts exact
        if not check_number("dt", dt, 0.0, low_open=True).is_integer():
            raise ValueError(f"dt must be a whole number of ms > 0, got {dt!r}")
        super().__init__(dt=int(dt))
        self._decision_actions: list = []
        self._decision_hits: list[bool] = []

    def _set_steps(self, **steps: int) -> None:
        """Fix each epoch's duration, given in steps, in the order of ``epoch_names``."""
        self.timing = {name: steps[name] * self.dt for name in self.epoch_names}

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
