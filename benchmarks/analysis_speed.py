"""Time the regime analysis of 1,000 trials × ~100 steps of an M = 256, P = 16 AL-RNN on this machine.

Simulates a network (trained for ``--train-steps`` steps first, so it visits
regimes the way a trained one does; 0 = the untrained initialisation) on the
stimulus-selection task at dt = 22 ms (100 steps per trial), then times
``analyze`` — all regime statistics, the regime–epoch map, the dynamics of the
visited regimes (up to ``--max-regimes``) and the primitives — as the median
of ``--repeats`` runs. Usage:

    .venv/bin/python benchmarks/analysis_speed.py [--train-steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from neuroalrnn.analyses import ALRNNParams, analyze
from neuroalrnn.config import TrainConfig
from neuroalrnn.simulate import simulate
from neuroalrnn.training import Trainer, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--nonlinear", type=int, default=16)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--max-regimes", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
    trials = simulate(model, env, args.trials, seed=1)
    params = ALRNNParams.from_model(model)
    torch.set_num_threads(2)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = analyze(trials, params, max_regimes=args.max_regimes)
        times.append(time.perf_counter() - start)
    n_dynamics = int(result["spectral_radius"].notnull().sum())
    print(f"M={args.units} P={args.nonlinear}, {args.trials} trials x {trials.sizes['time']} steps, "
          f"trained {args.train_steps} steps")
    print(f"regimes visited: {int(result['n_regimes'])}; dynamics of the {n_dynamics} most occupied "
          f"({100 * result.attrs['dynamics_coverage']:.1f} % of steps)")
    print(f"analyze: median {statistics.median(times):.2f} s over {args.repeats} runs "
          f"(min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()
