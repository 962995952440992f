"""The null of shuffled task labels for the sharing measures, and the Yang et al. (2019) facts the unit level follows.

Checked against independent answers: tasks on disjoint regimes (every shuffle shares more), tasks drawn from one
distribution (the null is the truth), and the fast permutation path against sharing_analysis recomputed on a
relabelled Dataset.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from neuroalrnn.analyses import sharing_figures as figures
from neuroalrnn.analyses.sharing import (
    KMEANS_INITIALISATIONS,
    YANG_FTV_PAIRS,
    compare_sharing,
    sharing_analysis,
    sharing_report_lines,
)
from neuroalrnn.analyses.sharing_null import (
    NULL_MEASURES,
    NULL_VARIABLES,
    shuffled_task_labels,
)

from neuroalrnn import formats

REGIME_MEASURES = ["sharing_index", "mean_jaccard", "shared_regime_fraction", "shared_step_fraction"]


def make_trials(regime, task, latents, *, epoch=None, mask=None, **attrs) -> xr.Dataset:
    regime = np.asarray(regime, dtype=np.int64)
    shape = regime.shape
    epoch = np.full(shape, "stimulus") if epoch is None else np.asarray(epoch, dtype=str)
    mask = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    return xr.Dataset(
        {"regime": (("trial", "time"), regime), "mask": (("trial", "time"), mask),
         "latents": (("trial", "time", "unit"), np.asarray(latents, dtype=np.float32))},
        coords={"time": ("time", np.arange(shape[1]) * 10.0), "task": ("trial", np.asarray(task, dtype=str)),
                "epoch": (("trial", "time"), epoch), "epoch_canonical": (("trial", "time"), epoch),
                "unit": ("unit", np.arange(np.shape(latents)[-1]))},
        attrs={"dt": 10.0, **attrs})


def separated_tasks(n_tasks=3, trials_per_task=8, n_time=6, n_units=5, seed=0) -> xr.Dataset:
    """Each task visits its own regimes (codes 10·task + 0..3) and varies along its own unit."""
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(n_tasks), trials_per_task)
    regime = 10 * task[:, None] + rng.integers(0, 4, size=(task.size, n_time))
    latents = 0.05 * rng.normal(size=(task.size, n_time, n_units))
    latents[np.arange(task.size), :, task] += 3.0 * rng.normal(size=(task.size, n_time))
    return make_trials(regime, [f"task{t}" for t in task], latents)


def exchangeable_tasks(seed: int, n_tasks=3, trials_per_task=10, n_time=8, n_units=4) -> xr.Dataset:
    """Tasks drawn from the same distribution: task labels carry no information."""
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(n_tasks), trials_per_task)
    regime = rng.integers(0, 60, size=(task.size, n_time))  # sparse visits: no measure saturates
    latents = rng.normal(size=(task.size, n_time, n_units)) * [2.0, 1.0, 0.5, 0.25]
    return make_trials(regime, [f"task{t}" for t in task], latents)


@pytest.fixture(scope="module")
def separated() -> xr.Dataset:
    return sharing_analysis(separated_tasks(), n_permutations=99, random_state=3)


def row(result: xr.Dataset, variable: str, measure: str) -> float:
    return float(result[variable].sel(measure=measure))


# ------------------------------------------------------------------------------------------------------------------
# Behaviour against known answers


def test_disjoint_regimes_give_the_smallest_p_value_and_normalised_sharing_far_below_one(separated):
    assert separated["measure"].values.tolist() == list(NULL_MEASURES)
    for measure in [*REGIME_MEASURES, "mean_covariance_similarity"]:
        assert row(separated, "null_p_value", measure) == pytest.approx(1 / 100), measure
        assert row(separated, "null_observed", measure) < row(separated, "null_q05", measure), measure
    for measure in REGIME_MEASURES:
        assert row(separated, "null_observed", measure) == pytest.approx(0.0, abs=1e-12)
        assert row(separated, "null_normalised", measure) == pytest.approx(0.0, abs=1e-12)
    assert row(separated, "null_normalised", "mean_covariance_similarity") < 0.2


def test_the_null_summaries_restate_the_distribution(separated):
    for measure in NULL_MEASURES:
        sample = separated["null_distribution"].sel(measure=measure).values
        observed = row(separated, "null_observed", measure)
        assert row(separated, "null_mean", measure) == pytest.approx(sample.mean())
        assert row(separated, "null_std", measure) == pytest.approx(sample.std(ddof=1))
        assert row(separated, "null_q05", measure) == pytest.approx(np.percentile(sample, 5))
        assert row(separated, "null_q95", measure) == pytest.approx(np.percentile(sample, 95))
        assert row(separated, "null_normalised", measure) == pytest.approx(observed / sample.mean())
        assert row(separated, "null_p_value", measure) == pytest.approx((1 + np.sum(sample <= observed)) / 100)
    assert separated["null_higher_is_shared"].values.all()


def test_observed_values_are_the_analysis_own_summaries(separated):
    for measure in NULL_MEASURES:
        assert row(separated, "null_observed", measure) == pytest.approx(float(separated[measure]), rel=1e-6,
                                                                          abs=1e-12)


def test_exchangeable_tasks_are_as_shared_as_their_null():
    # Labels carry no information: the observed labelling is one more draw from the null, so the p-values over
    # independent data sets spread over (0, 1] and the normalised measures sit near 1.
    results = [sharing_analysis(exchangeable_tasks(seed), n_permutations=39, random_state=seed) for seed in range(12)]
    p_values = np.array([r["null_p_value"].values for r in results])  # (data set, measure)
    normalised = np.array([r["null_normalised"].values for r in results])
    assert np.all((p_values >= 1 / 40) & (p_values <= 1))
    assert 0.3 < np.median(p_values) < 0.75
    assert np.mean(p_values <= 0.05) < 0.2
    np.testing.assert_allclose(np.median(normalised, axis=0), 1.0, atol=0.05)


# ------------------------------------------------------------------------------------------------------------------
# Fast path against a slow recomputation


@pytest.mark.parametrize("min_occupancy", [0.0, 0.2])
def test_each_shuffle_equals_sharing_analysis_on_the_relabelled_trials(min_occupancy):
    rng = np.random.default_rng(8)
    n_trials, n_time = 14, 7
    lengths = rng.integers(3, n_time + 1, size=n_trials)
    mask = np.arange(n_time)[None, :] < lengths[:, None]
    epoch = np.where(mask, "stimulus", "")
    epoch[:, 0] = "fixation"
    task = np.array(["c", "a", "b", "a", "c", "b", "a", "b", "c", "a", "b", "c", "a", "b"])
    regime = rng.integers(0, 9, size=(n_trials, n_time))
    latents = rng.normal(size=(n_trials, n_time, 3)) + (task == "a")[:, None, None] * [1.0, 0.0, 0.5]
    trials = make_trials(regime, task, latents, epoch=epoch, mask=mask, task_names='["c", "a", "b"]')
    result = sharing_analysis(trials, n_permutations=5, random_state=11, min_occupancy=min_occupancy)

    order = np.random.default_rng(11)
    for k in range(5):
        relabelled = trials.assign_coords(task=("trial", task[order.permutation(n_trials)]))
        slow = sharing_analysis(relabelled, n_permutations=0, min_occupancy=min_occupancy)
        for measure in NULL_MEASURES:
            assert float(result["null_distribution"].sel(measure=measure, permutation=k)) == pytest.approx(
                float(slow[measure]), rel=1e-6, abs=1e-9), (k, measure)


def test_shuffled_labels_keep_each_task_s_trial_count_and_follow_the_seed():
    task_index = np.array([0, 0, 0, 1, 1, 2])
    first = shuffled_task_labels(task_index, 50, random_state=4)
    assert first.shape == (50, 6)
    assert all(np.bincount(labels, minlength=3).tolist() == [3, 2, 1] for labels in first)
    np.testing.assert_array_equal(first, shuffled_task_labels(task_index, 50, random_state=4))
    assert not np.array_equal(first, shuffled_task_labels(task_index, 50, random_state=5))


def test_seed_reproducibility_and_seed_dependence():
    trials = exchangeable_tasks(0)
    a, b = (sharing_analysis(trials, n_permutations=20, random_state=7) for _ in range(2))
    c = sharing_analysis(trials, n_permutations=20, random_state=8)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a["null_distribution"].values, c["null_distribution"].values)
    assert a.attrs["n_permutations"] == 20


def test_zero_permutations_switches_the_null_off():
    result = sharing_analysis(exchangeable_tasks(1), n_permutations=0)
    assert "measure" not in result.dims and "null_p_value" not in result
    assert result.attrs["n_permutations"] == 0
    assert not any("shuffled" in line for line in sharing_report_lines(result))


@pytest.mark.parametrize("value", [-1, 2.5, True])
def test_bad_n_permutations_is_named(value):
    with pytest.raises(ValueError, match="n_permutations"):
        sharing_analysis(exchangeable_tasks(0), n_permutations=value)


def test_without_regimes_only_the_regime_free_measure_has_a_null():
    result = sharing_analysis(separated_tasks().drop_vars("regime"), n_permutations=19)
    assert result["measure"].values.tolist() == ["mean_covariance_similarity"]
    assert row(result, "null_p_value", "mean_covariance_similarity") == pytest.approx(1 / 20)


# ------------------------------------------------------------------------------------------------------------------
# Comparison, report, figures, file format


def test_compare_sharing_carries_the_null_and_leaves_runs_without_it_nan(separated):
    shared = sharing_analysis(exchangeable_tasks(2), n_permutations=19)
    without = sharing_analysis(exchangeable_tasks(3), n_permutations=0)
    table = compare_sharing({"P=2": separated, "P=8": shared, "old": without})
    assert table["measure"].values.tolist() == list(NULL_MEASURES)
    for variable in NULL_VARIABLES:
        assert table[variable].dims == ("run", "measure")
        np.testing.assert_allclose(table[variable].sel(run="P=2").values, separated[variable].values)
        assert np.isnan(table[variable].sel(run="old").values).all()
    assert table["n_permutations"].values.tolist() == [99, 19, 0]
    no_null = compare_sharing({"old": without})
    assert "measure" not in no_null.dims


def test_report_states_each_measure_with_its_null_in_words(separated):
    text = "\n".join(sharing_report_lines(separated))
    assert "### Against shuffled task labels" in text
    mean, spread = row(separated, "null_mean", "sharing_index"), row(separated, "null_std", "sharing_index")
    assert (f"Regime sharing index (mean 1 − JS distance of regime occupancy): 0.00 vs {mean:.2f} ± {spread:.2f} "
            "under shuffled task labels (normalised 0.00, p = 0.01): tasks share less than chance.") in text
    assert "Unit covariance similarity (regime-free)" in text


def test_null_figures_render(separated, tmp_path):
    shared = sharing_analysis(exchangeable_tasks(2), n_permutations=19)
    table = compare_sharing({"P=2": separated, "P=8": shared, "old": sharing_analysis(exchangeable_tasks(3),
                                                                                      n_permutations=0)})
    figures.plot_sharing_comparison(table, tmp_path / "comparison.png")
    figures.save_figure(figures.sharing_null_figure(separated), tmp_path / "null.png")
    assert all((tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in ("comparison.png", "null.png"))
    with pytest.raises(ValueError, match="n_permutations"):
        figures.sharing_null_figure(sharing_analysis(exchangeable_tasks(3), n_permutations=0))


def test_null_round_trips_through_the_declared_format(separated, tmp_path):
    result = separated.copy()
    result.attrs.update(format_version=formats.FORMAT_VERSION, seed=0, simulated_with_noise=0, checkpoint_step=0)
    formats.validate("sharing", result)
    result.to_netcdf(tmp_path / "sharing.nc", engine="h5netcdf")
    loaded = formats.read("sharing", tmp_path / "sharing.nc")
    xr.testing.assert_allclose(loaded, result)
    declared = formats.declared_parts("sharing")
    assert {*NULL_VARIABLES, "null_higher_is_shared", "null_distribution", "measure", "n_permutations"} <= declared
    # An older file, written before the null existed, still reads.
    older = result.drop_vars([*NULL_VARIABLES, "null_higher_is_shared", "null_distribution", "measure"])
    older.attrs.pop("n_permutations")
    formats.validate("sharing", older)


# ------------------------------------------------------------------------------------------------------------------
# Yang et al. (2019), as in github.com/gyyang/multitask


def test_yang_ftv_pairs_are_his_eight_pairs_in_our_task_names():
    # analysis/variance.py, plot_hist_varprop_selection: (dm1, dm2), (contextdm1, contextdm2), (dm1, fdanti),
    # (dm1, contextdm1), (fdgo, reactgo), (delaydm1, dm1), (dmcgo, dmcnogo), (contextdm1, contextdelaydm1).
    assert YANG_FTV_PAIRS == (("dm1", "dm2"), ("ctxdm1", "ctxdm2"), ("dm1", "anti"), ("dm1", "ctxdm1"),
                              ("go", "rtgo"), ("dlydm1", "dm1"), ("dmc", "dnmc"), ("ctxdm1", "ctxdlydm1"))
    from neuroalrnn.envs.yang19 import YANG19_TASKS

    assert {task for pair in YANG_FTV_PAIRS for task in pair} <= set(YANG19_TASKS)


def yang_unit_trials(amplitude: np.ndarray, names) -> xr.Dataset:
    """Unit u of task A's trials varies with amplitude[u, A] (noise around 0 otherwise)."""
    rng = np.random.default_rng(0)
    n_units, n_tasks = amplitude.shape
    latents = np.concatenate([rng.normal(size=(6, 5, n_units)) * amplitude[:, a] for a in range(n_tasks)])
    task = np.repeat(np.asarray(names), 6)
    return make_trials(np.zeros(latents.shape[:2]), task, latents)


