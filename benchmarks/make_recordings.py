"""Make a synthetic recordings file from a trained run: the model's latents seen through simulated neurons.

For checking ``neuroalrnn compare`` / :func:`neuroalrnn.analyses.compare.compare`
(and ``neuroalrnn fit``) against a known answer. The run's model is simulated on ``--trials`` fresh
trials of its task drawn with ``--seed`` (``neuroalrnn.evaluation.simulate.simulate`` with its default
``noise=False``: the model in eval mode, with no recurrent noise, so the latents are a deterministic
function of the inputs; the inputs are the task's as drawn, stimulus noise of the task included), and
each of ``--neurons`` neurons n gets a firing rate (spikes/s) from the latents z_t (standardised per unit over
valid steps, ẑ):

    r_{n,t} = rate_scale · softplus(Σ_i L_{n,i} ẑ_{i,t} + β_n),
    L_{n,i} ~ N(0, 1/M),  β_n ~ N(0, 0.5²),

then noise: ``poisson`` (spike counts k ~ Poisson(r Δt / 1000) per step,
stored as the rate estimate k · 1000 / Δt), ``gaussian`` (r + N(0, σ²), σ =
``--noise-std`` spikes/s) or ``none``. The file has the recording layout of
docs/formats.md: a Dataset with ``rates`` (trial, time, neuron) float32 (NaN after a
trial's end), ``mask`` (trial, time) bool, the trial conditions and ``task``
on ``trial``, ``time`` in ms (``units: ms``), ``epoch`` (trial, time)
unless ``--no-epoch`` and, unless ``--no-inputs``, ``inputs`` (trial, time, input) float32: the inputs
the model saw on each step (NaN after a trial's end; channel names in ``input``); attributes say how it
was made. ``--format nwb`` (the default for an
``--out`` ending in ``.nwb``) writes the same neurons' Poisson spike times instead (:func:`synthetic_nwb`):
an NWB file with a trials table (``start_time``/``stop_time``, the conditions, ``<epoch>_time`` starts),
a Units table and, unless ``--no-inputs``, one ``TimeSeries`` per input channel in its ``stimulus`` group,
which ``neuroalrnn compare`` reads. ``--shuffle-conditions`` permutes the condition labels across trials (a
recording that matches no condition structure: a negative control); each trial keeps its own spikes and
inputs. ``--truth PATH`` also writes the simulated trials (``trials.nc`` layout: latents, inputs, outputs,
regime, epochs, the true conditions even with ``--shuffle-conditions``) whose neurons are in the file, trial
for trial in the same order (trial i of the file is trial i of the truth; in an NWB file, trials-table row
i). Every file is written atomically (temp file, then rename). Usage:

    .venv/bin/neuroalrnn train --task stimulus-selection --units 32 --nonlinear 4 --steps 1000 \\
        --out /tmp/cmp-run --no-progress
    .venv/bin/python benchmarks/make_recordings.py /tmp/cmp-run --out /tmp/recordings.nc \\
        [--trials 1000] [--neurons 100] [--noise poisson] [--rate-scale 10] [--seed 1] \\
        [--no-epoch] [--no-inputs] [--shuffle-conditions] [--truth /tmp/recordings-truth.nc]
    .venv/bin/python benchmarks/make_recordings.py /tmp/cmp-run --out /tmp/recordings.nwb --format nwb
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

NOISES = ("poisson", "gaussian", "none")


def neuron_rates(
    trials: xr.Dataset, n_neurons: int, *, rate_scale: float = 10.0, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The synthetic neurons' noiseless rates (trial, time, neuron) in spikes/s, the trials' mask and dt (ms).

    The one model of the neurons (module docstring) behind both writers; draws the loadings, then the offsets,
    from ``rng``.
    """
    if n_neurons < 1:
        raise ValueError(f"n_neurons must be ≥ 1, got {n_neurons}")
    latents = trials["latents"].transpose("trial", "time", "unit").values.astype(np.float64)
    mask = trials["mask"].transpose("trial", "time").values.astype(bool)
    valid = latents[mask]
    standardised = (latents - valid.mean(axis=0)) / np.maximum(valid.std(axis=0), 1e-8)
    n_units = latents.shape[-1]
    loading = rng.normal(0.0, 1.0 / np.sqrt(n_units), size=(n_units, n_neurons))
    offset = rng.normal(0.0, 0.5, size=n_neurons)
    rates = rate_scale * np.logaddexp(0.0, standardised @ loading + offset)  # softplus
    dt = float(trials.attrs.get("dt", np.diff(trials["time"].values)[0]))
    return rates, mask, dt


