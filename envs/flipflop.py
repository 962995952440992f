"""The n-bit flip-flop (Sussillo & Barak 2013).

Sussillo D, Barak O (2013). Opening the black box: low-dimensional dynamics in
high-dimensional recurrent neural networks. Neural Computation 25(3), 626-649.
"""

from __future__ import annotations

import numpy as np
from neurogym.utils import spaces

from .classic import SequenceTask
from .options import check_integer, check_number

__all__ = ["FlipFlop"]


class FlipFlop(SequenceTask):
    """Hold, on each of ``n_bits`` channels, the sign of the last pulse received.

    Epochs: ``stimulus`` (1 step: a pulse of random sign on every channel, so
    every memory is defined from the next step on) → ``decision``
    (``seq_len`` steps, all scored).

    Inputs ``pulse_0`` … ``pulse_<n_bits-1>``: during the decision epoch each
    channel independently receives, at each step with probability
    ``pulse_prob``, a pulse of +1 or −1 (equally likely; a pulse may repeat
    the sign already held); 0 otherwise.

    Outputs and targets (``target_kind = "regression"``, ``memory_0`` …):
    at step t, the sign of the latest pulse on that channel at a step before
    t; 0 at the stimulus step, before any pulse has been taken in. So the
    target is ±1 throughout the decision epoch and flips one step after the
    pulse that flips it. The one-step lag is deliberate: in a network whose
    input enters the state linearly and whose output is read linearly from
    the same state (``y_t = B z_t``, ``z_t = … + C s_t``, as in an AL-RNN), a
    pulse moves the output of its own step by the same amount B C s_t
    whatever the state, but it would have to move it by 0 (sign already
    held) or by 2 (a flip); the next step's output can depend on both.

    Scoring ``"regression"``: a trial is correct when every output at every
    decision step is within ``tolerance`` (default 0.5) of its ±1 target, i.e.
    has the right sign with a margin of 0.5.

    Args:
        dt: time step in ms (a whole number; it only labels the time axis).
        n_bits: channels, >= 1 (Sussillo & Barak used 3).
        seq_len: steps of the decision epoch, >= 1.
        pulse_prob: probability of a pulse per channel per decision step, in
            [0, 1]; the default 0.05 gives ~2 pulses per channel per trial.
        tolerance: a correct output's absolute error is below it; > 0.

    Trial conditions (keys of the dict returned by ``new_trial``): ``pulses``
    ((1 + seq_len, n_bits) array of −1/0/+1, the stimulus step first; can be
    pinned: ``new_trial(pulses=...)``, its first row nonzero), ``n_pulses``
    (pulses after the stimulus step, all channels), ``n_flips`` (sign changes
    of the targets in the decision epoch, all channels), ``seq_len``.
    """

    metadata = {  # noqa: RUF012
        "paper_link": "https://doi.org/10.1162/NECO_a_00409",
        "paper_name": "Opening the black box: low-dimensional dynamics in high-dimensional recurrent neural networks",
        "tags": ["working memory", "continuous action space", "multidimensional action space", "supervised"],
        "render_modes": [],
    }
    epoch_names = ("stimulus", "decision")
    canonical_epochs = {"stimulus": "stimulus", "decision": "decision"}  # noqa: RUF012
    condition_names = ("pulses", "n_pulses", "n_flips", "seq_len")
    target_kind = "regression"
    scoring = "regression"

    def __init__(
        self, dt: int = 10, n_bits: int = 3, seq_len: int = 40, pulse_prob: float = 0.05, tolerance: float = 0.5
    ) -> None:
        super().__init__(dt=dt)
        self.n_bits = check_integer("n_bits", n_bits, 1)
        self.seq_len = check_integer("seq_len", seq_len, 1)
        self.pulse_prob = check_number("pulse_prob", pulse_prob, 0.0, 1.0)
        self.tolerance = check_number("tolerance", tolerance, 0.0, low_open=True)
        self._set_steps(stimulus=1, decision=self.seq_len)
        shape = (self.n_bits,)
        channels = list(range(self.n_bits))
        self.observation_space = spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32, name={"pulses": channels})
        self.action_space = spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32, name={"memory": channels})
        self.input_names = tuple(f"pulse_{i}" for i in range(self.n_bits))
        self.output_names = tuple(f"memory_{i}" for i in range(self.n_bits))

    def _new_trial(self, **kwargs):
        rng, shape = self.rng, (1 + self.seq_len, self.n_bits)
        signs = rng.choice([-1, 1], size=shape)
        occurs = rng.uniform(size=shape) < self.pulse_prob
        occurs[0] = True
        pulses = np.where(occurs, signs, 0)
        unknown = set(kwargs) - {"pulses"}
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; valid: ['pulses']")
        if "pulses" in kwargs:
            pinned = np.asarray(kwargs["pulses"])
            if pinned.shape != shape or not np.isin(pinned, (-1, 0, 1)).all() or not pinned[0].all():
                raise ValueError(
                    f"pulses must be a (1 + seq_len, n_bits) = {shape} array of -1/0/+1 with a nonzero "
                    f"first row, got {kwargs['pulses']!r}"
                )
            pulses = pinned.astype(np.int64)
        # held[t]: the sign of the latest pulse at a step <= t; it is the target at t + 1
        latest = np.maximum.accumulate(np.where(pulses != 0, np.arange(len(pulses))[:, None], 0), axis=0)
        held = np.take_along_axis(pulses, latest, axis=0).astype(np.float32)
        trial = {
            "pulses": pulses,
            "n_pulses": int(np.count_nonzero(pulses[1:])),
            "n_flips": int(np.count_nonzero(np.diff(held[:-1], axis=0))),
            "seq_len": self.seq_len,
        }

        self.add_period(list(self.epoch_names))
        self.add_ob(pulses[:1].astype(np.float32), period="stimulus")
        self.add_ob(pulses[1:].astype(np.float32), period="decision")
        self.set_groundtruth(held[:-1], period="decision")
        return trial