def test_yang_pairs_are_the_default_ftv_pairs_when_their_tasks_are_present():
    amplitude = np.abs(np.random.default_rng(1).normal(size=(6, 4))) + 0.1
    result = sharing_analysis(yang_unit_trials(amplitude, ["go", "rtgo", "dm1", "dm2"]), n_permutations=0,
                              cluster_range=(2, 4))
    assert result["pair"].values.tolist() == ["dm1|dm2", "go|rtgo"]  # Yang's order
    other = sharing_analysis(yang_unit_trials(amplitude, ["a", "b", "c", "d"]), n_permutations=0,
                             cluster_range=(2, 4))
    assert other.sizes["pair"] == 6  # no Yang pair present: every pair


def test_normalised_task_variance_divides_by_the_max_over_tasks_and_ftv_uses_20_bins():
    amplitude = np.array([[2.0, 1.0, 0.5], [0.2, 0.4, 0.1], [1.0, 1.0, 1.0], [0.3, 0.0, 0.9]])
    result = sharing_analysis(yang_unit_trials(amplitude, ["x", "y", "z"]), n_permutations=0, cluster_range=(2, 3))
    variance = result["task_variance"].transpose("unit", "task").values
    np.testing.assert_allclose(result["task_variance_normalised"].transpose("unit", "task").values,
                               variance / variance.max(axis=1, keepdims=True))
    assert result.sizes["ftv_bin"] == 20 and float(result["ftv_bin"].attrs["bin_width"]) == pytest.approx(0.1)


