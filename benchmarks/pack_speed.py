"""Time packed training: N AL-RNNs trained as one batched model against N solo Trainers, on one thread.

Trains a P × seed grid like ``experiments/stimulus_selection_p.toml``'s AL-RNN
part (P = 0, 1, 2, 4, 8, 16, 32 and seeds 0, 1, 2 for the default 21 networks)
on the stimulus-selection task, once as a :class:`neuroalrnn.training.PackTrainer`
and once as ``Trainer`` runs one after another in this process, alternately
for ``--rounds`` rounds, and prints trained network-steps per second (median
of the rounds) for each and their ratio, as JSON (:func:`neuroalrnn.training.pack.time_pack`).
``--seeds-distinct`` gives every network a seed of its own (no shared trials).
It also prints the load average: on a machine shared with other jobs, compare
numbers taken at similar loads. Usage:

    .venv/bin/python benchmarks/pack_speed.py [--networks 21] [--units 32] [--steps 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from neuroalrnn.training.pack import time_pack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=21, help="networks N (default 21: 7 P values x 3 seeds)")
    parser.add_argument("--units", type=int, default=32, help="M (default 32)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per network (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating packed and solo (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seeds-distinct", action="store_true", help="a seed per network (no shared trials)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    p_values = [0, 1, 2, 4, 8, 16, 32]
    if args.seeds_distinct:  # P cycles as before, but i // len(p_values) would repeat seeds: one P list per net
        p_values = [p_values[index % len(p_values)] for index in range(args.networks)]
    result = time_pack(args.networks, n_units=args.units, steps=args.steps, rounds=args.rounds, p_values=p_values)
    result["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
