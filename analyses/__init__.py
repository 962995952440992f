"""Analyses of trained AL-RNNs (to come; see the regime-analysis issue).

This package will hold functions of an ``xarray.Dataset`` in the ``trials.nc``
layout and of the model's parameters (A, W, h, C, B, b), never of a Trainer:
regime statistics (occupancy, dwell times, transitions), regime–epoch maps and
their mutual information, per-regime linear maps with fixed points, cycles and
slow modes, computational primitives (integration, gating, transients),
sharing across tasks, and comparison with neural recordings.
"""
