"""Tests of neuroalrnn.envs: the stimulus-selection task, the registry and trial sampling.

Trial structure is checked against the task's documented layout with pinned
conditions (``new_trial(context=..., coh_motion=..., coh_colour=...)``) and
the default timing at dt = 50 ms written out by hand; sampled batches are
checked against trials drawn directly from the env with the same seed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import neuroalrnn
import neuroalrnn.envs
from neuroalrnn.envs import StimulusSelection, list_tasks, make, sample_trials

TASK = "stimulus-selection"
EPOCHS = ("fixation", "context", "stimulus", "delay", "decision")
# Default timing at dt = 50 ms: 300, 350, 750, {300, 450, 600}, 200 ms.
EPOCH_STEPS = {"fixation": 6, "context": 7, "stimulus": 15, "delay": {6, 9, 12}, "decision": 4}
FIXATION, CONTEXT_MOTION, CONTEXT_COLOUR, MOTION, COLOUR = range(5)
LEFT, RIGHT = 1, 2
PACKAGE_DIRS = tuple(Path(m.__file__).parent.resolve() for m in (neuroalrnn, neuroalrnn.envs))


# ------------------------------------------------------ gymnasium contract

# Warnings check_env raises about this env, each accepted on purpose:
ACCEPTED_CHECKER_WARNINGS = (
    # The inputs carry Gaussian noise, so the observation box is unbounded by design.
    r"A Box observation space minimum value is -infinity",
    r"A Box observation space maximum value is -?infinity",
    # neurogym's TrialEnv (not our task) defines the legacy `seed()` method.
    r"Official support for the `seed` function is dropped",
)


def test_check_env_passes_with_only_accepted_warnings():
    env = make(TASK)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)  # the task has no render modes

    for warning in caught:
        message = str(warning.message)
        origin = Path(warning.filename).resolve()
        assert not any(origin.is_relative_to(d) for d in PACKAGE_DIRS), f"{origin}: {message}"
        assert origin.name == "env_checker.py", f"unexpected warning from {origin}: {message}"
        assert any(re.search(p, message) for p in ACCEPTED_CHECKER_WARNINGS), message
    # The `seed` warning is attributed to neurogym only while our class does not define it.
    assert "seed" not in StimulusSelection.__dict__


def test_no_warnings_from_make_reset_step_and_sampling():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(TASK)
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(300):
            env.step(env.action_space.sample())
        env.unwrapped.new_trial(context="colour", coh_motion=0.15, coh_colour=-0.05)
        sample_trials(env, 4, seed=0)


def run_with_warnings_as_errors(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process that turns every warning but neurogym's own into an error."""
    prelude = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        # as in pyproject.toml: neurogym's own import-time deprecations are not ours
        "warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'neurogym.*')\n"
        "warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'pkg_resources.*')\n"
    )
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False)


def test_import_emits_no_warnings():
    result = run_with_warnings_as_errors(
        "import neuroalrnn.envs\nneuroalrnn.envs.make('stimulus-selection').reset(seed=0)\n"
    )
    assert result.returncode == 0, result.stderr


def test_gymnasium_id_with_module_prefix_imports_and_registers_in_a_fresh_process():
    result = run_with_warnings_as_errors(
        "import gymnasium\n"
        "env = gymnasium.make('neuroalrnn.envs:neuroalrnn/CopyMemory-v0')\n"
        "print(type(env.unwrapped).__name__)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CopyMemory"


# ---------------------------------------------------------------- registry


def test_make_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="nope") as error:
        make("nope")
    assert TASK in str(error.value)


def test_list_tasks_describes_stimulus_selection():
    tasks = list_tasks()
    assert TASK in tasks
    assert isinstance(tasks[TASK], str)
    assert "Mante" in tasks[TASK]


