"""Yang et al. (2019)'s objective and scoring, and the ideal-observer ceilings, against independent restatements.

The references are github.com/gyyang/multitask: ``network.py`` (``popvec``,
``get_perf``, the ``lsq`` loss) and ``task.py`` (``Trial.add_c_mask``,
``add_y_loc``), restated here from their definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from neuroalrnn.envs.stimulus_selection import StimulusSelection
from neuroalrnn.envs.trials import trial_scores, yang_cost_mask
from neuroalrnn.envs.yang.ring import RESPONSE_TOLERANCE as RING_TOLERANCE
from neuroalrnn.envs.yang.ring import population_vector

from neuroalrnn import envs
from neuroalrnn.training import yang_squared_error
from neuroalrnn.training.config import TASK_TRAINING, YANG_RECURRENT_NOISE, TrainConfig

N_RING = 32
PREFERRED = np.arange(0, 2 * np.pi, 2 * np.pi / N_RING)


def _yang_target(direction: float | None) -> np.ndarray:
    """Yang's lsq target at a response step: 0.05 everywhere, 0.8 fixation or a 0.8 bump (width π/8)."""
    target = np.full(1 + N_RING, 0.05)
    if direction is None:
        target[0] = 0.8
    else:
        distance = np.abs(np.angle(np.exp(1j * (direction - PREFERRED)))) / (np.pi / 8)
        target[1:] += 0.8 * np.exp(-(distance**2) / 2)
    return target


def _yang_get_perf(y_hat_last: np.ndarray, y_loc_last: np.ndarray) -> np.ndarray:
    """Yang's get_perf at the last step, written from its definition (y_loc −1 means fixate)."""
    ring = y_hat_last[:, 1:]
    loc = np.mod(np.arctan2((ring * np.sin(PREFERRED)).sum(-1), (ring * np.cos(PREFERRED)).sum(-1)), 2 * np.pi)
    fixating = y_hat_last[:, 0] > 0.5
    raw = y_loc_last - loc
    corr_loc = np.minimum(np.abs(raw), 2 * np.pi - np.abs(raw)) < 0.2 * np.pi
    should_fix = y_loc_last < 0
    return should_fix * fixating + (1 - should_fix) * corr_loc * (1 - fixating)


def test_population_vector_reads_a_bump_direction():
    directions = np.random.default_rng(0).uniform(0, 2 * np.pi, 50)
    rings = np.stack([_yang_target(d)[1:] for d in directions])
    np.testing.assert_allclose(np.angle(np.exp(1j * (population_vector(rings) - directions))), 0, atol=1e-6)


def test_ring_scoring_is_yangs_get_perf():
    rng = np.random.default_rng(1)
    n_trials, n_steps = 400, 6
    directions = rng.uniform(0, 2 * np.pi, n_trials)
    no_go = rng.random(n_trials) < 0.25
    targets = np.stack([np.tile(_yang_target(None if skip else d), (n_steps, 1))
                        for d, skip in zip(directions, no_go, strict=True)]).astype(np.float32)
    # outputs near the answer, some fixating, some off by more or less than 0.2π
    answer = directions + rng.normal(0, 0.5, n_trials)
    probabilities = np.stack([_yang_target(a) for a in answer])
    probabilities[:, 0] = rng.uniform(0.2, 0.8, n_trials)
    logits = np.log(probabilities / (1 - probabilities))
    outputs = np.repeat(logits[:, None, :], n_steps, axis=1) + rng.normal(0, 1, (n_trials, n_steps, 1 + N_RING))
    lengths = rng.integers(3, n_steps + 1, n_trials)
    decision = np.arange(n_steps)[None, :] < lengths[:, None]
    decision[:, 0] = False
    last = lengths - 1
    y_hat_last = 1 / (1 + np.exp(-outputs[np.arange(n_trials), last]))
    expected = _yang_get_perf(y_hat_last, np.where(no_go, -1.0, directions))
    got = trial_scores(outputs, targets, decision, "ring")
    np.testing.assert_array_equal(got, expected)
    assert 0.2 < got.mean() < 0.8  # both outcomes occur: the comparison means something
    assert RING_TOLERANCE == pytest.approx(0.2 * math.pi)


@pytest.mark.parametrize("dt", [20, 10, 25])
def test_yang_cost_mask_restates_add_c_mask(dt):
    go = np.array([40, 13, 7])
    n_steps = 60
    lengths = np.array([60, 30, 20])
    mask = np.arange(n_steps)[None, :] < lengths[:, None]
    decision = (np.arange(n_steps)[None, :] >= go[:, None]) & mask
    weight = yang_cost_mask(decision, mask, dt)
    for row, (start, length) in enumerate(zip(go, lengths, strict=True)):
        expected = np.zeros(n_steps)  # Yang: post first, then pre over it; first int(100/dt) steps unchecked
        expected[start + int(100 / dt):length] = 5.0
        expected[int(100 / dt):start] = 1.0
        np.testing.assert_array_equal(weight[row], expected)


def test_yang_cost_mask_needs_a_response():
    mask = np.ones((2, 5), dtype=bool)
    decision = np.zeros((2, 5), dtype=bool)
    decision[0, 3:] = True
    with pytest.raises(ValueError, match="decision"):
        yang_cost_mask(decision, mask, 20)


