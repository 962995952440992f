"""Shared fixtures: small configurations and a trained run made once per session."""

from __future__ import annotations

import pytest
import torch

from neuroalrnn.training.config import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    # Small RNNs run fastest on one thread on 2-core CI machines.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(
        n_units=12, n_nonlinear=3, steps=12, batch_size=6, checkpoint_every=4,
        eval_every=4, eval_trials=20, noise_std=0.05, seed=3, bank_size=12, bank_reuse=1, data_workers=0,
    )
