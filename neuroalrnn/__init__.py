"""neuroalrnn: train almost-linear RNNs on cognitive tasks and find where nonlinearity is needed.

Layers: ``neuroalrnn.envs`` (tasks and trial arrays), ``neuroalrnn`` (models,
training, run directories, simulation, CLI) and ``neuroalrnn.analyses``.
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
