"""End to end (slow): each task suite and benchmark trains through the ordinary Trainer to a criterion."""

from __future__ import annotations

import pytest

from neuroalrnn.training.config import TrainConfig
from neuroalrnn.training import Trainer

pytestmark = pytest.mark.slow


def test_one_network_learns_four_yang19_tasks(tmp_path):
    config = TrainConfig(task="yang19", task_kwargs={"tasks": ["go", "anti", "dm1", "dms"]}, n_units=64,
                         n_nonlinear=8, steps=2000, eval_every=1000, eval_trials=400, seed=0)
    trainer = Trainer(config, tmp_path / "run", progress=False).fit()
    by_task = trainer.eval_by_task
    assert list(by_task) == ["go", "anti", "dm1", "dms"]
    assert sum(by_task.values()) / 4 >= 0.85
    assert min(by_task.values()) >= 0.6  # go and anti differ only in the rule input: both right needs it


@pytest.mark.parametrize(
    ("task", "n_nonlinear", "steps", "criterion"),
    [("adding", 16, 3000, 0.8), ("copy-memory", 4, 3000, 0.9), ("flipflop", 16, 3000, 0.9),
     ("sequential-digits", 4, 3000, 0.88)],
)
def test_classic_benchmark_trains_to_criterion(tmp_path, task, n_nonlinear, steps, criterion):
    config = TrainConfig(task=task, n_units=64, n_nonlinear=n_nonlinear, steps=steps, eval_every=steps,
                         eval_trials=500, seed=0)
    trainer = Trainer(config, tmp_path / "run", progress=False).fit()
    assert trainer.final_accuracy >= criterion
