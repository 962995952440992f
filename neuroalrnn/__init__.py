"""neuroalrnn: train almost-linear RNNs on cognitive tasks and find where nonlinearity is needed.

Layers, each importing only those before it: ``neuroalrnn.envs`` (tasks and
trial arrays), ``neuroalrnn.models`` (AL-RNN and baselines),
``neuroalrnn.training`` (configs, Trainer, run directories),
``neuroalrnn.evaluation`` (simulation and scores), ``neuroalrnn.analyses``
(regimes, dynamics, sharing, comparison; uses models, never training) and
``neuroalrnn.workflows`` (CLI, analysis runs, sweeps, bench). ``formats``,
``storage`` and ``system`` serve every layer.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neuroalrnn")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from .models import (
    ALRNN,
    MODEL_KINDS,
    ALRNNParams,
    GRUBaseline,
    LSTMBaseline,
    TanhRNN,
    bits_to_codes,
    build_model,
    codes_to_bits,
    regime_codes,
)

__all__ = [
    "ALRNN",
    "ALRNNParams",
    "MODEL_KINDS",
    "GRUBaseline",
    "LSTMBaseline",
    "TanhRNN",
    "__version__",
    "bits_to_codes",
    "build_model",
    "codes_to_bits",
    "regime_codes",
]
