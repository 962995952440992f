"""evaluate_run, the one path to a run's test trials: its summary, the trials.nc + evaluation.json unit, staleness."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from neuroalrnn import envs
from neuroalrnn.evaluation import evaluate as evaluate_module
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.evaluation import (
    EVALUATION_FILE,
    SUMMARY_ATTRIBUTE,
    TRIALS_FILE,
    accuracy_by,
    current_trials,
    evaluate_run,
    read_evaluation,
)
from neuroalrnn.training.rundir import load_checkpoint, read_metrics
from neuroalrnn.evaluation.simulate import read_trials, write_trials
from neuroalrnn.training import TEST_SEED_OFFSET, Trainer, load_model, task_loss


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    config = TrainConfig(n_units=8, n_nonlinear=2, steps=4, batch_size=4, eval_every=2, eval_trials=8,
                         checkpoint_every=2, bank_size=16, seed=1)
    Trainer(config, run, progress=False).fit()
    return run


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run, so each test starts without trials.nc."""
    return shutil.copytree(trained, tmp_path / "run")


def _json_summary(run):
    return json.loads((run / EVALUATION_FILE).read_text())


def test_summary_matches_independent_computations(run):
    trials, summary = evaluate_run(run, 60, save=False)
    config, model, env = load_model(run)
    seed = config.seed + TEST_SEED_OFFSET
    batch = envs.sample_trials(env, 60, seed=seed, task_name=config.task, weighting=config.weighting,
                               decision_weight=config.decision_weight)
    with torch.no_grad():
        outputs, latents = model(torch.from_numpy(batch.inputs))
    np.testing.assert_array_equal(trials["latents"].values, latents.numpy())
    assert summary["test_loss"] == pytest.approx(float(task_loss(outputs, batch)), rel=1e-6)
    assert summary["accuracy"] == pytest.approx(float(accuracy_by(trials)))
    assert summary["accuracy_by_task"] == {"stimulus-selection": summary["accuracy"]}
    assert summary["final_loss"] == pytest.approx(read_metrics(run)[-1]["loss"])
    assert summary["n_trials"] == 60 and summary["seed"] == seed and summary["noise"] is False
    assert summary["checkpoint_step"] == load_checkpoint(run)["step"] == 4 and not summary["stopped_early"]
    assert summary["regimes_used"] == len(np.unique(trials["regime"].values[trials["mask"].values]))
    assert trials.attrs["checkpoint_step"] == 4 and trials.attrs["simulated_with_noise"] == 0
    assert json.loads(trials.attrs[SUMMARY_ATTRIBUTE]) == summary
    assert not (run / TRIALS_FILE).exists() and not (run / EVALUATION_FILE).exists()  # save=False


def test_noise_and_seed_are_recorded(run):
    trials, summary = evaluate_run(run, 20, noise=True, seed=7)
    assert summary["noise"] is True and summary["seed"] == 7
    stored = read_trials(run / TRIALS_FILE)
    assert stored.attrs["simulated_with_noise"] == 1 and stored.attrs["seed"] == 7
    assert _json_summary(run) == summary


def test_a_failed_second_write_leaves_the_previous_evaluation_whole(run, monkeypatch):
    evaluate_run(run, 40)
    assert _json_summary(run)["n_trials"] == 40
    real_write = evaluate_module.atomic_write

    def killed_before_the_json(path, data):
        if path.name == EVALUATION_FILE:
            raise OSError("killed between the two writes")
        return real_write(path, data)

    monkeypatch.setattr(evaluate_module, "atomic_write", killed_before_the_json)
    with pytest.raises(OSError, match="between the two writes"):
        evaluate_run(run, 25)
    monkeypatch.setattr(evaluate_module, "atomic_write", real_write)
    assert read_trials(run / TRIALS_FILE).sizes["trial"] == 40  # trials.nc and evaluation.json are one group
    assert _json_summary(run)["n_trials"] == 40
    assert read_evaluation(run) == _json_summary(run)
    assert not list(run.glob(".group.*"))


def test_the_reader_of_trials_repairs_evaluation_json(run, monkeypatch):
    evaluate_run(run, 30)
    (run / EVALUATION_FILE).write_text(json.dumps({"n_trials": 999}))
    trials = current_trials(run)
    assert trials.sizes["trial"] == 30
    assert _json_summary(run)["n_trials"] == 30


