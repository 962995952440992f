"""Compare AL-RNN initialisations on the stimulus-selection task.

Trains M=64, P=4 AL-RNNs from each initialisation over several seeds and
prints the held-out decision accuracy at a few checkpoints (median over
seeds). Usage:

    .venv/bin/python benchmarks/compare_inits.py --seeds 3 --steps 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from neuroalrnn.training.config import TrainConfig
from neuroalrnn.training import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--inits", nargs="+", default=["reference", "stable"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    marks = [args.steps // 4, args.steps // 2, args.steps]
    print(f"{'init':<10} " + " ".join(f"{'step ' + str(m):>10}" for m in marks) + "  (median held-out accuracy)")
    for init in args.inits:
        by_mark = {m: [] for m in marks}
        for seed in range(args.seeds):
            config = TrainConfig(init=init, seed=seed, steps=args.steps, eval_every=args.steps // 4,
                                 checkpoint_every=args.steps)
            with tempfile.TemporaryDirectory() as folder:
                trainer = Trainer(config, folder, progress=False).fit()
            for row in trainer.metrics:
                if row["step"] in by_mark:
                    by_mark[row["step"]].append(row["eval_accuracy"])
        print(f"{init:<10} " + " ".join(f"{statistics.median(by_mark[m]):>10.3f}" for m in marks)
              + f"  seeds={args.seeds}")


if __name__ == "__main__":
    main()
