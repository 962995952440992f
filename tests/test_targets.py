"""Regression targets, the three scorings, task codes, canonical epochs and the bank cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from neurogym.utils import spaces

from neuroalrnn import envs
from neuroalrnn.workflows.cli import main
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.envs import registry
from neuroalrnn.envs.base import TaskEnv
from neuroalrnn.envs.epochs import CANONICAL_EPOCHS, canonical_epoch_map
from neuroalrnn.envs.trials import TrialBatch, sample_trials, trial_scores
from neuroalrnn.training import Trainer, bank_cache_path, task_loss, weighted_squared_error


class Echo(TaskEnv):
    """Regression toy: hold a value seen during ``stimulus`` and report it during ``decision``."""

    target_kind = "regression"
    scoring = "regression"
    tolerance = 0.1
    epoch_names = ("stimulus", "hold", "decision")
    canonical_epochs = {"hold": "delay"}

    def __init__(self, dt: int = 100) -> None:
        super().__init__(dt=dt)
        self.timing = {"stimulus": 300, "hold": 200, "decision": 200}
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)

    def _new_trial(self, **kwargs):
        trial = {"value": float(self.rng.uniform(-1, 1))}
        trial.update(kwargs)
        self.add_period(list(self.epoch_names))
        self.add_ob(trial["value"], "stimulus", where=0)
        self.add_ob(1.0, "decision", where=1)
        gt = np.zeros((self.tmax // self.dt, 1), dtype=np.float32)
        gt[self.start_ind["decision"]:self.end_ind["decision"]] = trial["value"]
        self.set_groundtruth(gt)
        return trial

    def _step(self, action):
        return self.ob_now, 0.0, False, {"new_trial": False, "gt": self.gt_now}


class TwoTasks(TaskEnv):
    """Class toy with two tasks: report the sign of the input (``same``) or its opposite (``flip``)."""

    task_names = ("same", "flip")

    def __init__(self, dt: int = 100) -> None:
        super().__init__(dt=dt)
        self.timing = {"fixation": 200, "stimulus": 200, "decision": 100}
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)

    def _new_trial(self, **kwargs):
        trial = {"task": str(self.rng.choice(self.task_names)), "sign": int(self.rng.choice([-1, 1]))}
        trial.update(kwargs)
        self.add_period(["fixation", "stimulus", "decision"])
        self.add_ob(trial["sign"], "stimulus", where=0)
        self.add_ob(float(trial["task"] == "flip"), where=1)
        answer = trial["sign"] * (-1 if trial["task"] == "flip" else 1)
        self.set_groundtruth(1 if answer < 0 else 2, "decision")
        return trial

    def _step(self, action):
        return self.ob_now, 0.0, False, {"new_trial": False, "gt": self.gt_now}


def test_regression_trials_have_float_targets_per_output():
    batch = sample_trials(Echo(), 7, seed=1)
    assert batch.target_kind == "regression" and batch.scoring == "regression" and batch.tolerance == 0.1
    assert batch.targets.shape == (7, 7, 1) and batch.targets.dtype == np.float32
    decision = batch.epoch_mask("decision")
    np.testing.assert_allclose(batch.targets[decision, 0], np.repeat(batch.conditions["value"], 2), rtol=1e-6)
    assert np.all(batch.targets[~decision] == 0)
    np.testing.assert_allclose(batch.inputs[:, 0, 0], batch.conditions["value"], rtol=1e-6)


def test_canonical_epochs_follow_the_declaration_then_common_names():
    batch = sample_trials(Echo(), 2, seed=0)
    assert batch.canonical_epochs == {"stimulus": "stimulus", "hold": "delay", "decision": "decision"}
    assert canonical_epoch_map(["sample", "stim1", "delay2", "mystery"]) == {
        "sample": "stimulus", "stim1": "stimulus", "delay2": "delay", "mystery": "other",
    }
    assert set(canonical_epoch_map(["x"], {"x": "decision"}).values()) <= set(CANONICAL_EPOCHS)
    with pytest.raises(ValueError, match="canonical epochs must be one of"):
        canonical_epoch_map(["x"], {"x": "thinking"})


def test_task_codes_come_from_the_trial_info():
    batch = sample_trials(TwoTasks(), 40, seed=2)
    assert batch.task_names == ("same", "flip")
    assert "task" not in batch.conditions
    flipped = batch.inputs[:, -1, 1] == 1.0  # the rule input, still on at the last step
    np.testing.assert_array_equal(batch.task, flipped.astype(int))
    assert 0 < batch.task.sum() < 40
    answer = np.where(batch.task == 1, -batch.conditions["sign"], batch.conditions["sign"])
    np.testing.assert_array_equal(batch.correct_choice(), np.where(answer < 0, 1, 2))


def test_unknown_task_in_a_trial_is_an_error():
    env = TwoTasks()
    env._new_trial = lambda **kwargs: TwoTasks._new_trial(env, task="mystery")
    with pytest.raises(ValueError, match=r"tasks \['mystery'\] outside the env's task_names \['same', 'flip'\]"):
        sample_trials(env, 20, seed=0)


def test_ground_truth_shape_must_match_the_target_kind():
    env = Echo()
    env.target_kind, env.scoring = "class", "choice"
    with pytest.raises(ValueError, match="class task but its ground truth has shape"):
        sample_trials(env, 2, seed=0)


@pytest.fixture
def decision():
    mask = np.zeros((3, 4), dtype=bool)
    mask[:, 2:] = True
    return mask


def test_choice_scoring_is_the_majority_vote(decision):
    outputs = np.zeros((3, 4, 3))
    outputs[0, 2:, 2] = 1  # both decision steps say 2: correct
    outputs[1, 2, 1], outputs[1, 3, 2] = 1, 1  # a tie 1 vs 2 goes to... 1 (lowest): wrong
    outputs[2, :, 1] = 1  # says 1: wrong
    targets = np.full((3, 4), 2)
    np.testing.assert_array_equal(trial_scores(outputs, targets, decision, "choice"), [1, 0, 0])


def test_steps_scoring_is_the_fraction_of_decision_steps_right(decision):
    targets = np.array([[0, 0, 1, 2], [0, 0, 2, 2], [0, 0, 1, 1]])
    outputs = np.eye(3)[np.array([[2, 2, 1, 2], [0, 0, 2, 1], [1, 1, 0, 0]])]
    np.testing.assert_allclose(trial_scores(outputs, targets, decision, "steps"), [1.0, 0.5, 0.0])


def test_regression_scoring_needs_every_decision_output_within_tolerance(decision):
    targets = np.zeros((3, 4, 2))
    outputs = np.zeros((3, 4, 2))
    outputs[0, :2] = 5.0  # far off outside the decision epoch: ignored
    outputs[1, 3, 1] = 0.099
    outputs[2, 2, 0] = -0.2
    np.testing.assert_array_equal(trial_scores(outputs, targets, decision, "regression", 0.1), [1, 1, 0])
    with pytest.raises(ValueError, match="scoring must be one of"):
        trial_scores(outputs, targets, decision, "vibes")


def test_weighted_squared_error_matches_numpy():
    rng = np.random.default_rng(0)
    outputs, targets = rng.normal(size=(2, 3, 5, 2))
    weight = rng.uniform(size=(3, 5))
    weight[0, :2] = 0
    expected = (weight * ((outputs - targets) ** 2).mean(-1)).sum() / (weight > 0).sum()
    got = weighted_squared_error(torch.tensor(outputs), torch.tensor(targets), torch.tensor(weight))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_task_loss_uses_squared_error_for_regression():
    batch = sample_trials(Echo(), 4, seed=0)
    outputs = torch.zeros(batch.targets.shape)
    expected = (batch.weight * batch.targets[..., 0] ** 2).sum() / (batch.weight > 0).sum()
    assert task_loss(outputs, batch).item() == pytest.approx(expected, rel=1e-5)


def test_trial_batch_save_load_round_trip(tmp_path):
    for batch in (sample_trials(Echo(), 5, seed=0), sample_trials(envs.make("stimulus-selection"), 5, seed=0)):
        path = tmp_path / "bank.npz"
        batch.save(path)
        loaded = TrialBatch.load(path)
        for name in ("inputs", "targets", "mask", "weight", "epoch", "task"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(batch, name))
            assert getattr(loaded, name).dtype == getattr(batch, name).dtype
        assert loaded.conditions.keys() == batch.conditions.keys()
        for name, values in batch.conditions.items():
            np.testing.assert_array_equal(loaded.conditions[name], values.astype(loaded.conditions[name].dtype))
        for name in ("epoch_names", "task_names", "dt", "input_names", "output_names", "target_kind",
                     "scoring", "tolerance", "canonical_epochs"):
            assert getattr(loaded, name) == getattr(batch, name)
        assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture
def toy_tasks(monkeypatch):
    monkeypatch.setitem(registry._TASKS, "echo", registry._Task(Echo, "toy regression", "Echo"))
    monkeypatch.setitem(registry._TASKS, "two-tasks", registry._Task(TwoTasks, "toy multi-task", "TwoTasks"))


def test_trainer_learns_a_regression_task(tmp_path, toy_tasks):
    config = TrainConfig(task="echo", n_units=16, n_nonlinear=2, steps=600, batch_size=16, lr=1e-2,
                         eval_every=100, eval_trials=100, bank_size=256, seed=0)
    trainer = Trainer(config, tmp_path / "run", progress=False).fit()
    losses = [row["loss"] for row in trainer.metrics]
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:5])
    assert trainer.final_accuracy >= 0.8  # |error| < 0.1 on every decision step


def test_trainer_reports_accuracy_per_task(tmp_path, toy_tasks):
    config = TrainConfig(task="two-tasks", n_units=16, n_nonlinear=4, steps=200, batch_size=16,
                         eval_every=100, eval_trials=200, bank_size=256, seed=0)
    trainer = Trainer(config, tmp_path / "run", progress=False).fit()
    assert set(trainer.eval_by_task) == {"same", "flip"}
    assert min(trainer.eval_by_task.values()) > 0.9


def test_bank_cache_is_reused_and_does_not_change_results(tmp_path, toy_tasks, monkeypatch):
    config = TrainConfig(task="two-tasks", n_units=8, n_nonlinear=2, steps=6, batch_size=4, eval_every=6,
                         eval_trials=10, bank_size=8, bank_reuse=1, seed=0, bank_cache=str(tmp_path / "cache"))
    first = Trainer(config, tmp_path / "a", progress=False).fit()
    cached = sorted((tmp_path / "cache").glob("two-tasks-*.npz"))
    assert len(cached) == 3  # 6 steps × 4 trials / 8 per bank

    def no_sampling(*args, **kwargs):
        raise AssertionError("a cached bank was sampled again")

    monkeypatch.setattr(envs, "sample_trials", no_sampling)
    monkeypatch.setattr(Trainer, "evaluate", lambda self: 0.0)
    second = Trainer(config, tmp_path / "b", progress=False).fit()
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], value, rtol=0, atol=0)
    other = config.replace(task_kwargs={"dt": 50})  # another task configuration: another file
    assert bank_cache_path(other, 8, 1) != bank_cache_path(config, 8, 1)


def test_cli_evaluate_writes_per_task_accuracy(tmp_path, toy_tasks, capsys):
    run = tmp_path / "run"
    code = main(["train", "--task", "two-tasks", "--out", str(run), "--units", "12", "--nonlinear", "2",
                 "--steps", "20", "--eval-every", "10", "--eval-trials", "20", "--bank-size", "64",
                 "--data-workers", "0", "--no-progress"])
    assert code == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--trials", "60"]) == 0
    printed = capsys.readouterr().out
    assert "same" in printed and "flip" in printed and "mean" in printed
    summary = json.loads((run / "evaluation.json").read_text())
    assert set(summary["accuracy_by_task"]) == {"same", "flip"}
    assert summary["n_trials"] == 60
    import xarray as xr

    with xr.open_dataset(run / "trials.nc", engine="h5netcdf") as trials:
        assert set(np.unique(trials["task"].values)) == {"same", "flip"}
        assert "epoch_canonical" in trials.coords


def test_held_out_evaluation_uses_unseen_digit_images(tmp_path):
    from neuroalrnn.training import make_task

    config = TrainConfig(task="sequential-digits", n_units=8, n_nonlinear=2)
    train, held_out = make_task(config), make_task(config, held_out=True)
    assert train.unwrapped.split == "train" and held_out.unwrapped.split == "test"
    assert not set(train.unwrapped.image_indices) & set(held_out.unwrapped.image_indices)
    assert envs.held_out_options("stimulus-selection") == {}


def test_cli_evaluate_reports_mse_for_regression(tmp_path, toy_tasks, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "echo", "--out", str(run), "--units", "8", "--nonlinear", "2", "--steps", "10",
                 "--eval-every", "5", "--eval-trials", "10", "--bank-size", "32", "--data-workers", "0",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--trials", "30"]) == 0
    printed = capsys.readouterr().out
    assert "scoring regression" in printed and "decision-epoch MSE" in printed
    summary = json.loads((run / "evaluation.json").read_text())
    import xarray as xr

    with xr.open_dataset(run / "trials.nc", engine="h5netcdf") as trials:
        assert trials["targets"].dims == ("trial", "time", "output")
        decision = ((trials["epoch"] == "decision") & trials["mask"]).values
        expected = float(np.mean((trials["outputs"].values - trials["targets"].values)[decision] ** 2))
    assert summary["decision_mse"] == pytest.approx(expected)
    assert not (run / "figures" / "psychometric.png").exists()


def test_analyze_writes_the_sharing_section_for_a_multi_task_run(tmp_path, toy_tasks, capsys):
    import xarray as xr

    runs = {}
    for P in (2, 6):
        run = tmp_path / f"P{P}"
        assert main(["train", "--task", "two-tasks", "--out", str(run), "--units", "12", "--nonlinear", str(P),
                     "--steps", "10", "--eval-every", "10", "--eval-trials", "20", "--bank-size", "64",
                     "--data-workers", "0", "--no-progress"]) == 0
        assert main(["analyze", str(run), "--trials", "40", "--max-regimes", "4"]) == 0
        runs[P] = run
        with xr.open_dataset(run / "sharing.nc", engine="h5netcdf") as sharing:
            assert set(sharing["task"].values) == {"same", "flip"}
            assert 0.0 <= float(sharing["sharing_index"]) <= 1.0
            assert sharing.attrs["unit_activity"] == "rate" and sharing.attrs["slope"] == 0.0
        report = (run / "report.md").read_text()
        assert "sharing index" in report.lower()
    capsys.readouterr()
    figure = tmp_path / "sharing.png"
    assert main(["sharing", str(runs[2]), str(runs[6]), "--figure", str(figure)]) == 0
    printed = capsys.readouterr().out
    assert "alrnn M=12 P=2" in printed and "alrnn M=12 P=6" in printed and "sharing_index" in printed
    assert figure.is_file()
    assert main(["analyze", str(runs[2]), "--trials", "40", "--max-regimes", "4", "--unit-activity", "state"]) == 0
    with xr.open_dataset(runs[2] / "sharing.nc", engine="h5netcdf") as sharing:
        assert sharing.attrs["unit_activity"] == "state"
    assert "states z" in (runs[2] / "report.md").read_text()


def test_sharing_command_needs_analysed_runs(tmp_path, toy_tasks, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "two-tasks", "--out", str(run), "--units", "8", "--nonlinear", "2",
                 "--steps", "4", "--eval-every", "4", "--eval-trials", "10", "--bank-size", "16",
                 "--batch-size", "16", "--data-workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sharing", str(run)]) == 1
    assert "no sharing.nc" in capsys.readouterr().err
