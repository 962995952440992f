"""A killed, interrupted or failing training run: what it leaves behind, and what the next run makes of it.

Kills are real: a forked or separate process is SIGKILLed (at a chosen write,
or once a checkpoint exists), then the run is resumed here. After each one:
weights bit-identical to an uninterrupted run, every metrics row present
exactly once, no process left, no temporary file left, nothing written outside
the run directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroalrnn.training.config import TrainConfig
from neuroalrnn.training.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RunDirectoryError,
    load_checkpoint,
    read_config,
    read_metrics,
    save_checkpoint,
)
from neuroalrnn.storage import atomic_path
from neuroalrnn.training import Trainer, TrainingInterrupted, load_model

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self/stat").exists(),
                                reason="kills and process checks use fork and /proc (Linux)")

CONFIG = TrainConfig(
    n_units=12, n_nonlinear=3, steps=12, batch_size=6, checkpoint_every=4,
    eval_every=4, eval_trials=20, noise_std=0.05, seed=3, bank_size=12, bank_reuse=1, data_workers=0,
)
WRITES_OF_A_RUN = 7  # config.json, then checkpoint.pt + metrics.csv at steps 4, 8 and 12


# ----------------------------------------------------------------------------- helpers


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _csv_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / METRICS_FILE).read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _open_files(pid: int) -> set[str]:
    folder = Path("/proc") / str(pid) / "fd"
    names = set()
    for link in folder.iterdir():
        try:
            names.add(os.readlink(link))
        except OSError:
            pass
    return names


def _kill_survivors(pids: list[int]) -> None:
    """Leave no process behind, whatever the test found."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def _snapshot(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in run_dir.iterdir() if path.is_file()}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run of CONFIG: (weights, metrics rows)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (conftest), which set it only after module fixtures
    try:
        trainer = Trainer(CONFIG, tmp_path_factory.mktemp("straight") / "run", progress=False).fit()
    finally:
        torch.set_num_threads(threads)
    return _weights(trainer.model), read_metrics(trainer.run_dir)


def _assert_same_run(run_dir: Path, model: torch.nn.Module, straight) -> None:
    weights, rows = straight
    for name, value in weights.items():
        assert torch.equal(_weights(model)[name], value), name
    found = read_metrics(run_dir)
    assert [row["step"] for row in found] == list(range(1, CONFIG.steps + 1))  # each row exactly once
    assert _csv_steps(run_dir) == list(range(1, CONFIG.steps + 1))
    assert [row["loss"] for row in found] == [row["loss"] for row in rows]


def _killed_at_write(run_dir: Path, write: int, moment: str, config: TrainConfig = CONFIG) -> None:
    """Train ``config`` into ``run_dir`` in a forked process that SIGKILLs itself at its ``write``-th file write.

    ``moment``: "before" the write's rename (its temporary file is left behind)
    or "after" it (the new file is in place, the writes after it never happen).
    """
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            count = 0
            rename = os.replace

            def replace(source, target):
                nonlocal count
                count += 1
                if count == write and moment == "before":
                    os.kill(os.getpid(), signal.SIGKILL)
                rename(source, target)
                if count == write and moment == "after":
                    os.kill(os.getpid(), signal.SIGKILL)

            os.replace = replace
            Trainer(config, run_dir, progress=False).fit()
        finally:
            os._exit(3)  # the write never came
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with status {status}"


def _recover(run_dir: Path, config: TrainConfig = CONFIG) -> Trainer:
    """What a user does next: resume the run, or start it again where no checkpoint was written."""
    if (run_dir / CHECKPOINT_FILE).exists():
        return Trainer.resume(run_dir, progress=False).fit()
    return Trainer(config, run_dir, progress=False).fit()