def test_yang_squared_error_restates_the_lsq_loss():
    rng = np.random.default_rng(2)
    n_trials, n_steps, n_outputs = 5, 9, 1 + N_RING
    outputs = rng.normal(size=(n_trials, n_steps, n_outputs))
    targets = rng.uniform(0.05, 0.85, (n_trials, n_steps, n_outputs))
    mask = np.arange(n_steps)[None, :] < np.array([9, 7, 5, 9, 3])[:, None]
    weight = np.where(mask, rng.choice([0.0, 1.0, 5.0], (n_trials, n_steps)), 0.0)
    cost = weight[..., None] * np.r_[2.0, np.ones(n_outputs - 1)]
    squared = (cost * (targets - 1 / (1 + np.exp(-outputs)))) ** 2
    expected = squared[mask].sum() / (mask.sum() * n_outputs)  # mean over valid steps and outputs
    got = yang_squared_error(torch.from_numpy(outputs), torch.from_numpy(targets), torch.from_numpy(weight),
                             torch.from_numpy(mask))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    # padding changes nothing: the same trials padded with 4 more steps
    pad = ((0, 0), (0, 4))
    padded = yang_squared_error(*(torch.from_numpy(np.pad(a, pad + ((0, 0),) * (a.ndim - 2)))
                                  for a in (outputs, targets, weight, mask)))
    assert float(padded) == pytest.approx(expected, rel=1e-12)


def test_the_faithful_preset_trains_with_yangs_settings():
    config = TrainConfig.for_task(task="yang19-faithful", n_units=16, n_nonlinear=2)
    assert config.weighting == "yang" and config.batch_size == 64 and config.lr == 1e-4  # Yang: 1e-3 (see docs)
    assert config.optimizer == "adam" and config.schedule == "constant" and config.bank_size == 0
    assert config.task_kwargs == {"trials_per_draw": 64}
    # σ_rec = 0.05 in Yang's update h ← (1 − α) h + α f(· + √(2/α) σ_rec ξ), α = 0.2: √(2α)·σ_rec on the state
    assert config.noise_std == pytest.approx(0.2 * math.sqrt(2 / 0.2) * 0.05) == YANG_RECURRENT_NOISE
    given = TrainConfig.for_task(task="yang19-faithful", batch_size=32, noise_std=0.0,
                                 task_kwargs={"tasks": ["go", "dm1"]}, n_nonlinear=2)
    assert given.batch_size == 32 and given.noise_std == 0.0 and given.weighting == "yang"
    assert given.task_kwargs == {"trials_per_draw": 64, "tasks": ["go", "dm1"]}
    assert TrainConfig.for_task(task="stimulus-selection") == TrainConfig()
    assert set(TASK_TRAINING) <= set(envs.list_tasks())


def test_stimulus_selection_ceiling_is_the_ideal_observers_accuracy():
    env = StimulusSelection(cohs=(0.05, 0.1), sigma=0.3)
    batch = envs.sample_trials(env, 4000, seed=5)
    predicted = env.ideal_observer_accuracy(batch)
    # The observer itself: the sign of the summed relevant input over the stimulus epoch.
    stimulus = batch.epoch_mask("stimulus")
    channel = np.where(batch.conditions["context"] == "motion", 3, 4)
    relevant = batch.inputs[np.arange(batch.n_trials), :, channel]
    observed = (np.sign((relevant * stimulus).sum(axis=1)) == np.sign(batch.conditions["coh_relevant"])).mean()
    standard_error = math.sqrt(predicted.mean() * (1 - predicted.mean()) / batch.n_trials)
    assert abs(observed - predicted.mean()) < 4 * standard_error
    assert 0.6 < predicted.mean() < 0.95  # a ceiling that binds
    assert envs.ideal_observer_accuracy(env, batch) is not None


def test_evaluate_reports_the_ceiling(tmp_path, capsys):
    from neuroalrnn.training import Trainer
    from neuroalrnn.workflows.cli import main

    config = TrainConfig(n_units=8, n_nonlinear=2, steps=2, batch_size=4, eval_every=2, eval_trials=8,
                         checkpoint_every=2, bank_size=8, seed=1, data_workers=0)
    Trainer(config, tmp_path / "run", progress=False).fit()
    assert main(["evaluate", str(tmp_path / "run"), "--trials", "200"]) == 0
    out = capsys.readouterr().out
    assert "ideal observer:" in out
    import json

    summary = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert 0.5 < summary["ceiling"] <= 1.0
    assert summary["ceiling_by_task"] == {"stimulus-selection": summary["ceiling"]}


def _logits(probabilities: np.ndarray) -> np.ndarray:
    return np.log(probabilities / (1 - probabilities))


