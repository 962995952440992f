"""Run a model on fresh trials and return them as the ``trials.nc`` Dataset.

Layout (DESIGN.md): dims ``trial``, ``time``, ``input``, ``unit``, ``output``;
coords ``time`` (ms, the start of each step), ``task`` (trial), every trial
condition (trial), ``epoch`` (trial, time; the task's own epoch names, "" on
padded steps), ``epoch_canonical`` (trial, time; the canonical epoch of
``neuroalrnn.envs.epochs``), ``input`` and ``output`` names; data_vars
``inputs`` (trial, time, input), ``targets`` (trial, time) class labels or
(trial, time, output) regression targets, ``outputs`` (trial, time, output; the readout y_t, logits for
discrete tasks), ``latents`` (trial, time, unit; z_t), ``regime`` (trial,
time; int64 code Σ_i [z_{M-P+i} > 0] 2^i, or (trial, time, regime_byte)
packed little-endian bytes when P > 62; absent for tanh/GRU/LSTM), ``mask``
(trial, time). Attributes: model kind, M, P, dt, seed, package version, the
task's ``target_kind``, ``scoring`` and ``tolerance``, the run's config and
dependency versions (JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from . import __version__, envs
from .rundir import versions
from .storage import write_netcdf

__all__ = ["read_trials", "simulate", "write_trials"]

REQUIRED_VARIABLES = ("inputs", "targets", "outputs", "latents", "mask")


def simulate(
    model: torch.nn.Module,
    env,
    n_trials: int,
    seed: int = 0,
    *,
    noise: bool = False,
    task_name: str | None = None,
    config: dict | None = None,
) -> xr.Dataset:
    """Simulate ``model`` on ``n_trials`` trials of ``env`` (or a task name) drawn with ``seed``.

    The model runs in eval mode (no recurrent noise) unless ``noise=True``.
    ``config`` (e.g. ``TrainConfig.to_dict()``) is stored as a JSON attribute.
    """
    if isinstance(env, str):
        task_name = task_name or env
        env = envs.make(env)
    task_name = task_name or type(env.unwrapped).__name__
    batch = envs.sample_trials(env, n_trials, seed=seed, task_name=task_name)
    if batch.inputs.shape[-1] != model.n_inputs:
        raise ValueError(
            f"the task has {batch.inputs.shape[-1]} inputs but the model expects n_inputs={model.n_inputs}"
        )
    was_training = model.training
    model.train(noise)
    try:
        with torch.no_grad():
            outputs, latents = model(torch.from_numpy(batch.inputs).to(_dtype(model)))
    finally:
        model.train(was_training)
    return trials_dataset(batch, outputs.numpy(), latents.numpy(), model, seed=seed, config=config)


def trials_dataset(
    batch: envs.TrialBatch,
    outputs: np.ndarray,
    latents: np.ndarray,
    model: torch.nn.Module,
    *,
    seed: int,
    config: dict | None = None,
) -> xr.Dataset:
    """Attach labels to plain arrays: the ``trials.nc`` Dataset of ``batch`` and a model's responses."""
    mask = batch.mask
    epoch_labels = np.asarray(batch.epoch_names + ("",), dtype=object)[batch.epoch]
    canonical = tuple(batch.canonical_epochs.get(name, "other") for name in batch.epoch_names)
    canonical_labels = np.asarray(canonical + ("",), dtype=object)[batch.epoch]
    coords = {
        "time": ("time", np.arange(batch.n_steps) * batch.dt, {"units": "ms"}),
        "input": ("input", list(batch.input_names)),
        "output": ("output", list(batch.output_names)),
        "unit": ("unit", np.arange(latents.shape[-1])),
        "task": ("trial", np.asarray(batch.task_names, dtype=object)[batch.task].astype(str)),
        "epoch": (("trial", "time"), epoch_labels.astype(str)),
        "epoch_canonical": (("trial", "time"), canonical_labels.astype(str)),
    }
    for name, values in batch.conditions.items():
        coords[name] = ("trial", values.astype(str) if values.dtype.kind in "OU" else values)
    data_vars = {
        "inputs": (("trial", "time", "input"), batch.inputs),
        "targets": (("trial", "time", "output")[: batch.targets.ndim], batch.targets),
        "outputs": (("trial", "time", "output"), outputs.astype(np.float32)),
        "latents": (("trial", "time", "unit"), latents.astype(np.float32)),
        "mask": (("trial", "time"), mask),
    }
    regimes = model.regimes(latents) if hasattr(model, "regimes") else None
    if regimes is not None:
        dims = ("trial", "time") if regimes.ndim == 2 else ("trial", "time", "regime_byte")
        data_vars["regime"] = (dims, regimes)
    attrs = {
        "model": getattr(model, "kind", type(model).__name__),
        "n_units": int(model.n_units),
        "n_nonlinear": int(model.n_nonlinear),
        "dt": float(batch.dt),
        "seed": int(seed),
        "epoch_names": json.dumps(list(batch.epoch_names)),
        "task_names": json.dumps(list(batch.task_names)),
        "target_kind": batch.target_kind,
        "scoring": batch.scoring,
        "tolerance": float(batch.tolerance),
        "neuroalrnn_version": __version__,
        "versions": json.dumps(versions()),
    }
    if config is not None:
        attrs["config"] = json.dumps(config, sort_keys=True)
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_trials(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a trials Dataset to NetCDF (h5netcdf) atomically: temp file, then rename."""
    return write_netcdf(dataset, path)


def read_trials(path: str | os.PathLike) -> xr.Dataset:
    """Load a ``trials.nc`` file fully into memory and check its variables."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trials file at {path}")
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        dataset = opened.load()
    missing = [name for name in REQUIRED_VARIABLES if name not in dataset]
    if missing:
        raise ValueError(f"{path} is not a trials file: missing variables {missing}")
    return dataset


def _dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype
