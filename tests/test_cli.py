"""The command line: each command end to end, and bad input as one readable line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from neuroalrnn.training import config as config_module
from neuroalrnn.workflows.cli import build_parser, main
from neuroalrnn.training.config import CONSTRAINTS, TrainConfig
from neuroalrnn.evaluation import DEFAULT_TEST_TRIALS
from neuroalrnn.training.rundir import CHECKPOINT_FILE, CONFIG_FILE, load_checkpoint, read_config
from neuroalrnn.evaluation.simulate import read_trials

SMALL = ["--units", "10", "--nonlinear", "2", "--steps", "6", "--batch-size", "4",
         "--eval-every", "3", "--eval-trials", "10", "--checkpoint-every", "3", "--no-progress"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_tasks_lists_every_task(capsys):
    assert main(["tasks"]) == 0
    assert "stimulus-selection" in capsys.readouterr().out


def test_train_evaluate_resume_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "held-out decision accuracy" in out and str(run) in out
    assert (run / CHECKPOINT_FILE).is_file() and (run / "metrics.csv").is_file()

    assert main(["evaluate", str(run), "--trials", "40"]) == 0
    out = capsys.readouterr().out
    assert "decision accuracy:" in out and "context = motion" in out and "context = colour" in out
    trials = read_trials(run / "trials.nc")
    assert trials.sizes["trial"] == 40
    figure = run / "figures" / "psychometric.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["train", "--resume", str(run), "--steps", "9", "--no-progress"]) == 0
    assert load_checkpoint(run)["step"] == 9


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--out", "{tmp}/r", "--task", "nope"], "valid tasks: adding, copy-memory, flipflop, sequential-digits, stimulus-selection, yang19"),
        (["train", "--out", "{tmp}/r", "--units", "4", "--nonlinear", "5"], "n_nonlinear"),
        (["train", "--out", "{tmp}/r", "--resume", "{tmp}/r"], "exactly one of --out"),
        (["train", "--resume", "{tmp}/absent"], "does not exist"),
        (["evaluate", "{tmp}/absent"], "does not exist"),
        (["evaluate", "{tmp}"], "not a run directory"),
        (["compare", "{tmp}", "{tmp}/rec.nc", "--condition-map", "ctx=1"], "--condition-map ctx=1: the value must be"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, capsys, argv, expected):
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 1
    assert expected in _error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--out", "x", "--units", "0"], "positive integer"),
        (["train", "--out", "x", "--steps", "-5"], "positive integer"),
        (["evaluate", "x", "--trials", "zero"], "positive integer"),
        (["train", "--out", "x", "--model", "transformer"], "argument --model: expected one of alrnn, linear"),
        (["train", "--out", "x", "--slope", "2"], "argument --slope: expected a number in [0, 1], got '2'"),
        (["train", "--out", "x", "--lr", "nan"], "argument --lr: expected a number > 0, got 'nan'"),
        (["train", "--out", "x", "--seed", "1.5"], "argument --seed: expected an integer >= 0, got '1.5'"),
        (["compare", "x", "y", "--condition-map", "ctx"], "expected KEY=VALUE"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert expected in _error_line(capsys)


def test_corrupt_or_mismatched_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    good = (run / CHECKPOINT_FILE).read_bytes()
    (run / CHECKPOINT_FILE).write_bytes(good[: len(good) // 2])
    assert main(["evaluate", str(run)]) == 1
    assert "corrupt" in _error_line(capsys)

    state = torch.load(__import__("io").BytesIO(good), weights_only=True)
    state["model"]["W"] = torch.zeros(3, 3)
    torch.save(state, run / CHECKPOINT_FILE)
    assert main(["evaluate", str(run)]) == 1
    assert "does not match the model of its config.json" in _error_line(capsys)


def test_training_into_an_existing_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), *SMALL]) == 1
    assert "already holds a run" in _error_line(capsys)


def test_console_script_exit_code_and_message(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "neuroalrnn")
    result = subprocess.run(
        [script, "train", "--out", str(tmp_path / "r"), "--units", "3", "--nonlinear", "4"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "neuroalrnn: error: n_nonlinear (P) must lie in [0, n_units=3], got 4"
    ]


def test_compare_command_end_to_end(tmp_path, capsys):
    from benchmark_scripts import load

    make_recordings = load("make_recordings")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--units", "12", "--nonlinear", "3", "--steps", "20",
                 "--eval-every", "20", "--eval-trials", "20", "--bank-size", "64", "--data-workers", "0",
                 "--no-progress"]) == 0
    recordings = tmp_path / "recordings.nc"
    assert make_recordings.main([str(run), "--out", str(recordings), "--trials", "200", "--neurons", "20"]) in (0, None)
    capsys.readouterr()
    assert main(["compare", str(run), str(recordings), "--trials", "200", "--shuffles", "20",
                 "--conditions", "context", "coh_relevant"]) == 0
    printed = capsys.readouterr().out
    assert "matched on context, coh_relevant" in printed
    assert "cka" in printed and "procrustes" in printed and "rsa" in printed
    assert (run / "comparison.nc").is_file() and (run / "figures" / "comparison.png").is_file()
    capsys.readouterr()
    assert main(["compare", str(run), str(tmp_path / "missing.nc")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


# ----------------------------------------------------------------------------- train options from TrainConfig


def test_every_config_field_is_a_train_option_defaulting_to_the_config():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    destinations = {action.dest: action for action in train._actions}
    assert set(CONSTRAINTS) <= set(destinations)
    assert all(destinations[name].default is None for name in CONSTRAINTS)  # None: the field's own default


def test_a_run_trained_without_options_has_the_config_defaults(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--units", "6", "--steps", "2", "--batch-size", "4",
                 "--eval-every", "2", "--eval-trials", "8", "--bank-size", "16", "--no-progress"]) == 0
    stored = read_config(run)
    expected = TrainConfig(n_units=6, steps=2, batch_size=4, eval_every=2, eval_trials=8, bank_size=16)
    assert stored == expected  # data_workers, nonlinear, lr, ... exactly TrainConfig's defaults


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [("n_units", "0", 0), ("lr", "0", 0.0), ("slope", "1.5", 1.5), ("bank_size", "-1", -1),
     ("target_accuracy", "-0.1", -0.1), ("train_trials", "0", 0)],
)
def test_config_and_command_line_share_one_constraint(field, text, value, capsys):
    description = CONSTRAINTS[field].describe()
    with pytest.raises(ValueError) as error:
        TrainConfig(**{field: value})
    assert str(error.value) == f"{field} must be {description}, got {value!r}"
    flag = {"n_units": "--units"}.get(field, "--" + field.replace("_", "-"))
    with pytest.raises(SystemExit):
        main(["train", "--out", "x", flag, text])
    assert f"argument {flag}: expected {description}, got {text!r}" in _error_line(capsys)


def test_config_from_dict_maps_renamed_keys_and_refuses_unknown_ones(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown config keys \['n_hidden'\]; valid keys: .*'n_units'"):
        TrainConfig.from_dict({"n_hidden": 3})
    monkeypatch.setattr(config_module, "RENAMED_FIELDS", {"n_hidden": "n_units"})
    assert TrainConfig.from_dict({"n_hidden": 8, "n_nonlinear": 2}) == TrainConfig(n_units=8, n_nonlinear=2)
    with pytest.raises(ValueError, match="both 'n_hidden' and its new name 'n_units'"):
        TrainConfig.from_dict({"n_hidden": 8, "n_units": 8})
    with pytest.raises(ValueError, match="JSON object of TrainConfig fields, got list"):
        TrainConfig.from_dict([1, 2])


def test_resume_refuses_settings_other_than_steps(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "9", "--units", "12", "--lr", "0.1"]) == 1
    assert "only --steps, --bank-cache and --device may change, but --units, --lr was given" in _error_line(capsys)
    assert load_checkpoint(run)["step"] == 6


def test_resume_with_a_bank_cache_outside_the_run_needs_it_given_again(tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["train", "--out", str(run), *SMALL, "--bank-cache", str(cache)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "9"]) == 1
    assert "outside the run directory" in _error_line(capsys)
    assert load_checkpoint(run)["step"] == 6
    assert main(["train", "--resume", str(run), "--steps", "9", "--bank-cache", str(cache)]) == 0
    assert load_checkpoint(run)["step"] == 9


def test_nonlinear_with_a_baseline_is_refused(capsys):
    assert main(["train", "--out", "x", "--model", "gru", "--nonlinear", "3"]) == 1
    assert "--nonlinear applies to --model alrnn only" in _error_line(capsys)


def test_one_default_number_of_test_trials():
    parser = build_parser()
    assert parser.parse_args(["evaluate", "x"]).trials == DEFAULT_TEST_TRIALS
    # analyze and compare: None = the stored current trials, else DEFAULT_TEST_TRIALS new ones
    assert parser.parse_args(["analyze", "x"]).trials is None
    assert parser.parse_args(["compare", "x", "y"]).trials is None


# ----------------------------------------------------------------------------- bad input: one line, exit != 0


@pytest.fixture
def small_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    return run


def test_a_task_option_of_the_wrong_type_is_one_line(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "r"), *SMALL, "--task-option", 'dt="abc"'])
    assert code != 0
    assert "dt" in _error_line(capsys)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"task_kwargs": "sigma=0.3"}, "task_kwargs must be a dict of options"),
        ({"task": 3}, "task' is 3"),
        ({"units": 8}, "unknown config keys ['units']"),
        ({"task_kwargs": {"dt": "abc"}}, "dt"),
    ],
)
def test_a_bad_config_json_is_one_line(small_run, capsys, change, expected):
    path = small_run / CONFIG_FILE
    record = json.loads(path.read_text())
    record["config"].update(change)
    path.write_text(json.dumps(record))
    for command in (["evaluate", str(small_run)], ["analyze", str(small_run)]):
        assert main(command) == 1
        assert expected in _error_line(capsys)


@pytest.mark.parametrize("command", ["evaluate", "analyze", "compare"])
def test_a_checkpoint_with_nan_weights_is_refused(small_run, tmp_path, capsys, command):
    state = load_checkpoint(small_run)
    state["model"]["W"] = torch.full_like(state["model"]["W"], float("nan"))
    torch.save(state, small_run / CHECKPOINT_FILE)
    argv = [command, str(small_run)] + ([str(_recordings(tmp_path / "rec.nc"))] if command == "compare" else [])
    assert main(argv) == 1
    assert "NaN" in _error_line(capsys)
    assert not (small_run / "trials.nc").exists()


def _recordings(path, variables=("rates",)):
    data = {name: (("trial", "time", "neuron"), np.zeros((4, 3, 2))) for name in variables}
    xr.Dataset(data, coords={"time": ("time", [0.0, 10.0, 20.0], {"units": "ms"}),
                             "context": ("trial", ["motion", "colour"] * 2)}).to_netcdf(path, engine="h5netcdf")
    return path


def test_recordings_with_two_variables_and_no_choice_is_one_line(small_run, tmp_path, capsys):
    recordings = _recordings(tmp_path / "two.nc", variables=("left", "right"))
    assert main(["compare", str(small_run), str(recordings), "--trials", "20"]) == 1
    line = _error_line(capsys)
    assert "'left', 'right'" in line and "--variable" in line


def test_an_unexpected_error_is_one_line_and_traceback_shows_it(monkeypatch, capsys):
    from neuroalrnn.workflows import cli

    def broken(_args):
        raise KeyError("surprise")

    monkeypatch.setitem(cli._COMMANDS, "tasks", broken)
    assert main(["tasks"]) == 1
    assert "KeyError: 'surprise'" in _error_line(capsys)
    with pytest.raises(KeyError):
        main(["--traceback", "tasks"])


# ----------------------------------------------------------------------------- tasks and compare's condition map


def test_tasks_says_how_to_list_a_suite(capsys):
    assert main(["tasks"]) == 0
    assert "`neuroalrnn tasks SUITE`" in capsys.readouterr().out


def test_tasks_lists_a_suites_subtasks_a_line_each(capsys):
    from neuroalrnn.envs.registry import describe_subtasks

    assert main(["tasks", "yang19"]) == 0
    lines = capsys.readouterr().out.splitlines()
    subtasks = describe_subtasks("yang19")
    assert len(lines) == len(subtasks) == 20
    assert [line.split()[0] for line in lines] == list(subtasks)
    assert main(["tasks", "no-such-suite"]) == 1
    assert "unknown task" in _error_line(capsys)


def test_compare_maps_recorded_condition_names(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--units", "12", "--nonlinear", "3", "--steps", "10",
                 "--eval-every", "10", "--eval-trials", "20", "--bank-size", "64", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--trials", "200"]) == 0
    trials = read_trials(run / "trials.nc")
    # the model's own latents as "recordings", with conditions named ctx (values coded) and coh
    codes = np.where(trials["context"].values == "motion", "M", "C")
    recordings = xr.Dataset(
        {"rates": (("trial", "time", "neuron"), trials["latents"].values)},
        coords={"time": ("time", trials["time"].values, {"units": "ms"}), "ctx": ("trial", codes),
                "coh": ("trial", trials["coh_relevant"].values),
                "epoch": (("trial", "time"), trials["epoch"].values), "mask": (("trial", "time"), trials["mask"].values)},
    )
    path = tmp_path / "recordings.nc"
    recordings.to_netcdf(path, engine="h5netcdf")
    capsys.readouterr()
    assert main(["compare", str(run), str(path), "--shuffles", "5"]) == 1
    assert "no shared conditions" in _error_line(capsys)
    assert main(["compare", str(run), str(path), "--shuffles", "5",
                 "--condition-map", 'ctx=["context", {"M": "motion", "C": "colour"}]',
                 "--condition-map", "coh=coh_relevant"]) == 0
    assert "matched on context, coh_relevant" in capsys.readouterr().out
    with xr.open_dataset(run / "comparison.nc", engine="h5netcdf") as result:
        assert float(result["observed"].sel(metric="cka", epoch="all")) == pytest.approx(1.0)
