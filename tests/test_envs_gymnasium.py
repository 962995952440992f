"""Our tasks as citizens of Gymnasium and NeuroGym.

Every task of ours is registered with Gymnasium when ``neuroalrnn.envs`` is
imported, and passes what NeuroGym's own environment test asks of its
environments (its ``_test_run``, ``_test_trialenv`` and ``_test_seeding``:
run with random actions, a dict per trial, tags from NeuroGym's vocabulary,
the same seed giving the same run), restated here.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from neurogym.core import TrialEnv
from neurogym.utils.info import all_tags

import neuroalrnn.envs
from neuroalrnn.envs import StimulusSelection, describe_subtasks, gymnasium_id, list_tasks, make
from neuroalrnn.envs.adding import AddingProblem
from neuroalrnn.envs.base import TaskEnv, task_interface
from neuroalrnn.envs.copy_memory import CopyMemory
from neuroalrnn.envs.flipflop import FlipFlop
from neuroalrnn.envs.multitask import MultiTaskEnv
from neuroalrnn.envs.registry import NEUROGYM_PREFIX
from neuroalrnn.envs.sequential_digits import SequentialDigits
from neuroalrnn.envs.yang19 import YANG19_TASKS

OUR_TASKS = [name for name in list_tasks() if not name.startswith(NEUROGYM_PREFIX)]
CLASSES = {
    "stimulus-selection": StimulusSelection,
    "yang19": MultiTaskEnv,
    "yang19-faithful": MultiTaskEnv,
    "adding": AddingProblem,
    "copy-memory": CopyMemory,
    "flipflop": FlipFlop,
    "sequential-digits": SequentialDigits,
}
IDS = {
    "stimulus-selection": "neuroalrnn/StimulusSelection-v0",
    "yang19": "neuroalrnn/Yang19-v0",
    "yang19-faithful": "neuroalrnn/Yang19Faithful-v0",
    "adding": "neuroalrnn/Adding-v0",
    "copy-memory": "neuroalrnn/CopyMemory-v0",
    "flipflop": "neuroalrnn/FlipFlop-v0",
    "sequential-digits": "neuroalrnn/SequentialDigits-v0",
}
ENVS_DIR = Path(neuroalrnn.envs.__file__).parent.resolve()
N_STEPS = 300  # NeuroGym's _test_run runs 100; a faithful Yang et al. trial lasts up to ~210 steps (dt 20 ms)
SEED = 0

# Warnings check_env raises about our envs, each accepted on purpose:
ACCEPTED_CHECKER_WARNINGS = (
    # neurogym's TrialEnv (not our tasks) defines the legacy `seed()` method.
    r"Official support for the `seed` function is dropped",
    # noisy inputs and the multi-task env's observations are unbounded by design
    r"A Box observation space minimum value is -infinity",
    r"A Box observation space maximum value is -?infinity",
    # the adding problem's output is a sum of two numbers in [0, 1], so its box is [0, 2]
    r"For Box action spaces, we recommend using a symmetric and normalized space",
)


def test_every_task_has_a_class_and_an_id_here():
    assert set(OUR_TASKS) == set(CLASSES) == set(IDS)


# ------------------------------------------------------------- registration


@pytest.mark.parametrize("name", OUR_TASKS)
def test_gymnasium_id_is_registered_on_import(name):
    assert gymnasium_id(name) == IDS[name]
    assert IDS[name] in gymnasium.registry


@pytest.mark.parametrize("name", OUR_TASKS)
def test_gymnasium_make_builds_our_class_and_passes_check_env(name):
    env = gymnasium.make(IDS[name])
    assert type(env.unwrapped) is CLASSES[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)  # the tasks have no render modes
    for warning in caught:
        message, origin = str(warning.message), Path(warning.filename).resolve()
        assert not origin.is_relative_to(ENVS_DIR), f"{origin}: {message}"
        assert any(re.search(pattern, message) for pattern in ACCEPTED_CHECKER_WARNINGS), message


def test_gymnasium_make_passes_options_and_keeps_the_suites_presets():
    assert gymnasium.make(IDS["stimulus-selection"], dt=25).unwrapped.dt == 25
    faithful = gymnasium.make(IDS["yang19-faithful"]).unwrapped
    assert (faithful.dt, len(faithful.input_names)) == (20, 85)
    subset = gymnasium.make(IDS["yang19"], tasks=["go", "dm1"]).unwrapped
    assert (subset.dt, subset.task_names) == (100, ("go", "dm1"))


@pytest.mark.parametrize("name", ["stimulus-selection", "flipflop"])
def test_gymnasium_make_and_our_make_give_the_same_trials(name):
    ours, theirs = make(name), gymnasium.make(IDS[name]).unwrapped
    ours.reset(seed=SEED)
    theirs.reset(seed=SEED)
    np.testing.assert_array_equal(ours.ob, theirs.ob)
    np.testing.assert_array_equal(ours.gt, theirs.gt)


def test_registering_again_changes_nothing_and_does_not_warn():
    before = {env_id: gymnasium.registry[env_id] for env_id in IDS.values()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neuroalrnn.envs.register_gymnasium_envs()
    assert all(gymnasium.registry[env_id] is spec for env_id, spec in before.items())


# ------------------------------------------------- NeuroGym's environment test


def _run(env, seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """NeuroGym's _test_run: reset, then random actions, resetting when an episode ends."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, rewards, infos = [], [], []
    for _ in range(N_STEPS):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        observations.append(observation)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            env.reset()
    return np.asarray(observations), np.asarray(rewards), infos


