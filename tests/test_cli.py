"""The command line: each command end to end, and bad input as one readable line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from neuroalrnn.cli import main
from neuroalrnn.rundir import CHECKPOINT_FILE, load_checkpoint
from neuroalrnn.simulate import read_trials

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
        (["train", "--out", "{tmp}/r", "--model", "transformer"], "model must be one of"),
        (["train", "--out", "{tmp}/r", "--resume", "{tmp}/r"], "exactly one of --out"),
        (["train", "--resume", "{tmp}/absent"], "does not exist"),
        (["evaluate", "{tmp}/absent"], "does not exist"),
        (["evaluate", "{tmp}"], "not a run directory"),
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
    assert "does not match its config.json" in _error_line(capsys)


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
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "make_recordings.py"
    spec = importlib.util.spec_from_file_location("make_recordings", script)
    make_recordings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_recordings)
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
