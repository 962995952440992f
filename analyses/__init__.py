"""Analyses of trained AL-RNNs: functions of a trials Dataset and the model's parameters.

Every function takes an ``xarray.Dataset`` in the ``trials.nc`` layout
(dims ``trial``, ``time``, ``unit``, ...) and/or the model's parameters
(A, W, h, C, B, b; see :class:`ALRNNParams`), never a Trainer, and returns
labelled xarray objects with fixed dimension names (``regime``, ``epoch``,
``task``, ...).

Modules: :mod:`.regimes` (occupancy, dwell times, transitions, regime–epoch
map), :mod:`.dynamics` (per-regime maps, eigenvalues, fixed points, cycles),
:mod:`.primitives` (integration, gating, transients), :mod:`.pipeline`
(everything in one Dataset), :mod:`.sharing` (how much several tasks share:
regimes, unit task variance, subspaces), :mod:`.figures`,
:mod:`.sharing_figures` and :mod:`.report`; for recordings, :mod:`.recordings` (NWB and NetCDF in),
:mod:`.compare` (geometry against recordings), :mod:`.fit_scores` (co-bps, PSTH R², latent R² of a model
fitted to them) and :mod:`.alignment` (the regimes of two models matched on the same trials).
"""

from ..models import ALRNNParams, bits_to_codes, codes_to_bits
from .alignment import align_regimes
from .core import regime_labels, validate_trials
from .dynamics import amplification, find_cycles, find_fixed_points, regime_dynamics
from .pipeline import analyze
from .primitives import accumulated_response, boundary_transients, gating, integration_modes, transient_amplification
from .regimes import dwell_times, occupancy_by, regime_epoch_table, regime_statistics
from .sharing import compare_sharing, sharing_analysis

__all__ = [
    "ALRNNParams",
    "align_regimes",
    "accumulated_response",
    "amplification",
    "analyze",
    "bits_to_codes",
    "boundary_transients",
    "codes_to_bits",
    "compare_sharing",
    "dwell_times",
    "find_cycles",
    "find_fixed_points",
    "gating",
    "integration_modes",
    "occupancy_by",
    "regime_dynamics",
    "regime_epoch_table",
    "regime_labels",
    "regime_statistics",
    "sharing_analysis",
    "transient_amplification",
    "validate_trials",
]