def test_ftv_counts_the_units_active_in_the_pair_as_yang_does():
    # Unit 2 varies only in task z: Yang's per-pair threshold leaves it out of FTV(x, y) (not a 0/0 ratio of
    # noise), though it is an active unit overall and counts for FTV(x, z).
    amplitude = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [1e-4, 1e-4, 1.0]])
    result = sharing_analysis(yang_unit_trials(amplitude, ["x", "y", "z"]), n_permutations=0, cluster_range=(2, 2),
                              ftv_pairs=[("x", "y"), ("x", "z")])
    assert result["active_unit"].values.tolist() == [True, True, True]
    assert np.isnan(float(result["ftv"].sel(pair="x|y", unit=2)))
    assert float(result["ftv"].sel(pair="x|z", unit=2)) == pytest.approx(-1.0, abs=1e-3)
    assert int(result["ftv_histogram"].sel(pair="x|y").sum()) == 2


def test_clustering_uses_yang_s_kmeans_settings():
    # analysis/clustering.py: KMeans(n_cluster, n_init=20, random_state=0) for n_cluster in range(2, 30), the k
    # with the highest silhouette score.
    import inspect

    assert KMEANS_INITIALISATIONS == 20
    defaults = inspect.signature(sharing_analysis).parameters
    assert defaults["cluster_range"].default == (2, 29)
    assert defaults["clustering"].default == "kmeans"
    assert defaults["random_state"].default == 0


def test_sweep_metrics_report_the_null_of_the_sharing_analysis():
    import pickle

    from neuroalrnn.workflows.sweeps.metrics import METRICS

    trials = separated_tasks()
    expected = sharing_analysis(trials)  # the defaults the metrics use
    for measure in ("sharing_index", "mean_covariance_similarity"):
        normalised = METRICS[f"{measure}_vs_shuffled"](trials, None, None)
        p_value = METRICS[f"{measure}_p"](trials, None, None)
        assert normalised == pytest.approx(row(expected, "null_normalised", measure))
        assert p_value == pytest.approx(row(expected, "null_p_value", measure))
        assert p_value < 0.05 and normalised < 1  # separated tasks share less than chance
    assert METRICS["sharing_index"](trials, None, None) == pytest.approx(float(expected["sharing_index"]))
    pickle.loads(pickle.dumps(METRICS))  # sweeps send them to worker processes