def test_make_returns_a_stimulus_selection_env():
    env = make(TASK, dt=25)
    assert isinstance(env.unwrapped, StimulusSelection)
    assert env.unwrapped.dt == 25


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bogus": 1}, "bogus"),
        ({"sigma": -0.1}, "sigma"),
        ({"cohs": (0.0, 0.5)}, "cohs"),
        ({"timing": {"response": 100}}, "response"),
    ],
)
def test_make_rejects_bad_options(options, named):
    with pytest.raises(ValueError, match=named):
        make(TASK, **options)


# --------------------------------------------------------- trial structure


def pinned_trial(context: str, coh_motion: float = 0.5, coh_colour: float = -0.5, **env_options):
    env = make(TASK, **env_options).unwrapped
    env.seed(0)
    trial = env.new_trial(context=context, coh_motion=coh_motion, coh_colour=coh_colour)
    return env, trial


def epoch_slices(env) -> dict[str, slice]:
    return {name: slice(env.start_ind[name], env.end_ind[name]) for name in env.start_ind}


@pytest.mark.parametrize("context", ["motion", "colour"])
def test_epochs_are_contiguous_in_order_with_default_durations(context):
    env, _ = pinned_trial(context)
    order = sorted(env.start_ind, key=env.start_ind.get)
    assert tuple(order) == EPOCHS
    assert env.start_ind["fixation"] == 0
    for before, after in zip(order, order[1:], strict=False):
        assert env.end_ind[before] == env.start_ind[after]
    assert env.end_ind["decision"] == len(env.ob) == len(env.gt)
    for name, steps in EPOCH_STEPS.items():
        length = env.end_ind[name] - env.start_ind[name]
        assert length in steps if isinstance(steps, set) else length == steps, name


@pytest.mark.parametrize("context", ["motion", "colour"])
def test_fixation_input_is_the_go_cue(context):
    env, _ = pinned_trial(context)
    epochs = epoch_slices(env)
    decision_start = env.start_ind["decision"]
    np.testing.assert_array_equal(env.ob[:decision_start, FIXATION], 1.0)
    np.testing.assert_array_equal(env.ob[epochs["decision"], FIXATION], 0.0)


@pytest.mark.parametrize(("context", "one_hot"), [("motion", [1.0, 0.0]), ("colour", [0.0, 1.0])])
def test_context_input_is_one_hot_from_cue_to_end(context, one_hot):
    env, _ = pinned_trial(context)
    cue = env.start_ind["context"]
    np.testing.assert_array_equal(env.ob[:cue, CONTEXT_MOTION : CONTEXT_COLOUR + 1], 0.0)
    np.testing.assert_array_equal(
        env.ob[cue:, CONTEXT_MOTION : CONTEXT_COLOUR + 1], np.tile(one_hot, (len(env.ob) - cue, 1))
    )


@pytest.mark.parametrize("context", ["motion", "colour"])
def test_evidence_only_during_stimulus(context):
    env, _ = pinned_trial(context)
    stimulus = epoch_slices(env)["stimulus"]
    outside = np.ones(len(env.ob), dtype=bool)
    outside[stimulus] = False
    np.testing.assert_array_equal(env.ob[outside][:, [MOTION, COLOUR]], 0.0)
    # inside, the noisy evidence is on, and on the side of its coherence
    assert np.all(env.ob[stimulus, [MOTION, COLOUR]] != 0.0)
    assert env.ob[stimulus, MOTION].mean() > 0 > env.ob[stimulus, COLOUR].mean()


@pytest.mark.parametrize(
    ("context", "coh_motion", "coh_colour", "answer"),
    [
        ("motion", 0.5, -0.5, RIGHT),
        ("colour", 0.5, -0.5, LEFT),
        ("motion", -0.15, 0.05, LEFT),
        ("colour", -0.15, 0.05, RIGHT),
    ],
)
def test_ground_truth_is_the_side_of_the_relevant_modality(context, coh_motion, coh_colour, answer):
    env, trial = pinned_trial(context, coh_motion, coh_colour)
    decision_start = env.start_ind["decision"]
    np.testing.assert_array_equal(env.gt[:decision_start], 0)
    np.testing.assert_array_equal(env.gt[decision_start:], answer)
    expected = {
        "context": context, "coh_motion": coh_motion, "coh_colour": coh_colour, "ground_truth": answer,
    }
    assert {key: trial[key] for key in expected} == expected
    assert set(StimulusSelection.condition_names) <= set(trial)


