"""Supervised training by backpropagation through time, with resumable run directories."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import envs
from .config import TrainConfig
from .fast import alrnn_forward_fast
from .models import ALRNN, build_model
from .rundir import (
    CHECKPOINT_FILE,
    RunDirectoryError,
    load_checkpoint,
    read_config,
    read_metrics,
    save_checkpoint,
    write_config,
    write_metrics,
)
from .storage import advisory_lock

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "accuracy_by_task",
    "decision_accuracy",
    "load_model",
    "learning_rate",
    "make_task",
    "make_model",
    "n_outputs",
    "task_loss",
    "weighted_cross_entropy",
    "weighted_squared_error",
]

# Held-out trial seeds are the run's seed plus these offsets, apart from the
# per-step training seeds (drawn through SeedSequence).
EVAL_SEED_OFFSET = 1_000_003
TEST_SEED_OFFSET = 2_000_003


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite."""


def make_task(config: TrainConfig, *, held_out: bool = False):
    """The task of ``config``; ``held_out=True`` gives its held-out version where it has one (unseen items)."""
    options = {**config.task_kwargs, **(envs.held_out_options(config.task) if held_out else {})}
    return envs.make(config.task, **options)


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


def load_model(run_dir: str | Path) -> tuple[TrainConfig, nn.Module, Any]:
    """The config, the trained model (eval mode) and the task (its held-out version) of a run directory."""
    config = read_config(run_dir)
    state = load_checkpoint(run_dir)
    env = make_task(config, held_out=True)
    model = make_model(config, env)
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    found = {name: tuple(value.shape) for name, value in state["model"].items()}
    if found != expected:
        differences = [
            f"{name} {found.get(name, 'missing')} vs {expected.get(name, 'absent')}"
            for name in sorted(set(found) | set(expected))
            if found.get(name) != expected.get(name)
        ]
        raise RunDirectoryError(
            f"checkpoint in {run_dir} does not match its config.json "
            f"(checkpoint vs config shapes: {'; '.join(differences)})"
        )
    model.load_state_dict(state["model"])
    return config, model.eval(), env


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = Σ_{n,t} w_{n,t} CE(y_{n,t}, target_{n,t}) / #{(n,t): w_{n,t} > 0}.

    ``weight`` is zero on padded steps, and the sum is divided by the number of
    weighted steps, so the scale of the loss does not depend on padding.
    """
    # (trial, output, time) layout: log-softmax over a short last axis is a slow kernel path.
    per_step = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (per_step * weight).sum() / (weight > 0).sum().clamp(min=1)


def weighted_squared_error(outputs: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = Σ_{n,t} w_{n,t} (1/O) Σ_o (y_{n,t,o} − target_{n,t,o})² / #{(n,t): w_{n,t} > 0}, for regression targets."""
    per_step = (outputs - targets).square().mean(dim=-1).flatten()
    weight = weight.flatten()
    return (per_step * weight).sum() / (weight > 0).sum().clamp(min=1)


def task_loss(outputs: torch.Tensor, batch: envs.TrialBatch) -> torch.Tensor:
    """The batch's loss: weighted cross-entropy for class targets, weighted squared error for regression."""
    targets = torch.from_numpy(batch.targets)
    weight = torch.from_numpy(batch.weight)
    if batch.target_kind == "regression":
        return weighted_squared_error(outputs, targets.to(outputs.dtype), weight)
    return weighted_cross_entropy(outputs, targets, weight)


def decision_accuracy(outputs: np.ndarray, batch: envs.TrialBatch) -> float:
    """The mean trial score over the batch (:meth:`TrialBatch.scores`: choice, steps or regression)."""
    return float(np.mean(batch.scores(outputs)))


def accuracy_by_task(outputs: np.ndarray, batch: envs.TrialBatch) -> dict[str, float]:
    """Mean trial score per task of the batch (tasks without trials are left out)."""
    per_trial = batch.scores(outputs)
    return {
        name: float(per_trial[batch.task == code].mean())
        for code, name in enumerate(batch.task_names)
        if (batch.task == code).any()
    }


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate used for update number ``step`` (0-based)."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * (0.1 if step >= 2 * config.steps // 3 else 1.0)
    progress = min(step / max(config.steps, 1), 1.0)
    floor = 0.05 * config.lr
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


def _batch_seed(seed: int, step: int) -> int:
    """The trial seed of training step ``step``: a pure function of (seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def data_unit(config: TrainConfig, step: int) -> int:
    """Which sampled unit holds step ``step``'s trials: the step itself, or its trial bank."""
    if config.train_trials is not None:
        return 0
    if config.bank_size == 0:
        return step
    return step // max(1, config.bank_size * config.bank_reuse // config.batch_size)