_SCRIPT = textwrap.dedent("""
    import sys
    from neuroalrnn.training.config import TrainConfig
    from neuroalrnn.training import Trainer, TrainingInterrupted
    import torch
    torch.set_num_threads(1)
    # Banks of 200 trials fill the pipe to the trainer: a worker orphaned then would block forever.
    config = TrainConfig(n_units=12, n_nonlinear=3, steps=100000, batch_size=6, checkpoint_every=5,
                         eval_every=1000, eval_trials=20, seed=3, bank_size=200, bank_reuse=1, data_workers=1)
    trainer = Trainer(config, sys.argv[1], progress=False)
    try:
        trainer.fit()
    except TrainingInterrupted as stop:
        print(f"stopped by {stop.signal_number} at step {trainer.step}, checkpoint {trainer.saved_step}", flush=True)
        sys.exit(128 + stop.signal_number)
""")


def _start_training(run_dir: Path) -> subprocess.Popen:
    """Start training in a separate process (output to files: an orphan must not hold a pipe open)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / "out.txt", "w") as out, open(run_dir.parent / "err.txt", "w") as err:
        process = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(run_dir)], stdout=out, stderr=err, text=True)
    try:
        _wait_for(lambda: (run_dir / CHECKPOINT_FILE).exists() or process.poll() is not None, 60, "a checkpoint")
    except AssertionError:
        process.kill()
        process.wait()
        raise
    assert process.poll() is None, (run_dir.parent / "err.txt").read_text()
    return process


# ----------------------------------------------------------------------------- kills


@pytest.mark.parametrize("moment", ["before", "after"])
@pytest.mark.parametrize("write", range(1, WRITES_OF_A_RUN + 1))
def test_a_kill_at_any_write_loses_nothing(tmp_path, straight, write, moment):
    run_dir = tmp_path / "run"
    earlier = set(_children(os.getpid()))  # e.g. a resource tracker an earlier test's process pool left
    _killed_at_write(run_dir, write, moment)
    trainer = _recover(run_dir)
    _assert_same_run(run_dir, trainer.model, straight)
    assert not _temporaries(tmp_path), "temporary files left behind"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"], "written outside the run directory"
    assert not set(_children(os.getpid())) - earlier, "a process of the killed run was left behind"


def test_a_kill_between_checkpoint_and_metrics_loses_no_row(tmp_path):
    run_dir = tmp_path / "run"
    _killed_at_write(run_dir, 5, "before")  # the checkpoint of step 8 is written, its metrics.csv is not
    assert load_checkpoint(run_dir)["step"] == 8 and _csv_steps(run_dir) == [1, 2, 3, 4]
    assert [row["step"] for row in read_metrics(run_dir)] == list(range(1, 9))
    load_model(run_dir)  # a reader repairs the copy
    assert _csv_steps(run_dir) == list(range(1, 9))


def test_a_killed_trainer_leaves_no_worker_and_no_lock(tmp_path):
    """kill -9 of a trainer with a data worker: the worker dies too, never held the lock, and the run resumes."""
    run_dir = tmp_path / "run"
    process = _start_training(run_dir)
    workers = _children(process.pid)
    try:
        assert workers, "expected a data-loader worker"
        lock = str((run_dir / ".lock").resolve())
        assert all(lock not in _open_files(worker) for worker in workers), "a worker holds the run's lock"
        process.kill()
        process.wait()
        _wait_for(lambda: not any(_alive(worker) for worker in workers), 3, "the workers to die with the trainer")
    finally:
        _kill_survivors([process.pid, *workers])
    steps = load_checkpoint(run_dir)["step"] + 2
    resumed = Trainer.resume(run_dir, steps=steps, progress=False).fit()
    assert resumed.step == steps
    assert [row["step"] for row in read_metrics(run_dir)] == list(range(1, steps + 1))
    assert not _temporaries(run_dir)


def test_a_worker_closes_its_copies_of_the_lock_and_the_trainer_keeps_it(tmp_path):
    """Whatever the lock library does at fork, a worker keeps no descriptor of the lock file, and closing them
    does not release the trainer's lock."""
    from neuroalrnn.training.rundir import exclusive
    from neuroalrnn.training.data import _close_descriptors_of

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with exclusive(run_dir):
        lock = run_dir / ".lock"
        identity = (lock.stat().st_dev, lock.stat().st_ino)
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.open(lock, os.O_RDONLY)  # as an inherited descriptor would be
                _close_descriptors_of(identity)
                os._exit(1 if str(lock) in _open_files(os.getpid()) else 0)
            finally:
                os._exit(2)
        _, status = os.waitpid(child, 0)
        assert os.WEXITSTATUS(status) == 0
        with pytest.raises(RunDirectoryError, match="another process is training"), exclusive(run_dir):
            pass


