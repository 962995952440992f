"""Tests of the Yang et al. (2019) tasks re-implemented from the authors' code (``yang19-faithful``).

Each fact is checked against an answer restated here from Yang's ``task.py``
(``mode='random'``), not read back from the env: the noiseless inputs and the
targets are rebuilt from each trial's recorded conditions and epochs with the
formulas written out below; timings, directions, strengths and modalities are
checked against Yang's sets and ranges over many trials; the ideal observer's
closed form is checked against a Monte-Carlo run of that observer on the
env's own noisy inputs.
"""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest

import neuroalrnn.envs
from neuroalrnn.envs import make, sample_trials
from neuroalrnn.envs.multitask import MultiTaskEnv
from neuroalrnn.envs.yang import ideal_observer_accuracy, yang19_faithful_suite, yang19_faithful_task
from neuroalrnn.envs.yang.ring import population_vector, ring_choice_correct
from neuroalrnn.envs.yang19 import YANG19_TASKS

N_RING, DT = 32, 20
SIGMA = 0.01 * np.sqrt(2 / (DT / 100))  # Yang: sigma_x·sqrt(2/alpha), alpha = dt/tau
REACH = ("go", "rtgo", "dlygo", "anti", "rtanti", "dlyanti")
DM = ("dm1", "dm2", "ctxdm1", "ctxdm2", "multidm")
DELAYED_DM = ("dlydm1", "dlydm2", "ctxdlydm1", "ctxdlydm2", "multidlydm")
MATCHING = ("dms", "dnms", "dmc", "dnmc")
ATTENDED = {"dm1": (1,), "dm2": (2,), "ctxdm1": (1,), "ctxdm2": (2,), "multidm": (1, 2)}
ATTENDED |= {delayed: ATTENDED[plain] for delayed, plain in zip(DELAYED_DM, DM, strict=True)}
FIXATION_TO_END = ("rtgo", "rtanti", *MATCHING)  # Yang's fix_in without an offset
# Yang's epoch durations in ms, restated from task.py: ("u", low, high) uniform, a set, or a constant.
MATCH_TIMING = {"fixation": {200, 400, 600}, "sample": {200, 400, 600}, "delay": {200, 400, 800, 1600}}
TIMING = {
    **dict.fromkeys(("go", "anti"), {"fixation": ("u", 300, 700), "stimulus": ("u", 500, 1500), "decision": 500}),
    **dict.fromkeys(("rtgo", "rtanti"), {"fixation": ("u", 500, 2500), "decision": 500}),
    **dict.fromkeys(("dlygo", "dlyanti"), {
        "fixation": {300, 500, 700}, "stimulus": {200, 400, 600}, "delay": {200, 400, 800, 1600}, "decision": 500,
    }),
    **dict.fromkeys(DM, {"fixation": ("u", 100, 400), "stimulus": {400, 800, 1600}, "decision": 500}),
    **dict.fromkeys(DELAYED_DM, {
        "fixation": {200, 400, 600}, "stim1": {200, 400, 600}, "delay1": {200, 400, 800, 1600},
        "stim2": {200, 400, 600}, "delay2": ("u", 100, 300), "decision": 500,
    }),
    **dict.fromkeys(("dms", "dnms"), {**MATCH_TIMING, "decision": 500}),
    **dict.fromkeys(("dmc", "dnmc"), {**MATCH_TIMING, "decision": {200, 400, 600}}),
}  # fmt: skip
COHERENCES = {**dict.fromkeys(DM, (0.01, 0.02, 0.04, 0.08)), **dict.fromkeys(DELAYED_DM, (0.08, 0.16, 0.32))}
CATEGORY_DIRECTIONS = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9]) * np.pi


