"""AL-RNNs fitted to neural recordings (``neuroalrnn fit``): data, model and objective, trainer, scores.

:class:`FitConfig` holds the settings, :class:`FitTrainer` fits and keeps an ordinary run directory (so
``evaluate``, ``analyze`` and ``compare`` work on it), :func:`evaluate_fit` scores it on held-out trials and
neurons (co-bps, PSTH R², latent R²).
"""

from .config import FitConfig
from .evaluate import evaluate_fit, fit_scores
from .trainer import FitTrainer, is_fit_run, load_fit

__all__ = ["FitConfig", "FitTrainer", "evaluate_fit", "fit_scores", "is_fit_run", "load_fit"]
