"""`neuroalrnn bench`: the timing of training-batch production (ngym.Dataset against our trial bank)."""

from __future__ import annotations

import math

import pytest
import torch

from neuroalrnn.workflows import bench


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


def test_a_tiny_benchmark_reports_every_comparison(small_banks, monkeypatch):
    """run_benchmark end to end at a tiny size: the single-step table, the loops, the batches, the ratios."""
    monkeypatch.setattr(bench, "SIZES", ((16, 8),))
    monkeypatch.setattr(bench, "SWEEP_GRIDS", {8: ((1, 2), (0,), 4)})
    lines: list[str] = []
    results = bench.run_benchmark(rounds=1, repeats=1, loop_steps=6, memory=False, log=lines.append,
                                  sweep_workers=0)
    assert "(e) a P x seed sweep" in "\n".join(lines) and results["sweep_M8"]["speedup"] > 0
    text = "\n".join(lines)
    for variant in ("nn.RNN", "AL-RNN plain", "AL-RNN fast"):
        assert f"    {variant} " in text, variant
    step = results["step_M16_B8"]
    assert math.isclose(step["fast_over_rnn"], step["AL-RNN fast"] / step["nn.RNN"])
    assert results["loop"]["speedup"] > 0 and results["batch"]["speedup"] > 0
    assert "compiled" not in text and "loops" not in results


@pytest.mark.parametrize("variant", ["nn.RNN", "AL-RNN plain", "AL-RNN fast"])
def test_each_timed_step_trains(variant):
    """A timed step is a real training step: forward, loss, backward and an optimiser update."""
    step = bench._make(variant, 16, 4)
    before = [parameter.detach().clone() for parameter in _parameters_of(step)]
    step()
    after = _parameters_of(step)
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def _parameters_of(step) -> list[torch.Tensor]:
    """The parameters the step's optimiser updates (found through the closure)."""
    optimizer = next(cell.cell_contents for cell in step.__closure__
                     if isinstance(cell.cell_contents, torch.optim.Optimizer))
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]
