"""Recordings as the trials a fit trains on: a :class:`~neuroalrnn.envs.TrialBatch` whose targets are the
recorded activity, with the inputs of each trial, and the held-out split.

* **Targets**: spike counts per bin (``poisson``: the recordings' rates × bin width, which must be whole
  numbers) or the rates themselves (``gaussian``), (trial, time, neuron); ``mask`` the recordings' valid bins.
* **Inputs**: the file's ``inputs`` variable (its channels put in the task's input order when they carry the
  task's input names), or the task's inputs rebuilt per trial from the trial's
  conditions and epoch lengths (:func:`task_inputs`); the input noise a task draws is drawn afresh, so pass
  the task option that turns it off (e.g. ``sigma=0``) to rebuild the mean inputs.
* **Epochs and conditions**: the recordings' ``epoch`` (trial, time) labels and per-trial coordinates.
* **Split**: :func:`split` draws the held-out trials and neurons from the fit's seed.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d

from ..envs import TrialBatch, task_interface
from ..envs.epochs import canonical_epoch_map
from ..analyses.recordings import TRIAL_BOOKKEEPING
from ..formats import recording_variable

__all__ = ["INTEGER_TOLERANCE", "recorded_batch", "split", "task_inputs", "teacher_features"]

INTEGER_TOLERANCE = 1e-3
"""How far counts (rates × bin width) may lie from whole numbers for the Poisson observation model."""


def recorded_batch(recordings: xr.Dataset, *, observation: str, inputs: str, env=None,
                   task_name: str | None = None) -> TrialBatch:
    """The recordings as a TrialBatch: targets the activity (module docstring), inputs from ``inputs``.

    Conditions are the per-trial coordinates but ``task`` and an NWB file's bookkeeping (trial ids and start
    times); ``task_name`` names the trials' task (default: the recordings' ``task`` attribute).

    ``env``: the task, needed for ``inputs="task"`` (and for ``"auto"`` when the file has no inputs).
    ValueError with one line when the recordings cannot be fitted as asked.
    """
    variable = recording_variable(recordings) if "inputs" not in recordings else _response_variable(recordings)
    rates = recordings[variable].transpose("trial", "time", "neuron").values.astype(np.float64)
    mask = recordings["mask"].transpose("trial", "time").values.astype(bool)
    time = recordings["time"].values.astype(np.float64)
    if time.size < 2:
        raise ValueError("the recordings need at least two time bins")
    dt = float(time[1] - time[0])
    if not np.isfinite(rates[mask]).all():
        raise ValueError(f"the recordings' {variable!r} has NaN or infinite values on valid bins")
    if observation == "poisson":
        counts = rates * dt / 1000.0
        off = np.abs(counts[mask] - np.round(counts[mask]))
        if off.size and off.max() > INTEGER_TOLERANCE:
            raise ValueError(
                f"the recordings' {variable!r} × the bin width ({dt:g} ms) are not whole spike counts (off by up to "
                f"{off.max():.3g}); the Poisson model needs binned spikes: use --observation gaussian for rates"
            )
        targets = np.where(mask[:, :, None], np.round(counts), 0.0)
    else:
        targets = np.where(mask[:, :, None], rates, 0.0)
    if "epoch" not in recordings.coords:
        raise ValueError("the recordings need epoch labels (an `epoch` (trial, time) coordinate, or `<name>_time` "
                         "columns in an NWB trials table) to be fitted")
    labels = recordings["epoch"].transpose("trial", "time").values.astype(str)
    epoch_names = tuple(dict.fromkeys(labels[mask & (labels != "")].tolist()))
    epoch = np.full(mask.shape, -1, dtype=np.int16)
    for code, name in enumerate(epoch_names):
        epoch[(labels == name) & mask] = code
    conditions = {str(name): coord.values for name, coord in recordings.coords.items()
                  if coord.dims == ("trial",) and name not in ("trial", "task", *TRIAL_BOOKKEEPING)}

    source = inputs
    if source == "auto":
        source = "file" if "inputs" in recordings else "task"
    if source == "file":
        if "inputs" not in recordings:
            raise ValueError("the recordings have no `inputs` variable; rebuild the inputs from the task "
                             "(--inputs task) or add the stimulus time series to the file")
        values = recordings["inputs"].transpose("trial", "time", "input").values.astype(np.float64)
        if not np.isfinite(values[mask]).all():
            raise ValueError("the recordings' inputs are NaN on some valid bins (a stimulus series that starts "
                             "after a trial does)")
        input_values = np.where(mask[:, :, None], values, 0.0).astype(np.float32)
        input_names = tuple(str(name) for name in recordings["input"].values)
        task_names = tuple(task_interface(env).input_names) if env is not None else ()
        if set(input_names) == set(task_names) and input_names != task_names:
            # NWB lists stimulus series by name; the task's order lets the fit meet a task-trained model's C.
            order = [input_names.index(name) for name in task_names]
            input_values, input_names = input_values[:, :, order], task_names
    else:
        if env is None:
            raise ValueError("rebuilding the inputs from the task needs the task")
        input_values = task_inputs(env, labels, mask, conditions, dt)
        input_names = tuple(task_interface(env).input_names)
    task_name = str(task_name or recordings.attrs.get("task", "recordings"))
    canonical = task_interface(env).canonical_epochs if env is not None else {}
    return TrialBatch(
        inputs=input_values, targets=targets.astype(np.float32), mask=mask, weight=mask.astype(np.float32),
        epoch=epoch, epoch_names=epoch_names, task=np.zeros(mask.shape[0], dtype=np.int64), task_names=(task_name,),
        conditions=conditions, dt=dt, input_names=input_names,
        output_names=tuple(str(name) for name in recordings["neuron"].values), target_kind="regression",
        scoring="regression", tolerance=0.0, canonical_epochs=canonical_epoch_map(epoch_names, canonical),
    )


def _response_variable(recordings: xr.Dataset) -> str:
    return recording_variable(recordings.drop_vars("inputs"))


def task_inputs(env, labels: np.ndarray, mask: np.ndarray, conditions: dict[str, np.ndarray], dt: float) -> np.ndarray:
    """(trial, time, input) inputs of ``env`` rebuilt for each recorded trial.

    The task's epochs get the recorded lengths (in the recorded order) and its trial the recorded conditions
    that it names (``condition_names``); the rebuilt trial must have the recorded length.
    """
    base = env.unwrapped
    if abs(float(base.dt) - dt) > 1e-9:
        raise ValueError(f"the task's dt is {base.dt:g} ms but the recordings' bins are {dt:g} ms; pass "
                         f"--task-option dt={dt:g} or bin the recordings at {base.dt:g} ms (--bin-ms)")
    names = [name for name in getattr(base, "condition_names", ()) if name in conditions]
    saved_timing = dict(base.timing)
    n_trials, n_steps = mask.shape
    out = np.zeros((n_trials, n_steps, base.observation_space.shape[0]), dtype=np.float32)
    try:
        for trial in range(n_trials):
            valid = labels[trial][mask[trial]]
            order = list(dict.fromkeys(valid.tolist()))
            unknown = [name for name in order if name not in saved_timing]
            if unknown:
                raise ValueError(f"trial {trial} has epochs {unknown} that the task does not have "
                                 f"({list(saved_timing)}); map them with --map epoch.NAME=TASK_EPOCH")
            base.timing = {**saved_timing, **{name: float((valid == name).sum() * dt) for name in order}}
            values = {name: _plain(conditions[name][trial]) for name in names}
            try:
                base.new_trial(**values)
            except (ValueError, KeyError) as error:
                raise ValueError(f"the task cannot rebuild trial {trial} from its conditions {values}: {error}") from None
            ob = np.asarray(base.ob, dtype=np.float32)
            if len(ob) != mask[trial].sum():
                raise ValueError(f"trial {trial}: the task rebuilt {len(ob)} steps but the recording has "
                                 f"{int(mask[trial].sum())}; the recorded epochs must cover the whole trial")
            out[trial, : len(ob)] = ob
    finally:
        base.timing = saved_timing
    return out


def _plain(value):
    value = value.item() if isinstance(value, np.generic) else value
    return value.decode() if isinstance(value, bytes) else value


def split(n_trials: int, n_neurons: int, *, test_fraction: float, heldout_fraction: float,
          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the held-out (test) trials and of the held-out neurons, drawn from ``seed``.

    At least one trial is held out and one kept; held-out neurons number round(fraction · N), at most N − 1.
    """
    if n_trials < 2:
        raise ValueError(f"a fit needs at least 2 trials (one to hold out), got {n_trials}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x46495454]))  # "FITT": apart from other streams
    n_test = min(max(1, round(test_fraction * n_trials)), n_trials - 1)
    n_heldout = min(round(heldout_fraction * n_neurons), n_neurons - 1)
    test = np.sort(rng.permutation(n_trials)[:n_test])
    heldout = np.sort(rng.permutation(n_neurons)[:n_heldout])
    return test, heldout


def teacher_features(targets: np.ndarray, mask: np.ndarray, *, observation: str, smooth_bins: float) -> np.ndarray:
    """The encoder's input: √counts (Poisson) or rates (Gaussian), smoothed over time, 0 off the mask."""
    values = np.sqrt(np.maximum(targets, 0.0)) if observation == "poisson" else np.asarray(targets, dtype=np.float64)
    values = np.where(mask[:, :, None], values, 0.0)
    if smooth_bins > 0:
        weight = gaussian_filter1d(mask.astype(np.float64), smooth_bins, axis=1, mode="constant")
        values = gaussian_filter1d(values, smooth_bins, axis=1, mode="constant") / np.maximum(weight, 1e-12)[:, :, None]
    return np.where(mask[:, :, None], values, 0.0).astype(np.float32)