@pytest.mark.parametrize("name", OUR_TASKS)
def test_tags_are_neurogym_tags(name):
    env = gymnasium.make(IDS[name])
    tags = env.unwrapped.metadata["tags"]
    assert tags, "a task declares at least one tag"
    assert set(tags) <= set(all_tags()), sorted(set(tags) - set(all_tags()))


@pytest.mark.parametrize("name", OUR_TASKS)
def test_runs_with_random_actions_and_reports_each_trial(name):
    env = gymnasium.make(IDS[name])
    observations, rewards, infos = _run(env, SEED)
    assert observations.shape == (N_STEPS, *env.observation_space.shape)
    assert all(env.observation_space.contains(np.asarray(ob, dtype=np.float32)) for ob in observations)
    assert np.isfinite(rewards).all()
    for info in infos:
        assert {"new_trial", "gt"} <= info.keys()
        if info["new_trial"]:
            assert isinstance(info["trial"], dict) and "performance" in info
    assert any(info["new_trial"] for info in infos), f"no trial ended in {N_STEPS} steps"
    assert isinstance(env.unwrapped.new_trial(), dict)


@pytest.mark.parametrize("name", OUR_TASKS)
def test_the_same_seed_gives_the_same_run(name):
    first, again, other = (_run(gymnasium.make(IDS[name]), seed) for seed in (SEED, SEED, SEED + 1))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


# ----------------------------------------------------------- task interface


def test_our_tasks_declare_the_task_interface():
    for name in OUR_TASKS:
        assert isinstance(make(name).unwrapped, TaskEnv), name


def test_a_plain_neurogym_env_gets_the_declared_defaults():
    env = make("neurogym:PerceptualDecisionMaking-v0")
    assert isinstance(env, TrialEnv) and not isinstance(env, TaskEnv)
    interface = task_interface(env)
    assert (interface.target_kind, interface.scoring, interface.tolerance) == ("class", "choice", 0.0)
    assert (interface.epoch_names, interface.task_names, dict(interface.canonical_epochs)) == ((), (), {})
    # labels from the spaces' NeuroGym name dicts: {'fixation': 0, 'stimulus': [1, 2]}, {'fixation': 0, 'choice': [1, 2]}
    assert interface.input_names == ("fixation", "stimulus_0", "stimulus_1")
    assert interface.output_names == ("fixation", "choice_0", "choice_1")


def test_a_task_env_gives_what_it_declares():
    interface = task_interface(make("flipflop", n_bits=2, tolerance=0.25))
    assert (interface.target_kind, interface.scoring, interface.tolerance) == ("regression", "regression", 0.25)
    assert interface.epoch_names == ("stimulus", "decision")
    assert interface.input_names == ("pulse_0", "pulse_1")
    assert interface.output_names == ("memory_0", "memory_1")


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("copy-memory", {"scoring": "vote"}),
        ("copy-memory", {"target_kind": "label"}),
        ("copy-memory", {"scoring": "regression"}),
        ("adding", {"scoring": "choice"}),
    ],
)
def test_a_bad_declaration_is_named(name, declared):
    env = make(name)
    for attribute, value in declared.items():
        setattr(env, attribute, value)
    with pytest.raises(ValueError, match=rf"^{type(env).__name__} declares target_kind='{env.target_kind}', "):
        task_interface(env)


def test_multi_task_env_takes_the_scoring_its_tasks_share_and_refuses_a_mix():
    env = MultiTaskEnv({"a": make("copy-memory"), "b": make("copy-memory")})
    assert env.scoring == "steps"
    voted = type("VotedCopyMemory", (CopyMemory,), {"scoring": "choice"})()
    with pytest.raises(ValueError, match=r"share one scoring; they declare \{'a': 'steps', 'b': 'choice'\}"):
        MultiTaskEnv({"a": make("copy-memory"), "b": voted})


# --------------------------------------------------------- sub-task listing


@pytest.mark.parametrize("name", ["yang19", "yang19-faithful"])
def test_suites_describe_each_sub_task_in_order(name):
    described = describe_subtasks(name)
    assert tuple(described) == YANG19_TASKS == make(name).task_names
    assert all(isinstance(line, str) and line and "\n" not in line for line in described.values())
    assert "match" in described["dms"] and "modality 1" in described["ctxdm1"]


@pytest.mark.parametrize("name", [*(n for n in OUR_TASKS if not n.startswith("yang19")), "neurogym:GoNogo-v0"])
def test_single_tasks_have_no_sub_tasks(name):
    assert describe_subtasks(name) == {}


@pytest.mark.parametrize(("name", "listed"), [("yang20", "stimulus-selection"), ("neurogym:Nope-v0", "GoNogo-v0")])
def test_unknown_name_lists_the_valid_ones(name, listed):
    with pytest.raises(ValueError, match=re.escape(repr(name.removeprefix(NEUROGYM_PREFIX)))) as error:
        describe_subtasks(name)
    assert listed in str(error.value)