def test_context_flips_the_answer_for_the_same_evidence():
    motion_env, motion_trial = pinned_trial("motion", 0.5, -0.5)
    colour_env, colour_trial = pinned_trial("colour", 0.5, -0.5)
    assert motion_trial["ground_truth"] != colour_trial["ground_truth"]
    assert motion_env.gt[-1] != colour_env.gt[-1]


@pytest.mark.parametrize(("action", "reward"), [(LEFT, 1.0), (RIGHT, 0.0)])
def test_choice_in_decision_is_rewarded_and_ends_the_trial(action, reward):
    env = make(TASK)
    env.reset(seed=0)
    env.unwrapped.new_trial(context="colour", coh_motion=0.5, coh_colour=-0.5)  # answer: left
    for _ in range(env.unwrapped.start_ind["decision"]):
        _, r, terminated, truncated, info = env.step(0)
        assert r == 0.0 and not info["new_trial"]
    _, r, terminated, truncated, info = env.step(action)
    assert r == reward
    assert info["new_trial"] and info["performance"] == reward
    assert not terminated and not truncated


def test_breaking_fixation_is_penalised():
    env = make(TASK)
    env.reset(seed=0)
    env.unwrapped.new_trial(context="motion", coh_motion=0.5, coh_colour=-0.5)
    _, r, _, _, info = env.step(RIGHT)
    assert r == -0.1
    assert not info["new_trial"]


@pytest.mark.parametrize("bad", [{"context": "sound"}, {"context": "motion", "coh_motion": 0.0}])
def test_new_trial_rejects_bad_conditions(bad):
    env = make(TASK).unwrapped
    with pytest.raises(ValueError, match="context|coherence"):
        env.new_trial(**bad)


# ------------------------------------------------------------------- noise


@pytest.mark.parametrize(("coh_motion", "coh_colour"), [(0.5, -0.5), (-0.15, 0.05), (0.05, 0.15)])
def test_noiseless_stimulus_equals_the_coherence(coh_motion, coh_colour):
    env, _ = pinned_trial("motion", coh_motion, coh_colour, sigma=0.0)
    stimulus = epoch_slices(env)["stimulus"]
    np.testing.assert_array_equal(env.ob[stimulus, MOTION], np.float32(coh_motion))
    np.testing.assert_array_equal(env.ob[stimulus, COLOUR], np.float32(coh_colour))


@pytest.mark.parametrize("sigma", [None, 0.5], ids=["default", "0.5"])
def test_stimulus_noise_has_std_sigma_per_step(sigma):
    env = make(TASK) if sigma is None else make(TASK, sigma=sigma)
    expected = 0.2 if sigma is None else sigma
    batch = sample_trials(env, 200, seed=0)
    stimulus = batch.epoch_mask("stimulus")
    residuals = []
    for channel, condition in ((MOTION, "coh_motion"), (COLOUR, "coh_colour")):
        noise = batch.inputs[..., channel] - batch.conditions[condition][:, None]
        residuals.append(noise[stimulus].reshape(batch.n_trials, -1))
    noise = np.stack(residuals)  # (channel, trial, step): 6,000 samples
    assert abs(noise.std() - expected) < 0.05 * expected
    assert abs(noise.mean()) < 0.05 * expected
    # drawn independently per step: no lag-1 correlation
    lag1 = np.corrcoef(noise[..., :-1].ravel(), noise[..., 1:].ravel())[0, 1]
    assert abs(lag1) < 0.05


# -------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def batch():
    return sample_trials(make(TASK), 24, seed=7)


