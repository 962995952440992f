"""Fit an AL-RNN to recordings: the model, its objective, and the trainer that keeps a run directory.

Model. The AL-RNN of :class:`~neuroalrnn.models.ALRNN` (its equation, unchanged) is driven by each recorded
trial's inputs from z_0 = 0, and its readout is the observation model's mean:
expected spike count per bin λ_t = softplus(B z_t + b) (``poisson``), or z-scored rate B z_t + b
(``gaussian``). With teacher forcing (``forcing_interval`` τ > 0) a linear encoder ẑ_t = E x̃_t + e of the
held-in neurons' activity x̃ (:func:`~neuroalrnn.fitting.data.teacher_features`) pulls the state after every
τ-th update: z_t ← (1 − α) z_t + α ẑ_t (Brenner et al. 2024's sparse teacher forcing at α = 1; generalized
teacher forcing at τ = 1, α < 1). The first τ − 1 steps of every trial run free from z_0 = 0.

Objective. The Poisson negative log-likelihood Σ λ − y ln λ (or half the squared error) averaged over the
valid (trial, time, neuron) entries of the training trials, every neuron included; back-propagated through
time; Adam with the run's learning-rate schedule and gradient clipping.

Run directory. ``config.json`` (the TrainConfig, plus ``fit``: the :class:`FitConfig` and the split),
``checkpoint.pt`` (``model``: the AL-RNN's state_dict, so every run command loads it as an ordinary AL-RNN;
``encoder``; optimiser; RNG; metrics), ``metrics.csv`` (``loss`` the training objective, ``eval_accuracy``
the held-out co-bps — or held-out R² for Gaussian fits — at each evaluation). A kill leaves the last
checkpoint, and :meth:`FitTrainer.resume` continues from it with the same batches an unbroken run would
have drawn.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..formats import FORMAT_VERSION
from ..models import ALRNN
from ..storage import atomic_write
from ..system import resolve_device
from ..training.config import TrainConfig
from ..training.data import make_task
from ..training.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    RunDirectoryError,
    load_checkpoint,
    metrics_tensor,
    read_config_record,
    remove_temporaries,
    resolve_in_run,
    save_checkpoint,
    training_session,
    versions,
    write_metrics,
)
from ..training.trainer import TrainingDiverged, TrainingInterrupted, _deferred_interrupt, learning_rate
from .config import FitConfig
from .data import recorded_batch, split, teacher_features

__all__ = [
    "FitTrainer",
    "FittedRun",
    "expected_activity",
    "heldout_score",
    "is_fit_run",
    "load_fit",
    "observation_loss",
    "recorded_trials",
    "rollout",
]


def rollout(
    model: ALRNN, inputs: torch.Tensor, teacher: torch.Tensor | None = None, *, interval: int = 0, alpha: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs B z + b and latents z (batch, time, ·) of ``model`` on ``inputs``, forced by ``teacher`` (module)."""
    drive = inputs @ model.C.T + model.h
    if model.training and model.noise_std > 0:
        from ..models.alrnn import recurrent_noise

        drive = drive + model.noise_std * recurrent_noise(drive.shape, drive)
    z = inputs.new_zeros(inputs.shape[0], model.n_units)
    latents = []
    for t in range(inputs.shape[1]):
        z = model.step(z, drive[:, t])
        if teacher is not None and interval > 0 and (t + 1) % interval == 0:
            z = (1.0 - alpha) * z + alpha * teacher[:, t]
        latents.append(z)
    latents_t = torch.stack(latents, dim=1)
    return latents_t @ model.B.T + model.b, latents_t


def expected_activity(outputs: torch.Tensor | np.ndarray, observation: str):
    """The observation model's mean from outputs B z + b: softplus (Poisson counts per bin) or identity."""
    if observation != "poisson":
        return outputs
    if isinstance(outputs, np.ndarray):
        return np.logaddexp(0.0, outputs)
    return F.softplus(outputs)


