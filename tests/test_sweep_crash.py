"""Crash safety of sweeps: a killed sweep takes its runs with it, a rerun takes over or waits for run
directories, and results.nc always agrees with every run's result.json."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuroalrnn.training.rundir import LOCK_FILE
from neuroalrnn.workflows.sweeps import (
    RESULT_FILE,
    RESULT_VARIABLES,
    collect_results,
    load_experiment,
    read_result,
    read_results,
    run_point,
    run_sweep,
)
from neuroalrnn.workflows.sweeps.runner import RUN_LOCK

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table in /proc")

# Two runs (one per worker) of a second or two each: long enough to be killed mid-run.
EXPERIMENT = """
name = "crash"
[fixed]
n_units = 8
steps = 200
batch_size = 8
eval_every = 100
eval_trials = 20
bank_size = 32
bank_reuse = 1
checkpoint_every = 20
[grid]
seed = [0, 1]
[evaluate]
trials = 40
"""
# One short run, for the lock tests.
ONE_RUN = EXPERIMENT.replace("steps = 200", "steps = 20").replace("seed = [0, 1]", "seed = [0]")
SWEEP = "import sys\nfrom neuroalrnn.workflows.sweeps import run_sweep\nrun_sweep(sys.argv[1], workers=2, out=sys.argv[2])\n"
HOLD_LOCK = ("import filelock, sys, time\nlock = filelock.FileLock(sys.argv[1])\nlock.acquire()\n"
             "print('held', flush=True)\ntime.sleep(float(sys.argv[2]))\n")


def _process_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, state, start time) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (command name) "
        table[int(entry.name)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def _descendants(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of every process below ``pid``."""
    table = _process_table()
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _, _) in table.items() if ppid == parent]
        found |= {(child, table[child][2]) for child in children}
        frontier += children
    return found


def _alive(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``processes`` still running (a zombie has ended; a reused pid has another start time)."""
    table = _process_table()
    return {(pid, start) for pid, start in processes
            if pid in table and table[pid][2] == start and table[pid][1] not in "ZX"}


def _start_sweep(experiment: Path, out: Path) -> subprocess.Popen:
    # A session of its own: the test's signals reach the sweep alone, and clean-up can reach its whole group.
    return subprocess.Popen([sys.executable, "-c", SWEEP, str(experiment), str(out)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_runs_are_training(sweep: subprocess.Popen, out: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not any((out / "runs").glob("*/checkpoint.pt")):
        assert sweep.poll() is None, f"the sweep ended before it was killed: {sweep.communicate()}"
        assert time.monotonic() < deadline, "no run wrote a checkpoint in time"
        time.sleep(0.05)
    assert not any((out / "runs").glob(f"*/{RESULT_FILE}")), "runs too short to be killed mid-run"


def _wait_for_exit(processes: set[tuple[int, int]], timeout: float) -> set[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while (left := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _kill_group(sweep: subprocess.Popen) -> None:
    """Whatever the test's outcome, leave no process of the sweep's session behind."""
    try:
        os.killpg(sweep.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    sweep.communicate()


def _assert_results_match_result_files(results, experiment) -> None:
    """Every grid point's cell of results.nc holds exactly what its result.json says."""
    for point in experiment.points:
        record = read_result(experiment.run_dir(point))
        assert record is not None, point.name
        cell = results.where(results["run"] == point.name, drop=True)
        assert str(cell["status"].values.item()) == record["status"], point.name
        assert str(cell["error"].values.item()) == (record.get("error") or ""), point.name
        for name in RESULT_VARIABLES:
            expected = record.get(name)
            value = float(cell[name].values.item())
            assert (math.isnan(value) if expected is None else value == expected), (point.name, name)


@pytest.fixture
def sweep_in_flight(tmp_path):
    """A two-worker sweep in a subprocess, caught with its runs training: (process, its descendants, file, out)."""
    path, out = tmp_path / "crash.toml", tmp_path / "out"
    path.write_text(EXPERIMENT)
    sweep = _start_sweep(path, out)
    try:
        _wait_until_runs_are_training(sweep, out)
        yield sweep, _descendants(sweep.pid), path, out
    finally:
        _kill_group(sweep)


def test_killing_a_sweep_kills_its_runs_and_a_rerun_agrees_with_every_result(sweep_in_flight):
    sweep, processes, path, out = sweep_in_flight
    assert len(processes) >= 2  # the two pool workers (and multiprocessing's resource tracker)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    survivors = _wait_for_exit(processes, timeout=5.0)
    assert not survivors, f"processes of the killed sweep still running: {survivors}"

    results = run_sweep(path, workers=0, progress=False, out=out)  # at once, over the killed sweep's runs
    experiment = load_experiment(path, out=out)
    assert (results["status"] == "finished").all()
    _assert_results_match_result_files(read_results(out), experiment)
    assert all(float(read_result(experiment.run_dir(point))["steps_trained"]) == 200 for point in experiment.points)


@pytest.mark.parametrize(
    ("stop", "message"),
    [(lambda sweep: sweep.send_signal(signal.SIGTERM), "sweep stopped (the sweep received SIGTERM)"),
     (lambda sweep: os.killpg(sweep.pid, signal.SIGINT), "sweep stopped (interrupted)")],
    ids=["SIGTERM to the sweep", "Ctrl-C to its process group"],
)
def test_stopping_a_sweep_stops_its_runs_with_a_message(sweep_in_flight, stop, message):
    sweep, processes, path, out = sweep_in_flight
    stop(sweep)
    printed, errors = sweep.communicate(timeout=30)
    assert sweep.returncode != 0
    assert message in printed, (printed, errors)
    assert not _wait_for_exit(processes, timeout=5.0)

    experiment = load_experiment(path, out=out)
    results = read_results(out)
    stopped = [point for point in experiment.points if read_result(experiment.run_dir(point)) is None]
    assert stopped, "the stop came after every run had finished"
    for point in stopped:  # stopped runs are pending, at a checkpoint a rerun resumes from
        assert str(results["status"].sel(seed=point.coords["seed"]).values) == "pending"
    assert any((experiment.run_dir(point) / "checkpoint.pt").is_file() for point in stopped)


@pytest.fixture
def one_run(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text(ONE_RUN)
    experiment = load_experiment(path, out=tmp_path / "out")
    point = experiment.points[0]
    run_dir = experiment.run_dir(point)
    run_dir.mkdir(parents=True)
    return experiment, point, run_dir


@pytest.fixture
def hold_lock():
    """Start a process that holds a lock file for ``seconds``; ended at the test's end."""
    holders = []

    def start(lock_file: Path, seconds: float) -> subprocess.Popen:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_file), str(seconds)],
                                  stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield start
    for holder in holders:
        holder.kill()
        holder.communicate()


