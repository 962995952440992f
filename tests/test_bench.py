"""`neuroalrnn bench`: the timing of training-batch production (ngym.Dataset against our trial bank)."""

from __future__ import annotations

import math

import pytest

from neuroalrnn import bench


@pytest.fixture
def small_banks(monkeypatch):
    """Banks of 64 trials used once each: 2 batches of 32 per bank, so a round is quick."""
    task_config = bench._task_config
    monkeypatch.setattr(bench, "_task_config", lambda *args, **kwargs: task_config(*args, **kwargs).replace(
        bank_size=64, bank_reuse=1))


def test_batch_production_reports_ngym_and_the_trial_bank(small_banks):
    result = bench._batch_production(16, 32, rounds=2)
    assert result["steps_per_bank"] == 2 and result["bank_size"] == 64
    for name in ("ngym", "bank", "take", "ours"):
        assert 0 < result[name] < 10, name
    assert math.isclose(result["ours"], result["take"] + result["bank"] / 2)
