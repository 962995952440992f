"""Make a synthetic recordings file from a trained run: the model's latents seen through simulated neurons.

For checking ``neuroalrnn compare`` / :func:`neuroalrnn.analyses.compare.compare`
against a known answer. The run's model is simulated on fresh trials of its
task (``neuroalrnn.evaluation.simulate.simulate``), and each of ``--neurons`` neurons n
gets a firing rate (spikes/s) from the latents z_t (standardised per unit over
valid steps, ẑ):

    r_{n,t} = rate_scale · softplus(Σ_i L_{n,i} ẑ_{i,t} + β_n),
    L_{n,i} ~ N(0, 1/M),  β_n ~ N(0, 0.5²),

then noise: ``poisson`` (spike counts k ~ Poisson(r Δt / 1000) per step,
stored as the rate estimate k · 1000 / Δt), ``gaussian`` (r + N(0, σ²), σ =
``--noise-std`` spikes/s) or ``none``. The file has the recording layout of
docs/formats.md: a Dataset with ``rates`` (trial, time, neuron) float32 (NaN after a
trial's end), ``mask`` (trial, time) bool, the trial conditions and ``task``
on ``trial``, ``time`` in ms (``units: ms``) and ``epoch`` (trial, time)
unless ``--no-epoch``; attributes say how it was made. ``--shuffle-conditions``
permutes the condition labels across trials (a recording that matches no
condition structure: a negative control). Written atomically (temp file, then
rename). Usage:

    .venv/bin/neuroalrnn train --task stimulus-selection --units 32 --nonlinear 4 --steps 1000 \\
        --out /tmp/cmp-run --no-progress
    .venv/bin/python benchmarks/make_recordings.py /tmp/cmp-run --out /tmp/recordings.nc \\
        [--trials 1000] [--neurons 100] [--noise poisson] [--rate-scale 10] [--seed 1] \\
        [--no-epoch] [--shuffle-conditions]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

NOISES = ("poisson", "gaussian", "none")


def synthetic_recordings(
    trials: xr.Dataset,
    n_neurons: int = 100,
    *,
    noise: str = "poisson",
    rate_scale: float = 10.0,
    noise_std: float = 5.0,
    seed: int = 0,
    keep_epoch: bool = True,
    shuffle_conditions: bool = False,
) -> xr.Dataset:
    """A recordings Dataset (trial, time, neuron) made from a ``trials.nc`` Dataset's latents (module docstring)."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    if n_neurons < 1:
        raise ValueError(f"n_neurons must be ≥ 1, got {n_neurons}")
    rng = np.random.default_rng(seed)
    latents = trials["latents"].transpose("trial", "time", "unit").values.astype(np.float64)
    mask = trials["mask"].transpose("trial", "time").values.astype(bool)
    valid = latents[mask]
    standardised = (latents - valid.mean(axis=0)) / np.maximum(valid.std(axis=0), 1e-8)
    n_units = latents.shape[-1]
    loading = rng.normal(0.0, 1.0 / np.sqrt(n_units), size=(n_units, n_neurons))
    offset = rng.normal(0.0, 0.5, size=n_neurons)
    rates = rate_scale * np.logaddexp(0.0, standardised @ loading + offset)  # softplus
    dt = float(trials.attrs.get("dt", np.diff(trials["time"].values)[0]))
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
    return xr.Dataset(
        {"rates": (("trial", "time", "neuron"), rates, {"units": "spikes/s"}),
         "mask": (("trial", "time"), mask)},
        coords=coords, attrs=attrs,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a trained run directory (neuroalrnn train --out DIR)")
    parser.add_argument("--out", type=Path, required=True, help="NetCDF file to write")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--noise", choices=NOISES, default="poisson")
    parser.add_argument("--rate-scale", type=float, default=10.0, help="spikes/s at softplus = 1")
    parser.add_argument("--noise-std", type=float, default=5.0, help="σ of gaussian noise, spikes/s")
    parser.add_argument("--seed", type=int, default=1, help="seed of the trials, the neurons and the noise")
    parser.add_argument("--no-epoch", action="store_true", help="leave out the epoch coordinate")
    parser.add_argument("--shuffle-conditions", action="store_true", help="permute condition labels across trials")
    args = parser.parse_args(argv)

    from neuroalrnn.formats import FORMAT_VERSION, validate
    from neuroalrnn.storage import write_netcdf
    from neuroalrnn.evaluation.simulate import simulate
    from neuroalrnn.training import load_model

    started = time.perf_counter()
    config, model, env = load_model(args.run_dir)
    trials = simulate(model, env, args.trials, seed=args.seed, task_name=config.task)
    recordings = synthetic_recordings(
        trials, args.neurons, noise=args.noise, rate_scale=args.rate_scale, noise_std=args.noise_std,
        seed=args.seed, keep_epoch=not args.no_epoch, shuffle_conditions=args.shuffle_conditions,
    )
    recordings.attrs["source_run"] = str(args.run_dir)
    recordings.attrs["source_config"] = json.dumps(config.to_dict(), sort_keys=True, default=str)
    recordings.attrs["format_version"] = FORMAT_VERSION
    validate("recordings", recordings, source=args.out)
    write_netcdf(recordings, args.out)
    sizes = ", ".join(f"{k}: {v}" for k, v in recordings["rates"].sizes.items())
    print(f"wrote {args.out} ({sizes}) in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
