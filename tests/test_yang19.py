"""Tests of the Yang et al. (2019) suite and of MultiTaskEnv.

Each task's targets are checked against the task rule restated here from the
paper, computed from what the trial shows (the stimulus peak for go/anti, the
trial's directions and coherences for DM and matching tasks), not from
NeuroGym's labels. Epoch orders and canonical epochs are written out by hand.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from neurogym.envs.collections import yang19 as neurogym_yang19

import neuroalrnn.envs
from neuroalrnn.envs.epochs import CANONICAL_EPOCHS
from neuroalrnn.envs.multitask import MultiTaskEnv, seed_trial_env
from neuroalrnn.envs.stimulus_selection import StimulusSelection
from neuroalrnn.envs.trials import sample_trials
from neuroalrnn.envs.yang19 import PRESETS, YANG19_TASKS, yang19_suite

TASKS = (
    "go", "rtgo", "dlygo", "anti", "rtanti", "dlyanti",
    "dm1", "dm2", "ctxdm1", "ctxdm2", "multidm",
    "dlydm1", "dlydm2", "ctxdlydm1", "ctxdlydm2", "multidlydm",
    "dms", "dnms", "dmc", "dnmc",
)  # fmt: skip
REACH = {"go": "stimulus", "dlygo": "stimulus", "rtgo": "decision",
         "anti": "stimulus", "dlyanti": "stimulus", "rtanti": "decision"}  # fmt: skip  # epoch showing the stimulus
# Modality weights of the DM tasks (Yang et al.): dm1/ctxdm1 use modality 1 only, multi* both.
DM_WEIGHTS = {
    "dm1": (1, 0), "dm2": (0, 1), "ctxdm1": (1, 0), "ctxdm2": (0, 1), "multidm": (1, 1),
    "dlydm1": (1, 0), "dlydm2": (0, 1), "ctxdlydm1": (1, 0), "ctxdlydm2": (0, 1), "multidlydm": (1, 1),
}  # fmt: skip
MATCH = {"dms": ("sample", True), "dnms": ("sample", False), "dmc": ("category", True), "dnmc": ("category", False)}
EPOCHS = {
    **dict.fromkeys(("go", "anti"), ("fixation", "stimulus", "decision")),
    **dict.fromkeys(("rtgo", "rtanti"), ("fixation", "decision")),
    **dict.fromkeys(("dlygo", "dlyanti"), ("fixation", "stimulus", "delay", "decision")),
    **dict.fromkeys(("dm1", "dm2", "ctxdm1", "ctxdm2", "multidm"), ("fixation", "stimulus", "decision")),
    **dict.fromkeys(
        ("dlydm1", "dlydm2", "ctxdlydm1", "ctxdlydm2", "multidlydm"),
        ("fixation", "stim1", "delay", "stim2", "decision"),
    ),
    **dict.fromkeys(("dms", "dnms", "dmc", "dnmc"), ("fixation", "sample", "delay", "test", "decision")),
}
CANONICAL = {"fixation": "fixation", "stimulus": "stimulus", "stim1": "stimulus", "stim2": "stimulus",
             "sample": "stimulus", "test": "stimulus", "delay": "delay", "decision": "decision"}  # fmt: skip
SIZES = {"fast": (16, 53, 17), "faithful": (32, 85, 33)}  # dim_ring, inputs, outputs
PACKAGE_DIRS = tuple(Path(m.__file__).parent.resolve() for m in (neuroalrnn.envs,))
ACCEPTED_CHECKER_WARNINGS = (
    # inputs carry Gaussian noise: the observation box is unbounded by design
    r"A Box observation space minimum value is -infinity",
    r"A Box observation space maximum value is -?infinity",
    # MultiTaskEnv must define the legacy `seed()`: NeuroGym's samplers call it to re-seed everything
    r"Official support for the `seed` function is dropped",
)


@pytest.fixture(scope="module")
def suites() -> dict[str, MultiTaskEnv]:
    return {preset: yang19_suite(preset=preset) for preset in PRESETS}


def ring_index(theta: float, dim_ring: int) -> int:
    return int(round(theta / (2 * np.pi / dim_ring))) % dim_ring


def category(theta: float) -> int:
    """Yang et al.'s DMC categories: 0 for directions in (0, π), 1 for (π, 2π); None on the boundary."""
    theta = np.mod(theta, 2 * np.pi)
    if np.isclose(theta, 0) or np.isclose(theta, np.pi) or np.isclose(theta, 2 * np.pi):
        return None
    return 0 if theta < np.pi else 1


