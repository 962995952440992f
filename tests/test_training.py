"""Trainer: loss, schedule, reproducibility, exact resume, divergence, run directory files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroalrnn.training.config import TrainConfig
from neuroalrnn.models.fast import alrnn_forward_fast
from neuroalrnn.training.rundir import (
    CHECKPOINT_FILE,
    RunDirectoryError,
    exclusive,
    load_checkpoint,
    metrics_rows,
    read_metrics,
)
from neuroalrnn.training import (
    Trainer,
    TrainingDiverged,
    learning_rate,
    load_model,
    task_loss,
    weighted_cross_entropy,
)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}


def test_weighted_cross_entropy_matches_hand_computation():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, generator=generator)
    targets = torch.tensor([[0, 1, 2], [3, 0, 0]])
    weight = torch.tensor([[1.0, 2.0, 0.5], [3.0, 0.0, 0.0]])
    log_p = torch.log_softmax(logits, dim=-1)
    expected = -(
        1.0 * log_p[0, 0, 0] + 2.0 * log_p[0, 1, 1] + 0.5 * log_p[0, 2, 2] + 3.0 * log_p[1, 0, 3]
    ) / 4  # four weighted steps
    assert torch.allclose(weighted_cross_entropy(logits, targets, weight), expected)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_learning_rate_schedules(schedule):
    config = TrainConfig(lr=1e-2, steps=300, schedule=schedule)
    rates = np.array([learning_rate(config, step) for step in range(config.steps)])
    assert rates[0] == pytest.approx(1e-2)
    if schedule == "constant":
        assert np.all(rates == 1e-2)
    elif schedule == "cosine":
        assert np.all(np.diff(rates) <= 0)
        assert learning_rate(config, config.steps) == pytest.approx(5e-4)
    else:
        assert rates[199] == pytest.approx(1e-2) and rates[200] == pytest.approx(1e-3)


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_config):
    first = Trainer(tiny_config, tmp_path / "a", progress=False).fit()
    second = Trainer(tiny_config, tmp_path / "b", progress=False).fit()
    third = Trainer(tiny_config.replace(seed=4), tmp_path / "c", progress=False).fit()
    for name, value in _weights(first).items():
        assert torch.equal(value, _weights(second)[name]), name
    assert not torch.equal(_weights(first)["W"], _weights(third)["W"])


@pytest.mark.parametrize("bank_size", [0, 12], ids=["fresh-trials", "banks-of-12"])
def test_interrupted_run_resumes_exactly(tmp_path, tiny_config, monkeypatch, bank_size):
    """2N steps straight == N steps, an interrupt, a resume and N more (noise on; mid-bank)."""
    tiny_config = tiny_config.replace(bank_size=bank_size)
    straight = Trainer(tiny_config, tmp_path / "straight", progress=False).fit()

    interrupted = Trainer(tiny_config, tmp_path / "split", progress=False)
    original = interrupted.sample_batch
    half = tiny_config.steps // 2 + 1  # not a checkpoint multiple: the interrupt itself saves

    def sample_or_interrupt(step):
        if step == half:
            raise KeyboardInterrupt
        return original(step)

    monkeypatch.setattr(interrupted, "sample_batch", sample_or_interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert load_checkpoint(tmp_path / "split")["step"] == half

    resumed = Trainer.resume(tmp_path / "split", progress=False).fit()
    assert resumed.step == tiny_config.steps
    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), name
    losses_straight = [row["loss"] for row in read_metrics(tmp_path / "straight")]
    losses_resumed = [row["loss"] for row in read_metrics(tmp_path / "split")]
    assert losses_resumed == losses_straight


def test_resume_can_extend_the_run(tmp_path, tiny_config):
    Trainer(tiny_config, tmp_path / "run", progress=False).fit()
    extended = Trainer.resume(tmp_path / "run", steps=16, progress=False).fit()
    assert extended.step == 16
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["steps"] == 16
    assert [row["step"] for row in read_metrics(tmp_path / "run")] == list(range(1, 17))


def test_divergence_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, tiny_config, monkeypatch):
    trainer = Trainer(tiny_config, tmp_path / "run", progress=False)
    original = trainer.sample_batch

    def poisoned(step):
        batch = original(step)
        if step == 6:
            batch.inputs[:] = np.nan
        return batch

    monkeypatch.setattr(trainer, "sample_batch", poisoned)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 7.*checkpoint \(step 4\)"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 4
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    _, model, _ = load_model(tmp_path / "run")
    assert torch.isfinite(model.W).all()


def test_run_directory_contents(tmp_path, tiny_config):
    Trainer(tiny_config, tmp_path / "run", progress=False).fit()
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert TrainConfig.from_dict(record["config"]) == tiny_config
    assert {"torch", "numpy", "neurogym", "gymnasium", "python"} <= set(record["versions"])
    assert record["format_version"] == 1
    state = torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == tiny_config.steps
    assert {"model", "optimizer", "rng_torch", "metrics"} <= set(state)
    rows = read_metrics(tmp_path / "run")
    assert [row["step"] for row in rows] == list(range(1, tiny_config.steps + 1))
    assert metrics_rows(state["metrics"]) == rows  # the checkpoint carries every row, exactly
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == tiny_config.steps + 1
    evaluated = [row["step"] for row in rows if row["eval_accuracy"] != ""]
    assert evaluated == [4, 8, 12]
    assert not list((tmp_path / "run").glob(".*tmp")), "temporary files left behind"


def test_refuses_to_overwrite_an_existing_run(tmp_path, tiny_config):
    Trainer(tiny_config, tmp_path / "run", progress=False).fit()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        Trainer(tiny_config, tmp_path / "run", progress=False).fit()


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"n_units": 0}, "n_units"),
        ({"n_nonlinear": 9, "n_units": 8}, "n_nonlinear"),
        ({"n_nonlinear": -1}, "n_nonlinear"),
        ({"model": "transformer"}, "model"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": -3}, "batch_size"),
        ({"target_accuracy": 2.0}, "target_accuracy"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**changes)


def test_unknown_task_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid tasks: .*stimulus-selection"):
        Trainer(TrainConfig(task="no-such-task"), tmp_path / "run")


@pytest.mark.parametrize("model", ["tanh", "gru", "lstm", "linear", "plrnn"])
def test_every_model_kind_trains_through_the_trainer(tmp_path, model):
    config = TrainConfig(model=model, n_units=8, n_nonlinear=None, steps=3, batch_size=4,
                         eval_every=3, eval_trials=8, checkpoint_every=3)
    trainer = Trainer(config, tmp_path / model, progress=False).fit()
    assert trainer.step == 3 and np.isfinite(trainer.metrics[-1]["loss"])


@pytest.mark.slow
def test_alrnn_learns_stimulus_selection_to_criterion(tmp_path):
    """The scientific floor: a small AL-RNN reaches 90 % held-out decision accuracy."""
    config = TrainConfig(n_units=32, n_nonlinear=4, steps=1200, eval_every=100, eval_trials=400,
                         target_accuracy=0.9, seed=0)
    trainer = Trainer(config, tmp_path / "run", progress=False).fit()
    assert trainer.final_accuracy >= 0.9, trainer.metrics[-1]
    assert trainer.stopped_early


@pytest.mark.parametrize("bank_size", [0, 12], ids=["fresh-trials", "banks-of-12"])
def test_data_workers_do_not_change_the_result(tmp_path, tiny_config, bank_size):
    tiny_config = tiny_config.replace(bank_size=bank_size)
    in_process = Trainer(tiny_config, tmp_path / "a", progress=False).fit()
    with_workers = Trainer(tiny_config.replace(data_workers=1), tmp_path / "b", progress=False).fit()
    for name, value in _weights(in_process).items():
        assert torch.equal(value, _weights(with_workers)[name]), name


def test_ctrl_c_during_an_update_finishes_the_step_and_saves(tmp_path, tiny_config, monkeypatch):
    import signal

    trainer = Trainer(tiny_config, tmp_path / "run", progress=False)
    original = trainer._update

    def update_then_ctrl_c(batch, lr):
        result = original(batch, lr)
        if trainer.step == 4:  # the 5th update is under way
            signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(trainer, "_update", update_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run")["step"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = Trainer.resume(tmp_path / "run", progress=False).fit()
    straight = Trainer(tiny_config, tmp_path / "straight", progress=False).fit()
    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), name


def test_two_trainers_cannot_share_a_run_directory(tmp_path, tiny_config):
    Trainer(tiny_config.replace(steps=4), tmp_path / "run", progress=False).fit()
    with exclusive(tmp_path / "run"):  # as another trainer holds it
        with pytest.raises(RunDirectoryError, match="another process is training"):
            Trainer.resume(tmp_path / "run", progress=False).fit()
    assert load_checkpoint(tmp_path / "run")["step"] == 4


def test_fast_and_plain_steps_train_the_same_network(tmp_path, tiny_config):
    fast = Trainer(tiny_config, tmp_path / "fast", progress=False).fit()
    plain = Trainer(tiny_config.replace(fast_step=False), tmp_path / "plain", progress=False).fit()
    for name, value in _weights(fast).items():
        torch.testing.assert_close(value, _weights(plain)[name], rtol=1e-4, atol=1e-5, msg=name)
    assert [row["loss"] for row in fast.metrics] == pytest.approx([row["loss"] for row in plain.metrics], rel=1e-4)


def test_banks_are_reused_then_replaced(tiny_config, tmp_path):
    trainer = Trainer(tiny_config.replace(bank_size=12, bank_reuse=2), tmp_path / "run", progress=False)
    # 12 trials x 2 uses / 6 per batch = 4 steps per bank
    first = [trainer.sample_batch(step) for step in range(4)]
    later = trainer.sample_batch(4)
    bank0 = {float(c) for b in first for c in b.conditions["coh_motion"] * 10 + b.conditions["coh_colour"]}
    assert len(bank0) <= 12
    assert all(b.n_trials == 6 for b in first)
    again = Trainer(tiny_config.replace(bank_size=12, bank_reuse=2), tmp_path / "other", progress=False)
    np.testing.assert_array_equal(again.sample_batch(4).inputs, later.inputs)  # a pure function of (seed, step)


def test_fixed_training_set_and_held_out_evaluation(tiny_config, tmp_path):
    config = tiny_config.replace(train_trials=10, bank_size=0)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    pool = trainer.sample_batch(0)
    seen = set()
    for step in range(30):
        batch = trainer.sample_batch(step)
        assert batch.n_trials == 6
        seen |= {row.tobytes() for row in batch.inputs[:, :20]}
    assert len(seen) == 10  # every step draws from the same 10 trials, and all of them get used
    trainer.evaluate()
    held_out = {row.tobytes() for row in trainer._eval_batch.inputs[:, :20]}
    assert not seen & held_out
    assert pool.n_trials == 6
    Trainer(config, tmp_path / "fit", progress=False).fit()


def test_trial_batch_take_trims_padding():
    from neuroalrnn.envs import make, sample_trials

    batch = sample_trials(make("stimulus-selection"), 20, seed=0)
    lengths = batch.mask.sum(axis=1)
    shortest = np.flatnonzero(lengths == lengths.min())[:2]
    sub = batch.take(shortest)
    assert sub.n_steps == lengths.min() and sub.mask.all()
    np.testing.assert_array_equal(sub.inputs, batch.inputs[shortest, : lengths.min()])
    assert sub.conditions["context"].tolist() == batch.conditions["context"][shortest].tolist()


@pytest.mark.parametrize("grad_clip", [0.0, 1e-3, 1e6])
def test_an_update_equals_clip_grad_norm_then_adam(tmp_path, tiny_config, grad_clip):
    """The Trainer's update (its own zero_grad and two-part clipping) is exactly the textbook one."""
    config = tiny_config.replace(grad_clip=grad_clip, noise_std=0.0)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    batch = trainer.sample_batch(0)
    reference = Trainer(config, tmp_path / "reference", progress=False)
    for step in range(3):
        trainer._update(batch, 1e-2)

        outputs, _ = alrnn_forward_fast(reference.model, torch.from_numpy(batch.inputs))
        loss = task_loss(outputs, batch)
        reference.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
        for group in reference.optimizer.param_groups:
            group["lr"] = 1e-2
        reference.optimizer.step()
    clipped = grad_clip == 1e-3
    for name, value in _weights(trainer).items():
        assert torch.equal(value, _weights(reference)[name]), name
    assert clipped == (torch.linalg.vector_norm(reference.model.W.grad) <= 1e-3 + 1e-6)
