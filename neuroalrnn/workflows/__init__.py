"""Workflows: thin layers over models, training, evaluation and analyses that read and write run directories.

Modules: :mod:`.cli` (the ``neuroalrnn`` command line), :mod:`.run_analysis`
(``neuroalrnn analyze`` and ``neuroalrnn sharing`` on run directories),
:mod:`.bench` (``neuroalrnn bench``) and :mod:`.sweeps` (``neuroalrnn sweep``).
Nothing outside this package imports it.
"""