def observation_loss(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, observation: str) -> torch.Tensor:
    """Mean over valid (trial, time, neuron) entries of the Poisson NLL λ − y ln λ, or ½ squared error."""
    if observation == "poisson":
        # softplus(x) computed stably; log λ from it, floored so a silent prediction costs a finite amount.
        rates = F.softplus(outputs)
        terms = rates - targets * torch.log(rates.clamp_min(1e-8))
    else:
        terms = 0.5 * (outputs - targets) ** 2
    weight = mask[:, :, None].to(terms.dtype)
    return (terms * weight).sum() / (weight.sum() * terms.shape[-1]).clamp_min(1.0)


def heldout_score(predicted: np.ndarray, observed: np.ndarray, mask: np.ndarray, neurons: np.ndarray,
                  observation: str) -> float:
    """Bits per spike (Poisson) or R² (Gaussian) of ``predicted`` for ``observed`` on ``neurons`` and ``mask``."""
    from ..analyses.fit_scores import bits_per_spike

    if observation == "poisson":
        return bits_per_spike(predicted[..., neurons], observed[..., neurons], mask)
    from sklearn.metrics import r2_score

    return float(r2_score(observed[..., neurons][mask], predicted[..., neurons][mask]))


class RecordedTrials(NamedTuple):
    """A fit's data, as the trainer and the evaluation use it (targets already standardised for Gaussian fits)."""

    batch: Any  # envs.TrialBatch; targets: counts (poisson) or rates (gaussian)
    targets: np.ndarray  # what the model is trained on: counts, or z-scored rates
    teacher: np.ndarray | None  # (trial, time, held-in neuron) encoder input; None without teacher forcing
    test: np.ndarray  # held-out trial indices
    heldout: np.ndarray  # held-out neuron indices
    heldin: np.ndarray


def recorded_trials(config: TrainConfig, fit: FitConfig, data: dict[str, Any] | None = None,
                    run_dir: str | Path | None = None) -> tuple[RecordedTrials, dict[str, Any]]:
    """Read the recordings of ``fit`` and prepare them; ``data`` (a stored split) is checked and reused."""
    from ..analyses.recordings import read_recordings

    path = resolve_in_run(run_dir, fit.recordings) if run_dir is not None else Path(fit.recordings)
    env = make_task(config, held_out=True)
    bin_ms = fit.bin_ms if fit.bin_ms is not None else float(env.unwrapped.dt)
    recordings = read_recordings(path, mapping=fit.mapping or None, bin_ms=bin_ms)
    batch = recorded_batch(recordings, observation=fit.observation, inputs=fit.inputs, env=env, task_name=config.task)
    n_trials, _, n_neurons = batch.targets.shape
    if data is None:
        test, heldout = split(n_trials, n_neurons, test_fraction=fit.test_fraction,
                              heldout_fraction=fit.heldout_fraction, seed=config.seed)
        train = np.setdiff1d(np.arange(n_trials), test)
        values = batch.targets[train][batch.mask[train]]
        data = {
            "n_trials": n_trials, "n_neurons": n_neurons, "n_inputs": int(batch.inputs.shape[-1]),
            "input_names": list(batch.input_names), "neurons": list(batch.output_names), "dt": batch.dt,
            "test_trials": test.tolist(), "heldout_neurons": heldout.tolist(),
            "mean": values.mean(axis=0).tolist(), "scale": np.maximum(values.std(axis=0), 1e-6).tolist(),
        }
    elif (data["n_trials"], data["n_neurons"], data["n_inputs"]) != (n_trials, n_neurons, batch.inputs.shape[-1]):
        raise RunDirectoryError(
            f"{path} now holds {n_trials} trials × {n_neurons} neurons with {batch.inputs.shape[-1]} inputs, but the "
            f"fit was made on {data['n_trials']} × {data['n_neurons']} with {data['n_inputs']}: not the same recordings"
        )
    test = np.asarray(data["test_trials"], dtype=np.int64)
    heldout = np.asarray(data["heldout_neurons"], dtype=np.int64)
    heldin = np.setdiff1d(np.arange(n_neurons), heldout)
    targets = batch.targets.astype(np.float64)
    if fit.observation == "gaussian":
        targets = (targets - np.asarray(data["mean"])) / np.asarray(data["scale"])
        targets = np.where(batch.mask[:, :, None], targets, 0.0)
    teacher = None
    if fit.forcing_interval > 0:  # the encoder's input is needed only to force
        teacher = teacher_features(batch.targets[:, :, heldin], batch.mask, observation=fit.observation,
                                   smooth_bins=fit.smooth_bins)
    return RecordedTrials(batch, targets.astype(np.float32), teacher, test, heldout, heldin), data


