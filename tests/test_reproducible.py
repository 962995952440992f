"""Same seed, same weights: training twice in separate processes gives bit-identical checkpoints.

Two fresh processes run ``neuroalrnn train``: one trains seed 5; the other
trains seed 6 and then seed 5, so its seed-5 run also shows that nothing
carries over from an earlier training in the same process (kept buffers,
generator state, caches). The runs use recurrent noise and the fast step, so
the noise draw and the hand-written backward pass are covered. The seed-6 run
must differ, or the comparison would prove nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from neuroalrnn.training.rundir import load_checkpoint, read_metrics

TRAIN = ["train", "--units", "16", "--nonlinear", "2", "--noise", "0.1", "--steps", "30", "--batch-size", "16",
         "--bank-size", "128", "--eval-trials", "32", "--eval-every", "30", "--checkpoint-every", "30",
         "--data-workers", "0", "--no-progress"]
# argv: a JSON list of (seed, run directory); each is trained in turn in this one process.
TRAIN_IN_TURN = """
import json, sys
from neuroalrnn.workflows.cli import main
for seed, folder in json.loads(sys.argv[1]):
    status = main([*json.loads(sys.argv[2]), "--seed", str(seed), "--out", folder])
    if status:
        sys.exit(status)
"""


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """Every leaf of a nested dict/list/tuple, by its path."""
    if isinstance(value, dict | list | tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return {path: leaf for key, item in items for path, leaf in _flatten(item, f"{prefix}/{key}").items()}
    return {prefix: value}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Process 1 trains seed 5 ("first"); process 2, at the same time, seed 6 ("other seed"), then seed 5 ("second")."""
    folder = tmp_path_factory.mktemp("reproducible")
    plans = [[(5, "first")], [(6, "other seed"), (5, "second")]]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_IN_TURN, json.dumps([(seed, str(folder / name)) for seed, name in plan]),
             json.dumps(TRAIN)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for plan in plans
    ]
    for plan, process in zip(plans, processes):
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, f"{plan}: {errors}"
    names = [name for plan in plans for _, name in plan]
    return {name: {"checkpoint": load_checkpoint(folder / name), "metrics": read_metrics(folder / name)}
            for name in names}


@pytest.mark.parametrize("part", ["model", "optimizer", "rng_torch"])
def test_the_same_seed_gives_bitwise_the_same_state(runs, part):
    first, second = (_flatten(runs[name]["checkpoint"][part]) for name in ("first", "second"))
    assert first.keys() == second.keys()
    assert any(isinstance(value, torch.Tensor) for value in first.values()), part
    different = [path for path in first if not _same(first[path], second[path])]
    assert not different, f"{part} differs at {different}"


def test_the_same_seed_gives_the_same_losses(runs):
    first, second = ([(row["step"], row["loss"], row["accuracy"]) for row in runs[name]["metrics"]]
                     for name in ("first", "second"))
    assert len(first) == 30 and first == second


@pytest.mark.parametrize("name", ["A", "W", "h", "C", "B", "b"])
def test_another_seed_gives_other_weights(runs, name):
    assert not torch.equal(runs["first"]["checkpoint"]["model"][name], runs["other seed"]["checkpoint"]["model"][name])