def test_ring_outcome_tells_the_error_kinds():
    from neuroalrnn.envs.yang.ring import ring_choice_correct, ring_outcome

    def respond(direction):  # a response bump at `direction`, not fixating
        output = _yang_target(direction)
        output[0] = 0.05
        return output

    fixate = _yang_target(None)
    shown = np.array([[0.0, np.pi]] * 6)  # a decision between stimuli at 0 and π; the answer is 0
    outputs = np.stack([respond(0.1), fixate, respond(np.pi - 0.1), respond(np.pi / 2), respond(0.0), fixate])
    targets = np.stack([_yang_target(0.0)] * 4 + [fixate, fixate])
    kinds = ring_outcome(outputs, targets, shown)
    assert kinds.tolist() == ["correct", "withheld", "distractor", "elsewhere", "responded", "correct"]
    # an anti task shows one stimulus and answers opposite it: responding at the stimulus is the distractor
    assert ring_outcome(respond(0.0), _yang_target(np.pi), np.array([0.0, np.nan])).item() == "distractor"
    assert ring_outcome(respond(np.pi / 2), _yang_target(0.0)).item() == "elsewhere"  # nothing shown: no lure

    rng = np.random.default_rng(3)  # "correct" is exactly Yang's get_perf, whatever the outputs
    probabilities = np.stack([respond(a) for a in rng.uniform(0, 2 * np.pi, 300)])
    probabilities[:, 0] = rng.uniform(0.1, 0.9, 300)
    targets = np.stack([_yang_target(None if rng.random() < 0.2 else d) for d in rng.uniform(0, 2 * np.pi, 300)])
    kinds = ring_outcome(probabilities, targets, rng.uniform(0, 2 * np.pi, (300, 2)))
    np.testing.assert_array_equal(kinds == "correct", ring_choice_correct(probabilities, targets))
    assert {"correct", "withheld", "distractor", "elsewhere", "responded"} == set(kinds.tolist())


def test_congruence_and_outcomes_of_a_network_that_follows_the_unattended_modality():
    """A "network" answering the unattended modality's stronger stimulus: right on congruent trials only."""
    from neuroalrnn.evaluation import accuracy_by, accuracy_by_congruence, outcomes_by_task
    from neuroalrnn.evaluation.simulate import trials_dataset
    from neuroalrnn.models import ALRNN

    env = envs.make("yang19-faithful", tasks=["ctxdm1", "ctxdm2"])
    batch = envs.sample_trials(env, 300, seed=4, task_name="yang19-faithful")
    c = batch.conditions
    other = np.where(c["modality"] == 1, 2, 1)
    favoured_first = np.choose(other - 1, [c["stim1_mod1_strength"] - c["stim2_mod1_strength"],
                                           c["stim1_mod2_strength"] - c["stim2_mod2_strength"]]) > 0
    answer = np.where(favoured_first, c["stim1_theta"], c["stim2_theta"])
    response = np.stack([_yang_target(a) for a in answer])
    response[:, 0] = 0.05
    outputs = np.repeat(_logits(response)[:, None, :], batch.n_steps, axis=1).astype(np.float32)
    model = ALRNN(batch.inputs.shape[-1], 4, outputs.shape[-1], n_nonlinear=1)
    trials = trials_dataset(batch, outputs, np.zeros((batch.n_trials, batch.n_steps, 4), np.float32), model, seed=4)

    congruence = accuracy_by_congruence(trials)
    assert set(congruence) == {"ctxdm1", "ctxdm2"}
    for row in congruence.values():
        assert (row["congruent"], row["conflict"]) == (1.0, 0.0) and row["n_conflict"] > 30
    kinds = outcomes_by_task(trials)
    accuracy = accuracy_by(trials, "task").to_series()
    for task, fractions in kinds.items():
        assert sum(fractions.values()) == pytest.approx(1.0)
        assert fractions["correct"] == pytest.approx(accuracy[task])
        assert fractions["distractor"] == pytest.approx(1 - accuracy[task])  # every error picks the other stimulus
    assert accuracy_by_congruence(trials.drop_vars("modality")) == {}


def test_evaluate_prints_yangs_per_task_scores_error_kinds_and_congruence(tmp_path, capsys):
    import json

    from neuroalrnn.training import Trainer
    from neuroalrnn.workflows.cli import main

    config = TrainConfig(task="yang19-faithful", task_kwargs={"tasks": ["go", "dm1", "ctxdm1"]}, n_units=8,
                         n_nonlinear=2, steps=2, batch_size=4, eval_every=2, eval_trials=8, checkpoint_every=2,
                         seed=1, data_workers=0)
    Trainer(config, tmp_path / "run", progress=False).fit()
    assert main(["evaluate", str(tmp_path / "run"), "--trials", "120"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert summary["scoring"] == "ring" and set(summary["outcomes_by_task"]) == {"go", "dm1", "ctxdm1"}
    for task, fractions in summary["outcomes_by_task"].items():
        assert fractions["correct"] == pytest.approx(summary["accuracy_by_task"][task])
        assert sum(fractions.values()) == pytest.approx(1.0)
    assert set(summary["accuracy_by_congruence"]) == {"ctxdm1"}
    assert "ideal observer  of ideal" in out and "errors by kind" in out
    header = next(line for line in out.splitlines() if "withheld" in line)
    assert header.split() == ["task", "withheld", "distractor", "elsewhere", "responded"]
    assert "ctxdm1  congruent" in out
