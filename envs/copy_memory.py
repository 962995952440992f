"""Copy memory, or delayed recall of a sequence (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

Hochreiter S, Schmidhuber J (1997). Long short-term memory. Neural
Computation 9(8), 1735-1780 (experiment 2).
Arjovsky M, Shah A, Bengio Y (2016). Unitary evolution recurrent neural
networks. ICML, PMLR 48, 1120-1128 (the copying memory problem).
"""

from __future__ import annotations

import numpy as np
from neurogym.utils import spaces

from .classic import SequenceTask
from .options import check_integer

__all__ = ["CopyMemory"]


class CopyMemory(SequenceTask):
    """Reproduce a sequence of symbols, in order, after a delay.

    Epochs: ``stimulus`` (``seq_len`` steps, one item per step) → ``delay``
    (``delay`` steps without input) → ``decision`` (``seq_len`` steps).

    Inputs: ``symbol_1`` … ``symbol_<n_symbols>``, one-hot, the item shown at
    each stimulus step (items drawn uniformly, with replacement); ``go``, 1
    during the decision epoch, 0 before (the go cue that asks for the recall).

    Outputs and targets (``target_kind = "class"``, ``n_symbols + 1`` classes):
    class 0 ``blank`` (no answer yet) during stimulus and delay; at decision
    step k the class of the k-th item (symbol s is class s). As in Arjovsky et
    al., the network must stay blank until the go cue, then output the items
    one per step. Scoring ``"steps"``: accuracy is the fraction of decision
    steps whose argmax is the item due at that step; chance is
    1 / ``n_symbols``.

    Args:
        dt: time step in ms (a whole number; it only labels the time axis).
        seq_len: items to remember, >= 1.
        n_symbols: size of the alphabet, >= 2.
        delay: steps between the last item and the go cue, >= 1.

    Trial conditions (keys of the dict returned by ``new_trial``): ``items``
    (tuple of symbols, 1 … ``n_symbols``; can be pinned:
    ``new_trial(items=(1, 4, 2, 2, 3))``), ``item_0`` … ``item_<seq_len-1>``
    (the same, one scalar per position), ``seq_len``, ``delay``.
    """

    metadata = {  # noqa: RUF012
        "paper_link": "https://proceedings.mlr.press/v48/arjovsky16.html",
        "paper_name": "Unitary evolution recurrent neural networks",
        "tags": ["working memory", "delayed response", "n-alternative", "supervised"],
        "render_modes": [],
    }
    epoch_names = ("stimulus", "delay", "decision")
    canonical_epochs = {"stimulus": "stimulus", "delay": "delay", "decision": "decision"}  # noqa: RUF012
    target_kind = "class"
    scoring = "steps"

    def __init__(self, dt: int = 10, seq_len: int = 5, n_symbols: int = 4, delay: int = 10) -> None:
        super().__init__(dt=dt)
        self.seq_len = check_integer("seq_len", seq_len, 1)
        self.n_symbols = check_integer("n_symbols", n_symbols, 2)
        self.delay = check_integer("delay", delay, 1)
        self._set_steps(stimulus=self.seq_len, delay=self.delay, decision=self.seq_len)
        n = self.n_symbols
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(n + 1,), dtype=np.float32, name={"symbols": list(range(n)), "go": n}
        )
        self.action_space = spaces.Discrete(n + 1, name={"blank": 0, "symbols": list(range(1, n + 1))})
        symbols = tuple(f"symbol_{s}" for s in range(1, n + 1))
        self.input_names = (*symbols, "go")
        self.output_names = ("blank", *symbols)
        self.condition_names = ("items", *(f"item_{k}" for k in range(self.seq_len)), "seq_len", "delay")

    def _new_trial(self, **kwargs):
        items = self.rng.randint(1, self.n_symbols + 1, size=self.seq_len)
        unknown = set(kwargs) - {"items"}
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; valid: ['items']")
        if "items" in kwargs:
            pinned = np.asarray(kwargs["items"])
            valid = np.issubdtype(pinned.dtype, np.integer) and pinned.shape == (self.seq_len,)
            if not valid or not np.all((pinned >= 1) & (pinned <= self.n_symbols)):
                raise ValueError(
                    f"items must be {self.seq_len} integers in 1..{self.n_symbols} (seq_len, n_symbols), "
                    f"got {kwargs['items']!r}"
                )
            items = pinned.astype(np.int64)
        trial = {"items": tuple(int(s) for s in items)}
        trial.update((f"item_{k}", int(s)) for k, s in enumerate(items))
        trial.update(seq_len=self.seq_len, delay=self.delay)

        self.add_period(list(self.epoch_names))
        self.add_ob(np.eye(self.n_symbols, dtype=np.float32)[items - 1], period="stimulus", where="symbols")
        self.add_ob(1.0, period="decision", where="go")
        self.set_groundtruth(items, period="decision")
        return trial
