"""Running a sweep: skip the grid points that are done, run the rest on a backend, gather results.nc.

**One process per run directory.** A run holds the lock ``.sweep-run.lock`` in
its run directory from before it reads ``result.json`` until it has written
it. A run whose lock another live process holds is waited for (up to
``LOCK_WAIT`` seconds), then reported as ``running``, never as failed, and its
files are left alone. A lock whose holder died (``kill -9`` included) is free:
the operating system releases it with the process.

**Resuming.** A run with a ``result.json`` is done and is skipped: its files
are not touched. A run with a checkpoint but no result is resumed
(:meth:`~neuroalrnn.training.Trainer.resume`; a resumed run ends with the
weights of an uninterrupted one) or, when its training had finished, only
evaluated again. A run that raises is recorded in ``result.json`` with status
``"failed"``, the stage (``training`` or ``evaluation``) and the error, and the
sweep goes on; a rerun skips it unless ``retry_failed=True`` (a failed training
starts over, a failed evaluation is redone on the trained model). A run
directory whose ``config.json`` differs from its grid point (other than in
``data_workers``, ``bank_cache``, ``checkpoint_every``, ``device``) stops the sweep before
anything runs. One sweep at a time may use an ``out`` directory.

**Stopping.** Ctrl-C or SIGTERM stops the runs in flight (their checkpoints
stay, so a rerun resumes them), writes ``results.nc`` and raises
:class:`KeyboardInterrupt` (:class:`SweepInterrupted` for SIGTERM). A sweep
process killed outright takes its worker processes with it
(:mod:`neuroalrnn.workflows.sweeps.backends`).

**results.nc** is gathered at the end from the ``result.json`` files on disk,
so it agrees with them even when another process finished a run meanwhile.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import xarray as xr
from tqdm.auto import tqdm

from ...storage import advisory_lock, atomic_write, write_netcdf
from ...system import available_cores, resolve_device
from ...training.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,  # held by a Trainer while it trains in a run directory
    RunDirectoryError,
    load_checkpoint,
    read_config,
    read_metrics,
    versions,
)
from .backends import BACKENDS, import_ray, run_local, run_ray
from .experiment import Evaluation, Experiment, GridPoint, resolve_experiment
from .metrics import METRICS, MetricFunction
from .results import (
    RESULT_FILE,
    RESULTS_FILE,
    read_result,
    results_dataset,
    write_result,
)

__all__ = [
    "LOCK_WAIT",
    "SweepError",
    "SweepInterrupted",
    "collect_results",
    "evaluate_point",
    "run_point",
    "run_sweep",
]

EXPERIMENT_COPY = "experiment.toml"
RUN_LOCK = ".sweep-run.lock"
#: Seconds a run waits for another process to let go of its run directory before reporting it as running.
LOCK_WAIT = 10.0
# Config fields that never change a run's result: a stored run may differ in them.
_RESULT_NEUTRAL = ("data_workers", "bank_cache", "checkpoint_every", "device")


class SweepError(ValueError):
    """A sweep cannot run as asked (e.g. its run directories hold other configurations)."""


class SweepInterrupted(KeyboardInterrupt):
    """The sweep process received SIGTERM: its runs were stopped and results.nc was written."""


class _Busy(Exception):
    """A lock file is held by another process."""


# ---------------------------------------------------------------------------------------------
# Locks on run directories


def _acquire(lock_file: Path, wait: float) -> contextlib.ExitStack | None:
    """Hold ``lock_file`` (released when the returned stack closes), or None if another process keeps it
    for ``wait`` seconds."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(advisory_lock(lock_file, _Busy(), wait=wait))
    except _Busy:
        return None
    return held


def _held_by_another(lock_file: Path) -> bool:
    if not lock_file.is_file():
        return False
    held = _acquire(lock_file, 0.0)
    if held is None:
        return True
    held.close()
    return False


def _run_busy(run_dir: str | Path) -> bool:
    """Whether another live process holds the run directory (a sweep's run or a Trainer in it)."""
    run_dir = Path(run_dir)
    return _held_by_another(run_dir / RUN_LOCK) or _held_by_another(run_dir / LOCK_FILE)


