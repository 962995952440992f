"""Time the regime analysis of 1,000 trials × ~100 steps of an M = 256, P = 16 AL-RNN on this machine.

Simulates a network (trained for ``--train-steps`` steps first, so it visits
regimes the way a trained one does; 0 = the untrained initialisation) on the
stimulus-selection task at dt = 22 ms (100 steps per trial), then times
``analyze`` — all regime statistics, the regime–epoch map, the dynamics of the
visited regimes (all of them unless ``--max-regimes`` caps them at the most
occupied) and the primitives — as the median of ``--repeats`` runs. It also
prints the median CPU time (all threads) and the load average: on a
machine shared with other jobs the wall time grows with the load much more
than the CPU time does, and a run with a load well above the number of cores
says more about the other jobs than about ``analyze``. ``--cache DIR`` keeps the
simulated trials and the network's parameters in DIR and reuses them on the
next run with the same settings, so that two versions of the analyses are
timed on the same network even while the training code changes. Usage:

    .venv/bin/python benchmarks/analysis_speed.py [--train-steps 200] [--repeats 3] [--max-regimes 0] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neuroalrnn.analyses import analyze
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.models import PARAMETER_NAMES, ALRNNParams
from neuroalrnn.evaluation.simulate import read_trials, simulate, write_trials
from neuroalrnn.system import available_cores
from neuroalrnn.training import Trainer, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--nonlinear", type=int, default=16)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--max-regimes", type=int, default=0, help="0 (default): every visited regime")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="folder to keep the trials and parameters in and reuse them from")
    args = parser.parse_args()
    trials, params = _cached(args) if args.cache else _simulated(args)
    torch.set_num_threads(2)
    max_regimes = args.max_regimes or trials.sizes["trial"] * trials.sizes["time"]  # 0: all visited
    times, cpu_times = [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = analyze(trials, params, max_regimes=max_regimes)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    n_dynamics = int(result["spectral_radius"].notnull().sum())
    print(f"M={args.units} P={args.nonlinear}, {args.trials} trials x {trials.sizes['time']} steps, "
          f"trained {args.train_steps} steps; {available_cores()} cores, load average "
          f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after")
    print(f"regimes visited: {int(result['n_regimes'])}; dynamics of the {n_dynamics} most occupied "
          f"({100 * result.attrs['dynamics_coverage']:.1f} % of steps)")
    print(f"analyze: median {statistics.median(times):.2f} s over {args.repeats} runs "
          f"(min {min(times):.2f}, max {max(times):.2f}); CPU time median {statistics.median(cpu_times):.2f} s")


def _simulated(args) -> tuple:
    torch.set_num_threads(1)
    config = TrainConfig(n_units=args.units, n_nonlinear=args.nonlinear, steps=max(args.train_steps, 1),
                         task_kwargs={"dt": 22}, eval_every=max(args.train_steps, 1), eval_trials=100,
                         checkpoint_every=max(args.train_steps, 1), seed=0)
    with tempfile.TemporaryDirectory() as folder:
        if args.train_steps:
            Trainer(config, folder, progress=False).fit()
            _, model, env = load_model(folder)
        else:
            trainer = Trainer(config, folder, progress=False)
            model, env = trainer.model.eval(), trainer.env
    return simulate(model, env, args.trials, seed=1), model.params()


def _cached(args) -> tuple:
    """Trials and parameters from ``args.cache`` if they were made with the same settings, else made and kept."""
    settings = {name: getattr(args, name) for name in ("units", "nonlinear", "trials", "train_steps")}
    folder = args.cache
    if (folder / "settings.json").is_file():
        kept = json.loads((folder / "settings.json").read_text())
        if kept != settings:
            raise SystemExit(f"--cache {folder} holds a network made with {kept}, not {settings}; "
                             "use another folder or delete this one")
        arrays = np.load(folder / "params.npz")
        params = ALRNNParams(**{name: arrays[name] for name in PARAMETER_NAMES},
                             n_nonlinear=int(arrays["n_nonlinear"]), slope=float(arrays["slope"]))
        return read_trials(folder / "trials.nc"), params
    trials, params = _simulated(args)
    folder.mkdir(parents=True, exist_ok=True)
    write_trials(trials, folder / "trials.nc")
    np.savez(folder / "params.npz", **{name: getattr(params, name) for name in PARAMETER_NAMES},
             n_nonlinear=params.n_nonlinear, slope=params.slope)
    (folder / "settings.json").write_text(json.dumps(settings))
    return trials, params


if __name__ == "__main__":
    main()
