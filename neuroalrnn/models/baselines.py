"""Baselines behind the AL-RNN's interface: tanh RNN, GRU and LSTM (torch.nn layers plus a linear readout)."""

from __future__ import annotations

import torch
from torch import nn

from .alrnn import _check_inputs, _check_sizes

__all__ = ["GRUBaseline", "LSTMBaseline", "TanhRNN"]


class _TorchRecurrentBaseline(nn.Module):
    """A torch.nn recurrent layer plus a linear readout, same interface as ALRNN."""

    kind = ""
    _layer: type[nn.RNNBase]
    _layer_kwargs: dict = {}

    def __init__(self, n_inputs: int, n_outputs: int, n_units: int, **_ignored) -> None:
        super().__init__()
        _check_sizes(n_inputs=n_inputs, n_outputs=n_outputs, n_units=n_units)
        self.n_inputs, self.n_outputs, self.n_units = n_inputs, n_outputs, n_units
        self.n_nonlinear = n_units
        self.rnn = self._layer(n_inputs, n_units, batch_first=True, **self._layer_kwargs)
        self.readout = nn.Linear(n_units, n_outputs)

    def forward(self, inputs: torch.Tensor, z0=None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = _check_inputs(inputs, self.n_inputs)
        latents, _ = self.rnn(inputs) if z0 is None else self.rnn(inputs, z0)
        return self.readout(latents), latents

    def regimes(self, latents) -> None:
        """Smooth nonlinearities have no linear regimes."""
        return None


class TanhRNN(_TorchRecurrentBaseline):
    """Vanilla RNN, z_t = tanh(W_in s_t + W z_{t-1} + b); readout y_t = B z_t + b."""

    kind = "tanh"
    _layer = nn.RNN
    _layer_kwargs = {"nonlinearity": "tanh"}


class GRUBaseline(_TorchRecurrentBaseline):
    """Gated recurrent unit network (torch.nn.GRU) with a linear readout."""

    kind = "gru"
    _layer = nn.GRU


class LSTMBaseline(_TorchRecurrentBaseline):
    """LSTM network (torch.nn.LSTM) with a linear readout; latents are the hidden states h_t."""

    kind = "lstm"
    _layer = nn.LSTM