# ---------------------------------------------------------------------------------------------
# One run: train (or resume), evaluate on held-out test trials, write result.json


def run_point(
    point: GridPoint, run_dir: str | Path, evaluation: Evaluation = Evaluation(),
    metrics: Mapping[str, MetricFunction] | None = None, *, retry_failed: bool = False,
    lock_wait: float = LOCK_WAIT,
) -> dict[str, Any]:
    """Train (or resume) the run of ``point`` in ``run_dir``, evaluate it, write and return its result.

    Returns the ``result.json`` record: this run's, or the one found on
    disk once the lock was held (a finished run, or a failed one unless
    ``retry_failed``). When another process keeps the run directory for
    ``lock_wait`` seconds, nothing is written and the record has status
    ``"running"``. Any exception of the run is recorded (status ``"failed"``,
    the stage, the error and its traceback) instead of raised;
    KeyboardInterrupt is not caught, so an interrupted run leaves no result
    and is resumed by the next sweep.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    held = _acquire(run_dir / RUN_LOCK, lock_wait)
    if held is None:
        return _running(point, run_dir)
    with held:
        record = read_result(run_dir)
        if record is not None and not (retry_failed and record["status"] == "failed"):
            return record
        if record is not None:
            _clear_failure(run_dir, record)
        return _run_locked(point, run_dir, evaluation, metrics)


def _run_locked(point: GridPoint, run_dir: Path, evaluation: Evaluation,
                metrics: Mapping[str, MetricFunction] | None) -> dict[str, Any]:
    started = time.perf_counter()
    record: dict[str, Any] = {
        "run": point.name, "coords": dict(point.coords), "config": point.config.to_dict(),
        "status": "failed", "stage": "training", "error": None,
    }
    try:
        train_seconds = _train(point.config, run_dir)
        record["stage"] = "evaluation"
        evaluation_started = time.perf_counter()
        record.update(evaluate_point(run_dir, evaluation, metrics))
        record.update(status="finished", stage=None, train_seconds=train_seconds,
                      evaluate_seconds=time.perf_counter() - evaluation_started)
        record["wall_time"] = record["train_seconds"] + record["evaluate_seconds"]
    except Exception as error:  # recorded, not raised: one failing run must not stop the sweep
        if isinstance(error, RunDirectoryError) and _held_by_another(run_dir / LOCK_FILE):
            return _running(point, run_dir)  # e.g. `neuroalrnn train --resume` on it: not a failure
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()
        record["wall_time"] = time.perf_counter() - started
        with contextlib.suppress(Exception):
            record["steps_trained"] = int(load_checkpoint(run_dir)["step"])
    record["versions"] = versions()
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_result(run_dir, record)
    return record


def _running(point: GridPoint, run_dir: Path) -> dict[str, Any]:
    return {"run": point.name, "coords": dict(point.coords), "status": "running", "stage": None,
            "error": f"another process held {run_dir}; rerun the sweep when it is done"}


def _train(config, run_dir: Path) -> float:
    """Train the run to its end (fresh, resumed, or already done); the training seconds it took in all."""
    from ...training import Trainer

    if (run_dir / CHECKPOINT_FILE).is_file():
        if not _training_done(read_config(run_dir), run_dir):
            # the experiment file names the bank cache, so a cache outside the run is the user's choice
            Trainer.resume(run_dir, progress=False, bank_cache=config.bank_cache, device=config.device).fit()
    else:
        Trainer(config, run_dir, progress=False).fit()
    return float(load_checkpoint(run_dir)["elapsed"])


def _training_done(config, run_dir: Path) -> bool:
    step = int(load_checkpoint(run_dir)["step"])
    if step >= config.steps:
        return True
    if config.target_accuracy > 0:  # an early stop leaves its last evaluation at the checkpoint's step
        rows = [row for row in read_metrics(run_dir) if row["step"] == step and row["eval_accuracy"] != ""]
        return bool(rows) and rows[-1]["eval_accuracy"] >= config.target_accuracy
    return False


def _clear_failure(run_dir: Path, record: dict) -> None:
    """Prepare a failed run for a retry: a failed training starts over, a failed evaluation is redone."""
    if record.get("stage") == "evaluation":
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        return
    for entry in run_dir.iterdir():
        if entry.name in (RUN_LOCK, LOCK_FILE):
            continue  # the lock this process holds stays the one other processes see
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def evaluate_point(
    run_dir: str | Path, evaluation: Evaluation = Evaluation(),
    metrics: Mapping[str, MetricFunction] | None = None,
) -> dict[str, Any]:
    """The numbers results.nc holds for a trained run, on ``evaluation.trials`` held-out test trials.

    Returns ``accuracy`` (mean trial score, :func:`neuroalrnn.evaluation.accuracy_by`),
    ``accuracy_by_task`` (per value of the trials' ``task``), ``test_loss``
    (the training loss on the test trials), ``final_loss`` (training loss at
    the last step, from metrics.csv), ``steps_to_criterion`` (first step whose
    held-out ``eval_accuracy`` ≥ ``evaluation.criterion``, None if never; its
    resolution is ``eval_every``), ``steps_trained``, ``stopped_early``,
    ``regimes_used`` (distinct regime codes on valid test steps) and
    ``switch_fraction`` (fraction of consecutive valid steps at which any
    nonlinear unit changes sign; both None for tanh/GRU/LSTM, see
    :func:`neuroalrnn.analyses.regimes.regime_statistics`), ``extra`` (the
    chosen extra metrics, ``evaluation.metrics`` from ``METRICS`` and
    ``metrics``) and the test trials' size and seed.
    """
    from ...evaluation import evaluate_run
    from ...training import load_model

    run_dir = Path(run_dir)
    trials, summary = evaluate_run(run_dir, evaluation.trials, save=evaluation.save_trials,
                                   device=read_config(run_dir).device)
    rows = read_metrics(run_dir)
    reached = [row["step"] for row in rows
               if row["eval_accuracy"] != "" and row["eval_accuracy"] >= evaluation.criterion]
    result = {
        **{key: summary[key] for key in ("accuracy", "accuracy_by_task", "test_loss", "final_loss",
                                         "stopped_early", "regimes_used", "switch_fraction")},
        "criterion": evaluation.criterion,
        "steps_to_criterion": reached[0] if reached else None,
        "steps_trained": summary["checkpoint_step"],
        "test_trials": summary["n_trials"],
        "test_seed": summary["seed"],
    }
    config, model, _ = load_model(run_dir)  # the extra metrics read the model
    chosen = {name: METRICS[name] for name in evaluation.metrics} | dict(metrics or {})
    result["extra"] = {name: float(function(trials, model, config)) for name, function in chosen.items()}
    return result


@dataclass(frozen=True)
class Job:
    """One run for a backend to execute (picklable: it crosses to worker processes)."""

    point: GridPoint
    run_dir: str
    evaluation: Evaluation
    metrics: Mapping[str, MetricFunction]
    retry_failed: bool = False
    lock_wait: float = LOCK_WAIT


def run_job(job: Job) -> dict[str, Any]:
    """Run one job (:func:`run_point`)."""
    return run_point(job.point, job.run_dir, job.evaluation, job.metrics, retry_failed=job.retry_failed,
                     lock_wait=job.lock_wait)


@dataclass(frozen=True)
class PackJob:
    """Several runs trained as one pack (:class:`~neuroalrnn.training.PackTrainer`), then each evaluated."""

    members: tuple[Job, ...]


def run_pack(job: PackJob) -> list[dict[str, Any]]:
    """Train the pack's runs together, then finish each with :func:`run_job`; their records, in order.

    Runs not started yet train as one pack, runs stopped part-way (a killed
    sweep) resume as another; runs with a result or a finished training are
    left to :func:`run_job`. If the pack fails as a whole (e.g. a run
    directory another process holds), nothing is lost: :func:`run_job` then
    trains each run the pack did not finish alone, and a network that
    diverged in the pack diverges again there and is recorded as failed.
    """
    from ...training import PackTrainer

    fresh, partial = [], []
    for member in job.members:
        run_dir = Path(member.run_dir)
        if read_result(run_dir) is not None:
            continue
        if (run_dir / CHECKPOINT_FILE).is_file():
            with contextlib.suppress(Exception):  # an unreadable run is run_job's to record
                if not _training_done(read_config(run_dir), run_dir):
                    partial.append(member)
        elif not (run_dir / CONFIG_FILE).exists():
            fresh.append(member)
    with contextlib.suppress(Exception):  # recorded run by run below
        if len(fresh) > 1:
            PackTrainer([member.point.config for member in fresh], [member.run_dir for member in fresh]).fit()
        if len(partial) > 1:
            PackTrainer.resume([member.run_dir for member in partial]).fit()
    return [run_job(member) for member in job.members]


def run_any(job: Job | PackJob) -> dict[str, Any] | list[dict[str, Any]]:
    """What every backend executes: one run (:func:`run_job`) or one pack (:func:`run_pack`)."""
    return run_pack(job) if isinstance(job, PackJob) else run_job(job)


AUTO_PACK_MAX_UNITS = 64
"""Automatic packing (``pack=None``) packs runs of at most this many units: the sizes it was measured at."""
AUTO_PACK_SIZE = 16
"""Automatic packing's largest pack (a compatible group of n runs becomes ceil(n / 16) near-equal packs: the
21 runs of a 7 P × 3 seed grid two packs, one per core of a 2-core machine). Fixed, not set from the cores: a run's pack, and so its weights to the
last bit (a pack pads its networks' trials to a common length, which changes the rounding of sums over
time), then depend only on the experiment file and ``pack``, never on the machine."""


def _packed(jobs: list[Job], pack: int | None) -> list[Job | PackJob]:
    """``jobs`` grouped into packs of compatible runs of at most ``pack`` runs (None: automatic)."""
    from ...training import pack_groups

    if pack is None:
        small = [job for job in jobs if job.point.config.n_units <= AUTO_PACK_MAX_UNITS]
        others = [job for job in jobs if job.point.config.n_units > AUTO_PACK_MAX_UNITS]
        return [*_packed(small, AUTO_PACK_SIZE), *others] if small else list(jobs)
    groups = pack_groups([job.point.config for job in jobs], pack)
    return [jobs[group[0]] if len(group) == 1 else PackJob(tuple(jobs[index] for index in group))
            for group in groups]


# ---------------------------------------------------------------------------------------------
# The sweep


def run_sweep(
    experiment: str | Path | Experiment,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    retry_failed: bool = False,
    device: str | None = None,
    pack: int | None = None,
) -> xr.Dataset:
    """Run every grid point of an experiment not yet done, then write and return ``out/results.nc``.

    ``experiment``: a TOML file path or a loaded :class:`Experiment`; ``out``
    overrides its output directory. ``backend``: ``"local"`` (a process pool
    of ``workers`` processes, default min(cores, runs); ``workers=0`` runs in
    this process) or ``"ray"`` (``address`` of a running cluster, or None for
    a local Ray instance of ``workers`` CPUs). ``progress``: a bar over runs
    and one line per finished run. ``retry_failed``: run failed points again.
    ``device``: train and evaluate every run there (cpu, cuda, auto),
    replacing the experiment's ``device`` setting. ``pack``: train up to
    this many compatible AL-RNN runs (same task, M, batch, steps, ...: see
    :func:`neuroalrnn.training.check_packable`) as one batched model
    (:class:`~neuroalrnn.training.PackTrainer`; each run gets its solo
    weights to rounding); 1 trains every run alone; None packs runs of at
    most :data:`AUTO_PACK_MAX_UNITS` units in near-equal packs of at most
    :data:`AUTO_PACK_SIZE`, split by seed (:func:`~neuroalrnn.training.pack_groups`).
    Which runs share a pack depends only on the experiment and ``pack``, so
    a sweep gives the same weights on every machine. A packed run's
    ``train_seconds`` is its pack's; a run resumed alone after a kill (its
    pack's other runs done) matches its packed self to rounding only.
    See the module docstring for resuming, locks and stopping.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError("address applies to the ray backend only (backend='ray')")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if pack is not None and (isinstance(pack, bool) or not isinstance(pack, int) or pack < 1):
        raise ValueError(f"pack must be a positive integer (1: every run alone) or None (automatic), got {pack!r}")
    if backend == "ray":
        import_ray()
        if workers == 0:
            raise ValueError("workers=0 (run in this process) applies to the local backend only")
    experiment = resolve_experiment(experiment, out)
    if device is not None:
        resolve_device(device)  # an unusable device fails here, before any run
        experiment = experiment.on_device(device)
    experiment.check_tasks()
    metrics = {name: METRICS[name] for name in experiment.evaluation.metrics}

    experiment.out.mkdir(parents=True, exist_ok=True)
    say = tqdm.write if progress else (lambda line: None)
    with _sweep_lock(experiment.out), _sigterm_interrupts():
        _check_stored_configs(experiment)
        atomic_write(experiment.out / EXPERIMENT_COPY, experiment.text)
        jobs = []
        for point in experiment.points:
            record = read_result(experiment.run_dir(point))
            if record is None or (retry_failed and record["status"] == "failed"):
                jobs.append(Job(point, str(experiment.run_dir(point)), experiment.evaluation, metrics,
                                retry_failed=retry_failed))
        done = len(experiment.points) - len(jobs)
        if done:
            say(f"{done} of {len(experiment.points)} runs already done (skipped)")
        n_workers = min(workers if workers is not None else available_cores(), len(jobs))
        units = _packed(jobs, pack)  # what the backend schedules: runs and packs of runs
        if jobs:
            where = ("in this process" if n_workers == 0 else f"{n_workers} workers") if address is None \
                else f"cluster at {address}"
            packs = [unit for unit in units if isinstance(unit, PackJob)]
            packed = (f", {sum(len(unit.members) for unit in packs)} of them in {len(packs)} "
                      f"pack{'s' if len(packs) > 1 else ''}") if packs else ""
            say(f"running {len(jobs)} runs{packed} on the {backend} backend ({where}) into {experiment.out}")
        notes: dict[str, str] = {}  # why a run has no result.json, for results.nc's error
        bar = tqdm(total=len(experiment.points), initial=done, desc=experiment.name, unit="run",
                   disable=not progress, dynamic_ncols=True)
        stopped: BaseException | None = None
        try:
            def finished_run(job: Job, outcome: Any) -> None:
                record = outcome if isinstance(outcome, dict) else _lost(job, outcome)
                if record["status"] not in ("finished", "failed"):
                    notes[job.point.name] = record["error"]
                bar.update(1)
                say(_summary(job.point.name, record))

            def finished(unit: Job | PackJob, outcome: Any) -> None:
                if not isinstance(unit, PackJob):
                    finished_run(unit, outcome)
                    return
                for index, member in enumerate(unit.members):
                    finished_run(member, outcome[index] if isinstance(outcome, list) else outcome)

            if jobs and backend == "ray":
                run_ray(units, run_any, workers, address, finished)
            elif jobs:
                run_local(units, run_any, min(n_workers, len(units)), finished)
        except (KeyboardInterrupt, SystemExit) as interruption:
            stopped = interruption
        finally:
            bar.close()
        results = collect_results(experiment, write=True, notes=notes)
        counts = {status: int((results["status"] == status).sum()) for status in ("failed", "running", "pending")}
        notes_text = [f"{count} {status}" for status, count in counts.items() if count]
        say(f"wrote {experiment.out / RESULTS_FILE}" + (f" ({', '.join(notes_text)})" if notes_text else ""))
        if stopped is not None:
            say(f"sweep stopped ({str(stopped) or 'interrupted'}): the runs in progress were stopped; "
                "rerun the sweep to resume them from their checkpoints")
            try:
                raise stopped
            finally:
                stopped = None  # no cycle through this frame: the worker pool it holds is freed at once
        if counts["pending"] or counts["running"]:
            say("rerun the sweep to finish the runs still pending or running (results.nc's error says why)")
    return results


