"""Tests of the classic sequence benchmarks: adding problem, copy memory, flip-flop, sequential digits.

Each target is recomputed from the trial's own inputs, independently of the
task's code: the sum of the values where the marker is on, the item shown at
each stimulus step, the last pulse sign per channel by a plain loop, the
scikit-learn label and pixels of the image shown. The task interface the
sampler and trainer read (``TaskEnv``: epochs, target kind, scoring,
tolerance, names) is checked for every task.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete
from gymnasium.utils.env_checker import check_env
from sklearn.datasets import load_digits

import neuroalrnn.envs
from neuroalrnn.envs.adding import AddingProblem
from neuroalrnn.envs.copy_memory import CopyMemory
from neuroalrnn.envs.epochs import CANONICAL_EPOCHS
from neuroalrnn.envs.flipflop import FlipFlop
from neuroalrnn.envs.sequential_digits import SequentialDigits, split_indices
from neuroalrnn.envs.trials import sample_trials, trial_scores

TASKS = {
    "adding": (AddingProblem, {}),
    "copy-memory": (CopyMemory, {}),
    "flipflop": (FlipFlop, {}),
    "digits-rows": (SequentialDigits, {}),
    "digits-pixels": (SequentialDigits, {"mode": "pixels"}),
}
ENVS_DIR = Path(neuroalrnn.envs.__file__).parent.resolve()


def make_env(name: str, seed: int = 0, **overrides):
    cls, options = TASKS[name]
    env = cls(**{**options, **overrides})
    env.seed(seed)
    return env


def epoch_lengths(env) -> dict[str, int]:
    return {name: env.end_ind[name] - env.start_ind[name] for name in env.start_ind}


def epoch_slice(env, name: str) -> slice:
    return slice(env.start_ind[name], env.end_ind[name])


# ----------------------------------------------------------- shared contract


@pytest.mark.parametrize("name", TASKS)
def test_epochs_are_contiguous_in_declared_order(name):
    env = make_env(name)
    env.new_trial()
    order = sorted(env.start_ind, key=env.start_ind.get)
    assert tuple(order) == env.epoch_names
    assert "decision" in env.epoch_names
    assert env.start_ind[order[0]] == 0
    for before, after in zip(order, order[1:], strict=False):
        assert env.end_ind[before] == env.start_ind[after]
    assert all(length >= 1 for length in epoch_lengths(env).values())
    assert env.end_ind[order[-1]] == len(env.ob) == len(env.gt)
    assert set(env.canonical_epochs) == set(env.epoch_names)
    assert set(env.canonical_epochs.values()) <= set(CANONICAL_EPOCHS)
    assert env.canonical_epochs["decision"] == "decision"


@pytest.mark.parametrize("name", TASKS)
def test_attribute_contract(name):
    env = make_env(name)
    trial = env.new_trial()
    assert env.ob.dtype == np.float32
    assert env.ob.shape == (len(env.ob), len(env.input_names))
    assert np.all((env.ob >= env.observation_space.low) & (env.ob <= env.observation_space.high))
    if env.target_kind == "class":
        assert isinstance(env.action_space, Discrete)
        assert env.scoring in ("choice", "steps")
        assert env.gt.shape == (len(env.ob),) and np.issubdtype(env.gt.dtype, np.integer)
        assert len(env.output_names) == env.action_space.n
        assert env.output_names[0] == "blank"
        decision = epoch_slice(env, "decision")
        assert np.all(np.delete(env.gt, np.arange(len(env.gt))[decision]) == 0)
        assert np.all(env.gt[decision] > 0)
        assert env.tolerance == 0.0  # TaskEnv's default: unused by class targets
    else:
        assert env.target_kind == "regression" and env.scoring == "regression"
        assert isinstance(env.action_space, Box)
        assert env.gt.shape == (len(env.ob), *env.action_space.shape) and env.gt.dtype == np.float32
        assert len(env.output_names) == env.action_space.shape[0]
        assert isinstance(env.tolerance, float) and env.tolerance > 0
    assert set(env.condition_names) <= set(trial)


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_trials_other_seed_other_trials(name):
    first, again, other = (make_env(name, seed) for seed in (3, 3, 4))
    obs_first, obs_other = [], []
    for _ in range(4):
        trials = [env.new_trial() for env in (first, again, other)]
        np.testing.assert_equal(trials[0], trials[1])
        np.testing.assert_array_equal(first.ob, again.ob)
        np.testing.assert_array_equal(first.gt, again.gt)
        obs_first.append(first.ob.copy())
        obs_other.append(other.ob.copy())
    assert not np.array_equal(np.concatenate(obs_first), np.concatenate(obs_other))


@pytest.mark.parametrize("name", TASKS)
def test_seeded_reset_is_reproducible(name):
    env = make_env(name)
    env.reset(seed=5)
    first = env.ob.copy()
    env.new_trial()  # move the generator on
    env.reset(seed=5)
    np.testing.assert_array_equal(env.ob, first)


# Warnings check_env raises about these envs, each accepted on purpose:
ACCEPTED_CHECKER_WARNINGS = (
    # neurogym's TrialEnv (not our tasks) defines the legacy `seed()` method.
    r"Official support for the `seed` function is dropped",
    # the adding problem's output is a sum of two numbers in [0, 1], so its box is [0, 2]
    r"For Box action spaces, we recommend using a symmetric and normalized space",
)


@pytest.mark.parametrize("name", TASKS)
def test_check_env_passes_with_only_accepted_warnings(name):
    env = make_env(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)  # no render modes
    for warning in caught:
        message = str(warning.message)
        origin = Path(warning.filename).resolve()
        assert not origin.is_relative_to(ENVS_DIR), f"{origin}: {message}"
        assert origin.name == "env_checker.py", f"unexpected warning from {origin}: {message}"
        assert any(re.search(pattern, message) for pattern in ACCEPTED_CHECKER_WARNINGS), message
        if "normalized" in message:
            assert name == "adding"


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("answer", ["right", "wrong"])
def test_stepping_scores_each_trial_by_the_tasks_rule(name, answer):
    env = make_env(name)
    env.reset(seed=0)
    info = {"new_trial": False}
    while not info["new_trial"]:  # finish the trial reset started; the next one starts at step 0
        _, _, _, _, info = env.step(env.action_space.sample())
    gt = env.gt.copy()
    rewards = []
    for t in range(len(gt)):
        if env.target_kind == "class":
            action = gt[t] if answer == "right" else (gt[t] + 1) % env.action_space.n
        else:
            action = gt[t] if answer == "right" else gt[t] - np.float32(2 * env.tolerance)
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert not terminated and not truncated
    assert info["new_trial"]
    assert info["performance"] == (1.0 if answer == "right" else 0.0)
    decision = np.zeros(len(gt), dtype=bool)
    decision[env.unwrapped.start_ind["decision"] : env.unwrapped.end_ind["decision"]] = True
    assert np.array_equal(np.asarray(rewards) > 0, decision & (answer == "right"))


@pytest.mark.parametrize(
    ("name", "options", "lengths"),
    [
        ("adding", {}, {"stimulus": 30, "decision": 1}),
        ("adding", {"seq_len": 10, "decision_steps": 3}, {"stimulus": 10, "decision": 3}),
        ("adding", {"seq_len": 10, "dt": 20}, {"stimulus": 10, "decision": 1}),
        ("copy-memory", {}, {"stimulus": 5, "delay": 10, "decision": 5}),
        ("copy-memory", {"seq_len": 3, "delay": 7}, {"stimulus": 3, "delay": 7, "decision": 3}),
        ("flipflop", {}, {"stimulus": 1, "decision": 40}),
        ("flipflop", {"seq_len": 25, "n_bits": 5}, {"stimulus": 1, "decision": 25}),
        ("digits-rows", {}, {"stimulus": 8, "decision": 3}),
        ("digits-pixels", {"decision_steps": 1}, {"stimulus": 64, "decision": 1}),
    ],
)
def test_parameters_set_the_epoch_lengths(name, options, lengths):
    env = make_env(name, **options)
    env.new_trial()
    assert epoch_lengths(env) == lengths
    assert env.dt == options.get("dt", 10)


@pytest.mark.parametrize(
    ("cls", "options", "named"),
    [
        (AddingProblem, {"seq_len": 1}, "seq_len"),
        (AddingProblem, {"seq_len": 2.5}, "seq_len"),
        (AddingProblem, {"seq_len": True}, "seq_len"),
        (AddingProblem, {"decision_steps": 0}, "decision_steps"),
        (AddingProblem, {"tolerance": 0.0}, "tolerance"),
        (AddingProblem, {"tolerance": math.nan}, "tolerance"),
        (AddingProblem, {"dt": 0}, "dt"),
        (AddingProblem, {"dt": 2.5}, "dt"),
        (CopyMemory, {"seq_len": 0}, "seq_len"),
        (CopyMemory, {"n_symbols": 1}, "n_symbols"),
        (CopyMemory, {"delay": 0}, "delay"),
        (FlipFlop, {"n_bits": 0}, "n_bits"),
        (FlipFlop, {"seq_len": 0}, "seq_len"),
        (FlipFlop, {"pulse_prob": 1.5}, "pulse_prob"),
        (FlipFlop, {"pulse_prob": -0.1}, "pulse_prob"),
        (FlipFlop, {"tolerance": -1.0}, "tolerance"),
        (SequentialDigits, {"mode": "columns"}, "mode"),
        (SequentialDigits, {"split": "validation"}, "split"),
        (SequentialDigits, {"decision_steps": 0}, "decision_steps"),
    ],
)
def test_bad_parameters_are_errors_naming_the_parameter(cls, options, named):
    with pytest.raises(ValueError, match=rf"^{named} must be .*, got {re.escape(repr(options[named]))}"):
        cls(**options)


@pytest.mark.parametrize(
    ("name", "conditions", "named"),
    [
        ("adding", {"first_position": 5, "second_position": 3}, "position"),
        ("adding", {"first_position": 1.0}, "first_position"),
        ("adding", {"second_value": 1.5}, "second_value"),
        ("adding", {"sum": 1.0}, "sum"),
        ("copy-memory", {"items": (1, 2, 3)}, "items"),
        ("copy-memory", {"items": (0, 1, 2, 3, 4)}, "items"),
        ("copy-memory", {"items": (1, 2, 3, 4, 5)}, "items"),
        ("flipflop", {"pulses": np.zeros((41, 3), dtype=int)}, "pulses"),
        ("flipflop", {"pulses": np.ones((40, 3), dtype=int)}, "pulses"),
        ("flipflop", {"pulses": np.full((41, 3), 2)}, "pulses"),
        ("digits-rows", {"image_index": int(split_indices("test")[0])}, "image_index"),
        ("digits-rows", {"digit": 10}, "digit"),
        ("digits-rows", {"digit": 1, "image_index": 0}, "image_index"),
    ],
)
def test_bad_pinned_conditions_are_errors(name, conditions, named):
    with pytest.raises(ValueError, match=named):
        make_env(name).new_trial(**conditions)


# --------------------------------------------------------------- adding


@pytest.mark.parametrize("seq_len", [2, 7, 30])
def test_adding_target_is_the_sum_of_the_marked_values(seq_len):
    env = make_env("adding", seq_len=seq_len, decision_steps=2)
    for _ in range(50):
        trial = env.new_trial()
        stimulus, decision = epoch_slice(env, "stimulus"), epoch_slice(env, "decision")
        value, marker, go = env.ob[:, 0], env.ob[:, 1], env.ob[:, 2]
        marked = np.flatnonzero(marker)
        assert len(marked) == 2 and marked[0] < seq_len // 2 <= marked[1] < seq_len  # one in each half
        assert np.all((value[stimulus] >= 0) & (value[stimulus] <= 1))
        np.testing.assert_array_equal(go, np.r_[np.zeros(seq_len), np.ones(2)])
        np.testing.assert_array_equal(env.ob[decision, :2], 0.0)
        expected = value[marked].astype(np.float64).sum()
        np.testing.assert_allclose(env.gt[decision, 0], expected, rtol=1e-6)
        np.testing.assert_array_equal(env.gt[stimulus], 0.0)
        assert trial["sum"] == pytest.approx(expected)
        assert (trial["first_position"], trial["second_position"]) == tuple(marked)
        assert trial["seq_len"] == seq_len


def test_adding_pinned_conditions():
    env = make_env("adding", seq_len=10)
    trial = env.new_trial(first_position=0, second_position=9, first_value=0.25, second_value=1.0)
    np.testing.assert_array_equal(np.flatnonzero(env.ob[:, 1]), [0, 9])
    np.testing.assert_array_equal(env.ob[[0, 9], 0], [0.25, 1.0])
    assert trial["sum"] == 1.25
    np.testing.assert_array_equal(env.gt[-1], [1.25])


# ---------------------------------------------------------------- copy memory


@pytest.mark.parametrize(("seq_len", "n_symbols", "delay"), [(5, 4, 10), (1, 2, 1), (8, 6, 3)])
def test_copy_targets_are_the_stimulus_items_in_order(seq_len, n_symbols, delay):
    env = make_env("copy-memory", seq_len=seq_len, n_symbols=n_symbols, delay=delay)
    for _ in range(30):
        trial = env.new_trial()
        stimulus, delay_steps, decision = (epoch_slice(env, e) for e in ("stimulus", "delay", "decision"))
        items_in, go = env.ob[:, :n_symbols], env.ob[:, n_symbols]
        np.testing.assert_array_equal(items_in[stimulus].sum(axis=1), 1.0)  # one-hot
        shown = items_in[stimulus].argmax(axis=1) + 1
        np.testing.assert_array_equal(env.gt[decision], shown)
        np.testing.assert_array_equal(env.gt[: decision.start], 0)
        np.testing.assert_array_equal(env.ob[delay_steps], 0.0)
        np.testing.assert_array_equal(items_in[decision], 0.0)
        np.testing.assert_array_equal(go, np.arange(len(go)) >= decision.start)
        assert trial["items"] == tuple(shown)
        assert [trial[f"item_{k}"] for k in range(seq_len)] == list(shown)


def test_copy_pinned_items():
    env = make_env("copy-memory")
    trial = env.new_trial(items=(4, 1, 1, 3, 2))
    np.testing.assert_array_equal(env.gt[-5:], [4, 1, 1, 3, 2])
    assert trial["items"] == (4, 1, 1, 3, 2)


# ---------------------------------------------------------------- flip-flop


def signs_of_earlier_pulses(pulses: np.ndarray) -> np.ndarray:
    """(time, channel): the sign of the latest pulse at a step before t, 0 before any."""
    memory = np.zeros(pulses.shape)
    held = np.zeros(pulses.shape[1])
    for t, row in enumerate(pulses):
        memory[t] = held
        for channel, pulse in enumerate(row):
            if pulse != 0:
                held[channel] = np.sign(pulse)
    return memory


@pytest.mark.parametrize(("n_bits", "seq_len", "pulse_prob"), [(3, 40, 0.05), (1, 10, 0.5), (4, 20, 0.0)])
def test_flipflop_targets_hold_the_last_earlier_pulse_sign(n_bits, seq_len, pulse_prob):
    env = make_env("flipflop", n_bits=n_bits, seq_len=seq_len, pulse_prob=pulse_prob)
    for _ in range(30):
        trial = env.new_trial()
        assert env.ob.shape == (1 + seq_len, n_bits)
        assert np.isin(env.ob, (-1.0, 0.0, 1.0)).all()
        assert np.all(env.ob[0] != 0)  # every channel starts with a pulse
        expected = signs_of_earlier_pulses(env.ob)
        np.testing.assert_array_equal(env.gt, expected)
        np.testing.assert_array_equal(env.gt[0], 0.0)
        assert np.all(np.abs(env.gt[1:]) == 1.0)  # every memory is defined in the decision epoch
        np.testing.assert_array_equal(trial["pulses"], env.ob)
        assert trial["n_pulses"] == np.count_nonzero(env.ob[1:])
        assert trial["n_flips"] == np.count_nonzero(expected[2:] != expected[1:-1])


def test_flipflop_pulse_rate_and_signs():
    env = make_env("flipflop", n_bits=3, seq_len=40, pulse_prob=0.1)
    pulses = np.stack([env.new_trial() and env.ob[1:] for _ in range(100)])  # 12,000 chances
    rate = np.count_nonzero(pulses) / pulses.size
    assert abs(rate - 0.1) < 0.015
    assert abs(np.mean(pulses[pulses != 0] > 0) - 0.5) < 0.05


def test_flipflop_pinned_pulses():
    env = make_env("flipflop", n_bits=2, seq_len=4)
    pulses = np.array([[1, -1], [0, 0], [-1, 0], [0, 1], [1, 1]])
    trial = env.new_trial(pulses=pulses)
    # one step behind the pulses
    np.testing.assert_array_equal(env.gt, [[0, 0], [1, -1], [1, -1], [-1, -1], [-1, 1]])
    assert trial["n_pulses"] == 4 and trial["n_flips"] == 2


# ---------------------------------------------------------- sequential digits


@pytest.fixture(scope="module")
def sklearn_digits():
    return load_digits()


@pytest.mark.parametrize("mode", ["rows", "pixels"])
def test_digit_inputs_reproduce_the_sklearn_image_and_target_is_its_label(mode, sklearn_digits):
    env = make_env("digits-rows", mode=mode)
    for _ in range(20):
        trial = env.new_trial()
        stimulus, decision = epoch_slice(env, "stimulus"), epoch_slice(env, "decision")
        index = trial["image_index"]
        image = env.ob[stimulus, :-1].reshape(8, 8)
        np.testing.assert_array_equal(image, (sklearn_digits.images[index] / 16).astype(np.float32))
        label = int(sklearn_digits.target[index])
        assert trial["digit"] == label and trial["ground_truth"] == label + 1
        np.testing.assert_array_equal(env.gt[decision], label + 1)
        np.testing.assert_array_equal(env.gt[stimulus], 0)
        np.testing.assert_array_equal(env.ob[:, -1], np.arange(len(env.ob)) >= decision.start)  # go
        np.testing.assert_array_equal(env.ob[decision, :-1], 0.0)
        assert env.output_names[label + 1] == f"digit_{label}"


def test_digit_splits_are_disjoint_fixed_and_cover_every_image(sklearn_digits):
    train, test = split_indices("train"), split_indices("test")
    assert len(train) == 1438 and len(test) == 359
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(len(sklearn_digits.target)))
    # fixed: the last 20 % of a permutation drawn with seed 0
    np.testing.assert_array_equal(test, np.sort(np.random.RandomState(0).permutation(1797)[-359:]))
    for split in (train, test):
        assert set(sklearn_digits.target[split]) == set(range(10))


@pytest.mark.parametrize("split", ["train", "test"])
def test_digit_trials_come_from_their_split(split):
    env = make_env("digits-rows", split=split)
    shown = {env.new_trial()["image_index"] for _ in range(200)}
    assert shown <= set(split_indices(split))
    assert len(shown) > 100


def test_digit_pinned_digit_and_image(sklearn_digits):
    env = make_env("digits-rows")
    for digit in range(10):
        trial = env.new_trial(digit=digit)
        assert sklearn_digits.target[trial["image_index"]] == digit
        assert trial["image_index"] in split_indices("train")
    index = int(split_indices("train")[7])
    assert env.new_trial(image_index=index)["image_index"] == index


# ------------------------------------------------- sampling and scoring


@pytest.mark.parametrize("name", TASKS)
def test_sample_trials_pads_the_env_trials(name):
    batch = sample_trials(make_env(name), 6, seed=2)
    env = make_env(name, seed=2)
    assert batch.target_kind == env.target_kind and batch.scoring == env.scoring
    assert batch.tolerance == getattr(env, "tolerance", 0.0)
    assert batch.epoch_names == env.epoch_names
    assert batch.input_names == env.input_names and batch.output_names == env.output_names
    assert batch.canonical_epochs == env.canonical_epochs
    if env.target_kind == "class":
        assert batch.targets.dtype == np.int64 and batch.targets.ndim == 2
    else:
        assert batch.targets.dtype == np.float32 and batch.targets.shape[2] == len(env.output_names)
    for i in range(batch.n_trials):
        trial = env.new_trial()
        np.testing.assert_array_equal(batch.inputs[i], env.ob)
        np.testing.assert_array_equal(batch.targets[i], env.gt)
        for key in env.condition_names:
            if np.ndim(trial[key]) == 0:
                assert batch.conditions[key][i] == trial[key]
    # perfect outputs score 1 on every trial
    if env.target_kind == "class":
        perfect = np.eye(len(env.output_names), dtype=np.float32)[batch.targets]
    else:
        perfect = batch.targets
    np.testing.assert_array_equal(batch.scores(perfect), 1.0)


@pytest.mark.parametrize("name", TASKS)
def test_online_performance_equals_trial_scores(name):
    env = make_env(name)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    info = {"new_trial": False}
    while not info["new_trial"]:
        _, _, _, _, info = env.step(env.action_space.sample())
    seen = []
    for _ in range(12):
        gt = env.gt.copy()
        miss = rng.uniform(size=gt.shape) < rng.choice([0.0, 0.2, 0.9])
        if env.target_kind == "class":
            outputs = rng.normal(size=(len(gt), len(env.output_names))).astype(np.float32)
            outputs[np.arange(len(gt)), gt] += np.where(miss, 0.0, 10.0)
        else:
            outputs = gt + np.float32(env.tolerance) * np.where(miss, 1.5, 0.5).astype(np.float32)
        for t in range(len(gt)):
            action = outputs[t].argmax() if env.target_kind == "class" else outputs[t]
            _, _, _, _, info = env.step(action)
        decision = np.zeros((1, len(gt)), dtype=bool)
        decision[0, env.unwrapped.start_ind["decision"] : env.unwrapped.end_ind["decision"]] = True
        expected = trial_scores(outputs[None], gt[None], decision, env.scoring, getattr(env, "tolerance", 0.0))
        assert info["performance"] == pytest.approx(expected[0])
        seen.append(info["performance"])
    assert len(set(seen)) > 1