def is_fit_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a fit to recordings (its config.json has a ``fit`` part)."""
    return "fit" in read_config_record(run_dir)


class FittedRun(NamedTuple):
    """A fit as :func:`load_fit` reads it: settings, the split (``data``), model and encoder (eval mode), step."""

    config: TrainConfig
    fit: FitConfig
    data: dict[str, Any]
    model: ALRNN
    encoder: nn.Linear
    step: int


def _fit_parts(record: dict[str, Any], path: Path) -> tuple[TrainConfig, FitConfig, dict[str, Any]]:
    if "fit" not in record:
        raise RunDirectoryError(f"{path.parent} holds a task-trained run, not a fit to recordings; continue it with "
                                f"`neuroalrnn train --resume {path.parent}`")
    try:
        config = TrainConfig.from_dict(record["config"])
        stored = dict(record["fit"])
        data = stored.pop("data")
        return config, FitConfig.from_dict(stored), data
    except (KeyError, TypeError, ValueError) as error:
        raise RunDirectoryError(f"{path} is not a valid fit record: {error}") from None


def _build(config: TrainConfig, data: dict[str, Any]) -> tuple[ALRNN, nn.Linear]:
    generator = torch.Generator().manual_seed(config.seed)
    model = ALRNN(data["n_inputs"], data["n_neurons"], config.n_units, config.n_nonlinear, noise_std=config.noise_std,
                  slope=config.slope, init=config.init, generator=generator)
    n_heldin = data["n_neurons"] - len(data["heldout_neurons"])
    encoder = nn.Linear(n_heldin, config.n_units)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(n_heldin)
        encoder.weight.copy_((torch.rand(encoder.weight.shape, generator=generator) * 2 - 1) * bound)
        encoder.bias.zero_()
    return model, encoder


def load_fit(run_dir: str | Path) -> FittedRun:
    """The fit in ``run_dir`` at its checkpoint: settings, split, model (eval mode) and encoder."""
    run_dir = Path(run_dir)
    record = read_config_record(run_dir)
    config, fit, data = _fit_parts(record, run_dir / CONFIG_FILE)
    state = load_checkpoint(run_dir)
    model, encoder = _build(config, data)
    from ..training.trainer import _load_weights

    _load_weights(model, state["model"], run_dir / CHECKPOINT_FILE)
    if "encoder" not in state:
        raise RunDirectoryError(f"{run_dir / CHECKPOINT_FILE} has no encoder: not a fit checkpoint")
    _load_weights(encoder, state["encoder"], run_dir / CHECKPOINT_FILE)
    return FittedRun(config, fit, data, model.eval(), encoder.eval(), int(state["step"]))


class FitTrainer:
    """Fit an AL-RNN to recordings and keep its run directory (module docstring).

    Each step trains on ``batch_size`` training trials drawn from a generator seeded by (seed, step), so a
    resumed fit sees the batches an unbroken one would. Usage::

        FitTrainer(TrainConfig(task="stimulus-selection", n_units=32, n_nonlinear=4, steps=3000),
                   FitConfig(recordings="recordings.nwb"), "runs/fit").fit()
        FitTrainer.resume("runs/fit").fit()
    """

    def __init__(self, config: TrainConfig, fit: FitConfig, run_dir: str | Path, *, progress: bool = True) -> None:
        if config.model != "alrnn":
            raise ValueError(f"a fit trains an AL-RNN (model 'alrnn'), got model {config.model!r}")
        self.run_dir = Path(run_dir)
        self.config, self.progress = config, progress
        fit = fit.replace(recordings=str(Path(fit.recordings).expanduser().resolve()))
        if fit.truth is not None:
            fit = fit.replace(truth=str(Path(fit.truth).expanduser().resolve()))
        self.fit_config = fit
        self.trials, self.data = recorded_trials(config, fit)
        self._setup(config)
        with torch.no_grad():  # start each neuron at its mean activity
            mean = torch.tensor(self.data["mean"], dtype=torch.float32)
            if fit.observation == "poisson":
                self.model.b.copy_(mean.clamp_min(1e-3) + torch.log(-torch.expm1(-mean.clamp_min(1e-3))))
            else:
                self.model.b.zero_()
        self.step, self.elapsed, self.metrics = 0, 0.0, []
        self._resumed, self.saved_step = False, None

    def _setup(self, config: TrainConfig) -> None:
        self.device = resolve_device(config.device)
        self.model, self.encoder = _build(config, self.data)
        self.model.to(self.device).train()
        self.encoder.to(self.device)
        self._parameters = list(self.model.parameters()) + list(self.encoder.parameters())
        self.optimizer = torch.optim.Adam(self._parameters, lr=config.lr)
        train = np.setdiff1d(np.arange(self.data["n_trials"]), self.trials.test)
        self._train = train
        tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array)).to(self.device)  # noqa: E731
        batch = self.trials.batch
        self._inputs, self._targets = tensor(batch.inputs), tensor(self.trials.targets)
        self._mask = tensor(batch.mask)
        self._teacher = tensor(self.trials.teacher) if self.trials.teacher is not None else None

    @classmethod
    def resume(cls, run_dir: str | Path, *, steps: int | None = None, progress: bool = True) -> FitTrainer:
        """Continue the fit in ``run_dir`` from its checkpoint (optionally to a new total of ``steps``)."""
        run_dir = Path(run_dir)
        record = read_config_record(run_dir)
        config, fit, data = _fit_parts(record, run_dir / CONFIG_FILE)
        state = load_checkpoint(run_dir)
        if steps is not None:
            if steps < state["step"]:
                raise RunDirectoryError(f"the fit in {run_dir} is already at step {state['step']}, past {steps}")
            config = config.replace(steps=steps)
        self = cls.__new__(cls)
        self.run_dir, self.config, self.progress, self.fit_config = run_dir, config, progress, fit
        self.trials, self.data = recorded_trials(config, fit, data, run_dir)
        self._setup(config)
        from ..training.rundir import metrics_rows
        from ..training.trainer import _load_weights

        _load_weights(self.model, state["model"], run_dir / CHECKPOINT_FILE)
        _load_weights(self.encoder, state["encoder"], run_dir / CHECKPOINT_FILE)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng_torch"])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise RunDirectoryError(f"{run_dir / CHECKPOINT_FILE} cannot be resumed: {error}") from None
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.metrics = metrics_rows(state["metrics"]) if state.get("metrics") is not None else []
        self._resumed, self.saved_step = True, self.step
        self._created = record.get("created")
        return self

    def _write_config(self) -> None:
        record = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "fit": {**self.fit_config.to_dict(), "data": self.data},
            "versions": versions(),
            "created": getattr(self, "_created", None) or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write(self.run_dir / CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def batch_indices(self, step: int) -> np.ndarray:
        """The training trials of step ``step``: a pure function of (seed, step)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, step, 0x464954]))
        size = min(self.config.batch_size, len(self._train))
        return np.sort(rng.choice(self._train, size=size, replace=False))

    def _teacher_states(self, indices) -> torch.Tensor | None:
        if self._teacher is None:
            return None
        return self.encoder(self._teacher[indices])

    def _forward(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return rollout(self.model, self._inputs[indices], self._teacher_states(indices),
                       interval=self.fit_config.forcing_interval, alpha=self.fit_config.forcing_alpha)

    def evaluate(self) -> float:
        """Held-out score (:func:`heldout_score`) of the held-out neurons (every neuron without any) on the test trials."""
        test, heldout = self.trials.test, self.trials.heldout
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            outputs, _ = self._forward(torch.from_numpy(test).to(self.device))
        self.model.train(was_training)
        predicted = expected_activity(outputs.cpu().numpy().astype(np.float64), self.fit_config.observation)
        observed = self.trials.targets[test]
        if len(heldout) == 0:
            heldout = np.arange(observed.shape[-1])
        return heldout_score(predicted, observed, self.trials.batch.mask[test], heldout, self.fit_config.observation)

    def fit(self) -> FitTrainer:
        """Train to ``config.steps``; Ctrl-C/SIGTERM checkpoints and raises TrainingInterrupted."""
        with training_session(self.run_dir, resumed=self._resumed, saved=lambda: self.saved_step is not None):
            return self._fit_locked()

    def _fit_locked(self) -> FitTrainer:
        config = self.config
        remove_temporaries(self.run_dir)
        self._write_config()
        bar = tqdm(total=config.steps, initial=self.step, desc="fitting", unit="step", disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 10.0)
        started = time.perf_counter() - self.elapsed
        with _deferred_interrupt() as interrupt:
            self._interrupt = interrupt
            try:
                while self.step < config.steps:
                    lr = learning_rate(config, self.step)
                    loss = self._update(self.batch_indices(self.step), lr)
                    self.step += 1
                    self.elapsed = time.perf_counter() - started
                    row = {"step": self.step, "loss": loss, "accuracy": "", "eval_accuracy": "", "lr": lr,
                           "wall_time": round(self.elapsed, 3)}
                    if self.step % config.eval_every == 0 or self.step == config.steps:
                        row["eval_accuracy"] = self.evaluate()
                    self.metrics.append(row)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    if self.step % config.checkpoint_every == 0:
                        self.save()
                    if interrupt.requested is not None:
                        break
                if self.saved_step != self.step:
                    self.save()
                if interrupt.requested is not None:
                    raise TrainingInterrupted(interrupt.requested)
            except TrainingDiverged:
                write_metrics(self.run_dir, self.metrics)
                raise
            finally:
                self._interrupt = None
                bar.close()
        return self

    def _update(self, indices: np.ndarray, lr: float) -> float:
        index = torch.from_numpy(indices).to(self.device)
        outputs, _ = self._forward(index)
        loss = observation_loss(outputs, self._targets[index], self._mask[index], self.fit_config.observation)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"the fit diverged at step {self.step + 1}: loss is {value}; the last good "
                                   f"checkpoint (step {self.saved_step}) is kept. Try a lower --lr.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self._parameters, self.config.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return value

    def save(self) -> None:
        """checkpoint.pt (model, encoder, optimiser, RNG, metrics), then metrics.csv, each atomically."""
        state = {
            "format_version": FORMAT_VERSION, "step": self.step, "elapsed": self.elapsed,
            "model": self.model.state_dict(), "encoder": self.encoder.state_dict(),
            "optimizer": self.optimizer.state_dict(), "rng_torch": torch.get_rng_state(),
            "metrics": metrics_tensor(self.metrics),
        }
        interrupt = getattr(self, "_interrupt", None)
        with interrupt.shielded() if interrupt is not None else contextlib.nullcontext():
            save_checkpoint(self.run_dir, state)
            self.saved_step = self.step
            write_metrics(self.run_dir, self.metrics)
