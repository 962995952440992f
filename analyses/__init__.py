"""Analyses of trained AL-RNNs: functions of a trials Dataset and the model's parameters.

Every function takes an ``xarray.Dataset`` in the ``trials.nc`` layout
(dims ``trial``, ``time``, ``unit``, ...) and/or the model's parameters
(A, W, h, C, B, b; see :class:`ALRNNParams`), never a Trainer, and returns
labelled xarray objects with fixed dimension names (``regime``, ``epoch``,
``task``, ...).
"""

from .core import ALRNNParams, bits_to_codes, codes_to_bits, regime_labels, validate_trials

__all__ = ["ALRNNParams", "bits_to_codes", "codes_to_bits", "regime_labels", "validate_trials"]
