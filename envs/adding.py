"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015).

Hochreiter S, Schmidhuber J (1997). Long short-term memory. Neural
Computation 9(8), 1735-1780 (experiment 4).
Le QV, Jaitly N, Hinton GE (2015). A simple way to initialize recurrent
networks of rectified linear units. arXiv:1504.00941.
"""

from __future__ import annotations

import numpy as np
from neurogym.utils import spaces

from .classic import SequenceTask
from .options import check_integer, check_number

__all__ = ["AddingProblem"]

PINNABLE = ("first_position", "second_position", "first_value", "second_value")


class AddingProblem(SequenceTask):
    """Report the sum of the two marked numbers of a sequence.

    Epochs: ``stimulus`` (``seq_len`` steps) → ``decision`` (``decision_steps``
    steps).

    Inputs: ``value`` (0), a number drawn from U(0, 1) at every stimulus step;
    ``marker`` (1), 1 at exactly two stimulus steps, one in each half of the
    sequence (positions ``[0, seq_len // 2)`` and ``[seq_len // 2, seq_len)``),
    as in Le et al.; ``go`` (2), 1 during the decision epoch (value and marker
    are 0 there).

    Output and target (``target_kind = "regression"``, one output ``sum``): the
    sum of the two marked values during the decision epoch, 0 before it.

    Scoring (``"regression"``): a trial is correct when the output at every
    decision step is within ``tolerance`` of the sum (|error| < 0.1 by
    default). References for a network that has not learnt the task: always
    answering 1.0 has mean squared error 1/6 ≈ 0.167 (the variance of the sum)
    and is within 0.1 of the sum on 1 − 0.9² = 19 % of trials.

    Args:
        dt: time step in ms (a whole number; it only labels the time axis).
        seq_len: stimulus steps, >= 2. The classic benchmarks use 100-750;
            the default 30 keeps trials short for small networks.
        decision_steps: steps of the decision epoch, >= 1.
        tolerance: a correct answer's absolute error is below it; > 0.

    Trial conditions (keys of the dict returned by ``new_trial``; the first
    four can be pinned as keyword arguments): ``first_position``,
    ``second_position`` (step indices of the markers), ``first_value``,
    ``second_value`` (the marked values), ``sum``, ``seq_len``.
    """

    metadata = {  # noqa: RUF012
        "paper_link": "https://arxiv.org/abs/1504.00941",
        "paper_name": "A simple way to initialize recurrent networks of rectified linear units",
        "tags": ["working memory", "continuous action space", "supervised"],
        "render_modes": [],
    }
    epoch_names = ("stimulus", "decision")
    canonical_epochs = {"stimulus": "stimulus", "decision": "decision"}  # noqa: RUF012
    condition_names = ("first_position", "second_position", "first_value", "second_value", "sum", "seq_len")
    target_kind = "regression"
    scoring = "regression"

    def __init__(self, dt: int = 10, seq_len: int = 30, decision_steps: int = 1, tolerance: float = 0.1) -> None:
        super().__init__(dt=dt)
        self.seq_len = check_integer("seq_len", seq_len, 2)
        self.decision_steps = check_integer("decision_steps", decision_steps, 1)
        self.tolerance = check_number("tolerance", tolerance, 0.0, low_open=True)
        self._set_steps(stimulus=self.seq_len, decision=self.decision_steps)
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(3,), dtype=np.float32, name={"value": 0, "marker": 1, "go": 2}
        )
        # the sum of two numbers in [0, 1]
        self.action_space = spaces.Box(0.0, 2.0, shape=(1,), dtype=np.float32, name={"sum": 0})
        self.input_names = ("value", "marker", "go")
        self.output_names = ("sum",)

    def _new_trial(self, **kwargs):
        rng, half = self.rng, self.seq_len // 2
        values = rng.uniform(0.0, 1.0, size=self.seq_len).astype(np.float32)
        trial = {
            "first_position": int(rng.randint(half)),
            "second_position": int(half + rng.randint(self.seq_len - half)),
        }
        unknown = set(kwargs) - set(PINNABLE)
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; valid: {list(PINNABLE)}")
        trial.update((key, kwargs[key]) for key in trial.keys() & kwargs.keys())
        first = trial["first_position"] = check_integer("first_position", trial["first_position"], 0)
        second = trial["second_position"] = check_integer("second_position", trial["second_position"], 0)
        if not 0 <= first < second < self.seq_len:
            raise ValueError(
                f"positions must satisfy 0 <= first_position < second_position < seq_len = {self.seq_len}, "
                f"got {first} and {second}"
            )
        for key, position in (("first_value", first), ("second_value", second)):
            if key in kwargs:
                values[position] = check_number(key, kwargs[key], 0.0, 1.0)
            trial[key] = float(values[position])
        trial["sum"] = trial["first_value"] + trial["second_value"]
        trial["seq_len"] = self.seq_len

        marker = np.zeros(self.seq_len, dtype=np.float32)
        marker[[first, second]] = 1.0

        self.add_period(list(self.epoch_names))
        self.add_ob(values, period="stimulus", where="value")
        self.add_ob(marker, period="stimulus", where="marker")
        self.add_ob(1.0, period="decision", where="go")
        self.set_groundtruth(trial["sum"], period="decision")
        return trial