@pytest.mark.parametrize("lock_file", [RUN_LOCK, LOCK_FILE], ids=["another sweep's run", "a trainer"])
def test_a_run_held_by_a_live_process_is_running_not_failed(one_run, hold_lock, lock_file):
    experiment, point, run_dir = one_run
    holder = hold_lock(run_dir / lock_file, 60)
    record = run_point(point, run_dir, experiment.evaluation, lock_wait=0.3)
    assert record["status"] == "running" and "another process held" in record["error"]
    assert not (run_dir / RESULT_FILE).exists()
    assert collect_results(experiment)["status"].values.tolist() == ["running"]

    holder.kill()
    holder.wait()
    results = run_sweep(experiment, workers=0, progress=False)  # its holder is dead: the lock is free
    assert results["status"].values.tolist() == ["finished"]
    _assert_results_match_result_files(results, experiment)


def test_a_run_waits_for_a_holder_that_lets_go(one_run, hold_lock):
    experiment, point, run_dir = one_run
    hold_lock(run_dir / RUN_LOCK, 1.0)
    started = time.monotonic()
    record = run_point(point, run_dir, experiment.evaluation, lock_wait=30)
    assert record["status"] == "finished" and time.monotonic() - started > 0.5
    assert read_result(run_dir) == record


def test_a_run_finished_by_another_process_while_waiting_is_not_run_again(one_run, hold_lock):
    experiment, point, run_dir = one_run
    hold_lock(run_dir / RUN_LOCK, 1.0)
    finished = {"run": point.name, "status": "finished", "accuracy": 0.5}
    (run_dir / RESULT_FILE).write_text(json.dumps(finished))  # as the holder would before letting go
    assert run_point(point, run_dir, experiment.evaluation, lock_wait=30) == finished
    assert not (run_dir / "checkpoint.pt").exists()