def expected_target(task: str, trial: dict, env: MultiTaskEnv, dim_ring: int) -> int:
    """The correct action in the decision epoch by Yang et al.'s rule (0 = keep fixating)."""
    if task in REACH:
        shown = env.ob[env.start_ind[REACH[task]] : env.end_ind[REACH[task]]]
        channels = slice(1, 1 + dim_ring) if trial["modality"] == 1 else slice(1 + dim_ring, 1 + 2 * dim_ring)
        peak = int(np.argmax(shown[0, channels]))
        direction = (peak + dim_ring // 2) % dim_ring if "anti" in task else peak
        return direction + 1
    if task in DM_WEIGHTS:
        evidence = sum(
            weight * (trial.get(f"coh1_mod{m}", 0.0) - trial.get(f"coh2_mod{m}", 0.0))
            for m, weight in enumerate(DM_WEIGHTS[task], 1)
        )
        assert abs(evidence) > 1e-6, f"{task}: tied evidence {trial}"
        return ring_index(trial["theta1"] if evidence > 0 else trial["theta2"], dim_ring) + 1
    match_to, go_on_match = MATCH[task]
    sample, test = trial["sample_theta"], trial["test_theta"]
    if match_to == "sample":
        match = ring_index(sample, dim_ring) == ring_index(test, dim_ring)
    else:
        assert category(sample) is not None and category(test) is not None, f"{task}: on the boundary {trial}"
        match = category(sample) == category(test)
    assert trial["ground_truth"] == ("match" if match else "non-match")
    return ring_index(test, dim_ring) + 1 if match == go_on_match else 0


# ------------------------------------------------------------------ sizes and names


@pytest.mark.parametrize("preset", list(PRESETS))
def test_sizes_and_labels(suites, preset):
    env = suites[preset]
    dim_ring, n_inputs, n_outputs = SIZES[preset]
    assert env.observation_space.shape == (n_inputs,) and env.action_space.n == n_outputs
    assert env.task_names == TASKS == YANG19_TASKS
    assert env.input_names == (
        "fixation", *(f"mod1_{i}" for i in range(dim_ring)), *(f"mod2_{i}" for i in range(dim_ring)),
        *(f"rule_{task}" for task in TASKS),
    )  # fmt: skip
    assert env.output_names == ("fixate", *(f"choice_{i}" for i in range(dim_ring)))
    assert env.dt == PRESETS[preset]["dt"]


def test_subset_keeps_given_order_and_sizes():
    for _ in range(5):  # epochs are learnt from a probe trial of a random modality: same answer every time
        env = yang19_suite(["dmc", "go", "dm2"])
        assert env.task_names == ("dmc", "go", "dm2")
        assert env.observation_space.shape == (33 + 3,)
        assert env.input_names[-3:] == ("rule_dmc", "rule_go", "rule_dm2")
        assert env.epoch_names == ("fixation", "sample", "stimulus", "delay", "test", "decision")
    assert yang19_suite(["go"]).epoch_names == ("fixation", "stimulus", "decision"), "go's 0 ms delay is no epoch"
    env.seed(0)
    drawn = {env.new_trial()["task"] for _ in range(60)}
    assert drawn == {"dmc", "go", "dm2"}
    assert yang19_suite("dnms").task_names == ("dnms",)


def test_overrides_replace_the_preset():
    env = yang19_suite(["dms", "go"], preset="faithful", dt=50, dim_ring=8)
    assert env.dt == 50 and env.observation_space.shape == (1 + 16 + 2,) and env.action_space.n == 9
    env.seed(0)
    env.new_trial(task="dms")
    assert len(env.ob) == (300 + 500 + 1000 + 500 + 900) // 50


def test_canonical_mapping_covers_every_epoch(suites):
    for env in suites.values():
        assert env.epoch_names == ("fixation", "stimulus", "stim1", "sample", "delay", "stim2", "test", "decision")
        assert env.canonical_epochs == CANONICAL
        assert set(env.canonical_epochs.values()) <= set(CANONICAL_EPOCHS)


# ------------------------------------------------------------ trial structure, per task


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("task", TASKS)
def test_epochs_targets_and_inputs(suites, task, preset):
    env = suites[preset]
    dim_ring = SIZES[preset][0]
    rule = np.eye(len(TASKS))[TASKS.index(task)]
    env.seed(TASKS.index(task))
    for _ in range(12 if preset == "fast" else 4):
        trial = env.new_trial(task=task)
        assert trial["task"] == task and env.task == task
        n_steps = len(env.ob)
        assert env.ob.shape == (n_steps, SIZES[preset][1]) and env.ob.dtype == np.float32
        assert env.gt.shape == (n_steps,) and np.issubdtype(env.gt.dtype, np.integer)

        # epochs: the task's own names, contiguous, in order, covering the trial
        order = sorted(env.start_ind, key=env.start_ind.get)
        assert tuple(order) == EPOCHS[task]
        assert env.start_ind["fixation"] == 0 and env.end_ind["decision"] == n_steps
        for before, after in zip(order, order[1:], strict=False):
            assert env.end_ind[before] == env.start_ind[after] > env.start_ind[before]
        decision = env.start_ind["decision"]

        # targets: fixate before the decision epoch, then the rule's answer throughout it
        np.testing.assert_array_equal(env.gt[:decision], 0)
        np.testing.assert_array_equal(env.gt[decision:], expected_target(task, trial, env, dim_ring))

        # inputs: fixation is the go cue; the rule input names the task on every step
        np.testing.assert_array_equal(env.ob[:decision, 0], 1.0)
        np.testing.assert_array_equal(env.ob[decision:, 0], 0.0)
        np.testing.assert_array_equal(env.ob[:, 1 + 2 * dim_ring :], np.tile(rule, (n_steps, 1)))


@pytest.mark.parametrize("task", [t for t in TASKS if t in REACH or t in MATCH])
@pytest.mark.parametrize("modality", [1, 2])
def test_pinned_modality_shows_the_stimulus_there_only(suites, task, modality):
    env = suites["fast"]
    env.seed(1)
    trial = env.new_trial(task=task, modality=modality)
    assert trial["modality"] == modality
    stimulus = env.ob[:, 1:33].reshape(len(env.ob), 2, 16)
    assert np.abs(stimulus[:, modality - 1]).max() > 0.5
    np.testing.assert_array_equal(stimulus[:, 2 - modality], 0.0)


def test_modality_is_drawn_independently_not_alternated(suites):
    env = suites["fast"]
    env.seed(2)
    modalities = np.array([env.new_trial(task="go")["modality"] for _ in range(200)])
    assert set(modalities) == {1, 2}
    assert 70 < (modalities == 1).sum() < 130
    assert (modalities[1:] == modalities[:-1]).any(), "NeuroGym's RandomSchedule over two envs alternates"


# --------------------------------------------------------- ambiguous trials drawn again


def test_neurogym_dmc_mislabels_the_boundary():
    """Why we redraw: NeuroGym's sample at π is category 0, its test at π category 1."""
    env = neurogym_yang19._DelayMatch1DResponse(dim_ring=16, matchto="category")  # noqa: SLF001
    env.seed(0)
    trials = [env.new_trial(ground_truth="non-match") for _ in range(2000)]
    same_direction = [t for t in trials if np.isclose(t["sample_theta"], t["test_theta"])]
    assert same_direction, "a 'non-match' whose sample and test are the same direction"
    assert all(np.isclose(t["sample_theta"], np.pi) for t in same_direction)


@pytest.mark.parametrize("task", ["dmc", "dnmc"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_dmc_never_draws_boundary_directions_and_labels_follow_categories(suites, task, preset):
    env = suites[preset]
    dim_ring = SIZES[preset][0]
    env.seed(3)
    samples, tests, labels = [], [], []
    for _ in range(400):
        trial = env.new_trial(task=task)
        samples.append(ring_index(trial["sample_theta"], dim_ring))
        tests.append(ring_index(trial["test_theta"], dim_ring))
        labels.append(trial["ground_truth"])
        np.testing.assert_array_equal(env.gt[env.start_ind["decision"] :], expected_target(task, trial, env, dim_ring))
    off_boundary = set(range(dim_ring)) - {0, dim_ring // 2}
    assert set(samples) <= off_boundary and set(tests) <= off_boundary
    if preset == "fast":  # 400 trials cover all 14 directions
        assert set(samples) == off_boundary and set(tests) == off_boundary
    assert 150 < labels.count("match") < 250


@pytest.mark.parametrize("task", ["multidm", "multidlydm"])
def test_multisensory_dm_never_ties(suites, task):
    env = suites["fast"]
    env.seed(4)
    for _ in range(300):
        trial = env.new_trial(task=task)
        gap = sum(trial[f"coh1_mod{m}"] - trial[f"coh2_mod{m}"] for m in (1, 2))
        assert abs(gap) > 1e-6
    raw = getattr(neurogym_yang19, task)(dim_ring=16)
    raw.seed(4)
    raw_trials = [raw.new_trial() for _ in range(300)]
    raw_gaps = [sum(t[f"coh1_mod{m}"] - t[f"coh2_mod{m}"] for m in (1, 2)) for t in raw_trials]
    assert min(abs(g) for g in raw_gaps) < 1e-6, "NeuroGym itself draws ties (1/8 or 1/6 of trials)"


# --------------------------------------------------------------- sampling and weights


def test_sample_trials_reads_the_suite():
    env = yang19_suite()
    batch = sample_trials(env, 60, seed=11)
    assert batch.inputs.shape[::2] == (60, 53)
    assert batch.epoch_names == env.epoch_names
    assert batch.input_names == env.input_names and batch.output_names == env.output_names
    assert batch.task_names == TASKS and "task" not in batch.conditions
    env.seed(11)
    for i in range(batch.n_trials):
        trial = env.new_trial()
        n_steps = len(env.ob)
        assert batch.task_names[batch.task[i]] == trial["task"]
        np.testing.assert_array_equal(batch.inputs[i, :n_steps], env.ob)
        np.testing.assert_array_equal(batch.targets[i, :n_steps], env.gt)
        assert not batch.mask[i, n_steps:].any()
        for name in env.start_ind:
            where = slice(env.start_ind[name], env.end_ind[name])
            np.testing.assert_array_equal(batch.epoch[i, where], env.epoch_names.index(name))
    assert (batch.epoch[batch.mask] >= 0).all()


def test_weights_are_respected():
    env = yang19_suite(["go", "dms", "dm1", "anti"], weights={"go": 3, "anti": 0})
    np.testing.assert_allclose(env.probabilities, [0.6, 0.2, 0.2, 0.0])
    assert dict(env.weights) == {"go": 3.0, "dms": 1.0, "dm1": 1.0, "anti": 0.0}
    batch = sample_trials(env, 1500, seed=5)
    counts = {task: int((batch.task == code).sum()) for code, task in enumerate(batch.task_names)}
    assert counts["anti"] == 0
    for task, p in zip(env.task_names[:3], (0.6, 0.2, 0.2), strict=True):
        assert abs(counts[task] - 1500 * p) < 4 * np.sqrt(1500 * p * (1 - p)), counts
    env.seed(0)
    assert env.new_trial(task="anti")["task"] == "anti", "a zero-weight task can still be pinned"


def test_uniform_by_default():
    env = yang19_suite(["go", "dm1"])
    np.testing.assert_allclose(env.probabilities, [0.5, 0.5])
    batch = sample_trials(env, 800, seed=6)
    assert batch.task_names == ("go", "dm1")
    assert abs((batch.task == 0).sum() - 400) < 4 * np.sqrt(200)


# ------------------------------------------------------------------ reproducibility


def draw(env: MultiTaskEnv, n_trials: int) -> list[tuple]:
    return [(env.new_trial(), env.ob.copy(), env.gt.copy(), dict(env.start_ind)) for _ in range(n_trials)]


def assert_same(first: list[tuple], second: list[tuple]) -> None:
    for (trial_a, ob_a, gt_a, epochs_a), (trial_b, ob_b, gt_b, epochs_b) in zip(first, second, strict=True):
        assert trial_a.keys() == trial_b.keys() and all(np.all(trial_a[k] == trial_b[k]) for k in trial_a)
        np.testing.assert_array_equal(ob_a, ob_b)
        np.testing.assert_array_equal(gt_a, gt_b)
        assert epochs_a == epochs_b


def test_same_seed_same_trials_even_after_use():
    first, second = yang19_suite(), yang19_suite()
    second.seed(99)
    draw(second, 7)  # a different history must not matter
    first.seed(5)
    second.seed(5)
    trials = draw(first, 50)
    assert_same(trials, draw(second, 50))
    assert len({t["task"] for t, *_ in trials}) > 10


def test_reset_seed_equals_seed():
    first, second = yang19_suite(), yang19_suite()
    first.reset(seed=8)
    second.reset(seed=8)
    assert_same(draw(first, 20), draw(second, 20))


def test_other_seed_other_trials():
    first, second = yang19_suite(), yang19_suite()
    first.seed(5)
    second.seed(6)
    trials_a, trials_b = draw(first, 50), draw(second, 50)
    assert [t["task"] for t, *_ in trials_a] != [t["task"] for t, *_ in trials_b]
    go_a, go_b = [first.new_trial(task="go")["ground_truth"] for _ in range(20)], [
        second.new_trial(task="go")["ground_truth"] for _ in range(20)
    ]
    assert go_a != go_b


def test_raw_neurogym_schedule_envs_are_seeded_fully():
    """NeuroGym's own ScheduleEnvs (go, dms) inside a MultiTaskEnv: history and modality pairing don't leak."""
    def build():
        return MultiTaskEnv({"go": neurogym_yang19.go(dim_ring=16), "dms": neurogym_yang19.dms(dim_ring=16)})

    first, second = build(), build()
    second.seed(1)
    draw(second, 5)
    first.seed(2)
    second.seed(2)
    assert_same(draw(first, 30), draw(second, 30))

    go = neurogym_yang19.go(dim_ring=16)
    seed_trial_env(go, 0)
    assert go.envs[0].unwrapped.rng.rand() != go.envs[1].unwrapped.rng.rand(), "modalities need their own seeds"


# ---------------------------------------------------------------- gymnasium contract


def run_check_env(env) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)  # no render modes
    for warning in caught:
        message = str(warning.message)
        origin = Path(warning.filename).resolve()
        assert not any(origin.is_relative_to(d) for d in PACKAGE_DIRS), f"{origin}: {message}"
        assert any(re.search(p, message) for p in ACCEPTED_CHECKER_WARNINGS), message


def test_check_env_passes_for_the_suite(suites):
    run_check_env(suites["fast"])


@pytest.mark.parametrize("task", TASKS)
def test_check_env_passes_for_each_task(task):
    run_check_env(yang19_suite([task]))


def test_stepping_with_the_correct_action_is_rewarded():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = yang19_suite()
        env.reset(seed=0)
        rewards, finished = [], []
        answer = int(env.gt[env.start_ind["decision"]])
        for _ in range(1500):
            _, reward, terminated, truncated, info = env.step(int(env.gt_now))
            assert not terminated and not truncated and info["task"] in TASKS
            rewards.append(reward)
            if info["new_trial"]:
                finished.append((answer, reward, info["performance"]))
                answer = int(env.gt[env.start_ind["decision"]])
    assert len(finished) > 50 and min(rewards) >= 0
    for answer, reward, performance in finished:
        # a choice is rewarded; a no-go trial (answer 0) runs out unrewarded, as in NeuroGym
        assert (reward, performance) == ((1.0, 1) if answer else (0.0, 0))


def test_breaking_fixation_is_penalised():
    env = yang19_suite(["go"])
    env.reset(seed=0)
    _, reward, _, _, info = env.step(3)
    assert reward == pytest.approx(-0.1) and not info["new_trial"]


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: yang19_suite(["go", "nope"]), r"unknown tasks \['nope'\]; valid tasks: go, rtgo, .*dnmc"),
        (lambda: yang19_suite([]), "at least one task"),
        (lambda: yang19_suite(["go", "go"]), "repeat"),
        (lambda: yang19_suite(preset="slow"), "unknown preset 'slow'; valid presets: fast, faithful"),
        (lambda: yang19_suite(timing={"delay": 0}), r"unknown options \['timing'\]; valid: dt, dim_ring, sigma"),
        (lambda: yang19_suite(dim_ring=15), "dim_ring must be an even integer"),
        (lambda: yang19_suite(dim_ring=122), "dim_ring=122 breaks"),
        (lambda: yang19_suite(dt=0), r"^dt must be a finite number > 0, got 0$"),
        (lambda: yang19_suite(sigma=-1), "sigma"),
        (lambda: yang19_suite(weights={"go": 1, "bogus": 2, "dmx": 1}),
         r"unknown tasks \['bogus', 'dmx'\]; valid tasks: \['go', .*'dnmc'\]"),
        (lambda: yang19_suite(["go", "dms"], weights={"go": -1}), r"weights\['go'\] must be a finite number >= 0, got -1"),
        (lambda: yang19_suite(["go", "dms"], weights={"go": float("nan")}), r"weights\['go'\]"),
        (lambda: yang19_suite(["go", "dms"], weights={"go": 0, "dms": 0}), "must not all be zero"),
        (lambda: yang19_suite(["go"], weights=[1.0]), "weights must be a mapping"),
    ],
)
def test_bad_arguments_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unknown_task_or_modality_in_new_trial(suites):
    env = suites["fast"]
    with pytest.raises(ValueError, match=r"unknown task 'gogo'; valid tasks: \['go', 'rtgo'.*'dnmc'\]"):
        env.new_trial(task="gogo")
    with pytest.raises(ValueError, match=r"modality must be one of \[1, 2\], got 3"):
        env.new_trial(task="go", modality=3)
    with pytest.raises(ValueError, match="no modality choice"):
        env.new_trial(task="dm1", modality=1)


