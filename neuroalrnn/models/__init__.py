"""Recurrent models: the almost-linear RNN (AL-RNN) and baselines behind one interface.

Every model maps inputs ``(batch, time, n_inputs)`` to
``(outputs, latents)`` with shapes ``(batch, time, n_outputs)`` and
``(batch, time, n_units)``. The initial state is zero; the first latent state
returned is z_1, computed from the first input s_1.

The AL-RNN's update equation is written twice, once per array library: in
torch by :meth:`ALRNN.step` (used by :meth:`ALRNN.forward`) and in NumPy by
:meth:`ALRNNParams.step`, the parameter container that analyses work on
(:meth:`ALRNN.params` and :meth:`ALRNN.from_params` convert). Regime codes are
encoded by :func:`bits_to_codes` and decoded by :func:`codes_to_bits`.

Modules: :mod:`.alrnn` (the AL-RNN, its parameters and regime codes),
:mod:`.baselines` (tanh RNN, GRU, LSTM), :mod:`.registry` (models by kind
name), :mod:`.fast` (the AL-RNN's fused training step) and :mod:`.pack` (N
AL-RNNs of one size stacked into one batched model).
"""

from .alrnn import (
    ALRNN,
    INITIALISATIONS,
    MAX_INTEGER_CODE_BITS,
    PARAMETER_NAMES,
    STABLE_COUPLING_NORM,
    STABLE_SELF_COUPLING,
    ALRNNParams,
    bits_to_codes,
    codes_to_bits,
    phi_star,
    regime_codes,
)
from .baselines import GRUBaseline, LSTMBaseline, TanhRNN
from .pack import PackedALRNN
from .registry import MODEL_KINDS, build_model

__all__ = [
    "ALRNN",
    "ALRNNParams",
    "GRUBaseline",
    "INITIALISATIONS",
    "LSTMBaseline",
    "MAX_INTEGER_CODE_BITS",
    "MODEL_KINDS",
    "PARAMETER_NAMES",
    "PackedALRNN",
    "STABLE_COUPLING_NORM",
    "STABLE_SELF_COUPLING",
    "TanhRNN",
    "bits_to_codes",
    "build_model",
    "codes_to_bits",
    "phi_star",
    "regime_codes",
]
