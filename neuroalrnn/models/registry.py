"""Models by kind name: :data:`MODEL_KINDS` and :func:`build_model`."""

from __future__ import annotations

import torch
from torch import nn

from .alrnn import ALRNN, INITIALISATIONS
from .baselines import GRUBaseline, LSTMBaseline, TanhRNN

__all__ = ["MODEL_KINDS", "build_model"]

MODEL_KINDS = {
    "alrnn": "almost-linear RNN: M units, the last P of them ReLU",
    "linear": "AL-RNN with P = 0 (an exactly linear RNN)",
    "plrnn": "AL-RNN with P = M (every unit ReLU)",
    "tanh": "vanilla tanh RNN (torch.nn.RNN)",
    "gru": "GRU (torch.nn.GRU)",
    "lstm": "LSTM (torch.nn.LSTM)",
}
_BASELINES = {cls.kind: cls for cls in (TanhRNN, GRUBaseline, LSTMBaseline)}


def build_model(
    kind: str,
    n_inputs: int,
    n_outputs: int,
    n_units: int,
    n_nonlinear: int | None = None,
    **options,
) -> nn.Module:
    """Build a model by kind name (see ``MODEL_KINDS``).

    ``n_nonlinear`` is required for ``alrnn`` and fixed for ``linear`` (0) and
    ``plrnn`` (M); ``options`` (noise_std, slope, init, generator) go to the
    AL-RNN. Baselines accept only ``generator`` (it seeds torch's default
    initialisation); any other non-default option is an error.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; valid models: {', '.join(MODEL_KINDS)}")
    if kind in _BASELINES:
        generator = options.pop("generator", None)
        unsupported = {
            name: value for name, value in options.items()
            if value != {"noise_std": 0.0, "slope": 0.0, "init": INITIALISATIONS[0]}.get(name)
        }
        if unsupported:
            raise ValueError(
                f"options {sorted(unsupported)} apply to AL-RNNs only; model {kind!r} uses torch's own "
                "layer and initialisation"
            )
        # torch.nn layers draw from the global RNG: seed it from the generator, then restore it.
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(generator.initial_seed())
            return _BASELINES[kind](n_inputs, n_outputs, n_units)
    if kind == "linear":
        n_nonlinear = 0
    elif kind == "plrnn":
        n_nonlinear = n_units
    elif n_nonlinear is None:
        raise ValueError("model 'alrnn' needs n_nonlinear (P, the number of ReLU units)")
    return ALRNN(n_inputs, n_outputs, n_units, n_nonlinear, **options)
