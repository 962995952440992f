"""Training trials: the task of a config and the chunks of trials it is trained on, sampled in or out of process.

A chunk is what is sampled at once (:func:`data_chunk`): one step's batch of
fresh trials, one trial bank, or the fixed training set. Seeds depend only on
(seed, step) or (seed, bank), so any step's trials can be rebuilt after a
resume. :class:`_Chunks` serves chunks to DataLoader worker processes, which
:func:`_start_worker` ties to the trainer's life.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import signal
from pathlib import Path

import numpy as np
import torch

from .. import envs
from ..system import die_with_parent
from .config import TrainConfig
from .rundir import versions

__all__ = ["bank_cache_path", "batch_of_step", "data_chunk", "make_task", "sample_chunk"]


def make_task(config: TrainConfig, *, held_out: bool = False):
    """The task of ``config``; ``held_out=True`` gives its held-out version where it has one (unseen items)."""
    options = {**config.task_kwargs, **(envs.held_out_options(config.task) if held_out else {})}
    return envs.make(config.task, **options)


def _batch_seed(seed: int, step: int) -> int:
    """The trial seed of training step ``step``: a pure function of (seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def data_chunk(config: TrainConfig, step: int) -> int:
    """Which sampled chunk of trials holds step ``step``'s trials: the step itself, or its trial bank.

    A chunk is what is sampled at once: one step's batch of fresh trials
    (``bank_size=0``), one trial bank, or the fixed training set (always chunk 0).
    """
    if config.train_trials is not None:
        return 0
    if config.bank_size == 0:
        return step
    return step // max(1, config.bank_size * config.bank_reuse // config.batch_size)


def sample_chunk(env, config: TrainConfig, chunk: int) -> envs.TrialBatch:
    """Sample one chunk of trials (see :func:`data_chunk`): a step's batch or a whole trial bank.

    Seeds depend only on (seed, step) or (seed, bank), so any step's trials can
    be rebuilt after a resume; the fixed training set of ``train_trials`` has a
    seed of its own, distinct from the held-out evaluation trials. Banks are
    read from and written to ``config.bank_cache`` when it is set.
    """
    if config.train_trials is None and config.bank_size == 0:
        n_trials, seed = config.batch_size, _batch_seed(config.seed, chunk)
    elif config.train_trials is not None:
        n_trials, seed = config.train_trials, _bank_seed(config.seed, "train")
    else:
        n_trials, seed = config.bank_size, _bank_seed(config.seed, chunk)
    is_bank = config.train_trials is not None or config.bank_size > 0
    cached = bank_cache_path(config, n_trials, seed) if config.bank_cache is not None and is_bank else None
    if cached is not None and cached.is_file():
        try:
            return envs.TrialBatch.load(cached)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is resampled and rewritten
    batch = envs.sample_trials(
        env, n_trials, seed=seed, task_name=config.task, weighting=config.weighting,
        decision_weight=config.decision_weight,
    )
    if cached is not None:
        batch.save(cached)
    return batch


def bank_cache_path(config: TrainConfig, n_trials: int, seed: int) -> Path:
    """Where the bank of ``n_trials`` trials drawn with ``seed`` is cached: named by a hash of all it depends on."""
    key = {
        "task": config.task, "task_kwargs": config.task_kwargs, "weighting": config.weighting,
        "decision_weight": config.decision_weight, "n_trials": n_trials, "seed": seed,
        "versions": {name: versions().get(name) for name in ("neuroalrnn", "neurogym", "gymnasium", "numpy")},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return Path(config.bank_cache) / f"{config.task.replace(':', '_').replace('/', '_')}-{digest}.npz"


def batch_of_step(config: TrainConfig, chunk: envs.TrialBatch, step: int) -> envs.TrialBatch:
    """Step ``step``'s training batch from its chunk (banks: ``batch_size`` trials drawn by (seed, step))."""
    if config.train_trials is None and config.bank_size == 0:
        return chunk
    rng = np.random.default_rng([config.seed, step, 7])
    return chunk.take(rng.choice(chunk.n_trials, size=min(config.batch_size, chunk.n_trials), replace=False))


def _bank_seed(seed: int, bank: int | str) -> int:
    tag = 0 if bank == "train" else int(bank) + 1
    return int(np.random.SeedSequence([seed, tag, 0xBA4C]).generate_state(1)[0])


class _Chunks(torch.utils.data.Dataset):
    """Map-style dataset over chunks of trials, for DataLoader workers.

    A failure while sampling is returned as a :class:`_WorkerFailure` (not
    raised), so the trainer re-raises the original exception, with its own
    type and message, instead of torch's wrapped worker traceback.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.env = None  # built lazily, in the worker process

    def __len__(self) -> int:
        return data_chunk(self.config, self.config.steps - 1) + 1

    def __getitem__(self, chunk: int) -> envs.TrialBatch | _WorkerFailure:
        try:
            if self.env is None:
                self.env = make_task(self.config)
            return sample_chunk(self.env, self.config, chunk)
        except Exception as error:
            return _WorkerFailure(error)


class _WorkerFailure:
    """An exception raised in a data worker, carried to the trainer (``error``: the original when picklable)."""

    def __init__(self, error: Exception) -> None:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            error = RuntimeError(f"sampling trials in a data worker failed: {type(error).__name__}: {error}")
        self.error = error


def _as_is(batch):
    return batch


def _checked_data_settings(config: TrainConfig) -> TrainConfig:
    """``config`` with its bank cache made absolute (relative to the current directory), or ValueError."""
    if config.train_trials is None and 0 < config.bank_size < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds bank_size {config.bank_size}: every step would train on the "
            f"same {config.bank_size} trials; give bank_size >= batch_size (--bank-size {config.batch_size}) "
            "or bank_size 0 (fresh trials every step)"
        )
    if config.bank_cache is None:
        return config
    cache = Path(os.path.abspath(Path(config.bank_cache).expanduser()))
    if cache.exists() and not cache.is_dir():
        raise ValueError(
            f"bank_cache {config.bank_cache!r} is a file ({cache}); give a directory (it is created if missing)"
        )
    return config.replace(bank_cache=str(cache))


def _start_worker(worker_id: int, *, trainer_pid: int, lock_file: tuple[int, int] | None) -> None:
    """DataLoader ``worker_init_fn``: the worker dies with the trainer and holds no copy of the run's lock.

    - SIGINT and SIGTERM are ignored: the trainer handles them (finishing its
      step and checkpointing), then shuts its workers down.
    - Linux: the kernel kills the worker when its parent dies
      (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere: a watchdog thread
      exits the worker once its parent has changed. The parent is the trainer
      (fork and spawn) or a fork server that exits with the trainer.
    - A forked worker closes its inherited descriptors of the lock file
      (``lock_file``: its device and inode), so the lock is free as soon as the
      trainer dies (closing a copy does not release the trainer's lock).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(trainer_pid)
    if lock_file is not None:
        _close_descriptors_of(lock_file)


def _close_descriptors_of(identity: tuple[int, int]) -> None:
    folder = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            with contextlib.suppress(OSError, ValueError):
                status = os.fstat(int(name))
                if (status.st_dev, status.st_ino) == identity:
                    os.close(int(name))