def collect_results(experiment: str | Path | Experiment, *, out: str | Path | None = None,
                    write: bool = False, notes: Mapping[str, str] | None = None) -> xr.Dataset:
    """Gather the results of an experiment's runs from their ``result.json`` files, without running anything.

    A run without a result is ``"running"`` while another process holds its
    run directory, else ``"pending"`` (not started, or interrupted), with
    ``notes[run name]`` as its error where given. With ``write=True`` the
    Dataset is also written to ``out/results.nc``.
    """
    experiment = resolve_experiment(experiment, out)
    records = {}
    for point in experiment.points:
        run_dir = experiment.run_dir(point)
        record = read_result(run_dir)
        if record is None and _run_busy(run_dir):
            record = {"status": "running", "error": f"another process holds {run_dir}"}
        records[point.name] = record or {"status": "pending", "error": (notes or {}).get(point.name, "")}
    results = results_dataset(experiment, records)
    if write:
        write_netcdf(results, experiment.out / RESULTS_FILE)
    return results


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises SweepInterrupted; a second SIGTERM acts as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise SweepInterrupted("the sweep received SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sweep_lock(out: Path):
    """Keep a second sweep out of ``out`` while this one runs (an advisory lock, freed if the process dies)."""
    busy = SweepError(f"another sweep is running into {out}; wait for it or stop it")
    return advisory_lock(out / ".sweep.lock", busy)


def _check_stored_configs(experiment: Experiment) -> None:
    """Refuse to reuse run directories trained with another configuration than their grid point's."""
    conflicts = []
    for point in experiment.points:
        run_dir = experiment.run_dir(point)
        if (run_dir / CONFIG_FILE).is_file():
            try:
                stored = read_config(run_dir).to_dict()
            except RunDirectoryError as error:
                conflicts.append(f"{point.name}: {error}")
                continue
        elif (record := read_result(run_dir)) is not None and isinstance(record.get("config"), dict):
            stored = record["config"]
        else:
            continue
        wanted = point.config.to_dict()
        differences = [f"{key} {stored.get(key)!r} (stored) vs {wanted[key]!r}" for key in wanted
                       if key not in _RESULT_NEUTRAL and stored.get(key) != wanted[key]]
        if differences:
            conflicts.append(f"{point.name}: {', '.join(differences)}")
    if conflicts:
        shown = conflicts[:5] + ([f"and {len(conflicts) - 5} more"] if len(conflicts) > 5 else [])
        raise SweepError(
            f"run directories under {experiment.runs_dir} hold runs of another configuration "
            f"({'; '.join(shown)}); delete them or choose another out directory"
        )


def _lost(job: Job, error: BaseException) -> dict[str, Any]:
    """The record of a run whose worker died: pending (no result.json), so a rerun retries it."""
    return {"run": job.point.name, "status": "pending", "stage": None,
            "error": f"the worker running it stopped ({type(error).__name__}: {error}); rerun the sweep to finish it"}


def _summary(name: str, record: dict) -> str:
    if record["status"] != "finished":
        stage = f" during {record['stage']}" if record.get("stage") else ""
        return f"{name}: {record['status'].upper()}{stage}: {record.get('error')}"
    parts = [f"accuracy {record['accuracy']:.3f}"]
    if record.get("final_loss") is not None:
        parts.append(f"loss {record['final_loss']:.3g}")
    if record.get("regimes_used") is not None:
        parts.append(f"regimes {record['regimes_used']}, switches {record['switch_fraction']:.3f}")
    criterion = record.get("steps_to_criterion")
    parts.append(f"criterion {record['criterion']:g} at step {criterion}" if criterion is not None
                 else f"criterion {record['criterion']:g} not reached")
    parts.append(f"{record['wall_time']:.1f} s")
    return f"{name}: " + ", ".join(parts)