def test_a_failed_first_write_leaves_the_previous_evaluation(run, monkeypatch):
    evaluate_run(run, 40)

    def failing_write(dataset, path):
        raise OSError("killed while writing trials.nc")

    monkeypatch.setattr(evaluate_module, "write_trials", failing_write)
    with pytest.raises(OSError, match="killed while writing"):
        evaluate_run(run, 25)
    assert read_trials(run / TRIALS_FILE).sizes["trial"] == 40
    assert read_evaluation(run)["n_trials"] == 40 == _json_summary(run)["n_trials"]


@pytest.mark.parametrize(
    ("stored", "asked", "expected"),
    [
        ({"n_trials": 20, "noise": True}, None, 30),  # noisy: simulated again, the default number
        ({"n_trials": 20}, 12, 12),  # another number asked
        ({"n_trials": 20, "version_0": True}, None, 30),  # unknown provenance
    ],
)
def test_current_trials_simulates_again_what_does_not_match(run, monkeypatch, stored, asked, expected):
    monkeypatch.setattr(evaluate_module, "DEFAULT_TEST_TRIALS", 30)
    trials, _ = evaluate_run(run, stored["n_trials"], noise=stored.get("noise", False))
    if stored.get("version_0"):
        for name in ("format_version", "simulated_with_noise", "checkpoint_step", "n_trials", SUMMARY_ATTRIBUTE):
            del trials.attrs[name]
        write_trials(trials, run / TRIALS_FILE)
    lines = []
    fresh = current_trials(run, asked, progress=lines.append)
    assert fresh.sizes["trial"] == expected and fresh.attrs["simulated_with_noise"] == 0
    assert "simulating again" in lines[0]
    assert read_trials(run / TRIALS_FILE).sizes["trial"] == expected
    assert _json_summary(run)["n_trials"] == expected and _json_summary(run)["noise"] is False


def test_current_trials_reuse_matching_trials_untouched(run):
    trials, _ = evaluate_run(run, 20, seed=5)
    before = (run / TRIALS_FILE).stat().st_mtime_ns
    lines = []
    again = current_trials(run, progress=lines.append)
    assert lines == [f"read {run / TRIALS_FILE} (20 trials)"]
    np.testing.assert_array_equal(again["latents"].values, trials["latents"].values)
    assert (run / TRIALS_FILE).stat().st_mtime_ns == before
    current_trials(run, 20)  # the stored number asked: still reused
    assert (run / TRIALS_FILE).stat().st_mtime_ns == before


def test_trials_of_an_older_checkpoint_are_simulated_again(run):
    evaluate_run(run, 20)
    Trainer.resume(run, steps=8, progress=False).fit()
    trials = current_trials(run)
    assert trials.attrs["checkpoint_step"] == 8
    config, model, env = load_model(run)
    batch = envs.sample_trials(env, trials.sizes["trial"], seed=config.seed + TEST_SEED_OFFSET, task_name=config.task)
    with torch.no_grad():
        _, latents = model(torch.from_numpy(batch.inputs))
    np.testing.assert_array_equal(trials["latents"].values, latents.numpy())


def test_bad_numbers_of_trials_are_refused_by_name(run):
    with pytest.raises(ValueError, match="n_trials must be a positive integer, got 0"):
        evaluate_run(run, 0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        evaluate_run(run, 5, seed=-1)


def test_accuracy_by_strength_groups_each_task_by_its_evidence(trained):
    """Per task and |coherence| (rounded), the mean trial score; tasks without the condition are left out."""
    from neuroalrnn.evaluation import accuracy_by_strength, scores
    from neuroalrnn.evaluation.simulate import simulate

    config, model, env = load_model(trained)
    trials = simulate(model, env, 120, seed=5)
    coherence = trials["coh_relevant"].values + 1e-12 * np.arange(120)  # drawn-value noise below the rounding
    task = np.where(np.arange(120) < 80, "a", "b")
    trials = trials.assign_coords(coherence=("trial", np.where(task == "a", coherence, np.nan)),
                                  task=("trial", task))
    result = accuracy_by_strength(trials)
    assert list(result) == ["a"]  # task b has no finite coherence
    correct = scores(trials).values[:80]
    levels = np.round(np.abs(trials["coh_relevant"].values[:80]), 6)
    assert result["a"] == {f"{level:g}": pytest.approx(correct[levels == level].mean()) for level in np.unique(levels)}
    assert accuracy_by_strength(trials, "context") == {}  # not numeric
    assert accuracy_by_strength(trials, "no_such_condition") == {}
    _, summary = evaluate_run(trained, 40, save=False)
    assert summary["accuracy_by_coherence"] == {}  # stimulus selection has no `coherence` condition
