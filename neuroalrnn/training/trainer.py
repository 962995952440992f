"""Supervised training by backpropagation through time, with resumable, crash-safe run directories.

What a killed or failed training leaves behind (the contract the crash-safety
tests check): the last checkpoint, which carries every metrics row up to its
step (see :mod:`neuroalrnn.training.rundir`); no process (data workers die with the
trainer, and never hold the run's lock); no temporary file once the run is
resumed; nothing outside the run directory unless asked for on the command
line; and, when training fails before its first checkpoint, no run-directory
skeleton. SIGTERM stops training like Ctrl-C: the current step is finished
and checkpointed, then :class:`TrainingInterrupted` is raised.

The trials it trains on, and the worker processes that sample them, come from
:mod:`neuroalrnn.training.data`. The module is longer than the package's usual
~500 lines because :class:`Trainer` is one object: its loop, checkpoints,
resume and signal handling share state and are tested together.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import envs
from ..formats import FORMAT_VERSION, FormatError, validate
from ..models import ALRNN, build_model
from ..models.fast import alrnn_forward_fast
from ..storage import recover_file_groups
from ..system import resolve_device
from .config import TrainConfig
from .data import (
    _as_is,
    _checked_data_settings,
    _Chunks,
    _start_worker,
    _WorkerFailure,
    batch_of_step,
    data_chunk,
    make_task,
    sample_chunk,
)
from .losses import (
    accuracy_by_task,
    decision_accuracy,
    task_loss,
    weighted_cross_entropy,
    weighted_squared_error,
    yang_squared_error,
)
from .rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    RunDirectoryError,
    is_inside,
    load_checkpoint,
    metrics_rows,
    metrics_tensor,
    read_config,
    read_config_record,
    read_metrics,
    remove_temporaries,
    restore_metrics,
    save_checkpoint,
    sync_metrics,
    training_session,
    write_config,
    write_metrics,
)

__all__ = [  # the losses and scores are defined in .losses and kept here for the callers that import them from here
    "EVAL_SEED_OFFSET",
    "LoadedRun",
    "TEST_SEED_OFFSET",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "accuracy_by_task",
    "decision_accuracy",
    "load_model",
    "load_run",
    "learning_rate",
    "make_model",
    "n_outputs",
    "task_loss",
    "weighted_cross_entropy",
    "yang_squared_error",
    "weighted_squared_error",
]

# Held-out trial seeds are the run's seed plus these offsets, apart from the
# per-step training seeds (drawn through SeedSequence).
EVAL_SEED_OFFSET = 1_000_003
TEST_SEED_OFFSET = 2_000_003


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by Ctrl-C (SIGINT) or SIGTERM; ``signal_number`` says which."""

    def __init__(self, signal_number: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = int(signal_number)


def make_model(config: TrainConfig, env) -> nn.Module:
    """The model of ``config`` sized for ``env``, initialised from ``config.seed``."""
    generator = torch.Generator().manual_seed(config.seed)
    return build_model(
        config.model,
        n_inputs=int(env.observation_space.shape[0]),
        n_outputs=n_outputs(env),
        n_units=config.n_units,
        n_nonlinear=config.n_nonlinear,
        noise_std=config.noise_std,
        slope=config.slope,
        init=config.init,
        generator=generator,
    )


def n_outputs(env) -> int:
    """The readout size a task needs: its number of actions (class targets) or its target size (regression)."""
    space = env.unwrapped.action_space
    return int(space.n) if hasattr(space, "n") else int(np.prod(space.shape))


class LoadedRun(NamedTuple):
    """A trained run as :func:`load_run` reads it: its config, model (eval mode), held-out task and checkpoint step."""

    config: TrainConfig
    model: nn.Module
    env: Any
    step: int


def load_model(run_dir: str | Path) -> tuple[TrainConfig, nn.Module, Any]:
    """The config, the trained model (eval mode) and the task (its held-out version) of a run directory.

    :func:`load_run` without the checkpoint step; its checks apply.
    """
    config, model, env, _ = load_run(run_dir)
    return config, model, env


def load_run(run_dir: str | Path) -> LoadedRun:
    """The config, the trained model (eval mode), the task (its held-out version) and the checkpoint step of a run.

    Refuses (RunDirectoryError) a checkpoint whose weights do not fit the
    config's model or are not finite. A ``metrics.csv`` that a kill left
    behind its checkpoint is rewritten from the checkpoint, and a group of
    result files whose commit a kill interrupted is finished
    (:func:`neuroalrnn.storage.recover_file_groups`).
    """
    config = read_config(run_dir)
    recover_file_groups(run_dir)
    state = load_checkpoint(run_dir)
    env = make_task(config, held_out=True)
    if "fit" in read_config_record(run_dir):  # an AL-RNN fitted to recordings: sized by them, not by the task
        from ..fitting import load_fit

        model = load_fit(run_dir).model
    else:
        model = make_model(config, env)
        _load_weights(model, state["model"], Path(run_dir) / CHECKPOINT_FILE)
    restore_metrics(run_dir, checkpoint=state)
    return LoadedRun(config, model.eval(), env, int(state["step"]))


def _load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``weights`` into ``model`` after checking names, shapes and finiteness (RunDirectoryError)."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    found = {name: tuple(value.shape) for name, value in weights.items()}
    if found != expected:
        differences = [
            f"{name} {found.get(name, 'missing')} vs {expected.get(name, 'absent')}"
            for name in sorted(set(found) | set(expected))
            if found.get(name) != expected.get(name)
        ]
        raise RunDirectoryError(
            f"checkpoint {path} does not match the model of its config.json "
            f"(checkpoint vs config shapes: {'; '.join(differences)})"
        )
    broken = [name for name, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise RunDirectoryError(
            f"checkpoint {path} holds weights that are NaN or infinite ({', '.join(broken)}); "
            "the run cannot be used: train it again"
        )
    model.load_state_dict(weights)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate used for update number ``step`` (0-based)."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * (0.1 if step >= 2 * config.steps // 3 else 1.0)
    progress = min(step / max(config.steps, 1), 1.0)
    floor = 0.05 * config.lr
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


class _deferred_interrupt:
    """While active (main thread only), Ctrl-C and SIGTERM set ``requested`` instead of raising at once.

    The training loop checks it after each completed step and then stops with
    a checkpoint, so an interrupt never lands inside an update; a second one
    raises at once (:class:`TrainingInterrupted`), except inside
    :meth:`shielded` (a checkpoint being written), after which it is raised.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal number
        self._previous: dict[int, Any] = {}
        self._shielded = False
        self._pending: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.requested is None:
            self.requested = signum
        elif self._shielded:
            self._pending = signum
        else:
            raise TrainingInterrupted(signum)

    @contextlib.contextmanager
    def shielded(self):
        """Defer a second interrupt until the block is done (a checkpoint is written whole, and its step known)."""
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False
        if self._pending is not None:
            raise TrainingInterrupted(self._pending)

    def __enter__(self) -> _deferred_interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)


class Trainer:
    """Train a model on a task and keep its run directory up to date.

    Each step draws ``batch_size`` trials whose seed depends only on
    (seed, step), so a resumed run sees exactly the trials an uninterrupted one
    would. The checkpoint holds the model, the optimiser, the torch RNG state
    (for recurrent noise), the step, the elapsed time and the metrics rows.

    A new run's ``bank_cache`` is taken relative to the current directory (as
    a command-line path); it must not be a file. With trial banks
    (``bank_size`` > 0), ``batch_size`` may not exceed ``bank_size`` (each
    step would silently take the whole, smaller bank): ValueError.

    Usage::

        trainer = Trainer(TrainConfig(steps=1500), "runs/demo").fit()
        trainer = Trainer.resume("runs/demo").fit()
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, progress: bool = True) -> None:
        config = _checked_data_settings(config)
        config = config.replace(device=resolve_device(config.device))  # config.json records the device used
        self.config = config
        self.device = torch.device(config.device)
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.env = make_task(config)
        torch.manual_seed(config.seed)
        self.model = make_model(config, self.env).to(self.device)  # initialised on the CPU: the same on any device
        # Fused Adam (and foreach RAdam) do the update in a few kernels instead of a loop over tensors.
        if config.optimizer == "radam":
            self.optimizer = torch.optim.RAdam(self.model.parameters(), lr=config.lr, foreach=True)
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=True)
        self._parameters = list(self.model.parameters())
        self.step = 0
        self.elapsed = 0.0
        self.metrics: list[dict[str, Any]] = []
        self._metrics_table = metrics_tensor([])  # self.metrics[:self._tabled] as the checkpoint stores them
        self._tabled = 0
        self.stopped_early = False
        self._eval_batch: envs.TrialBatch | None = None
        self._resumed = False
        self._in_step = False
        self._interrupt: _deferred_interrupt | None = None
        self._chunk, self._chunk_id = None, None
        self.saved_step: int | None = None  # the step of the checkpoint on disk
        self.eval_by_task: dict[str, float] = {}  # held-out accuracy per task at the last evaluation

    @classmethod
    def resume(
        cls, run_dir: str | Path, *, steps: int | None = None, bank_cache: str | os.PathLike | None = None,
        device: str | None = None, progress: bool = True,
    ) -> Trainer:
        """Continue the run in ``run_dir`` from its checkpoint (optionally to a new total of ``steps``).

        ``device``: continue on another device than the one recorded (e.g. a
        run started on a GPU machine, continued on a laptop's CPU).

        ``bank_cache``: the trial-bank cache directory to use from now on
        (relative to the current directory, as on a command line). Without it
        the stored one is used, and it must lie inside the run directory: a
        resume writes outside its run only where the caller names the place.

        Raises RunDirectoryError, before anything is written, when ``steps`` is
        below the checkpoint's step, when the stored cache lies outside the
        run, or when the checkpoint cannot be resumed (optimiser or RNG state
        missing or malformed, weights of another size or not finite).
        """
        run_dir = Path(run_dir)
        config = read_config(run_dir)
        if "fit" in read_config_record(run_dir):
            raise RunDirectoryError(f"{run_dir} holds a fit to recordings, not a task-trained run; continue it with "
                                    f"`neuroalrnn fit --resume {run_dir}` (FitTrainer.resume)")
        state = load_checkpoint(run_dir)
        if steps is not None and steps < state["step"]:
            raise RunDirectoryError(
                f"the run in {run_dir} is already at step {state['step']}, past the {steps} steps asked for; "
                f"nothing was changed (ask for more than {state['step']} steps to train further)"
            )
        if device is not None:
            config = config.replace(device=device)
        if bank_cache is not None:
            config = config.replace(bank_cache=str(bank_cache))
        elif config.bank_cache is not None and not is_inside(run_dir, config.bank_cache):
            raise RunDirectoryError(
                f"{run_dir / CONFIG_FILE} names the bank cache {config.bank_cache}, outside the run directory, "
                "and a resume writes only inside its run: pass the cache directory again (--bank-cache DIR) "
                "to use it"
            )
        trainer = cls(config if steps is None else config.replace(steps=steps), run_dir, progress=progress)
        trainer._restore(state)
        return trainer

    def _restore(self, state: dict[str, Any]) -> None:
        path = self.run_dir / CHECKPOINT_FILE
        try:
            validate("checkpoint", state, source=path, parts=("optimizer", "rng_torch"))
        except FormatError as error:
            raise RunDirectoryError(f"{error}; it cannot be resumed (it can still be evaluated)") from None
        _load_weights(self.model, state["model"], path)
        try:
            torch.Generator().set_state(state["rng_torch"])  # checks the state without touching the global RNG
            self.optimizer.load_state_dict(state["optimizer"])
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RunDirectoryError(
                f"checkpoint {path} holds a malformed optimiser or RNG state ({reason}); it cannot be resumed"
            ) from None
        torch.set_rng_state(state["rng_torch"])
        self.step = state["step"]
        self.elapsed = float(state.get("elapsed", 0.0))
        if state.get("metrics") is not None:  # the checkpoint is the authority (a kill may have left the CSV behind)
            self._metrics_table = state["metrics"]
            self.metrics = metrics_rows(self._metrics_table)
            self._tabled = len(self.metrics)
        else:  # a checkpoint from before checkpoints carried metrics
            self.metrics = [row for row in read_metrics(self.run_dir) if row["step"] <= self.step]
        self._resumed = True
        self.saved_step = self.step

    def sample_batch(self, step: int) -> envs.TrialBatch:
        """Step ``step``'s training trials (sampled here, reusing the current chunk)."""
        chunk = data_chunk(self.config, step)
        if self._chunk_id != chunk:
            self._chunk, self._chunk_id = sample_chunk(self.env, self.config, chunk), chunk
        return batch_of_step(self.config, self._chunk, step)

    def _batches(self):
        """The training batches from the current step on.

        With ``data_workers`` > 0 a torch DataLoader samples the coming chunks
        in parallel with training; every batch is a pure function of
        (seed, step), so results do not depend on it. Workers are set up by
        :func:`_start_worker`; an error in one is re-raised here as itself.
        """
        config = self.config
        if config.data_workers == 0:
            for step in range(self.step, config.steps):
                yield self.sample_batch(step)
            return
        lock = self.run_dir / LOCK_FILE
        lock_file = (os.stat(lock).st_dev, os.stat(lock).st_ino) if lock.exists() else None
        first, last = data_chunk(config, self.step), data_chunk(config, config.steps - 1)
        loader = torch.utils.data.DataLoader(
            _Chunks(config), batch_size=None, sampler=range(first, last + 1),
            num_workers=config.data_workers, collate_fn=_as_is, prefetch_factor=2,
            worker_init_fn=functools.partial(_start_worker, trainer_pid=os.getpid(), lock_file=lock_file),
            generator=torch.Generator().manual_seed(0),  # keep the global RNG (recurrent noise) untouched
        )
        chunks = iter(loader)
        chunk_id, chunk = None, None
        try:
            for step in range(self.step, config.steps):
                while chunk_id != data_chunk(config, step):
                    chunk, chunk_id = next(chunks), (first if chunk_id is None else chunk_id + 1)
                    if isinstance(chunk, _WorkerFailure):
                        raise chunk.error
                yield batch_of_step(config, chunk, step)
        finally:
            del chunks  # shuts the workers down now, even while a traceback keeps this frame

    def evaluate(self) -> float:
        """Decision accuracy on the held-out evaluation trials (noiseless model); per task in ``eval_by_task``."""
        if self._eval_batch is None:
            self._eval_batch = envs.sample_trials(
                make_task(self.config, held_out=True), self.config.eval_trials, seed=self.config.seed + EVAL_SEED_OFFSET,
                task_name=self.config.task,
            )
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            outputs, _ = self.model(torch.from_numpy(self._eval_batch.inputs).to(self.device))
        self.model.train(was_training)
        outputs = outputs.cpu()
        self.eval_by_task = accuracy_by_task(outputs.numpy(), self._eval_batch)
        return decision_accuracy(outputs.numpy(), self._eval_batch)

    def fit(self) -> Trainer:
        """Train until ``config.steps`` (or the accuracy criterion); returns ``self``.

        Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and
        raises :class:`TrainingInterrupted`; a second one stops at once,
        keeping the last checkpoint (``saved_step``). A new run that fails or
        is stopped before its first checkpoint leaves nothing behind: no
        config.json, metrics.csv or lock file, and no directory it created.
        """
        with training_session(self.run_dir, resumed=self._resumed, saved=lambda: self.saved_step is not None):
            return self._fit_locked()

    def _fit_locked(self) -> Trainer:
        config = self.config
        remove_temporaries(self.run_dir)
        if not self._resumed:
            write_config(self.run_dir, config)
        else:
            if read_config(self.run_dir) != config:  # e.g. a new number of steps
                write_config(self.run_dir, config, created=read_config_record(self.run_dir).get("created"))
            sync_metrics(self.run_dir, self.metrics)  # the checkpoint's rows: none lost, none from after it
        self.model.train()
        bar = tqdm(
            total=config.steps, initial=self.step, desc="training", unit="step",
            disable=not self.progress, dynamic_ncols=True,
            mininterval=0.2 if sys.stderr.isatty() else 10.0,  # a log file gets a line per 10 s
        )
        started = time.perf_counter() - self.elapsed
        with _deferred_interrupt() as interrupt, contextlib.closing(self._batches()) as batches:
            self._interrupt = interrupt
            try:
                self._loop(batches, bar, started, interrupt)
                if self.saved_step != self.step:
                    self.save()
                if interrupt.requested is not None:  # arrived after the last step
                    raise TrainingInterrupted(interrupt.requested)
            except TrainingDiverged:
                write_metrics(self.run_dir, self.metrics)  # the rows up to the failing step, for diagnosis
                raise
            except KeyboardInterrupt:
                # Between steps the state is consistent: keep it (a step-0 state of a new run is not worth a run).
                if not self._in_step and self.step > 0 and self.saved_step != self.step:
                    self.save()
                raise
            finally:
                self._interrupt = None
                bar.close()
        return self

    def _loop(self, batches, bar, started: float, interrupt: _deferred_interrupt) -> None:
        config = self.config
        while self.step < config.steps and not self.stopped_early:
            batch = next(batches)
            lr = learning_rate(config, self.step)
            self._in_step = True  # until the step's metrics row is in: an abrupt stop here saves nothing
            loss, accuracy = self._update(batch, lr)
            self.step += 1
            self.elapsed = time.perf_counter() - started
            row = {"step": self.step, "loss": loss, "accuracy": accuracy, "eval_accuracy": "",
                   "lr": lr, "wall_time": round(self.elapsed, 3)}
            if self.step % config.eval_every == 0 or self.step == config.steps:
                row["eval_accuracy"] = self.evaluate()
                if config.target_accuracy > 0 and row["eval_accuracy"] >= config.target_accuracy:
                    self.stopped_early = True
            self.metrics.append(row)
            self._in_step = False
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.2f}", refresh=False)
            if self.step % config.checkpoint_every == 0:
                self.save()
            if interrupt.requested is not None:
                raise TrainingInterrupted(interrupt.requested)

    def _update(self, batch: envs.TrialBatch, lr: float) -> tuple[float, float]:
        inputs = torch.from_numpy(batch.inputs).to(self.device, non_blocking=True)
        if self.config.fast_step and isinstance(self.model, ALRNN):
            outputs, _ = alrnn_forward_fast(self.model, inputs)
        else:
            outputs, _ = self.model(inputs)
        loss = task_loss(outputs, batch)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            self._diverged(f"loss is {loss_value}")
        for parameter in self._parameters:  # Optimizer.zero_grad(set_to_none=True), without its ~50 µs overhead
            parameter.grad = None
        loss.backward()
        grads = [parameter.grad for parameter in self._parameters if parameter.grad is not None]
        grad_norm = nn.utils.get_total_norm(grads, foreach=True)
        norm_value = grad_norm.item()
        if not math.isfinite(norm_value):
            self._diverged(f"gradient norm is {norm_value}")
        # clip_grad_norm_ in two halves: it always rescales, by min(1, clip / (norm + 1e-6)), which is
        # exactly 1 well below the clip, so the rescaling is skipped there (same result, ~40 µs less).
        if self.config.grad_clip > 0 and norm_value > 0.99 * self.config.grad_clip:
            nn.utils.clip_grads_with_norm_(self._parameters, self.config.grad_clip, grad_norm, foreach=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return loss_value, decision_accuracy(outputs.detach().cpu().numpy(), batch)

    def _diverged(self, what: str) -> None:
        kept = (
            f"the last good checkpoint (step {self.saved_step}) is kept in {self.run_dir}"
            if self.saved_step is not None
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1}: {what}; {kept}. "
            "Try a lower learning rate (--lr) or gradient clipping (--grad-clip)."
        )

    def save(self) -> None:
        """Write checkpoint.pt (with every metrics row), then its copy metrics.csv, each atomically.

        A second interrupt during the writes waits until they are done, so
        ``saved_step`` always names the checkpoint on disk.
        """
        if self._tabled < len(self.metrics):
            self._metrics_table = torch.cat([self._metrics_table, metrics_tensor(self.metrics[self._tabled:])])
            self._tabled = len(self.metrics)
        state = {
            "format_version": FORMAT_VERSION,
            "step": self.step,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "metrics": self._metrics_table,
        }
        with self._interrupt.shielded() if self._interrupt is not None else contextlib.nullcontext():
            save_checkpoint(self.run_dir, state)
            self.saved_step = self.step
            write_metrics(self.run_dir, self.metrics)

    @property
    def final_accuracy(self) -> float | None:
        evaluated = [row["eval_accuracy"] for row in self.metrics if row["eval_accuracy"] != ""]
        return float(evaluated[-1]) if evaluated else None
