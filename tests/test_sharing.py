"""Sharing across tasks, checked on hand-built Datasets whose answers are known or re-computed independently."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import adjusted_rand_score

from neuroalrnn.analyses import sharing_figures as figures
from neuroalrnn.analyses.sharing import (
    compare_sharing,
    principal_subspace,
    sharing_analysis,
    sharing_report_lines,
    unit_activity,
    unit_covariance_similarity,
    validate_sharing_trials,
)

N_BYTES = 9  # packed codes for P = 70 nonlinear units


def make_trials(regime, task, *, epoch=None, mask=None, latents=None, packed=False, n_units=4, seed=0,
                **attrs) -> xr.Dataset:
    """A trials.nc-shaped Dataset from (trial, time) regime codes and per-trial task names."""
    regime = np.asarray(regime, dtype=np.int64)
    shape = regime.shape
    epoch = np.full(shape, "stimulus") if epoch is None else np.asarray(epoch, dtype=str)
    mask = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    if latents is None:
        latents = np.random.default_rng(seed).normal(size=(*shape, n_units))
    if packed:
        codes = regime.astype("<u8").view(np.uint8).reshape(*shape, 8)
        padding = np.zeros((*shape, N_BYTES - 8), np.uint8)
        regime_var = (("trial", "time", "regime_byte"), np.concatenate([codes, padding], axis=-1))
    else:
        regime_var = (("trial", "time"), regime)
    coords = {
        "time": ("time", np.arange(shape[1]) * 10.0),
        "task": ("trial", np.asarray(task, dtype=str)),
        "epoch": (("trial", "time"), epoch),
        "epoch_canonical": (("trial", "time"), epoch),
        "unit": ("unit", np.arange(np.shape(latents)[-1])),
    }
    data_vars = {
        "regime": regime_var,
        "mask": (("trial", "time"), mask),
        "latents": (("trial", "time", "unit"), np.asarray(latents, dtype=np.float32)),
    }
    return xr.Dataset(data_vars, coords=coords, attrs={"dt": 10.0, **attrs})


def hex_label(code: int) -> str:
    return int(code).to_bytes(N_BYTES, "little").hex()


def off_diagonal(matrix: xr.DataArray) -> np.ndarray:
    values = matrix.transpose("task", "task_other").values
    return values[~np.eye(values.shape[0], dtype=bool)]


# ------------------------------------------------------------------------------------------------------------------
# Regimes


def test_disjoint_regimes_share_nothing():
    # A visits {1, 2}, B {3, 4}: every overlap measure is 0 off the diagonal and 1 on it.
    result = sharing_analysis(make_trials([[1, 2, 1], [2, 1, 2], [3, 4, 4], [4, 3, 3]], ["A", "A", "B", "B"]))
    for name in ("jaccard", "js_similarity"):
        np.testing.assert_allclose(off_diagonal(result[name]), 0.0, atol=1e-12)
        np.testing.assert_allclose(np.diag(result[name].values), 1.0)
    assert float(result["sharing_index"]) == pytest.approx(0.0, abs=1e-12)
    assert float(result["mean_jaccard"]) == 0.0
    assert float(result["shared_regime_fraction"]) == 0.0
    assert float(result["shared_step_fraction"]) == 0.0
    assert int(result["n_regimes"]) == 4
    assert result["regimes_used"].values.tolist() == [2, 2]


def test_identical_occupancy_shares_everything():
    # Different trials, same occupancy (1/2, 1/4, 1/4) in both tasks.
    regime = [[5, 5, 6, 7], [6, 5, 5, 7], [7, 6, 5, 5], [5, 7, 6, 5]]
    result = sharing_analysis(make_trials(regime, ["A", "A", "B", "B"]))
    assert float(result["sharing_index"]) == pytest.approx(1.0)
    np.testing.assert_allclose(result["jaccard"].values, 1.0)
    assert float(result["shared_regime_fraction"]) == 1.0
    assert float(result["shared_step_fraction"]) == 1.0
    np.testing.assert_allclose(result["occupancy"].sel(task="A", regime=[5, 6, 7]).values, [0.5, 0.25, 0.25])


def test_partial_overlap_matches_hand_computed_values():
    # A: (Ω1, Ω2) half each; B: (Ω2, Ω3) half each. Jaccard = 1/3. With m = (1/4, 1/2, 1/4):
    # KL(A‖m) = ½·log2(2) + ½·log2(1) = ½ bit, likewise for B, so JSD = ½ bit and 1 − JS distance = 1 − √½.
    result = sharing_analysis(make_trials([[1, 2], [2, 1], [2, 3], [3, 2]], ["A", "A", "B", "B"]))
    assert float(result["jaccard"].sel(task="A", task_other="B")) == pytest.approx(1 / 3)
    assert float(result["js_similarity"].sel(task="A", task_other="B")) == pytest.approx(1 - np.sqrt(0.5))
    assert float(result["sharing_index"]) == pytest.approx(1 - np.sqrt(0.5))
    assert result["shared_regime"].sel(regime=[1, 2, 3]).values.tolist() == [False, True, False]
    assert float(result["shared_regime_fraction"]) == pytest.approx(1 / 3)
    assert float(result["shared_step_fraction"]) == pytest.approx(0.5)


def test_js_similarity_agrees_with_scipy():
    rng = np.random.default_rng(4)
    regime = rng.integers(0, 6, size=(9, 12))
    regime[6:] = rng.integers(3, 9, size=(3, 12))
    result = sharing_analysis(make_trials(regime, ["A"] * 3 + ["B"] * 3 + ["C"] * 3))
    occupancy = result["occupancy"]
    for a in "ABC":
        for b in "ABC":
            expected = 1 - jensenshannon(occupancy.sel(task=a).values, occupancy.sel(task=b).values, base=2)
            assert float(result["js_similarity"].sel(task=a, task_other=b)) == pytest.approx(expected, abs=1e-9)
    pairs = [(a, b) for a, b in (("A", "B"), ("A", "C"), ("B", "C"))]
    expected_index = np.mean([float(result["js_similarity"].sel(task=a, task_other=b)) for a, b in pairs])
    assert float(result["sharing_index"]) == pytest.approx(expected_index)


def test_fixation_and_padding_steps_do_not_count_by_default():
    # Outside fixation A uses Ω1 and B Ω2; both fixate in Ω7; padded steps hold Ω9.
    regime = [[7, 1, 1, 9], [7, 1, 1, 1], [7, 2, 2, 9], [7, 2, 2, 2]]
    epoch = [["fixation", "stimulus", "decision", ""], ["fixation", "stimulus", "decision", "decision"]] * 2
    mask = [[1, 1, 1, 0], [1, 1, 1, 1]] * 2
    trials = make_trials(regime, ["A", "A", "B", "B"], epoch=epoch, mask=mask)
    default = sharing_analysis(trials)
    assert set(default["regime"].values.tolist()) == {1, 2}
    assert float(default["sharing_index"]) == 0.0
    assert default["epoch"].values.tolist() == ["stimulus", "decision"]
    with_fixation = sharing_analysis(trials, include_fixation=True)
    assert set(with_fixation["regime"].values.tolist()) == {1, 2, 7}
    assert float(with_fixation["jaccard"].sel(task="A", task_other="B")) == pytest.approx(1 / 3)
    assert with_fixation["epoch"].values.tolist() == ["fixation", "stimulus", "decision"]
    assert with_fixation.attrs["include_fixation"] == 1


def test_per_epoch_sharing():
    # Stimulus regimes differ between tasks, decision regimes are the same; C has no delay epoch.
    regime = [[1, 5, 5], [1, 5, 5], [2, 5, 5], [2, 5, 5], [3, 4, 4], [3, 4, 4]]
    epoch = [["stimulus", "delay", "decision"]] * 4 + [["stimulus", "decision", "decision"]] * 2
    result = sharing_analysis(make_trials(regime, ["A", "A", "B", "B", "C", "C"], epoch=epoch))
    by_epoch = result["js_similarity_by_epoch"]
    assert float(by_epoch.sel(epoch="stimulus", task="A", task_other="B")) == pytest.approx(0.0)
    assert float(by_epoch.sel(epoch="delay", task="A", task_other="B")) == pytest.approx(1.0)
    assert np.isnan(float(by_epoch.sel(epoch="delay", task="A", task_other="C")))
    assert np.isnan(float(result["jaccard_by_epoch"].sel(epoch="delay", task="C", task_other="C")))
    np.testing.assert_allclose(result["occupancy_by_epoch"].sel(epoch="decision", task="C", regime=4), 1.0)
    assert result["n_steps_by_epoch"].sel(epoch="delay").values.tolist() == [2, 2, 0]


def test_packed_codes_give_the_same_sharing_as_integer_codes():
    regime = [[1, 2, 2], [2, 1, 3], [3, 4, 4], [4, 3, 3], [1, 4, 6], [6, 6, 1]]
    task = ["A", "A", "B", "B", "C", "C"]
    as_int = sharing_analysis(make_trials(regime, task))
    packed = sharing_analysis(make_trials(regime, task, packed=True))
    assert packed["regime"].values.tolist() == [hex_label(code) for code in as_int["regime"].values]
    for name in ("jaccard", "js_similarity", "occupancy", "shared_regime"):
        np.testing.assert_array_equal(packed[name].values, as_int[name].values)
    assert float(packed["sharing_index"]) == float(as_int["sharing_index"])


def test_min_occupancy_drops_rarely_visited_regimes_from_the_visited_sets():
    # B enters A's regime Ω1 on one step in 10: Jaccard 1/2 when visited at all, 0 above 15 % occupancy.
    regime = [[1] * 5, [1] * 5, [2, 2, 2, 2, 1], [2] * 5]
    trials = make_trials(regime, ["A", "A", "B", "B"])
    assert float(sharing_analysis(trials)["jaccard"].sel(task="A", task_other="B")) == pytest.approx(0.5)
    strict = sharing_analysis(trials, min_occupancy=0.15)
    assert float(strict["jaccard"].sel(task="A", task_other="B")) == 0.0
    assert strict["regimes_used"].values.tolist() == [1, 1]


# ------------------------------------------------------------------------------------------------------------------
# Units


def unit_trials(amplitude: np.ndarray, n_trials: int = 6, n_time: int = 3, seed: int = 0, jitter: float = 0.0):
    """Latents z[i, t, u] = amplitude[u, task(i)] · ξ_i: TV_{u,A} = amplitude[u, A]² · Var(ξ over A's trials)."""
    rng = np.random.default_rng(seed)
    n_units, n_tasks = amplitude.shape
    task = np.repeat(np.arange(n_tasks), n_trials)
    xi = rng.normal(size=task.size)
    xi = (xi - xi.mean()) / xi.std()
    latents = amplitude.T[task][:, None, :] * xi[:, None, None] * np.ones((1, n_time, 1))
    latents += jitter * rng.normal(size=latents.shape)
    names = [f"task{k}" for k in range(n_tasks)]
    regime = np.zeros((task.size, n_time), dtype=np.int64)
    return make_trials(regime, [names[k] for k in task], latents=latents)


def test_unit_varying_in_one_task_only():
    # Unit 0 varies only in task0, unit 1 equally in both, unit 2 only in task1.
    amplitude = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    trials = unit_trials(amplitude)
    # Give both tasks the same ξ so that unit 1's task variances are exactly equal.
    latents = trials["latents"].values
    latents[6:, :, 1] = latents[:6, :, 1]
    result = sharing_analysis(trials.assign(latents=(("trial", "time", "unit"), latents)))
    normalised = result["task_variance_normalised"].transpose("unit", "task").values
    np.testing.assert_allclose(normalised, [[1, 0], [1, 1], [0, 1]], atol=1e-6)
    ftv = result["ftv"].sel(pair="task0|task1").values
    np.testing.assert_allclose(ftv, [1, 0, -1], atol=1e-6)
    assert result["ftv_histogram"].sel(pair="task0|task1").values.sum() == 3
    assert result["ftv_histogram"].sel(pair="task0|task1").values[[0, -1]].tolist() == [1, 1]
    assert result["active_unit"].values.all()


def test_task_variance_re_statement_with_ragged_trials_and_fixation():
    rng = np.random.default_rng(2)
    n_trials, n_time, n_units = 7, 6, 3
    latents = rng.normal(size=(n_trials, n_time, n_units))
    lengths = np.array([6, 6, 5, 3, 6, 4, 2])
    mask = np.arange(n_time)[None, :] < lengths[:, None]
    epoch = np.where(mask, "stimulus", "")
    epoch[:, 0] = "fixation"
    task = ["A", "A", "A", "A", "B", "B", "B"]
    result = sharing_analysis(make_trials(np.zeros((n_trials, n_time)), task, epoch=epoch, mask=mask,
                                          latents=latents))
    analysed = mask & (epoch != "fixation")
    for name, rows in (("A", range(4)), ("B", range(4, 7))):
        per_step = []
        for t in range(n_time):
            values = np.array([latents[i, t] for i in rows if analysed[i, t]])
            if len(values) >= 2:
                per_step.append(np.var(values.astype(np.float32).astype(float), axis=0))
        np.testing.assert_allclose(result["task_variance"].sel(task=name).values, np.mean(per_step, axis=0),
                                   rtol=1e-10)


def test_quiet_units_are_left_out_of_normalisation_and_clustering():
    amplitude = np.array([[1.0, 0.5], [0.5, 1.0], [0.0, 0.0], [1e-3, 1e-3]])
    result = sharing_analysis(unit_trials(amplitude))
    assert result["active_unit"].values.tolist() == [True, True, False, False]
    assert result["unit_cluster"].values[2:].tolist() == [-1, -1]
    assert np.isnan(result["task_variance_normalised"].values[2:]).all()
    assert np.isnan(result["ftv"].values[:, 2:]).all()


def test_profile_similarity_of_linear_and_nonlinear_units():
    # Units 0-2 linear with one shared profile (and a scaled copy), units 3-4 nonlinear, each selective to one task.
    amplitude = np.array([[1.0, 0.5], [2.0, 1.0], [0.5, 0.25], [3.0, 0.0], [0.0, 1.0]])
    trials = unit_trials(amplitude)
    trials.attrs["n_nonlinear"] = 2
    result = sharing_analysis(trials)
    similarity = result["tv_profile_similarity"].sel(unit_kind=["linear", "nonlinear"]).values
    np.testing.assert_allclose(similarity, [1.0, 0.0], atol=1e-9)  # parallel rows; orthogonal rows
    variance = amplitude**2  # TV = amplitude² × Var(ξ), Var(ξ) = 1 per task up to the draw
    share = result["task_variance_share"].sel(unit_kind="nonlinear")
    tv = result["task_variance"].values
    assert float(share) == pytest.approx(tv[3:].sum() / tv.sum())
    assert float(share) == pytest.approx(variance[3:].sum() / variance.sum(), rel=0.2)
    lines = "\n".join(sharing_report_lines(result))
    assert "mean cosine similarity 1.00" in lines and "0.00 among the nonlinear units" in lines

    trials.attrs.pop("n_nonlinear")  # no attribute: every unit is nonlinear, none linear
    result = sharing_analysis(trials)
    assert np.isnan(float(result["tv_profile_similarity"].sel(unit_kind="linear")))
    assert float(result["task_variance_share"].sel(unit_kind="nonlinear")) == pytest.approx(1.0)


def rectified_unit_trials(**attrs) -> xr.Dataset:
    """Unit 2 (the one nonlinear unit) varies above zero in task0 and only below zero in task1, as strongly."""
    amplitude = np.array([[1.0, 1.0], [1.0, 0.5], [1.0, 1.0]])
    trials = unit_trials(amplitude)
    latents = trials["latents"].values.copy()
    fluctuation = latents[:6, :, 2].copy()
    latents[:6, :, 2] = 5.0 + fluctuation  # task0: on (z > 0)
    latents[6:, :, 2] = -5.0 + fluctuation  # task1: off (z < 0), with the same variance in z
    trials = trials.assign(latents=(("trial", "time", "unit"), latents))
    trials.attrs.update({"model": "alrnn", "n_units": 3, "n_nonlinear": 1, **attrs})
    return trials


def test_unit_measures_are_on_rates_by_default_and_on_states_on_request():
    trials = rectified_unit_trials(slope=0.0)
    assert (trials["latents"].values[:6, :, 2] > 0).all() and (trials["latents"].values[6:, :, 2] < 0).all()
    rate = sharing_analysis(trials, n_permutations=0)
    state = sharing_analysis(trials, n_permutations=0, unit_activity="state")
    assert (rate.attrs["unit_activity"], state.attrs["unit_activity"]) == ("rate", "state")
    # In rate the off unit is silent in task1: selective to task0 (FTV +1); in state it varies equally.
    assert float(rate["task_variance"].sel(unit=2, task="task1")) == 0.0
    assert float(rate["ftv"].sel(pair="task0|task1", unit=2)) == pytest.approx(1.0)
    assert float(state["ftv"].sel(pair="task0|task1", unit=2)) == pytest.approx(0.0, abs=1e-9)
    # The linear units, the subspace measures and the regime measures do not depend on the choice.
    np.testing.assert_array_equal(rate["task_variance"].sel(unit=[0, 1]), state["task_variance"].sel(unit=[0, 1]))
    for name in ("covariance_similarity", "subspace_overlap", "js_similarity"):
        np.testing.assert_array_equal(rate[name].values, state[name].values)
    assert "rates Φ*(z)" in "\n".join(sharing_report_lines(rate))
    assert "states z" in "\n".join(sharing_report_lines(state))


def test_rates_use_the_slope_of_the_trials_or_of_their_config():
    leaky = unit_activity(rectified_unit_trials(slope=0.25))
    latents = rectified_unit_trials()["latents"].transpose("trial", "time", "unit").values
    np.testing.assert_allclose(leaky.values[..., 2], np.where(latents[..., 2] > 0, 1.0, 0.25) * latents[..., 2])
    np.testing.assert_array_equal(leaky.values[..., :2], latents[..., :2])
    old_file = rectified_unit_trials(config=json.dumps({"slope": 0.25}))  # written before the slope attribute
    np.testing.assert_array_equal(unit_activity(old_file).values, leaky.values)
    np.testing.assert_array_equal(unit_activity(rectified_unit_trials(), "state").values, latents)
    with pytest.raises(ValueError, match="rate, state"):
        sharing_analysis(rectified_unit_trials(), unit_activity="rates")


def test_rates_of_a_model_with_hidden_state_rates_are_its_latents():
    trials = rectified_unit_trials()
    trials.attrs["model"] = "gru"
    rate = sharing_analysis(trials, n_permutations=0)
    state = sharing_analysis(trials, n_permutations=0, unit_activity="state")
    np.testing.assert_array_equal(rate["task_variance"].values, state["task_variance"].values)
    assert "not an AL-RNN" in rate.attrs["unit_activity_definition"]


@pytest.mark.parametrize("clustering", ["kmeans", "ward"])
def test_clustering_recovers_planted_groups(clustering):
    # Three groups of 6 units: group 0 varies in task0, group 1 in task1 and task2, group 2 in task3.
    profiles = np.array([[1.0, 0.1, 0.1, 0.1], [0.1, 1.0, 1.0, 0.1], [0.1, 0.1, 0.2, 1.0]])
    planted = np.repeat(np.arange(3), 6)
    rng = np.random.default_rng(1)
    amplitude = profiles[planted] * rng.uniform(0.9, 1.1, size=(18, 4))
    result = sharing_analysis(unit_trials(amplitude), clustering=clustering, cluster_range=(2, 8))
    labels = result["unit_cluster"].values
    assert int(result["n_unit_clusters"]) == 3
    assert adjusted_rand_score(planted, labels) == 1.0
    silhouette = result["silhouette"]
    assert int(silhouette.idxmax("k")) == 3
    # Clusters are numbered by preferred task.
    assert result["cluster_preferred_task"].values.tolist() == ["task0", "task1", "task3"]
    assert result["cluster_size"].values.tolist() == [6, 6, 6]


# ------------------------------------------------------------------------------------------------------------------
# Subspaces


def subspace_trials(states_a: np.ndarray, states_b: np.ndarray) -> xr.Dataset:
    """Two tasks of 3 trials each; states (3, n_time, M) per task."""
    latents = np.concatenate([states_a, states_b])
    return make_trials(np.zeros(latents.shape[:2]), ["A"] * 3 + ["B"] * 3, latents=latents)


def covariance_similarity_reference(x: np.ndarray, y: np.ndarray) -> float:
    """‖X_c Y_cᵀ‖²_F / (‖X_c X_cᵀ‖_F ‖Y_c Y_cᵀ‖_F), centred over rows: the sample-space form of the cosine of the
    unit covariances ⟨X_cᵀX_c, Y_cᵀY_c⟩_F / (‖X_cᵀX_c‖_F ‖Y_cᵀY_c‖_F)."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return np.linalg.norm(x @ y.T) ** 2 / (np.linalg.norm(x @ x.T) * np.linalg.norm(y @ y.T))


def test_covariance_similarity_matches_the_sample_space_formula_and_is_one_on_the_diagonal():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(5, 5))
    trials = subspace_trials(rng.normal(size=(3, 6, 5)), rng.normal(size=(3, 6, 5)) @ mixing)
    result = sharing_analysis(trials)
    states = trials["latents"].values.astype(float)
    expected = covariance_similarity_reference(states[:3].reshape(-1, 5), states[3:].reshape(-1, 5))
    assert float(result["covariance_similarity"].sel(task="A", task_other="B")) == pytest.approx(expected, rel=1e-9)
    assert unit_covariance_similarity(states[:3].reshape(-1, 5), states[3:].reshape(-1, 5)) == pytest.approx(
        expected, rel=1e-9)
    np.testing.assert_allclose(np.diag(result["covariance_similarity"].values), 1.0)
    np.testing.assert_allclose(result["covariance_similarity"].values, result["covariance_similarity"].values.T)
    assert 0 < expected < 1


def test_covariance_similarity_and_subspace_overlap_are_invariant_to_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(3)
    states_a = rng.normal(size=(3, 6, 5)) * [3, 2, 1, 0.5, 0.1]
    states_b = rng.normal(size=(3, 6, 5)) @ rng.normal(size=(5, 5))
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    base = sharing_analysis(subspace_trials(states_a, states_b))
    rotated = sharing_analysis(subspace_trials(states_a @ rotation, states_b @ rotation))
    scaled = sharing_analysis(subspace_trials(states_a, 7.0 * states_b + 3.0))
    for other in (rotated, scaled):
        np.testing.assert_allclose(other["covariance_similarity"].values, base["covariance_similarity"].values,
                                   rtol=1e-5)
        np.testing.assert_allclose(other["subspace_overlap"].values, base["subspace_overlap"].values, rtol=1e-5)
    # Rotating only one task's states is a different representation: the covariance similarity must see it.
    one_rotated = sharing_analysis(subspace_trials(states_a @ rotation, states_b))
    assert abs(float(one_rotated["mean_covariance_similarity"]) - float(base["mean_covariance_similarity"])) > 1e-3


def test_identical_and_orthogonal_subspaces():
    rng = np.random.default_rng(5)
    plane = rng.normal(size=(3, 8, 2))
    zeros = np.zeros((3, 8, 2))
    in_first_plane = np.concatenate([plane, zeros], axis=-1)  # units 0, 1
    mixed_first_plane = np.concatenate([plane @ rng.normal(size=(2, 2)), zeros], axis=-1)
    in_second_plane = np.concatenate([zeros, rng.normal(size=(3, 8, 2))], axis=-1)  # units 2, 3

    same = sharing_analysis(subspace_trials(in_first_plane, mixed_first_plane), variance_explained=1.0)
    angles = same["principal_angles"].sel(task="A", task_other="B").values
    np.testing.assert_allclose(angles[:2], 0.0, atol=1e-6)
    assert np.isnan(angles[2:]).all()
    assert same["n_components"].values.tolist() == [2, 2]
    assert float(same["subspace_overlap"].sel(task="A", task_other="B")) == pytest.approx(1.0)

    orthogonal = sharing_analysis(subspace_trials(in_first_plane, in_second_plane), variance_explained=1.0)
    np.testing.assert_allclose(orthogonal["principal_angles"].sel(task="A", task_other="B").values[:2], np.pi / 2)
    assert float(orthogonal["subspace_overlap"].sel(task="A", task_other="B")) == pytest.approx(0.0, abs=1e-12)
    assert float(orthogonal["covariance_similarity"].sel(task="A", task_other="B")) == pytest.approx(0.0, abs=1e-12)


def test_principal_angle_of_45_degrees():
    # A varies along unit 0, B along (unit 0 + unit 1)/√2: one angle of π/4, cos² = 1/2.
    rng = np.random.default_rng(6)
    a = rng.normal(size=(3, 8, 1)) * np.array([1.0, 0.0, 0.0])
    b = rng.normal(size=(3, 8, 1)) * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    result = sharing_analysis(subspace_trials(a, b))
    assert float(result["principal_angles"].sel(task="A", task_other="B", component=1)) == pytest.approx(np.pi / 4)
    assert float(result["subspace_overlap"].sel(task="A", task_other="B")) == pytest.approx(0.5)
    assert principal_subspace(a.reshape(-1, 3)).shape == (3, 1)


def test_principal_subspace_caps_components():
    rng = np.random.default_rng(7)
    states = rng.normal(size=(200, 6)) * [5, 4, 3, 2, 1, 0.5]
    assert principal_subspace(states, variance_explained=0.99, max_components=3).shape == (6, 3)
    basis = principal_subspace(states, variance_explained=0.5)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-10)


# ------------------------------------------------------------------------------------------------------------------
# Validation


TWO_TASKS = dict(regime=[[1, 2], [2, 1], [3, 4], [4, 3]], task=["A", "A", "B", "B"])


def test_one_task_is_an_error():
    with pytest.raises(ValueError, match="at least two tasks.*'A'"):
        sharing_analysis(make_trials([[1, 2], [2, 1]], ["A", "A"]))


@pytest.mark.parametrize("name", ["latents", "mask", "task", "epoch_canonical"])
def test_missing_variables_are_named(name):
    trials = make_trials(**TWO_TASKS)
    with pytest.raises(ValueError, match=f"'{name}'"):
        sharing_analysis(trials.drop_vars(name))


def test_wrong_dimensions_are_named():
    trials = make_trials(**TWO_TASKS).rename({"unit": "neuron"})
    with pytest.raises(ValueError, match="dimension 'unit'"):
        validate_sharing_trials(trials)


def test_a_task_without_two_trials_is_an_error():
    with pytest.raises(ValueError, match="task 'B' has no time step with min_trials=2"):
        sharing_analysis(make_trials([[1, 2], [2, 1], [3, 4]], ["A", "A", "B"]))


@pytest.mark.parametrize("parameter, value", [("cluster_range", (1, 5)), ("tv_threshold", 1.5),
                                              ("clustering", "spectral"), ("variance_explained", 0.0),
                                              ("min_occupancy", 1.0), ("min_trials", 1)])
def test_bad_parameters_are_named(parameter, value):
    with pytest.raises(ValueError, match=parameter):
        sharing_analysis(make_trials(**TWO_TASKS), **{parameter: value})


def test_unknown_ftv_pair_is_an_error():
    with pytest.raises(ValueError, match="ftv_pairs"):
        sharing_analysis(make_trials(**TWO_TASKS), ftv_pairs=[("A", "C")])


def test_without_regimes_the_unit_and_subspace_levels_still_run():
    result = sharing_analysis(make_trials(**TWO_TASKS).drop_vars("regime"))
    assert "occupancy" not in result and "regime" not in result.dims
    assert np.isnan(float(result["sharing_index"]))
    assert np.isfinite(result["covariance_similarity"].values).all()
    assert any("not an AL-RNN" in line for line in sharing_report_lines(result))


# ------------------------------------------------------------------------------------------------------------------
# Task order, comparison, report, figures, files


def test_task_order_follows_the_declared_task_names_and_pairs_are_antisymmetric():
    trials = make_trials([[1, 2], [2, 1], [3, 4], [4, 3], [1, 3], [3, 1]], ["a", "a", "b", "b", "c", "c"],
                         task_names=json.dumps(["c", "a", "b"]))
    result = sharing_analysis(trials, ftv_pairs=[("a", "c"), ("c", "a")])
    assert result["task"].values.tolist() == ["c", "a", "b"]
    assert result["pair"].values.tolist() == ["a|c", "c|a"]
    np.testing.assert_allclose(result["ftv"].sel(pair="a|c"), -result["ftv"].sel(pair="c|a"))


@pytest.fixture(scope="module")
def two_runs() -> dict[str, xr.Dataset]:
    disjoint = make_trials([[1, 2, 1], [2, 1, 2], [3, 4, 4], [4, 3, 3]], ["A", "A", "B", "B"], n_nonlinear=2)
    shared = make_trials([[5, 5, 6], [6, 5, 5], [5, 6, 5], [5, 5, 6]], ["A", "A", "B", "B"], n_nonlinear=8)
    return {"P=2": sharing_analysis(disjoint), "P=8": sharing_analysis(shared)}


def test_compare_sharing_tabulates_each_run(two_runs):
    table = compare_sharing(two_runs)
    assert table["run"].values.tolist() == ["P=2", "P=8"]
    np.testing.assert_allclose(table["sharing_index"].values, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(table["shared_regime_fraction"].values, [0.0, 1.0])
    assert table["n_regimes"].values.tolist() == [4, 2]
    assert table["n_nonlinear"].values.tolist() == [2, 8]
    assert table["mean_covariance_similarity"].values.tolist() == [float(r["mean_covariance_similarity"]) for r in two_runs.values()]
    with pytest.raises(ValueError, match=r"results\['bad'\] is not a sharing_analysis result"):
        compare_sharing({"bad": xr.Dataset()})


def test_report_lines_state_the_index(two_runs):
    lines = sharing_report_lines(two_runs["P=8"], figures={"Sharing between tasks": "figures/sharing_matrices.png"})
    text = "\n".join(lines)
    assert lines[0] == "## Sharing across tasks"
    assert "**Sharing index 1.00**" in text
    assert "![Sharing between tasks](figures/sharing_matrices.png)" in text


def test_figures_render_and_are_written_atomically(two_runs, tmp_path):
    result = two_runs["P=2"]
    made = figures.sharing_figures(result)
    assert set(made) == {"Task variance of units (normalised, sorted by cluster)", "Sharing between tasks",
                         "Fractional task variance"} | ({"Sharing against shuffled task labels"}
                                                       if "null_distribution" in result else set())
    for name, figure in made.values():
        figures.save_figure(figure, tmp_path / name)
    figures.sharing_matrices(result, epoch="stimulus")
    figures.plot_sharing_comparison(compare_sharing(two_runs), tmp_path / "comparison.png")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([name for name, _ in made.values()] + ["comparison.png"])  # no temporary files left
    assert all((tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in written)
    with pytest.raises(ValueError, match="not in the result"):
        figures.ftv_histograms(result, pairs=["A|C"])


def test_result_round_trips_through_netcdf(two_runs, tmp_path):
    result = two_runs["P=2"]
    result.to_netcdf(tmp_path / "sharing.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "sharing.nc", engine="h5netcdf") as loaded:
        xr.testing.assert_allclose(loaded.load(), result)


@pytest.mark.parametrize("n_units, n_nonlinear", [(32, 4), (70, 66)])  # int codes; packed codes (P > 62)
def test_on_a_simulated_multitask_network(n_units, n_nonlinear):
    import torch

    from neuroalrnn import envs
    from neuroalrnn.models import build_model
    from neuroalrnn.evaluation.simulate import simulate

    torch.manual_seed(0)
    model = build_model("alrnn", n_inputs=53, n_outputs=17, n_units=n_units, n_nonlinear=n_nonlinear)
    trials = simulate(model, envs.make("yang19"), 200, seed=0)
    result = sharing_analysis(trials, cluster_range=(2, 6))
    assert result.sizes["task"] == 20 and result.sizes["unit"] == n_units
    assert result["task"].values.tolist() == json.loads(trials.attrs["task_names"])
    assert "fixation" not in result["epoch"].values
    for name in ("jaccard", "js_similarity", "covariance_similarity", "subspace_overlap"):
        values = result[name].values
        assert np.all((values >= -1e-12) & (values <= 1 + 1e-12)), name
        np.testing.assert_allclose(values, values.T, atol=1e-12)
    assert 0 <= float(result["sharing_index"]) <= 1
    assert int(result["n_steps"].sum()) == int(result["regime_count"].sum())
    assert (result["regime"].dtype.kind == "U") == (n_nonlinear > 62)