def test_sigterm_stops_like_ctrl_c_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    process = _start_training(run_dir)
    workers = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
        _wait_for(lambda: not any(_alive(worker) for worker in workers), 3, "the workers to end")
    finally:
        _kill_survivors([process.pid, *workers])
    assert process.returncode == 128 + signal.SIGTERM, (tmp_path / "err.txt").read_text()
    step = load_checkpoint(run_dir)["step"]
    assert f"stopped by {int(signal.SIGTERM)} at step {step}, checkpoint {step}" in (tmp_path / "out.txt").read_text()
    assert _csv_steps(run_dir) == list(range(1, step + 1))
    assert not _temporaries(run_dir)


def test_a_second_interrupt_while_saving_keeps_the_step_right(tmp_path, monkeypatch):
    """Ctrl-C, then Ctrl-C again while the checkpoint is being written: the saved step is the one on disk."""
    from neuroalrnn.training import trainer as trainer_module

    trainer = Trainer(CONFIG, tmp_path / "run", progress=False)
    original_update, original_write = trainer._update, trainer_module.write_metrics

    def update_then_ctrl_c(batch, lr):
        result = original_update(batch, lr)
        if trainer.step == 4:  # the 5th update
            signal.raise_signal(signal.SIGINT)
        return result

    def ctrl_c_then_write(run_dir, rows):
        if rows and rows[-1]["step"] == 5:
            signal.raise_signal(signal.SIGINT)
        original_write(run_dir, rows)

    monkeypatch.setattr(trainer, "_update", update_then_ctrl_c)
    monkeypatch.setattr(trainer_module, "write_metrics", ctrl_c_then_write)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert trainer.saved_step == load_checkpoint(tmp_path / "run")["step"] == 5
    assert _csv_steps(tmp_path / "run") == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- temporary files


def test_the_next_run_removes_dead_writers_temporaries_only(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(CONFIG.replace(steps=4), run_dir, progress=False).fit()
    child = os.fork()
    if child == 0:  # pragma: no cover - a killed evaluate: its trials.nc temporary stays
        try:
            with atomic_path(run_dir / "trials.nc") as temporary:
                temporary.write_bytes(b"half a file")
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    os.waitpid(child, 0)
    (dead,) = _temporaries(run_dir)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = run_dir / dead.name.replace(f"-{child}.", f"-{sleeper.pid}.")
        live.write_bytes(b"being written")
        old_style = run_dir / ".checkpoint.pt.k3j4h5g6.tmp"  # an older version's name, without a process id
        old_style.write_bytes(b"x")
        os.utime(old_style, (time.time() - 2 * 86400,) * 2)
        recent_old_style = run_dir / ".metrics.csv.a1b2c3d4.tmp"
        recent_old_style.write_bytes(b"x")
        Trainer.resume(run_dir, steps=6, progress=False).fit()
        assert _temporaries(run_dir) == sorted([live, recent_old_style])
    finally:
        sleeper.kill()
        sleeper.wait()


# ----------------------------------------------------------------------------- paths outside the run


@pytest.mark.parametrize("stored", ["../../outside", "ABSOLUTE"])
def test_a_resume_never_writes_outside_its_run(tmp_path, stored):
    run_dir = tmp_path / "deep" / "run"
    Trainer(CONFIG.replace(steps=4), run_dir, progress=False).fit()
    outside = tmp_path / "outside"
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["config"]["bank_cache"] = str(outside) if stored == "ABSOLUTE" else stored
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))
    before = _snapshot(run_dir)
    with pytest.raises(RunDirectoryError, match=r"outside the run directory.*--bank-cache") as error:
        Trainer.resume(run_dir, steps=8, progress=False)
    assert "\n" not in str(error.value)
    assert not outside.exists() and _snapshot(run_dir) == before
    # Named again by the caller, the cache is used.
    Trainer.resume(run_dir, steps=8, bank_cache=outside, progress=False).fit()
    assert list(outside.glob("*.npz"))