def sample_unit(env, config: TrainConfig, unit: int) -> envs.TrialBatch:
    """Sample one data unit: a step's batch (fresh trials) or a whole trial bank.

    Seeds depend only on (seed, step) or (seed, bank), so any step's trials can
    be rebuilt after a resume; the fixed training set of ``train_trials`` has a
    seed of its own, distinct from the held-out evaluation trials. Banks are
    read from and written to ``config.bank_cache`` when it is set.
    """
    if config.train_trials is None and config.bank_size == 0:
        n_trials, seed = config.batch_size, _batch_seed(config.seed, unit)
    elif config.train_trials is not None:
        n_trials, seed = config.train_trials, _bank_seed(config.seed, "train")
    else:
        n_trials, seed = config.bank_size, _bank_seed(config.seed, unit)
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
    import hashlib
    import json

    from .rundir import versions

    key = {
        "task": config.task, "task_kwargs": config.task_kwargs, "weighting": config.weighting,
        "decision_weight": config.decision_weight, "n_trials": n_trials, "seed": seed,
        "versions": {name: versions().get(name) for name in ("neuroalrnn", "neurogym", "gymnasium", "numpy")},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return Path(config.bank_cache) / f"{config.task.replace(':', '_').replace('/', '_')}-{digest}.npz"


def batch_of_step(config: TrainConfig, unit: envs.TrialBatch, step: int) -> envs.TrialBatch:
    """Step ``step``'s training batch from its data unit (banks: ``batch_size`` trials drawn by (seed, step))."""
    if config.train_trials is None and config.bank_size == 0:
        return unit
    rng = np.random.default_rng([config.seed, step, 7])
    return unit.take(rng.choice(unit.n_trials, size=min(config.batch_size, unit.n_trials), replace=False))


def _bank_seed(seed: int, bank: int | str) -> int:
    tag = 0 if bank == "train" else int(bank) + 1
    return int(np.random.SeedSequence([seed, tag, 0xBA4C]).generate_state(1)[0])


class _Units(torch.utils.data.Dataset):
    """Map-style dataset over data units (steps or banks), for DataLoader workers."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.env = None  # built lazily, in the worker process

    def __len__(self) -> int:
        return data_unit(self.config, self.config.steps - 1) + 1

    def __getitem__(self, unit: int) -> envs.TrialBatch:
        if self.env is None:
            self.env = make_task(self.config)
        return sample_unit(self.env, self.config, unit)


def _as_is(batch):
    return batch


def _exclusive(run_dir: Path):
    """Hold an advisory lock on ``run_dir`` so two processes never train into the same run."""
    busy = RunDirectoryError(f"another process is training in {run_dir}; wait for it or stop it")
    return advisory_lock(run_dir / ".lock", busy)


class _deferred_interrupt:
    """While active (main thread only), Ctrl-C sets ``requested`` instead of raising at once.

    The training loop checks it after each completed step and then stops with
    a checkpoint, so an interrupt never lands inside an update; a second
    Ctrl-C raises immediately.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _deferred_interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """Train a model on a task and keep its run directory up to date.

    Each step draws ``batch_size`` fresh trials whose seed depends only on
    (seed, step), so a resumed run sees exactly the trials an uninterrupted one
    would. The checkpoint holds the model, the optimiser, the torch RNG state
    (for recurrent noise), the step and the elapsed time.

    Usage::

        trainer = Trainer(TrainConfig(steps=1500), "runs/demo").fit()
        trainer = Trainer.resume("runs/demo").fit()
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.env = make_task(config)
        torch.manual_seed(config.seed)
        self.model = make_model(config, self.env)
        # Fused Adam (and foreach RAdam) do the update in a few kernels instead of a loop over tensors.
        if config.optimizer == "radam":
            self.optimizer = torch.optim.RAdam(self.model.parameters(), lr=config.lr, foreach=True)
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=True)
        self._parameters = list(self.model.parameters())
        self.step = 0
        self.elapsed = 0.0
        self.metrics: list[dict[str, Any]] = []
        self.stopped_early = False
        self._eval_batch: envs.TrialBatch | None = None
        self._resumed = False
        self._in_update = False
        self._unit, self._unit_id = None, None
        self.saved_step: int | None = None  # the step of the checkpoint on disk
        self.eval_by_task: dict[str, float] = {}  # held-out accuracy per task at the last evaluation

    @classmethod
    def resume(cls, run_dir: str | Path, *, steps: int | None = None, progress: bool = True) -> Trainer:
        """Continue the run in ``run_dir`` from its checkpoint (optionally to a new ``steps``)."""
        config = read_config(run_dir)
        if steps is not None:
            config = config.replace(steps=steps)
        trainer = cls(config, run_dir, progress=progress)
        state = load_checkpoint(run_dir)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_torch"])
        trainer.step = int(state["step"])
        trainer.elapsed = float(state["elapsed"])
        trainer.metrics = [row for row in read_metrics(run_dir) if row["step"] <= trainer.step]
        trainer._resumed = True
        trainer.saved_step = trainer.step
        return trainer

    def sample_batch(self, step: int) -> envs.TrialBatch:
        """Step ``step``'s training trials (sampled here, reusing the current bank)."""
        unit = data_unit(self.config, step)
        if self._unit_id != unit:
            self._unit, self._unit_id = sample_unit(self.env, self.config, unit), unit
        return batch_of_step(self.config, self._unit, step)

    def _batches(self):
        """The training batches from the current step on.

        With ``data_workers`` > 0 a torch DataLoader samples the coming data
        units (steps or trial banks) in parallel with training; every batch is
        a pure function of (seed, step), so results do not depend on it.
        """
        config = self.config
        if config.data_workers == 0:
            for step in range(self.step, config.steps):
                yield self.sample_batch(step)
            return
        first, last = data_unit(config, self.step), data_unit(config, config.steps - 1)
        loader = torch.utils.data.DataLoader(
            _Units(config), batch_size=None, sampler=range(first, last + 1),
            num_workers=config.data_workers, collate_fn=_as_is, prefetch_factor=2,
            generator=torch.Generator().manual_seed(0),  # keep the global RNG (recurrent noise) untouched
        )
        units = iter(loader)
        unit_id, unit = None, None
        for step in range(self.step, config.steps):
            while unit_id != data_unit(config, step):
                unit, unit_id = next(units), (first if unit_id is None else unit_id + 1)
            yield batch_of_step(config, unit, step)

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
            outputs, _ = self.model(torch.from_numpy(self._eval_batch.inputs))
        self.model.train(was_training)
        self.eval_by_task = accuracy_by_task(outputs.numpy(), self._eval_batch)
        return decision_accuracy(outputs.numpy(), self._eval_batch)

    def fit(self) -> Trainer:
        """Train until ``config.steps`` (or the accuracy criterion); returns ``self``."""
        config = self.config
        if not self._resumed and (self.run_dir / CHECKPOINT_FILE).exists():
            raise RunDirectoryError(
                f"{self.run_dir} already holds a run; resume it (--resume) or choose another output directory"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.run_dir):
            return self._fit_locked()

    def _fit_locked(self) -> Trainer:
        config = self.config
        write_config(self.run_dir, config)
        self.model.train()
        bar = tqdm(
            total=config.steps, initial=self.step, desc="training", unit="step",
            disable=not self.progress, dynamic_ncols=True,
            mininterval=0.2 if sys.stderr.isatty() else 10.0,  # a log file gets a line per 10 s
        )
        started = time.perf_counter() - self.elapsed
        with _deferred_interrupt() as interrupt:
            try:
                self._loop(bar, started, interrupt)
            except TrainingDiverged:
                write_metrics(self.run_dir, self.metrics)
                raise
            except KeyboardInterrupt:
                if not self._in_update:  # the state is consistent between updates
                    self.save()
                raise
            finally:
                bar.close()
        self.save()
        return self

    def _loop(self, bar, started: float, interrupt) -> None:
        config = self.config
        batches = self._batches()
        while self.step < config.steps and not self.stopped_early:
            batch = next(batches)
            lr = learning_rate(config, self.step)
            self._in_update = True
            loss, accuracy = self._update(batch, lr)
            self.step += 1
            self._in_update = False
            self.elapsed = time.perf_counter() - started
            row = {"step": self.step, "loss": loss, "accuracy": accuracy, "eval_accuracy": "",
                   "lr": lr, "wall_time": round(self.elapsed, 3)}
            if self.step % config.eval_every == 0 or self.step == config.steps:
                row["eval_accuracy"] = self.evaluate()
                if config.target_accuracy > 0 and row["eval_accuracy"] >= config.target_accuracy:
                    self.stopped_early = True
            self.metrics.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.2f}", refresh=False)
            if self.step % config.checkpoint_every == 0:
                self.save()
            if interrupt.requested:
                raise KeyboardInterrupt

    def _update(self, batch: envs.TrialBatch, lr: float) -> tuple[float, float]:
        inputs = torch.from_numpy(batch.inputs)
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
        return loss_value, decision_accuracy(outputs.detach().numpy(), batch)

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
        """Write checkpoint.pt and metrics.csv for the current step (atomically)."""
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng_torch": torch.get_rng_state(),
        }
        save_checkpoint(self.run_dir, state)
        write_metrics(self.run_dir, self.metrics)
        self.saved_step = self.step

    @property
    def final_accuracy(self) -> float | None:
        evaluated = [row["eval_accuracy"] for row in self.metrics if row["eval_accuracy"] != ""]
        return float(evaluated[-1]) if evaluated else None
