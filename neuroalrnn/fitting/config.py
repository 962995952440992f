"""The settings of a fit of an AL-RNN to recordings (:class:`FitConfig`), stored in a run's ``config.json``.

A fit run's ``config.json`` is an ordinary run record (``config``: the :class:`TrainConfig` of the model and
the optimiser) with one more part, ``fit``: these settings and, under ``fit.data``, what the fit learned of
the recordings when it started (sizes, names, and the held-out trials and neurons), so every later command
scores the same split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..training.config import FRACTION, NON_NEGATIVE_INTEGER, NON_NEGATIVE_NUMBER, Constraint, _setting

__all__ = ["FIT_CONSTRAINTS", "INPUT_SOURCES", "OBSERVATIONS", "FitConfig"]

OBSERVATIONS = ("poisson", "gaussian")
INPUT_SOURCES = ("auto", "file", "task")


@dataclass(frozen=True)
class FitConfig:
    """How an AL-RNN is fitted to recordings (see :mod:`neuroalrnn.fitting` for the model and the objective).

    ``recordings``: the file (NetCDF or NWB; :func:`neuroalrnn.analyses.recordings.read_recordings`), read with
    ``bin_ms`` (NWB; default: the task's dt) and ``mapping`` (file names -> the task's). ``observation``:
    ``poisson`` (spike counts per bin, expected count softplus(B z + b)) or ``gaussian`` (rates, z-scored per
    neuron, predicted by B z + b with squared error). ``inputs``: where each trial's inputs come from — the
    file's ``inputs`` variable (``file``), the task given the trial's conditions and epoch lengths
    (``task``), or the file's when it has them (``auto``).

    Teacher forcing: every ``forcing_interval`` steps (0 = never) the latent state is pulled towards the
    state a linear encoder reads off the held-in neurons' activity, z ← (1 − α) z + α ẑ with α =
    ``forcing_alpha`` (α = 1: sparse teacher forcing; interval 1 with α < 1: generalized teacher forcing).
    The encoder sees √counts smoothed over time by a Gaussian of ``smooth_bins`` bins.

    Held out: a ``test_fraction`` of the trials (never trained on) and a ``heldout_fraction`` of the neurons
    (trained on only in the training trials, never seen by the encoder; scored on the test trials: co-bps).
    PSTH R² groups test trials by the conditions named in ``psth_by`` (comma-separated; empty: the task's
    default condition, e.g. ``context``). ``truth``: a trials file of the same trials holding the true latents (synthetic data), for
    latent R².
    """

    recordings: str = _setting("", Constraint("text"), "the recordings file (NetCDF or NWB)")
    observation: str = _setting("poisson", Constraint("choice", choices=OBSERVATIONS),
                                "observation model: poisson (spike counts) or gaussian (rates)")
    bin_ms: float | None = _setting(None, Constraint("number", minimum=0, above_minimum=True, optional=True),
                                    "NWB bin width in ms; none: the task's dt")
    mapping: dict[str, Any] = _setting({}, Constraint("mapping"), "file condition/epoch names -> the task's")
    inputs: str = _setting("auto", Constraint("choice", choices=INPUT_SOURCES),
                           "trial inputs from the file, from the task, or auto (the file's when it has them)")
    forcing_interval: int = _setting(0, NON_NEGATIVE_INTEGER, "teacher forcing every N steps (0 = none)")
    forcing_alpha: float = _setting(1.0, Constraint("number", minimum=0, above_minimum=True, maximum=1),
                                    "teacher forcing strength α (1 = sparse TF; < 1 generalized TF)")
    smooth_bins: float = _setting(2.0, NON_NEGATIVE_NUMBER, "Gaussian smoothing (bins) of the encoder's input")
    test_fraction: float = _setting(0.2, FRACTION, "fraction of trials held out")
    heldout_fraction: float = _setting(0.2, FRACTION, "fraction of neurons held out (co-smoothing)")
    psth_by: str | None = _setting(None, Constraint("text", optional=True),
                                   "conditions grouping trials for PSTH R², comma-separated; none: the task's "
                                   "default condition (e.g. context)")
    psth_smooth_bins: float = _setting(0.0, NON_NEGATIVE_NUMBER, "Gaussian smoothing (bins) of the PSTHs")
    truth: str | None = _setting(None, Constraint("text", optional=True),
                                 "trials file of the same trials with true latents (for latent R²)")

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            item.metadata["constraint"].check(item.name, getattr(self, item.name))
        if not self.recordings:
            raise ValueError("recordings must name the recordings file")
        if self.test_fraction <= 0 or self.test_fraction >= 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if self.heldout_fraction >= 1:
            raise ValueError(f"heldout_fraction must lie in [0, 1), got {self.heldout_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FitConfig:
        unknown = sorted(set(values) - set(FIT_CONSTRAINTS))
        if unknown:
            raise ValueError(f"unknown fit settings {unknown}; valid: {sorted(FIT_CONSTRAINTS)}")
        return cls(**values)

    def replace(self, **changes: Any) -> FitConfig:
        return dataclasses.replace(self, **changes)


FIT_CONSTRAINTS: dict[str, Constraint] = {
    item.name: item.metadata["constraint"] for item in dataclasses.fields(FitConfig)
}