def test_stored_paths_are_relative_to_the_run_not_the_current_directory(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    Trainer(CONFIG.replace(steps=4, bank_cache=str(run_dir / "cache")), run_dir, progress=False).fit()
    assert json.loads((run_dir / CONFIG_FILE).read_text())["config"]["bank_cache"] == "cache"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert read_config(run_dir).bank_cache == str(run_dir / "cache")
    Trainer.resume(run_dir, steps=20, progress=False).fit()  # one bank per 2 steps: banks 0-9
    assert len(list((run_dir / "cache").glob("*.npz"))) == 10
    assert not list(elsewhere.iterdir())


# ----------------------------------------------------------------------------- settings and start-up failures


def test_a_batch_larger_than_the_bank_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size 4096 exceeds bank_size 2048.*--bank-size 4096"):
        Trainer(TrainConfig(batch_size=4096, n_units=8, n_nonlinear=2), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_resume_to_fewer_steps_than_done_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(CONFIG, run_dir, progress=False).fit()
    before = _snapshot(run_dir)
    with pytest.raises(RunDirectoryError, match="already at step 12, past the 8 steps"):
        Trainer.resume(run_dir, steps=8, progress=False)
    assert _snapshot(run_dir) == before


class _TwoArgumentError(Exception):
    def __init__(self, what, where):
        super().__init__(f"{what} at {where}")


def _fail_in_worker(env, config, chunk):
    raise ZeroDivisionError("division by zero in the task's timing")


def _fail_unpicklably(env, config, chunk):
    raise _TwoArgumentError("no trials", "bank 0")


@pytest.mark.parametrize(("sampler", "expected", "message"), [
    (_fail_in_worker, ZeroDivisionError, "division by zero in the task's timing"),
    (_fail_unpicklably, RuntimeError, "_TwoArgumentError: no trials at bank 0"),
], ids=["picklable", "unpicklable"])
def test_a_worker_error_arrives_as_itself_and_leaves_no_skeleton(tmp_path, monkeypatch, sampler, expected, message):
    from neuroalrnn.training import data

    monkeypatch.setattr(data, "sample_chunk", sampler)  # the forked worker inherits it
    run_dir = tmp_path / "run"
    with pytest.raises(expected) as error:
        Trainer(CONFIG.replace(data_workers=1), run_dir, progress=False).fit()
    assert message in str(error.value) and "Traceback" not in str(error.value)
    assert not run_dir.exists(), "a run-directory skeleton was left behind"


def test_a_failed_start_in_an_existing_directory_removes_only_what_it_wrote(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    trainer = Trainer(CONFIG, run_dir, progress=False)
    monkeypatch.setattr(trainer, "sample_batch", lambda step: _fail_in_worker(None, None, None))
    with pytest.raises(ZeroDivisionError):
        trainer.fit()
    assert sorted(path.name for path in run_dir.iterdir()) == ["notes.txt"]
    Trainer(CONFIG.replace(steps=4), run_dir, progress=False).fit()  # the next try is not blocked


def test_a_bank_cache_that_is_a_file_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    with pytest.raises(ValueError, match="bank_cache .* is a file"):
        Trainer(CONFIG.replace(bank_cache=str(cache)), tmp_path / "run", progress=False).fit()
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- checkpoints


class _Payload:
    """Not a tensor or a plain value: pickling it makes the checkpoint unsafe to load."""


@pytest.fixture
def trained(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(CONFIG.replace(steps=4), run_dir, progress=False).fit()
    return run_dir


def test_a_pickled_checkpoint_is_refused_as_unsafe(trained):
    state = torch.load(trained / CHECKPOINT_FILE, weights_only=True)
    torch.save({**state, "payload": _Payload()}, trained / CHECKPOINT_FILE)
    with pytest.raises(RunDirectoryError, match=r"refused as unsafe.*_Payload"):
        load_checkpoint(trained)


def _other_size(state, run_dir):
    config = CONFIG.replace(n_units=16, steps=1)
    other = Trainer(config, run_dir.parent / "other", progress=False).fit()
    return {**state, "model": other.model.state_dict(), "optimizer": other.optimizer.state_dict()}


@pytest.mark.parametrize(("damage", "message"), [
    (lambda state, run_dir: {key: value for key, value in state.items() if key != "optimizer"}, "optimizer"),
    (lambda state, run_dir: {key: value for key, value in state.items() if key != "rng_torch"}, "rng_torch"),
    (lambda state, run_dir: {**state, "rng_torch": torch.zeros(3, dtype=torch.uint8)}, "RNG state"),
    (lambda state, run_dir: {**state, "rng_torch": torch.zeros(5056)}, "rng_torch"),
    (lambda state, run_dir: {**state, "model": [1, 2]}, "model"),
    (lambda state, run_dir: {**state, "step": -4}, "step"),
    (lambda state, run_dir: {**state, "optimizer": {"state": {}, "param_groups": []}}, "optimiser"),
    (_other_size, r"does not match the model of its config.json.*W \(16, 16\) vs \(12, 12\)"),
], ids=["no-optimizer", "no-rng", "short-rng", "float-rng", "model-not-dict", "negative-step",
        "optimizer-of-no-parameters", "other-size"])
def test_a_checkpoint_that_cannot_be_resumed_is_refused_in_one_line(trained, damage, message):
    state = torch.load(trained / CHECKPOINT_FILE, weights_only=True)
    save_checkpoint(trained, damage(state, trained))
    before = _snapshot(trained)
    with pytest.raises(RunDirectoryError, match=message) as error:
        Trainer.resume(trained, steps=8, progress=False).fit()
    assert "\n" not in str(error.value) and str(trained / CHECKPOINT_FILE) in str(error.value)
    assert _snapshot(trained) == before, "the run directory was changed"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_non_finite_weights_is_refused(trained, value):
    state = torch.load(trained / CHECKPOINT_FILE, weights_only=True)
    state["model"]["W"][0, 0] = value
    save_checkpoint(trained, state)
    with pytest.raises(RunDirectoryError, match=r"NaN or infinite \(W\)"):
        load_model(trained)
    with pytest.raises(RunDirectoryError, match=r"NaN or infinite \(W\)"):
        Trainer.resume(trained, steps=8, progress=False)


# ----------------------------------------------------------------------------- config.json versions


def test_config_json_carries_its_format_version_and_old_ones_read_as_version_0(trained):
    record = json.loads((trained / CONFIG_FILE).read_text())
    assert record["format_version"] == 1
    del record["format_version"]
    (trained / CONFIG_FILE).write_text(json.dumps(record))
    assert read_config(trained) == CONFIG.replace(steps=4)
    record["format_version"] = 99
    (trained / CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(RunDirectoryError, match="format_version 99"):
        read_config(trained)


def test_a_run_from_before_checkpoints_carried_metrics_resumes(tmp_path, straight):
    run_dir = tmp_path / "run"
    _killed_at_write(run_dir, 5, "after")  # the checkpoint of step 8 and its metrics.csv are written
    state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    del state["metrics"], state["format_version"]
    save_checkpoint(run_dir, state)
    resumed = Trainer.resume(run_dir, progress=False).fit()
    _assert_same_run(run_dir, resumed.model, straight)
    np.testing.assert_array_equal(load_checkpoint(run_dir)["metrics"][:, 0].numpy(), np.arange(1, 13))
