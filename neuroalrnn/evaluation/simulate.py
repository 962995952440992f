"""Run a model on fresh trials and return them as the ``trials.nc`` Dataset.

The layout (dims, coordinates, variables, attributes) is declared in
:data:`neuroalrnn.formats.TRIALS` and documented in ``docs/formats.md``: dims
``trial``, ``time``, ``input``, ``unit``, ``output``; data_vars ``inputs``,
``targets``, ``outputs`` (y_t), ``latents`` (z_t), ``regime`` (AL-RNNs only)
and ``mask``; per-trial conditions as coordinates on ``trial``. Besides the
model, task and version attributes, every Dataset records its provenance:
``format_version``, ``n_trials``, ``seed``, ``simulated_with_noise`` (0/1) and
``checkpoint_step`` (-1 when unknown), so a reader can refuse trials that are
not the ones it asked for (:func:`neuroalrnn.formats.check_trials_match`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .. import __version__, envs
from ..formats import FORMAT_VERSION, read, validate
from ..storage import write_netcdf
from ..training.rundir import versions

__all__ = ["read_trials", "simulate", "simulate_batch", "simulate_on_trials", "trials_dataset", "write_trials"]

UNKNOWN_CHECKPOINT_STEP = -1


def simulate(
    model: torch.nn.Module,
    env,
    n_trials: int,
    seed: int = 0,
    *,
    noise: bool = False,
    checkpoint_step: int | None = None,
    task_name: str | None = None,
    config: dict | None = None,
) -> xr.Dataset:
    """Simulate ``model`` on ``n_trials`` trials of ``env`` (or a task name) drawn with ``seed``.

    The model runs in eval mode (no recurrent noise) unless ``noise=True``
    (train mode: its recurrent noise σ_rec is on). ``checkpoint_step``: the
    training step of the checkpoint the model was loaded from (None: unknown).
    Both are recorded as attributes. ``config`` (e.g. ``TrainConfig.to_dict()``)
    is stored as a JSON attribute.
    """
    if isinstance(env, str):
        task_name = task_name or env
        env = envs.make(env)
    task_name = task_name or type(env.unwrapped).__name__
    batch = envs.sample_trials(env, n_trials, seed=seed, task_name=task_name)
    return simulate_batch(model, batch, seed=seed, noise=noise, checkpoint_step=checkpoint_step, config=config)


def simulate_batch(
    model: torch.nn.Module,
    batch: envs.TrialBatch,
    *,
    seed: int,
    noise: bool = False,
    checkpoint_step: int | None = None,
    config: dict | None = None,
) -> xr.Dataset:
    """Run ``model`` on the already sampled trials ``batch`` (drawn with ``seed``); the rest as :func:`simulate`."""
    if batch.inputs.shape[-1] != model.n_inputs:
        raise ValueError(
            f"the task has {batch.inputs.shape[-1]} inputs but the model expects n_inputs={model.n_inputs}"
        )
    was_training = model.training
    model.train(noise)
    try:
        with torch.no_grad():
            parameter = next(model.parameters())
            outputs, latents = model(torch.from_numpy(batch.inputs).to(parameter.device, parameter.dtype))
    finally:
        model.train(was_training)
    return trials_dataset(batch, outputs.cpu().numpy(), latents.cpu().numpy(), model, seed=seed, config=config, noise=noise,
                          checkpoint_step=checkpoint_step)


def simulate_on_trials(model: torch.nn.Module, trials: xr.Dataset) -> xr.Dataset:
    """The same trials (inputs, mask, epochs, conditions) with ``model``'s noiseless responses instead.

    For comparing two models on identical trials (e.g. a model fitted to recordings and a task-trained one,
    :func:`neuroalrnn.analyses.alignment.align_regimes`). ``outputs`` get ``model``'s readout on an ``output``
    dimension of its own size (labels kept when the size matches); latents, regimes and the model attributes
    are replaced, the rest (provenance included) is kept. The model must take the trials' inputs.
    """
    inputs = trials["inputs"].transpose("trial", "time", "input").values
    if inputs.shape[-1] != model.n_inputs:
        raise ValueError(f"the trials have {inputs.shape[-1]} inputs but the model takes n_inputs={model.n_inputs}")
    mask = trials["mask"].transpose("trial", "time").values.astype(bool)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parameter = next(model.parameters())
            outputs, latents = model(torch.from_numpy(np.where(mask[:, :, None], inputs, 0.0)).to(
                parameter.device, parameter.dtype))
    finally:
        model.train(was_training)
    outputs, latents = outputs.cpu().numpy().astype(np.float32), latents.cpu().numpy().astype(np.float32)
    dropped = [name for name in ("outputs", "latents", "regime", "targets") if name in trials]
    result = trials.drop_vars(dropped).drop_dims([dim for dim in ("output", "unit", "regime_byte")
                                                  if dim in trials.dims])
    labels = trials["output"].values if "output" in trials.coords and trials.sizes["output"] == outputs.shape[-1] \
        else np.arange(outputs.shape[-1])
    result = result.assign_coords(output=("output", labels), unit=("unit", np.arange(latents.shape[-1])))
    result["outputs"] = (("trial", "time", "output"), outputs)
    result["latents"] = (("trial", "time", "unit"), latents)
    regimes = model.regimes(latents) if hasattr(model, "regimes") else None
    if regimes is not None:
        result["regime"] = (("trial", "time") if regimes.ndim == 2 else ("trial", "time", "regime_byte"), regimes)
    result.attrs.update({"model": getattr(model, "kind", type(model).__name__), "n_units": int(model.n_units),
                         "n_nonlinear": int(getattr(model, "n_nonlinear", 0) or 0), **_slope_attr(model)})
    return result


def trials_dataset(
    batch: envs.TrialBatch,
    outputs: np.ndarray,
    latents: np.ndarray,
    model: torch.nn.Module,
    *,
    seed: int,
    config: dict | None = None,
    noise: bool = False,
    checkpoint_step: int | None = None,
) -> xr.Dataset:
    """Attach labels to plain arrays: the ``trials.nc`` Dataset of ``batch`` and a model's responses.

    ``noise``: whether the responses were simulated with the recurrent noise
    on; ``checkpoint_step``: the step of the model's checkpoint (None: unknown).
    """
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
        **_slope_attr(model),
        "dt": float(batch.dt),
        "seed": int(seed),
        "n_trials": int(batch.inputs.shape[0]),
        "simulated_with_noise": int(bool(noise)),
        "checkpoint_step": UNKNOWN_CHECKPOINT_STEP if checkpoint_step is None else int(checkpoint_step),
        "format_version": FORMAT_VERSION,
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
    """Validate a trials Dataset (``neuroalrnn.formats``), then write it to NetCDF (h5netcdf) atomically."""
    validate("trials", dataset, source=path)
    return write_netcdf(dataset, path)


def read_trials(path: str | os.PathLike) -> xr.Dataset:
    """Load a ``trials.nc`` file fully into memory and validate it (``neuroalrnn.formats``).

    Raises ``FileNotFoundError`` when there is no file and
    :class:`~neuroalrnn.formats.FormatError` (a ValueError) naming what is
    missing or wrong. A version-0 file (no ``format_version``) is read as it
    is: it has no provenance attributes.
    """
    return read("trials", path)


def _dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _slope_attr(model) -> dict[str, float]:
    """The ``slope`` attribute (α of Φ*) for an AL-RNN; nothing for a model without one."""
    return {"slope": float(model.slope)} if hasattr(model, "slope") else {}