def test_batch_shapes_and_dtypes(batch):
    n_trials, n_steps = 24, batch.n_steps
    assert batch.n_trials == n_trials
    assert batch.inputs.shape == (n_trials, n_steps, 5) and batch.inputs.dtype == np.float32
    assert batch.targets.shape == (n_trials, n_steps) and batch.targets.dtype == np.int64
    assert batch.mask.shape == (n_trials, n_steps) and batch.mask.dtype == np.bool_
    assert batch.weight.shape == (n_trials, n_steps) and batch.weight.dtype == np.float32
    assert batch.epoch.shape == (n_trials, n_steps) and np.issubdtype(batch.epoch.dtype, np.integer)
    assert batch.task.shape == (n_trials,) and np.issubdtype(batch.task.dtype, np.integer)
    assert batch.epoch_names == EPOCHS
    assert batch.dt == 50
    assert len(batch.input_names) == 5 and len(batch.output_names) == 3
    assert n_steps == batch.mask.sum(axis=1).max()


def test_batch_padding(batch):
    lengths = batch.mask.sum(axis=1)
    assert len(np.unique(lengths)) > 1, "the variable delay should give trials of different lengths"
    # the mask is a prefix of each row
    np.testing.assert_array_equal(batch.mask, np.arange(batch.n_steps) < lengths[:, None])
    padding = ~batch.mask
    assert padding.any()
    np.testing.assert_array_equal(batch.weight[padding], 0.0)
    np.testing.assert_array_equal(batch.epoch[padding], -1)
    np.testing.assert_array_equal(batch.inputs[padding], 0.0)
    np.testing.assert_array_equal(batch.targets[padding], 0)
    assert (batch.epoch[batch.mask] >= 0).all()
    assert (batch.weight[batch.mask] > 0).all()


def test_batch_rows_are_the_env_trials_for_that_seed(batch):
    env = make(TASK).unwrapped
    env.seed(7)
    for i in range(batch.n_trials):
        trial = env.new_trial()
        length = len(env.ob)
        np.testing.assert_array_equal(batch.inputs[i, :length], env.ob)
        np.testing.assert_array_equal(batch.targets[i, :length], env.gt)
        for name, where in epoch_slices(env).items():
            np.testing.assert_array_equal(batch.epoch[i, where], EPOCHS.index(name))
        for key, value in trial.items():
            assert batch.conditions[key][i] == value


def test_conditions_recorded_and_consistent(batch):
    conditions = batch.conditions
    assert set(conditions) >= {"context", "coh_motion", "coh_colour", "ground_truth"}
    assert set(conditions) >= set(StimulusSelection.condition_names)
    for values in conditions.values():
        assert values.shape == (batch.n_trials,)
    assert set(conditions["context"]) == {"motion", "colour"}
    relevant = np.where(conditions["context"] == "motion", conditions["coh_motion"], conditions["coh_colour"])
    np.testing.assert_array_equal(conditions["ground_truth"], np.where(relevant > 0, RIGHT, LEFT))
    np.testing.assert_array_equal(batch.correct_choice(), conditions["ground_truth"])
    decision = batch.epoch_mask("decision")
    np.testing.assert_array_equal(
        batch.targets, np.where(decision, conditions["ground_truth"][:, None], 0)
    )


