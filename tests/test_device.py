"""The device option: one code path on every device, recorded in config.json, refused clearly where absent.

These tests run on the CPU (the CI machines have no GPU); the CUDA path is the
same code with another ``torch.device``. Where torch sees a GPU, the last test
also trains there.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroalrnn.models import ALRNN
from neuroalrnn.models.alrnn import recurrent_noise
from neuroalrnn.models.fast import alrnn_forward_fast
from neuroalrnn.system import DEVICES, resolve_device
from neuroalrnn.training import Trainer, load_run
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.workflows.cli import main

SMALL = dict(n_units=8, n_nonlinear=2, steps=4, batch_size=4, eval_every=2, eval_trials=8, checkpoint_every=2,
             bank_size=8, seed=1, data_workers=0, noise_std=0.1)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_devices_resolve(no_cuda):
    assert DEVICES == ("cpu", "cuda", "auto")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto, got 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto"):
        TrainConfig(device="gpu")


def test_a_run_records_the_device_it_used(tmp_path, no_cuda):
    trainer = Trainer(TrainConfig(**SMALL, device="auto"), tmp_path / "run", progress=False).fit()
    assert trainer.config.device == "cpu"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["device"] == "cpu"
    assert next(trainer.model.parameters()).device.type == "cpu"


def test_auto_gives_the_weights_of_cpu_here(tmp_path, no_cuda):
    cpu = Trainer(TrainConfig(**SMALL), tmp_path / "cpu", progress=False).fit()
    auto = Trainer(TrainConfig(**SMALL, device="auto"), tmp_path / "auto", progress=False).fit()
    for a, b in zip(cpu.model.parameters(), auto.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_recurrent_noise_comes_from_the_cpu_generator():
    torch.manual_seed(7)
    like = torch.zeros(1, dtype=torch.float64)
    drawn = recurrent_noise((3, 5, 4), like)
    torch.manual_seed(7)
    np.testing.assert_array_equal(drawn.numpy(), torch.randn(3, 5, 4, dtype=torch.float64).numpy())
    # the plain and the fast model draw the same noise from the same seed
    model = ALRNN(3, 2, 6, 2, noise_std=0.3).train()
    inputs = torch.randn(4, 7, 3)
    torch.manual_seed(11)
    plain, _ = model(inputs)
    torch.manual_seed(11)
    fast, _ = alrnn_forward_fast(model, inputs)
    torch.testing.assert_close(plain, fast)


def test_a_run_recorded_on_another_device_resumes_here_when_told(tmp_path, no_cuda, capsys):
    run = tmp_path / "run"
    Trainer(TrainConfig(**SMALL), run, progress=False).fit()
    record = json.loads((run / "config.json").read_text())
    record["config"]["device"] = "cuda"
    (run / "config.json").write_text(json.dumps(record))
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 1
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--steps", "6", "--device", "cpu", "--no-progress"]) == 0
    loaded = load_run(run)
    assert loaded.step == 6 and loaded.config.device == "cpu"


@pytest.mark.parametrize("command", [
    ["train", "--out", "{tmp}/run", "--device", "cuda", "--steps", "2"],
    ["evaluate", "{tmp}/missing", "--device", "cuda"],
    ["bench", "--device", "cuda", "--rounds", "1"],
    ["sweep", "experiments/stimulus_selection_p.toml", "--out", "{tmp}/sweep", "--device", "cuda"],
])
def test_the_cli_refuses_cuda_without_a_gpu_in_one_line(tmp_path, no_cuda, capsys, command):
    assert main([part.format(tmp=tmp_path) for part in command]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("no CUDA device" in err[0] or "missing" in err[0])
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_evaluate_on_a_device_gives_the_cpu_trials(tmp_path):
    from neuroalrnn.evaluation import evaluate_run

    run = tmp_path / "run"
    Trainer(TrainConfig(**SMALL), run, progress=False).fit()
    default, _ = evaluate_run(run, 30, save=False)
    auto, _ = evaluate_run(run, 30, save=False, device="auto")
    np.testing.assert_allclose(auto["latents"].values, default["latents"].values, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_matches_the_cpu_to_rounding(tmp_path):
    cpu = Trainer(TrainConfig(**SMALL), tmp_path / "cpu", progress=False).fit()
    gpu = Trainer(TrainConfig(**SMALL, device="cuda"), tmp_path / "gpu", progress=False).fit()
    for a, b in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-4)
    assert load_run(tmp_path / "gpu").config.device == "cuda"