def circular(a, b):
    d = np.abs(np.asarray(a) - np.asarray(b)) % (2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def yang_bump(theta: float) -> np.ndarray:
    """Yang's add_x_loc / add_y_loc (lsq): 0.8·exp(−d²/2), d = circular distance to 2πk/32 in units of π/8."""
    d = circular(theta, np.arange(N_RING) * 2 * np.pi / N_RING) / (np.pi / 8)
    return 0.8 * np.exp(-(d**2) / 2)


def epoch_bounds(batch, i: int) -> dict[str, tuple[int, int]]:
    """Epoch name -> (first step, one past the last) of trial ``i``."""
    bounds = {}
    for code, name in enumerate(batch.epoch_names):
        steps = np.flatnonzero(batch.epoch[i] == code)
        if steps.size:
            bounds[name] = (int(steps[0]), int(steps[-1]) + 1)
    return bounds


def response_of(task: str, c: dict) -> float:
    """The response direction by the task's rule (NaN: keep fixating), from the stimuli only."""
    if task in REACH:
        return (c["stim_theta"] + np.pi) % (2 * np.pi) if "anti" in task else c["stim_theta"]
    if task in ATTENDED:
        evidence = [sum(c[f"stim{i}_mod{r}_strength"] for r in ATTENDED[task]) for i in (1, 2)]
        return c["stim1_theta"] if evidence[0] > evidence[1] else c["stim2_theta"]
    if task in ("dms", "dnms"):
        match = circular(c["sample_theta"], c["test_theta"]) < 1e-9
    else:
        match = (c["sample_theta"] < np.pi) == (c["test_theta"] < np.pi)
    return c["test_theta"] if match == (task in ("dms", "dmc")) else np.nan


def expected_trial(batch, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Trial ``i``'s noiseless inputs and its targets, rebuilt from its conditions and epochs as Yang builds them."""
    task = batch.task_names[batch.task[i]]
    c = {name: values[i] for name, values in batch.conditions.items()}
    epochs, n_steps = epoch_bounds(batch, i), int(batch.mask[i].sum())
    go_cue, end = epochs["decision"][0], n_steps
    x = np.zeros((n_steps, 1 + 2 * N_RING + len(batch.task_names)))
    x[: end if task in FIXATION_TO_END else go_cue, 0] = 1
    x[:, 1 + 2 * N_RING + batch.task[i]] = 1

    def show(ring, theta, strength, start, stop):
        x[start:stop, 1 + (ring - 1) * N_RING : 1 + ring * N_RING] += strength * yang_bump(theta)

    if task in REACH:
        window = {"go": "stimulus", "anti": "stimulus", "rtgo": "decision", "rtanti": "decision"}.get(task)
        start, stop = (epochs[window][0], end) if window else epochs["stimulus"]
        show(int(c["modality"]), c["stim_theta"], 1.0, start, stop)
    elif task in ATTENDED:
        windows = [epochs["stimulus"]] * 2 if task in DM else [epochs["stim1"], epochs["stim2"]]
        for i_stim, window in zip((1, 2), windows, strict=True):
            for ring in (1, 2):
                show(ring, c[f"stim{i_stim}_theta"], c[f"stim{i_stim}_mod{ring}_strength"], *window)
    else:
        show(int(c["sample_modality"]), c["sample_theta"], 1.0, *epochs["sample"])
        show(int(c["test_modality"]), c["test_theta"], 1.0, go_cue, end)

    y = np.full((n_steps, 1 + N_RING), 0.05)
    response = response_of(task, c)
    y[: end if np.isnan(response) else go_cue, 0] = 0.8
    if not np.isnan(response):
        y[go_cue:, 1:] += yang_bump(response)
    return x, y


@pytest.fixture(scope="module")
def noisy():
    return sample_trials(yang19_faithful_suite(), 400, seed=11)


@pytest.fixture(scope="module")
def noiseless():
    return sample_trials(yang19_faithful_suite(sigma_x=0.0), 400, seed=11)


@pytest.fixture(scope="module")
def drawn() -> dict[str, list[dict]]:
    """300 trial dicts of every task, drawn by the task alone (no arrays kept)."""
    trials = {}
    for name in YANG19_TASKS:
        env = yang19_faithful_task(name)
        env.seed(5)
        trials[name] = [env.new_trial() for _ in range(300)]
    return trials


def values(trials: list[dict], key: str) -> np.ndarray:
    return np.array([trial[key] for trial in trials], dtype=float)


# ------------------------------------------------------------ layout and registry


def test_gymnasium_make_builds_yangs_layout():
    env = gymnasium.make("neuroalrnn/Yang19Faithful-v0").unwrapped
    assert isinstance(env, MultiTaskEnv) and env.dt == DT
    assert env.task_names == YANG19_TASKS
    assert env.input_names == (
        "fixation", *(f"mod1_{k}" for k in range(N_RING)), *(f"mod2_{k}" for k in range(N_RING)),
        *(f"rule_{task}" for task in YANG19_TASKS),
    )  # fmt: skip
    assert len(env.input_names) == 85 and env.action_space.shape == (33,)
    assert (env.target_kind, env.scoring) == ("regression", "ring")
    assert env.input_noise == pytest.approx(SIGMA)
    assert isinstance(make("yang19-faithful", tasks=["go", "dm1"]), MultiTaskEnv)


def test_noiseless_inputs_and_targets_are_yangs(noiseless):
    assert set(np.asarray(noiseless.task_names)[noiseless.task]) == set(YANG19_TASKS)
    for i in range(noiseless.n_trials):
        x, y = expected_trial(noiseless, i)
        np.testing.assert_allclose(noiseless.inputs[i, : len(x)], x, atol=1e-6, err_msg=str(i))
        np.testing.assert_allclose(noiseless.targets[i, : len(y)], y, atol=1e-6, err_msg=str(i))


def test_every_input_gets_yangs_noise_at_every_step(noisy):
    residual = []
    for i in range(noisy.n_trials):
        x, _ = expected_trial(noisy, i)
        residual.append(noisy.inputs[i, : len(x)] - x)
    residual = np.concatenate(residual)  # (steps of all trials, input)
    assert residual.shape[0] > 30_000
    np.testing.assert_allclose(residual.std(0), SIGMA, rtol=0.03)  # fixation, 64 ring units, 20 rule inputs
    np.testing.assert_allclose(residual.mean(0), 0, atol=5 * SIGMA / np.sqrt(residual.shape[0]))
    assert np.all(np.asarray(noisy.conditions["input_noise"]) == pytest.approx(SIGMA))


def test_decision_starts_at_yangs_pre_offs(noiseless):
    """The step Yang's cost mask ends its pre-response period: go cue, or stimulus onset in the rt tasks."""
    before_go = {"go": ("fixation", "stimulus"), "rtgo": ("fixation",), "dlygo": ("fixation", "stimulus", "delay")}
    before_go |= {"anti": before_go["go"], "rtanti": before_go["rtgo"], "dlyanti": before_go["dlygo"]}
    before_go |= dict.fromkeys(DM, ("fixation", "stimulus"))
    before_go |= dict.fromkeys(DELAYED_DM, ("fixation", "stim1", "delay1", "stim2", "delay2"))
    before_go |= dict.fromkeys(MATCHING, ("fixation", "sample", "delay"))
    for i in range(noiseless.n_trials):
        task = noiseless.task_names[noiseless.task[i]]
        epochs = epoch_bounds(noiseless, i)
        pre_offs = sum(int(noiseless.conditions[f"{epoch}_ms"][i]) // DT for epoch in before_go[task])
        assert epochs["decision"] == (pre_offs, int(noiseless.mask[i].sum())), task
        assert list(epochs) == sorted(epochs, key=lambda name: epochs[name][0])  # contiguous, in order
        assert [name for name in epochs if name != "decision"] == list(before_go[task])


# ---------------------------------------------------------------- distributions


@pytest.mark.parametrize("task", YANG19_TASKS)
def test_epoch_durations_follow_yangs_draws(drawn, task):
    for epoch, spec in TIMING[task].items():
        durations = values(drawn[task], f"{epoch}_ms")
        assert np.all(durations % DT == 0), (epoch, durations)
        if isinstance(spec, tuple):  # U(low, high) floored to whole steps
            _, low, high = spec
            assert durations.min() >= low // DT * DT and durations.max() <= high
            assert durations.min() < low + 0.1 * (high - low) and durations.max() > high - 0.1 * (high - low) - DT
        elif isinstance(spec, set):
            assert set(durations) == spec, (epoch, set(durations))
        else:
            assert set(durations) == {spec}
    absent = {"fixation", "stimulus", "stim1", "delay1", "stim2", "delay2", "sample", "delay", "decision"}
    assert all(set(values(drawn[task], f"{epoch}_ms")) == {0.0} for epoch in absent - set(TIMING[task]))


@pytest.mark.parametrize("task", REACH)
def test_reach_directions_are_continuous_and_modality_is_drawn(drawn, task):
    theta, modality = values(drawn[task], "stim_theta"), values(drawn[task], "modality")
    assert theta.min() >= 0 and theta.max() < 2 * np.pi and len(np.unique(theta)) == len(theta)
    assert np.histogram(theta, bins=4, range=(0, 2 * np.pi))[0].min() > 40
    assert set(modality) == {1, 2} and 0.35 < np.mean(modality == 1) < 0.65


@pytest.mark.parametrize("task", DM + DELAYED_DM)
def test_decision_stimuli_strengths_and_coherences(drawn, task):
    trials = drawn[task]
    separation = circular(values(trials, "stim1_theta"), values(trials, "stim2_theta"))
    assert separation.min() >= np.pi / 2 - 1e-9 and separation.max() <= np.pi + 1e-9
    assert separation.min() < 0.6 * np.pi and separation.max() > 0.9 * np.pi  # Yang: ±U(π/2, 3π/2)
    strength = {(i, r): values(trials, f"stim{i}_mod{r}_strength") for i in (1, 2) for r in (1, 2)}
    allowed = COHERENCES[task]
    coherence = values(trials, "coherence")
    assert all(np.isclose(coherence, c).any() for c in allowed)
    assert np.all(np.isclose(coherence[:, None], allowed).any(1))
    if task.startswith("multi"):
        pair = [(strength[i, 1] + strength[i, 2]) / 2 for i in (1, 2)]  # s_i, split over the rings
        for i in (1, 2):
            split = np.abs(strength[i, 1] - strength[i, 2]) / pair[i - 1]
            assert split.min() >= 0.2 - 1e-9 and split.max() <= 0.8 + 1e-9
        rings = [(pair[0], pair[1])]
    else:
        attended = ATTENDED[task][0]
        other = 3 - attended
        rings = [(strength[1, attended], strength[2, attended])]
        if task.startswith("ctx"):
            rings.append((strength[1, other], strength[2, other]))
            signs = [np.sign(first - second) for first, second in rings]
            assert abs(np.mean(signs[0] * signs[1])) < 0.2  # the distractor's answer is independent
        else:
            assert np.all(strength[1, other] == 0) and np.all(strength[2, other] == 0)
    for first, second in rings:  # Yang's m ± c, m ~ U(0.8, 1.2), c from the set
        mean, half_difference = (first + second) / 2, np.abs(first - second) / 2
        assert mean.min() >= 0.8 and mean.max() <= 1.2
        assert np.all(np.isclose(half_difference[:, None], allowed).any(1))
        assert 0.35 < np.mean(first > second) < 0.65


@pytest.mark.parametrize("task", ("dms", "dnms"))
def test_match_to_sample_draws(drawn, task):
    trials = drawn[task]
    distance = circular(values(trials, "sample_theta"), values(trials, "test_theta"))
    match = values(trials, "match").astype(bool)
    assert np.all(distance[match] < 1e-9)
    assert distance[~match].min() >= np.pi / 9 - 1e-9 and distance[~match].min() < np.pi / 9 + 0.1
    assert 0.4 < match.mean() < 0.6
    assert np.array_equal(values(trials, "go").astype(bool), match == (task == "dms"))


@pytest.mark.parametrize("task", MATCHING)
def test_sample_and_test_modalities_are_independent(drawn, task):
    sample, test = values(drawn[task], "sample_modality"), values(drawn[task], "test_modality")
    for pair in ((1, 1), (1, 2), (2, 1), (2, 2)):
        assert 0.15 < np.mean((sample == pair[0]) & (test == pair[1])) < 0.35, pair


@pytest.mark.parametrize("task", ("dmc", "dnmc"))
def test_category_directions_and_match(drawn, task):
    trials = drawn[task]
    sample, test = values(trials, "sample_theta"), values(trials, "test_theta")
    directions = set(np.round(CATEGORY_DIRECTIONS / np.pi, 6))
    assert set(np.round(sample / np.pi, 6)) == set(np.round(test / np.pi, 6)) == directions
    match = (sample < np.pi) == (test < np.pi)
    assert np.array_equal(values(trials, "match").astype(bool), match) and 0.4 < match.mean() < 0.6
    assert np.array_equal(values(trials, "go").astype(bool), match == (task == "dmc"))


def test_no_go_trials_record_no_response(drawn):
    for task in MATCHING:
        go = values(drawn[task], "go").astype(bool)
        response = values(drawn[task], "response_theta")
        assert np.all(np.isnan(response[~go])) and not np.any(np.isnan(response[go]))
        assert np.all(values(drawn[task], "ground_truth")[~go] == 0)


# ------------------------------------------------------------------- blocks, seeds


def test_trials_per_draw_share_task_timing_and_modality():
    env = yang19_faithful_suite(trials_per_draw=8)
    for seed in (0, 1):
        batch = sample_trials(env, 64, seed=seed)
        durations = np.stack([batch.conditions[name] for name in batch.conditions if name.endswith("_ms")], 1)
        shared = np.stack([batch.conditions[name] for name in ("modality", "sample_modality", "test_modality")], 1)
        thetas = np.stack([batch.conditions[name] for name in ("stim_theta", "stim1_theta", "sample_theta")], 1)
        for block in range(8):
            rows = slice(8 * block, 8 * block + 8)
            assert len(set(batch.task[rows])) == 1
            assert (durations[rows] == durations[rows][0]).all()
            np.testing.assert_array_equal(shared[rows], np.broadcast_to(shared[rows][0], shared[rows].shape))
            known = thetas[rows][~np.isnan(thetas[rows])]
            assert len(np.unique(known)) > 1  # conditions still vary per trial
        assert len(set(batch.task)) > 1 and len({tuple(row) for row in durations}) > 1
    one_each = sample_trials(yang19_faithful_suite(), 8, seed=0)
    assert len(set(one_each.task)) > 1 and len(set(one_each.conditions["fixation_ms"])) > 1


def test_a_seed_repeats_the_trials_and_starts_a_block():
    env = yang19_faithful_suite(trials_per_draw=4)
    first, again = sample_trials(env, 24, seed=3), sample_trials(env, 24, seed=3)
    for field in ("inputs", "targets", "epoch", "task"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    other = sample_trials(env, 24, seed=4)
    assert not np.array_equal(first.inputs[:, :10], other.inputs[:, :10])
    env.reset(seed=9)
    ob = env.ob.copy()
    env.new_trial()
    env.reset(seed=9)
    np.testing.assert_array_equal(env.ob, ob)


# ------------------------------------------------------------------ pinning, errors


def test_conditions_can_be_pinned():
    env = yang19_faithful_task("anti")
    trial = env.new_trial(stim_theta=1.0, modality=2, fixation_ms=400, stimulus_ms=600)
    assert trial["response_theta"] == pytest.approx(1.0 + np.pi) and trial["modality"] == 2
    assert (trial["fixation_ms"], trial["stimulus_ms"], len(env.ob)) == (400, 600, 75)
    assert np.argmax(env.ob[25, 1 + N_RING :]) == round(1.0 / (2 * np.pi / N_RING))
    dm = yang19_faithful_task("ctxdm2")
    trial = dm.new_trial(stim1_theta=0.0, stim2_theta=np.pi, stim1_mod2_strength=0.9, stim2_mod2_strength=1.1)
    assert trial["response_theta"] == pytest.approx(np.pi) and trial["coherence"] == pytest.approx(0.1)
    dms = yang19_faithful_task("dnms")
    assert dms.new_trial(sample_theta=1.0, test_theta=1.0)["go"] == 0
    assert dms.new_trial(match=False)["go"] == 1
    with pytest.raises(ValueError, match=r"match=True contradicts"):
        dms.new_trial(sample_theta=1.0, test_theta=2.0, match=True)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: yang19_faithful_suite(dt=0), r"^dt must be a finite number > 0, got 0$"),
        (lambda: yang19_faithful_suite(dt=12.5), r"^dt must be a whole number of ms > 0, got 12.5$"),
        (lambda: yang19_faithful_suite(dt=200), r"^dt must be at most 100 ms"),
        (lambda: yang19_faithful_suite(n_ring=1), r"^n_ring must be an integer >= 2, got 1$"),
        (lambda: yang19_faithful_suite(sigma_x=-1), r"^sigma_x must be a finite number >= 0, got -1$"),
        (lambda: yang19_faithful_suite(trials_per_draw=0), r"^trials_per_draw must be an integer >= 1, got 0$"),
        (lambda: yang19_faithful_suite(tasks=["go", "fdgo"]), r"^unknown tasks \[.fdgo.\]; valid tasks: go, rtgo"),
        (lambda: yang19_faithful_task("go").new_trial(coherence=0.1), r"^unknown conditions \['coherence'\]"),
        (lambda: yang19_faithful_task("go").new_trial(modality=3), r"^modality must be 1 or 2, got 3$"),
        (lambda: yang19_faithful_task("dm1").new_trial(stim1_mod2_strength=1.0), r"^unknown conditions \['stim1_mod2"),
        (lambda: yang19_faithful_task("dm1").new_trial(decision_ms=10), r"^decision_ms must last at least one step"),
    ],
)
def test_bad_options_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ---------------------------------------------------------------- read-out, stepping


def test_ring_read_out_is_yangs_get_perf():
    target = np.full(33, 0.05)
    target[1:] += yang_bump(1.0)
    assert population_vector(target[1:]) == pytest.approx(1.0, abs=1e-6)
    near, far, fixating = target.copy(), np.full(33, 0.05), target.copy()
    far[1:] += yang_bump(1.0 + 0.25 * np.pi)
    fixating[0] = 0.9
    no_go = np.full(33, 0.05)
    no_go[0] = 0.8
    outputs = np.stack([near, far, fixating, no_go, near])
    targets = np.stack([target, target, target, no_go, no_go])
    np.testing.assert_array_equal(ring_choice_correct(outputs, targets), [True, False, False, True, False])


def test_stepping_rewards_the_target_at_the_last_step():
    env = gymnasium.make("neuroalrnn/Yang19Faithful-v0", tasks=["dlygo"]).unwrapped
    env.reset(seed=0)  # NeuroGym's reset takes the trial's first step
    rewards, new_trial = [], False
    while not new_trial:
        _, reward, _, _, info = env.step(env.gt[env.t_ind])
        rewards.append(reward)
        new_trial = info["new_trial"]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and info["performance"] == 1.0
    rewards, new_trial = [], False
    while not new_trial:  # the next trial: zero outputs never fixate and point nowhere
        _, reward, _, _, info = env.step(np.zeros(33, dtype=np.float32))
        rewards.append(reward)
        new_trial = info["new_trial"]
    assert sum(rewards) == 0.0 and info["performance"] == 0.0


# ------------------------------------------------------------------ ideal observer


def monte_carlo_observer_correct(batch) -> np.ndarray:
    """Each trial's least-squares observer on the batch's own noisy inputs: is sign(D̂) the answer?"""
    correct = []
    for i in range(batch.n_trials):
        task = batch.task_names[batch.task[i]]
        c = {name: values[i] for name, values in batch.conditions.items()}
        epochs = epoch_bounds(batch, i)
        b = np.stack([yang_bump(c["stim1_theta"]), yang_bump(c["stim2_theta"])], 1)
        estimate = truth = 0.0
        for ring in ATTENDED[task]:
            units = slice(1 + (ring - 1) * N_RING, 1 + ring * N_RING)
            if task in DM:
                mean = batch.inputs[i, slice(*epochs["stimulus"]), units].mean(0)
                strengths = np.linalg.lstsq(b, mean, rcond=None)[0]
            else:
                means = [batch.inputs[i, slice(*epochs[e]), units].mean(0) for e in ("stim1", "stim2")]
                strengths = [means[k] @ b[:, k] / (b[:, k] @ b[:, k]) for k in (0, 1)]
            estimate += strengths[0] - strengths[1]
            truth += c[f"stim1_mod{ring}_strength"] - c[f"stim2_mod{ring}_strength"]
        correct.append(np.sign(estimate) == np.sign(truth))
    return np.asarray(correct)


@pytest.mark.parametrize(("tasks", "noise"), [(DM, 0.5), (DELAYED_DM, 1.5)])
def test_ideal_observer_matches_a_monte_carlo_observer(tasks, noise):
    env = yang19_faithful_suite(tasks, sigma_x=noise / np.sqrt(2 / (DT / 100)))
    batch = sample_trials(env, 2000, seed=21)
    predicted = ideal_observer_accuracy(batch)
    assert np.all((predicted >= 0.5) & (predicted <= 1)) and 0.6 < predicted.mean() < 0.95
    simulated = monte_carlo_observer_correct(batch)
    standard_error = np.sqrt(predicted.mean() * (1 - predicted.mean()) / batch.n_trials)
    assert abs(simulated.mean() - predicted.mean()) < 3.5 * standard_error
    for task in range(len(tasks)):  # each task too, more loosely
        rows = batch.task == task
        assert abs(simulated[rows].mean() - predicted[rows].mean()) < 4 * np.sqrt(0.25 / rows.sum())


def test_ideal_observer_is_nan_without_evidence_and_perfect_without_noise(noisy):
    accuracy = ideal_observer_accuracy(noisy)
    by_env = neuroalrnn.envs.ideal_observer_accuracy(yang19_faithful_suite(), noisy)  # each sub-task's own
    np.testing.assert_array_equal(by_env, accuracy)
    tasks = np.asarray(noisy.task_names)[noisy.task]
    evidence = np.isin(tasks, DM + DELAYED_DM)
    assert np.all(np.isnan(accuracy[~evidence])) and np.all(accuracy[evidence] > 0.9)
    assert np.all(ideal_observer_accuracy(noisy, noise_std=0.0)[evidence] == 1.0)
    no_noise = dataclasses.replace(noisy, conditions={k: v for k, v in noisy.conditions.items() if k != "input_noise"})
    with pytest.raises(ValueError, match="pass noise_std"):
        ideal_observer_accuracy(no_noise)