def model_inputs(trials: xr.Dataset) -> tuple[list[str], np.ndarray]:
    """The trials' input channel names and inputs (trial, time, input) float32, NaN outside ``mask``."""
    inputs = trials["inputs"].transpose("trial", "time", "input").values
    mask = trials["mask"].transpose("trial", "time").values.astype(bool)
    names = [str(name) for name in trials["input"].values]
    return names, np.where(mask[:, :, None], inputs, np.nan).astype(np.float32)


def synthetic_recordings(
    trials: xr.Dataset,
    n_neurons: int = 100,
    *,
    noise: str = "poisson",
    rate_scale: float = 10.0,
    noise_std: float = 5.0,
    seed: int = 0,
    keep_epoch: bool = True,
    keep_inputs: bool = True,
    shuffle_conditions: bool = False,
) -> xr.Dataset:
    """A recordings Dataset (trial, time, neuron) made from a ``trials.nc`` Dataset's latents (module docstring).

    ``keep_inputs``: add the trials' inputs as ``inputs`` (trial, time, input), NaN outside ``mask``.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    rng = np.random.default_rng(seed)
    rates, mask, dt = neuron_rates(trials, n_neurons, rate_scale=rate_scale, rng=rng)
    n_units = trials.sizes["unit"]
    if noise == "poisson":
        rates = rng.poisson(rates * dt / 1000.0) * (1000.0 / dt)
    elif noise == "gaussian":
        rates = rates + rng.normal(0.0, noise_std, size=rates.shape)
    rates = np.where(mask[:, :, None], rates, np.nan).astype(np.float32)

    conditions = {name: coord.values for name, coord in trials.coords.items()
                  if coord.dims == ("trial",) and name != "trial"}
    order = rng.permutation(len(mask)) if shuffle_conditions else np.arange(len(mask))
    coords = {name: ("trial", values[order]) for name, values in conditions.items()}
    coords["time"] = ("time", trials["time"].values.astype(np.float64), {"units": "ms"})
    coords["neuron"] = ("neuron", np.arange(n_neurons))
    if keep_epoch:
        coords["epoch"] = (("trial", "time"), trials["epoch"].transpose("trial", "time").values.astype(str))
    data_vars = {"rates": (("trial", "time", "neuron"), rates, {"units": "spikes/s"}),
                 "mask": (("trial", "time"), mask)}
    if keep_inputs:
        names, inputs = model_inputs(trials)
        coords["input"] = ("input", names)
        data_vars["inputs"] = (("trial", "time", "input"), inputs,
                               {"description": "the model's inputs on each step (what the subject saw)"})
    attrs = {
        "description": "synthetic recordings: rate_scale * softplus(L z_standardised + beta) + noise",
        "source_model": str(trials.attrs.get("model", "")),
        "source_seed": int(trials.attrs.get("seed", -1)),
        "n_units": n_units,
        "noise": noise,
        "rate_scale": float(rate_scale),
        "noise_std": float(noise_std) if noise == "gaussian" else 0.0,
        "seed": int(seed),
        "dt": dt,
        "shuffled_conditions": int(shuffle_conditions),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def synthetic_nwb(
    trials: xr.Dataset,
    n_neurons: int = 100,
    *,
    rate_scale: float = 10.0,
    seed: int = 0,
    gap_ms: float = 500.0,
    shuffle_conditions: bool = False,
    keep_inputs: bool = True,
    description: str = "",
):
    """An in-memory ``pynwb.NWBFile`` of Poisson spikes of the synthetic neurons (module docstring).

    Trials follow one another on the session clock, ``gap_ms`` apart; each lasts its valid steps. In each
    step of dt ms, neuron n fires k ~ Poisson(r_{n,t} dt / 1000) spikes at uniformly drawn times within the
    step. The trials table holds ``start_time``/``stop_time`` (s), one column per condition of the trials
    and ``<epoch>_time``, the start (s) of each epoch (NaN when a trial lacks it); the Units table holds
    the spike times (s). Unless ``keep_inputs`` is False, ``nwbfile.stimulus`` holds one ``TimeSeries`` per
    input channel, named after it: the channel's value at each valid step of each trial (float32, unit
    "a.u."), timestamped with the step's start (s) on the session clock; all share one timestamps array
    (the first series holds it, the others link to it). Read back, the series come in the file's order,
    which is by name, not the model's input order.
    """
    from datetime import datetime, timezone

    from pynwb import NWBFile, TimeSeries
    from pynwb.file import Subject

    rng = np.random.default_rng(seed)
    rates, mask, dt = neuron_rates(trials, n_neurons, rate_scale=rate_scale, rng=rng)
    n_trials = len(mask)
    lengths = np.where(mask.any(axis=1), mask.shape[1] - np.argmax(mask[:, ::-1], axis=1), 0)
    starts = np.concatenate([[0.0], np.cumsum(lengths[:-1] * dt + gap_ms)]) / 1000.0 + 1.0
    counts = rng.poisson(np.where(mask[:, :, None], rates, 0.0) * dt / 1000.0)  # (trial, time, neuron)

    nwbfile = NWBFile(
        session_description=description or (
            f"synthetic spikes of {n_neurons} model neurons: rate = {rate_scale:g} * softplus(L z + beta) "
            f"spikes/s from the latents z of a neuroalrnn {trials.attrs.get('model', 'model')} "
            f"(M = {trials.sizes['unit']}), Poisson spikes in steps of {dt:g} ms"),
        identifier=f"neuroalrnn-synthetic-seed{seed}-{n_trials}trials-{n_neurons}neurons",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        session_id=f"synthetic-seed{seed}",
        experiment_description="synthetic recordings made by neuroalrnn's benchmarks/make_recordings.py",
        source_script="benchmarks/make_recordings.py (neuroalrnn)",
        source_script_file_name="make_recordings.py",
        keywords=["synthetic", "almost-linear RNN", "neuroalrnn"],
        # A trained network, not an animal: sex "U" (unknown) and an age of zero are the honest values.
        subject=Subject(subject_id="model", sex="U", age="P0D",
                        description=f"a {trials.attrs.get('model', '')} network trained by neuroalrnn; the neurons "
                                    "are simulated from its latent states"),
    )
    conditions = {str(name): coord.values for name, coord in trials.coords.items()
                  if coord.dims == ("trial",) and name != "trial"}
    order = rng.permutation(n_trials) if shuffle_conditions else np.arange(n_trials)
    labels = trials["epoch"].transpose("trial", "time").values.astype(str)
    epochs = [name for name in dict.fromkeys(labels[mask].tolist()) if name]
    for name in conditions:
        nwbfile.add_trial_column(name=name, description=f"task condition {name!r} of the trial")
    for name in epochs:
        nwbfile.add_trial_column(name=f"{name}_time", description=f"start of the {name} epoch (s); NaN: none")
    for trial in range(n_trials):
        values = {name: _plain(conditions[name][order[trial]]) for name in conditions}
        for name in epochs:
            steps = np.flatnonzero(mask[trial] & (labels[trial] == name))
            values[f"{name}_time"] = float(starts[trial] + steps[0] * dt / 1000.0) if steps.size else float("nan")
        nwbfile.add_trial(start_time=float(starts[trial]), stop_time=float(starts[trial] + lengths[trial] * dt / 1000),
                          **values)
    step_start = starts[:, None] + np.arange(mask.shape[1])[None, :] * dt / 1000.0  # (trial, time), s
    for neuron in range(n_neurons):
        per_step = counts[:, :, neuron]
        onsets = np.repeat(step_start.ravel(), per_step.ravel())
        times = np.sort(onsets + rng.uniform(0.0, dt / 1000.0, size=onsets.size))
        nwbfile.add_unit(spike_times=times, id=neuron)
    if keep_inputs:
        names, inputs = model_inputs(trials)
        timestamps = step_start[mask]  # trial by trial, step by step: ascending, as trials follow one another
        first = None
        for channel, name in enumerate(names):
            series = TimeSeries(
                name=name, data=inputs[mask][:, channel], unit="a.u.",
                timestamps=timestamps if first is None else first,
                description=f"model input {name!r}: the value of the network's input channel {name} at each "
                            f"time step of each trial (held for the {dt:g} ms step starting at its timestamp)",
            )
            first = series if first is None else first
            nwbfile.add_stimulus(series)
    return nwbfile


def _plain(value):
    """A NumPy scalar as the Python value pynwb stores in a trials column."""
    value = value.item() if isinstance(value, np.generic) else value
    return value.decode() if isinstance(value, bytes) else value


def write_nwb(nwbfile, path: str | Path) -> Path:
    """Write ``nwbfile`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    from pynwb import NWBHDF5IO

    from neuroalrnn.storage import atomic_path

    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The temporary name does not end in .nwb (the final one does), which pynwb warns about.
        warnings.filterwarnings("ignore", message="The file path provided", category=UserWarning)
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a trained run directory (neuroalrnn train --out DIR)")
    parser.add_argument("--out", type=Path, required=True, help="file to write (NetCDF, or NWB with --format nwb)")
    parser.add_argument("--format", choices=("netcdf", "nwb"), default=None,
                        help="netcdf (rates) or nwb (spike times); default: nwb for an --out ending in .nwb")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--noise", choices=NOISES, default="poisson")
    parser.add_argument("--rate-scale", type=float, default=10.0, help="spikes/s at softplus = 1")
    parser.add_argument("--noise-std", type=float, default=5.0, help="σ of gaussian noise, spikes/s")
    parser.add_argument("--seed", type=int, default=1, help="seed of the trials, the neurons and the noise")
    parser.add_argument("--no-epoch", action="store_true", help="leave out the epoch coordinate")
    parser.add_argument("--no-inputs", action="store_true", help="leave out the model inputs")
    parser.add_argument("--shuffle-conditions", action="store_true", help="permute condition labels across trials")
    parser.add_argument("--truth", type=Path, default=None,
                        help="also write the simulated trials (latents, inputs, regime, true conditions) here, NetCDF")
    args = parser.parse_args(argv)
    if args.truth is not None and args.truth.resolve() == args.out.resolve():
        parser.error("--truth must name another file than --out")

    from neuroalrnn.evaluation.simulate import simulate
    from neuroalrnn.formats import FORMAT_VERSION, validate
    from neuroalrnn.storage import write_netcdf
    from neuroalrnn.training import load_model

    started = time.perf_counter()
    config, model, env = load_model(args.run_dir)
    trials = simulate(model, env, args.trials, seed=args.seed, task_name=config.task)
    if args.truth is not None:
        trials.attrs["recordings_file"] = str(args.out)
        validate("trials", trials, source=args.truth)  # refused before anything is written
    if (args.format or ("nwb" if args.out.suffix.lower() == ".nwb" else "netcdf")) == "nwb":
        if args.noise != "poisson" or args.no_epoch:
            parser.error("--format nwb writes Poisson spike times with epoch times: leave out --noise and --no-epoch")
        nwbfile = synthetic_nwb(trials, args.neurons, rate_scale=args.rate_scale, seed=args.seed,
                                shuffle_conditions=args.shuffle_conditions, keep_inputs=not args.no_inputs)
        write_nwb(nwbfile, args.out)
        print(f"wrote {args.out} ({len(nwbfile.trials)} trials, {len(nwbfile.units)} units, "
              f"{len(nwbfile.stimulus)} input series) in {time.perf_counter() - started:.1f} s")
        _write_truth(trials, args.truth)
        return
    recordings = synthetic_recordings(
        trials, args.neurons, noise=args.noise, rate_scale=args.rate_scale, noise_std=args.noise_std,
        seed=args.seed, keep_epoch=not args.no_epoch, keep_inputs=not args.no_inputs,
        shuffle_conditions=args.shuffle_conditions,
    )
    recordings.attrs["source_run"] = str(args.run_dir)
    recordings.attrs["source_config"] = json.dumps(config.to_dict(), sort_keys=True, default=str)
    recordings.attrs["format_version"] = FORMAT_VERSION
    validate("recordings", recordings, source=args.out)
    write_netcdf(recordings, args.out)
    sizes = ", ".join(f"{k}: {v}" for k, v in recordings["rates"].sizes.items())
    print(f"wrote {args.out} ({sizes}) in {time.perf_counter() - started:.1f} s")
    _write_truth(trials, args.truth)


def _write_truth(trials: xr.Dataset, path: Path | None) -> None:
    """Write the simulated trials behind the recordings (``--truth``), validated and atomically."""
    from neuroalrnn.evaluation.simulate import write_trials

    if path is not None:
        write_trials(trials, path)
        print(f"wrote {path} (the {trials.sizes['trial']} simulated trials, in the recordings' order)")


if __name__ == "__main__":
    main()
