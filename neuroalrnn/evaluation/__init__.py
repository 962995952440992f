"""Evaluation layer: simulate trained models on fresh trials and score them.

Modules: :mod:`.simulate` (run a model on trials -> the ``trials.nc``
Dataset) and :mod:`.evaluate` (decision accuracy, psychometric curves and
:func:`evaluate_run`, the one path to a run's test trials). Imports models and
training, never workflows. This package exports what the two modules export.
"""

from . import evaluate as _evaluate
from . import simulate as _simulate
from .evaluate import *  # noqa: F403 (the names are evaluate.__all__)
from .simulate import *  # noqa: F403 (the names are simulate.__all__)

__all__ = sorted({*_evaluate.__all__, *_simulate.__all__})
