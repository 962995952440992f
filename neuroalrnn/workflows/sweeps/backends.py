"""Where a sweep's runs execute: in this process, in a pool of local worker processes, or as Ray tasks.

Every backend takes the jobs, the function that runs one job (importable at
module level, so it pickles by reference) and a callback
``finished(job, outcome)``, called in this process as each job ends, with the
job's return value, or with the exception that ended its worker (killed, out
of memory). Each run uses one torch thread. An interruption of this process
(``KeyboardInterrupt``, or an exception the caller's signal handler raises)
stops the runs in flight and propagates.

**Workers die with the sweep.** Local pool workers are spawned processes that
end when the process that started them ends, however it ends (``kill -9``
included): on Linux the kernel sends them SIGKILL when their parent dies
(``prctl(PR_SET_PDEATHSIG)``), and on every platform a watchdog thread ends a
worker whose parent process changed. When the sweep is interrupted it sends
its workers SIGTERM (a training run then stops at a checkpoint and its worker
exits), waits up to ``stop_grace`` seconds, then kills those left.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from ...system import available_cores, die_with_parent

__all__ = ["BACKENDS", "import_ray", "run_local", "run_ray"]

BACKENDS = ("local", "ray")

Finished = Callable[[Any, Any], None]


def _start_worker(parent_pid: int) -> None:
    """Initializer of every pool worker: one torch thread; end with the sweep process.

    SIGINT is ignored between runs: the sweep process handles Ctrl-C and stops
    its workers (a training run installs its own handler, which checkpoints).
    """
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def _run_in_worker(run_job: Callable[[Any], Any], job: Any) -> Any:
    """A pool worker's job; an interrupt of the run (SIGINT, or SIGTERM from the sweep) ends the worker."""
    try:
        return run_job(job)
    except KeyboardInterrupt:
        os._exit(1)  # the run stopped at a checkpoint; a worker that goes on would start the next run


def run_local(jobs: Sequence[Any], run_job: Callable[[Any], Any], workers: int, finished: Finished,
              *, stop_grace: float = 10.0) -> None:
    """Run ``jobs`` in a pool of ``workers`` spawned processes, or one after another here (``workers=0``)."""
    if workers == 0:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in jobs:
                finished(job, run_job(job))
        finally:
            torch.set_num_threads(previous)
        return
    # spawn: a fresh interpreter per worker, safe with torch's threads and on every platform.
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(),))
    processes: list[multiprocessing.process.BaseProcess] = []
    try:
        futures = {}
        for job in jobs:
            futures[pool.submit(_run_in_worker, run_job, job)] = job
            # submit starts the workers, in this thread: the new children are the pool's.
            processes += [child for child in multiprocessing.active_children()
                          if child not in before and child not in processes]
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as error:  # the worker process died (killed, out of memory)
                outcome = error
            finished(futures[future], outcome)
    except BaseException:
        _stop_workers(pool, processes, stop_grace)
        raise
    pool.shutdown()


def _stop_workers(pool: ProcessPoolExecutor, processes: Sequence[multiprocessing.process.BaseProcess],
                  grace: float) -> None:
    """Cancel the queued jobs, SIGTERM the workers, SIGKILL those still alive after ``grace`` seconds."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    waiting = {process.sentinel: process for process in processes}
    while waiting and (left := deadline - time.monotonic()) > 0:
        for sentinel in multiprocessing.connection.wait(list(waiting), timeout=left):
            waiting.pop(sentinel)
    for process in waiting.values():
        process.kill()
    pool.shutdown(wait=True)


def import_ray():
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "the ray backend needs Ray, which is not installed: pip install 'neuroalrnn[ray]'"
        ) from None
    return ray


def _ray_job(run_job: Callable[[Any], Any], job: Any) -> Any:
    torch.set_num_threads(1)
    return run_job(job)


def run_ray(jobs: Sequence[Any], run_job: Callable[[Any], Any], workers: int | None, address: str | None,
            finished: Finished) -> None:
    """Each job as a Ray task of one CPU, at most ``workers`` in flight (all when None).

    Starts a local Ray instance (``address=None``, ``workers`` CPUs) or joins the
    cluster at ``address``, and shuts down only what it started: a Ray session
    the caller already initialised is used as it is. An interruption cancels
    (force-kills) the tasks in flight; Ray itself ends the tasks of a driver
    that died.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=workers or min(available_cores(), len(jobs)), include_dashboard=False,
                     configure_logging=False)
        else:
            ray.init(address=address, configure_logging=False)
    in_flight: dict[Any, Any] = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_job)
        waiting = list(jobs)
        limit = workers or len(jobs)  # at most this many runs in flight
        while waiting or in_flight:
            while waiting and len(in_flight) < limit:
                job = waiting.pop(0)
                in_flight[remote.remote(run_job, job)] = job
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for reference in done:
                job = in_flight.pop(reference)
                try:
                    outcome = ray.get(reference)
                except ray.exceptions.RayError as error:
                    outcome = error
                finished(job, outcome)
    except BaseException:
        for reference in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(reference, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