def test_same_seed_same_trials_other_seed_other_trials():
    first, again, other = (sample_trials(make(TASK), 12, seed=s) for s in (3, 3, 4))
    for field in ("inputs", "targets", "mask", "weight", "epoch", "task"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert first.conditions.keys() == again.conditions.keys()
    for key in first.conditions:
        np.testing.assert_array_equal(first.conditions[key], again.conditions[key])
    same_shape = first.inputs.shape == other.inputs.shape
    assert not same_shape or not np.array_equal(first.inputs, other.inputs)


def test_epoch_weighting_gives_each_epoch_equal_total_weight(batch):
    lengths = batch.mask.sum(axis=1)
    per_epoch = np.stack(
        [(batch.weight * batch.epoch_mask(name)).sum(axis=1) for name in EPOCHS], axis=1
    )  # (trial, epoch)
    equal_share = np.tile(lengths[:, None] / len(EPOCHS), (1, len(EPOCHS)))
    np.testing.assert_allclose(per_epoch, equal_share, rtol=1e-6)
    np.testing.assert_allclose(batch.weight.sum(axis=1), lengths, rtol=1e-6)
    # within an epoch the weight is constant: fixation (6 steps) vs decision (4 steps)
    i = 0
    fixation_weight = batch.weight[i, batch.epoch_mask("fixation")[i]]
    np.testing.assert_allclose(fixation_weight, lengths[i] / (5 * 6), rtol=1e-6)
    decision_weight = batch.weight[i, batch.epoch_mask("decision")[i]]
    np.testing.assert_allclose(decision_weight, lengths[i] / (5 * 4), rtol=1e-6)


def test_uniform_weighting_is_the_mask():
    batch = sample_trials(make(TASK), 8, seed=1, weighting="uniform")
    np.testing.assert_array_equal(batch.weight, batch.mask.astype(np.float32))


@pytest.mark.parametrize("weighting", ["epoch", "uniform"])
def test_decision_weight_multiplies_decision_steps(weighting):
    plain = sample_trials(make(TASK), 10, seed=2, weighting=weighting)
    heavy = sample_trials(make(TASK), 10, seed=2, weighting=weighting, decision_weight=30.0)
    decision = plain.epoch_mask("decision")
    np.testing.assert_allclose(heavy.weight[decision], 30.0 * plain.weight[decision], rtol=1e-6)
    np.testing.assert_array_equal(heavy.weight[~decision], plain.weight[~decision])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": -3}, "n_trials"),
        ({"n_trials": 2.5}, "n_trials"),
        ({"n_trials": True}, "n_trials"),
        ({"n_trials": 4, "weighting": "per-step"}, "weighting"),
        ({"n_trials": 4, "decision_weight": -1.0}, "decision_weight"),
        # NaN passes a `< 0` check and would turn every decision step's loss into NaN
        ({"n_trials": 4, "decision_weight": float("nan")}, "decision_weight"),
    ],
    ids=["n_trials=0", "n_trials=-3", "n_trials=2.5", "n_trials=True", "weighting", "decision_weight<0",
         "decision_weight=nan"],
)
def test_sample_trials_rejects_bad_arguments(options, named):
    with pytest.raises(ValueError, match=named):
        sample_trials(make(TASK), seed=0, **options)


def test_unknown_epoch_names_are_rejected(batch):
    with pytest.raises(ValueError, match="response"):
        batch.epoch_mask("response")
    with pytest.raises(ValueError, match="response"):
        batch.correct_choice("response")


# ---------------------------------------------------------------- any NeuroGym task
@pytest.mark.parametrize("env_id", ["PerceptualDecisionMaking-v0", "DelayMatchSample-v0", "ContextDecisionMaking-v0"])
def test_neurogym_tasks_sample_with_their_epochs(env_id):
    from neuroalrnn.envs import sample_trials

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(f"neurogym:{env_id}")
        batch = sample_trials(env, 8, seed=0)
    assert "decision" in batch.epoch_names
    assert batch.mask.any(axis=1).all()
    # the target during the decision epoch is a choice, elsewhere mostly fixation
    assert (batch.correct_choice() > 0).all()


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("Nope-v0", "unknown NeuroGym environment 'Nope-v0'; valid: .*PerceptualDecisionMaking-v0"),
        ("Bandit-v0", "defines no ground truth"),
        ("ReadySetGo-v0", "no 'decision' epoch"),
    ],
)
def test_neurogym_tasks_that_cannot_train_are_clear_errors(env_id, message):
    with pytest.raises(ValueError, match=message):
        make(f"neurogym:{env_id}")


def test_neurogym_is_listed():
    assert "neurogym:<EnvId>" in list_tasks()