@pytest.mark.parametrize(
    ("envs", "message"),
    [
        (lambda: {"a": neurogym_yang19.dm1(dt=100), "b": neurogym_yang19.dm1(dt=50)},
         r"task 'b' has dt=50, but 'a' has dt=100"),
        (lambda: {"a": neurogym_yang19.dm1(dim_ring=16), "b": neurogym_yang19.dm1(dim_ring=8)},
         r"task 'b' has 17 observation dimensions, but 'a' has 33"),
        (lambda: {"a": StimulusSelection(dt=100), "b": neurogym_yang19._Reach(dim_ring=4)},  # noqa: SLF001
         r"task 'b' has 5 actions, but 'a' has 3"),
        (lambda: {}, "non-empty mapping"),
        (lambda: {"a": object()}, "task 'a' is not a NeuroGym TrialEnv"),
    ],
)
def test_multitask_rejects_mismatched_tasks(envs, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskEnv(envs())


# ---------------------------------------------------------- MultiTaskEnv on other tasks


def test_multitask_merges_epochs_and_names_of_any_tasks():
    env = MultiTaskEnv(
        {"selection": StimulusSelection(dt=100), "dm": neurogym_yang19.dm1(dt=100, dim_ring=2)},
        canonical_epochs={"decision": "decision"},
    )
    assert env.epoch_names == ("fixation", "context", "stimulus", "delay", "decision")
    assert env.canonical_epochs == {
        "fixation": "fixation", "context": "context", "stimulus": "stimulus", "delay": "delay", "decision": "decision",
    }  # fmt: skip
    assert env.input_names == (*StimulusSelection().input_names, "rule_selection", "rule_dm")
    assert env.output_names == StimulusSelection().output_names
    env.seed(0)
    trial = env.new_trial(task="selection", context="colour", coh_motion=0.5, coh_colour=-0.5)
    assert trial["task"] == "selection" and trial["ground_truth"] == 1
    np.testing.assert_array_equal(env.ob[:, -2:], np.tile([1.0, 0.0], (len(env.ob), 1)))
    batch = sample_trials(env, 20, seed=0)
    assert batch.inputs.shape[2] == 7 and set(batch.task) == {0, 1}


def test_a_deep_copy_continues_the_same_trials():
    import copy

    env = yang19_suite(["go", "dmc", "multidm"])
    env.seed(3)
    twin = copy.deepcopy(env)
    assert_same(draw(env, 10), draw(twin, 10))
