"""Result files written together stay together: file groups, and `evaluate` and `analyze` killed at every write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from neuroalrnn import storage
from neuroalrnn.evaluation import evaluate_run, read_evaluation
from neuroalrnn.training import TrainConfig, Trainer
from neuroalrnn.workflows.run_analysis import analyze_run

GROUP_FILES = ("analysis.nc", "report.md")


def _contents(directory: Path) -> dict[str, str]:
    return {path.relative_to(directory).as_posix(): path.read_text()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_group_replaces_its_files_together(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("old b")
    with storage.file_group(tmp_path) as staging:
        storage.atomic_write(staging / "a.txt", "new a")
        storage.atomic_write(staging / "sub" / "b.txt", "new b")
        assert (tmp_path / "a.txt").read_text() == "old a"  # nothing changes before the commit
    assert _contents(tmp_path) == {"a.txt": "new a", "sub/b.txt": "new b"}


def test_a_failed_group_changes_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError), storage.file_group(tmp_path) as staging:
        storage.atomic_write(staging / "a.txt", "new a")
        raise RuntimeError("the analysis failed half-way")
    assert _contents(tmp_path) == {"a.txt": "old a"}
    assert not list(tmp_path.glob(".group.*"))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _staging(directory: Path, pid: int, files: dict[str, str], committed: bool) -> Path:
    staging = directory / f".group.{storage._HOST}-{pid}.abc123"
    for name, text in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
    if committed:
        (staging / ".committed").write_text("committed\n")
    return staging


def test_recovery_finishes_a_committed_group_and_drops_a_dead_writers_unfinished_one(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    # a kill after the commit moved a.txt but not b.txt
    (tmp_path / "a.txt").write_text("new a")
    _staging(tmp_path, _dead_pid(), {"b.txt": "new b"}, committed=True)
    storage.recover_file_groups(tmp_path)
    assert _contents(tmp_path) == {"a.txt": "new a", "b.txt": "new b"}

    dead = _staging(tmp_path, _dead_pid(), {"a.txt": "half-written"}, committed=False)
    alive = _staging(tmp_path, os.getpid(), {"a.txt": "being written"}, committed=False)
    storage.recover_file_groups(tmp_path)
    assert not dead.exists() and alive.exists()
    assert (tmp_path / "a.txt").read_text() == "new a"


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    """A small run analysed once with max_regimes=1 (state A), and what max_regimes=8 writes (state B)."""
    root = tmp_path_factory.mktemp("analysed")
    config = TrainConfig(n_units=12, n_nonlinear=3, steps=30, batch_size=8, eval_every=30, eval_trials=20,
                         bank_size=64, data_workers=0, seed=1)
    Trainer(config, root / "run", progress=False).fit()
    analyze_run(root / "run", n_trials=40, max_regimes=1, log=lambda line: None)
    state_b = root / "b"
    shutil.copytree(root / "run", state_b)
    analyze_run(state_b, max_regimes=8, log=lambda line: None)
    return root / "run", state_b


def _report_and_analysis(run: Path) -> tuple[str, xr.Dataset]:
    return (run / "report.md").read_text(), xr.load_dataset(run / "analysis.nc", engine="h5netcdf")


def _killed_at(job, run: Path, write: int) -> int:
    """Fork; the child runs ``job(run)`` and dies (os._exit, like kill -9) just before its `write`-th file move."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        moves = 0
        replace = os.replace

        def counting_replace(source, target):
            nonlocal moves
            moves += 1
            if moves == write:
                os._exit(9)
            replace(source, target)

        os.replace = counting_replace
        try:
            job(run)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.slow
def test_analyze_killed_at_every_write_leaves_one_whole_analysis(analysed_run, tmp_path):
    run_a, run_b = analysed_run
    report_a, analysis_a = _report_and_analysis(run_a)
    report_b, analysis_b = _report_and_analysis(run_b)
    assert report_a != report_b  # the two analyses differ, so a mix would show

    write, killed = 1, 0
    while True:
        run = tmp_path / f"kill-{write}"
        shutil.copytree(run_a, run)
        code = _killed_at(lambda directory: analyze_run(directory, max_regimes=8, log=lambda line: None), run, write)
        if code == 0:
            break  # this analysis makes fewer writes than `write`: every point was covered
        assert code == 9
        killed += 1
        storage.recover_file_groups(run)  # what every command does when it opens a run
        report, analysis = _report_and_analysis(run)
        expected = analysis_a if report == report_a else analysis_b
        assert report in (report_a, report_b), f"killed at write {write}: report.md of neither analysis"
        xr.testing.assert_identical(analysis, expected)
        assert not list(run.glob(".group.*")) and not list(run.rglob("*.tmp")), f"debris after write {write}"
        write += 1
    assert killed >= 2 * len(GROUP_FILES)  # staged writes, the commit and the moves were all hit


def test_evaluate_killed_at_every_write_leaves_one_whole_evaluation(analysed_run, tmp_path):
    run_a, _ = analysed_run
    before = read_evaluation(run_a)
    write, killed = 1, 0
    while True:
        run = tmp_path / f"kill-{write}"
        shutil.copytree(run_a, run)
        code = _killed_at(lambda directory: evaluate_run(directory, 25), run, write)
        if code == 0:
            break
        assert code == 9
        killed += 1
        storage.recover_file_groups(run)
        on_disk = json.loads((run / "evaluation.json").read_text())
        trials = xr.load_dataset(run / "trials.nc", engine="h5netcdf")
        assert on_disk["n_trials"] == trials.sizes["trial"] in (before["n_trials"], 25), f"mixed after write {write}"
        assert not list(run.glob(".group.*")) and not list(run.rglob("*.tmp")), f"debris after write {write}"
        write += 1
    assert killed >= 3
