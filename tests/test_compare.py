"""Model vs recordings (`analyses.compare`): metrics against textbook answers, known-network recordings, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from benchmark_scripts import load
from neuroalrnn.analyses.compare import (
    compare,
    linear_cka,
    load_recordings,
    plot_comparison,
    procrustes_distance,
    rsa,
    validate_recordings,
)
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from neuroalrnn import envs
from neuroalrnn.evaluation.simulate import simulate
from neuroalrnn.models import ALRNN, ALRNNParams

STRUCTURED = ["stimulus", "delay", "decision", "all"]  # epochs in which conditions differ


make_recordings = load("make_recordings")


def _network(seed: int) -> ALRNN:
    """A fixed random AL-RNN (M = 16, P = 4): A = 0.9, W ~ N(0, 0.3²/M), C ~ U(±1/√K), B ~ U(±1/√M), drawn with
    torch from ``seed`` (not the default initialisation, so that the scores below do not move with it)."""
    n_inputs, n_outputs, n_units = 5, 3, 16
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(n_units, n_units, generator=generator) * (0.3 / np.sqrt(n_units))
    C = (torch.rand(n_units, n_inputs, generator=generator) * 2 - 1) / np.sqrt(n_inputs)
    B = (torch.rand(n_outputs, n_units, generator=generator) * 2 - 1) / np.sqrt(n_units)
    params = ALRNNParams(A=np.full(n_units, 0.9), W=W.numpy(), h=np.zeros(n_units), C=C.numpy(), B=B.numpy(),
                         b=np.zeros(n_outputs), n_nonlinear=4)
    return ALRNN.from_params(params).eval()


def _trials(network_seed: int, trial_seed: int, n: int = 320) -> xr.Dataset:
    # Two coherences: 2 contexts × 4 × 4 signed coherences = 32 condition combinations.
    return simulate(_network(network_seed), envs.make("stimulus-selection", cohs=(0.15, 0.5)), n, seed=trial_seed)


@pytest.fixture(scope="module")
def model_a():
    return _trials(0, trial_seed=1)


@pytest.fixture(scope="module")
def model_a_other_trials():
    return _trials(0, trial_seed=2)


@pytest.fixture(scope="module")
def model_b():
    return _trials(1, trial_seed=2)


@pytest.fixture(scope="module")
def recordings(model_a):
    return make_recordings.synthetic_recordings(model_a, 40, noise="gaussian", noise_std=5.0, seed=3)


@pytest.fixture(scope="module")
def shuffled(model_a):
    return make_recordings.synthetic_recordings(model_a, 40, noise="gaussian", noise_std=5.0, seed=3,
                                                shuffle_conditions=True)


def _as_recording(trials: xr.Dataset) -> xr.DataArray:
    """The model's own latents as a recording (identical responses)."""
    return trials["latents"].rename(unit="neuron").assign_coords(mask=trials["mask"])


def _small(recordings: xr.Dataset) -> xr.Dataset:
    return recordings.isel(trial=slice(0, 80))


# --------------------------------------------------------------------------- metrics


def _random(rows=30, columns=6, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, columns))


def _rotation(size, seed=1):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))[0]


def test_cka_is_one_for_identical_rotated_or_scaled_data():
    X = _random()
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, 3.0 * X @ _rotation(6) + 2.0) == pytest.approx(1.0, abs=1e-12)


def test_cka_matches_the_centred_kernel_formula():
    X, Y = _random(seed=0), _random(columns=9, seed=1)
    H = np.eye(len(X)) - 1.0 / len(X)
    Kx, Ky = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    expected = np.trace(Kx @ Ky) / np.sqrt(np.trace(Kx @ Kx) * np.trace(Ky @ Ky))
    assert linear_cka(X, Y) == pytest.approx(expected, rel=1e-10)
    # Many features (> samples) go through a rank reduction; the value must not change.
    wide = _random(rows=12, columns=50, seed=2)
    H = np.eye(12) - 1.0 / 12
    Kw, Kx = H @ wide @ wide.T @ H, H @ X[:12] @ X[:12].T @ H
    expected = np.trace(Kx @ Kw) / np.sqrt(np.trace(Kx @ Kx) * np.trace(Kw @ Kw))
    assert linear_cka(X[:12], wide) == pytest.approx(expected, rel=1e-10)


def test_procrustes_distance_is_zero_for_a_rotated_copy_of_other_width():
    X = _random(columns=3)
    padded = np.hstack([X, np.zeros((len(X), 2))])
    Y = 2.5 * padded @ _rotation(5) + 1.0  # rotated into 5 dims, scaled, shifted
    assert procrustes_distance(X, Y) == pytest.approx(0.0, abs=1e-6)
    assert procrustes_distance(X, X) == pytest.approx(0.0, abs=1e-6)


def test_procrustes_distance_matches_scipy_orthogonal_procrustes():
    X, Y = _random(columns=4, seed=0), _random(columns=4, seed=1)

    def normalise(M):
        M = M - M.mean(axis=0)
        return M / np.linalg.norm(M)

    rotation, nuclear = orthogonal_procrustes(normalise(X), normalise(Y))
    assert procrustes_distance(X, Y) == pytest.approx(np.arccos(nuclear), rel=1e-10)
    assert np.trace(normalise(X) @ rotation @ normalise(Y).T) == pytest.approx(nuclear)
    assert 0 < procrustes_distance(X, Y) <= np.pi / 2


def test_rsa_is_one_for_identical_rdms_and_equals_spearman_of_pdist():
    X, Y = _random(rows=8, seed=0), _random(rows=8, seed=1)
    assert rsa(X, X) == pytest.approx(1.0)
    assert rsa(X, 4.0 * X + 1.0) == pytest.approx(1.0)  # correlation distance ignores scale and offset
    expected = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation")).statistic
    assert rsa(X, Y) == pytest.approx(expected, rel=1e-10)
    assert np.isnan(rsa(np.ones((5, 3)), Y[:5]))  # identical patterns: no RDM structure


def test_rsa_ranks_distances_equal_up_to_rounding_as_ties():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    X[1] = X[0]
    X[3] = X[2] * 2.0  # correlation distance 0 to X[2]
    rounded_apart = X.copy()
    rounded_apart[1] = X[0] * (1 + 1e-15)  # the same pattern up to the last bits, as an average in another order
    rounded_apart[3] = X[2] * 2.0 + 1e-15
    assert rsa(rounded_apart, Y) == rsa(X, Y)
    expected = spearmanr(np.round(pdist(X, "correlation"), 9), pdist(Y, "correlation")).statistic
    assert rsa(X, Y) == pytest.approx(expected, rel=1e-12)


def _shared_state_trials(seed: int, n_units: int = 7, n_steps: int = 10) -> tuple[xr.Dataset, xr.DataArray]:
    """Six conditions ``stimulus`` of 40–99 trials each; in epoch ``cue`` every trial of a ``group`` (stimulus // 3)
    has exactly the same state, so three conditions share a state there; in ``response`` they differ. The
    recording is noise over the same conditions."""
    rng = np.random.default_rng(seed)
    stimulus = np.repeat(np.arange(6), rng.integers(40, 100, size=6))
    n_trials = len(stimulus)
    group_state = rng.normal(size=(2, n_units)) * rng.uniform(0.1, 3.0, size=(2, 1))
    latents = np.empty((n_trials, n_steps, n_units))
    latents[:, :5] = group_state[stimulus // 3][:, None, :]
    latents[:, 5:] = rng.normal(size=(6, 1, n_units))[stimulus] + 0.3 * rng.normal(size=(n_trials, 5, n_units))
    time = ("time", 100.0 * np.arange(n_steps), {"units": "ms"})
    epoch = np.broadcast_to(np.array(["cue"] * 5 + ["response"] * 5), (n_trials, n_steps))
    trials = xr.Dataset(
        {"latents": (("trial", "time", "unit"), latents), "mask": (("trial", "time"), np.ones(epoch.shape, bool))},
        coords={"time": time, "stimulus": ("trial", stimulus), "epoch": (("trial", "time"), epoch.copy())},
        attrs={"dt": 100.0},
    )
    recording = xr.DataArray(rng.normal(size=(n_trials, n_steps, 9)), dims=("trial", "time", "neuron"),
                             coords={"time": time, "stimulus": ("trial", stimulus)})
    return trials, recording


@pytest.mark.parametrize("seed", range(5))
def test_scores_do_not_depend_on_trial_order(seed):
    """Permuting the trials of either side changes no score: condition averages of shared states stay equal to the
    last bit and the RDMs' ties stay ties."""
    trials, recording = _shared_state_trials(seed)
    expected = compare(trials, recording, n_shuffles=0)["observed"]
    assert np.isfinite(expected.sel(epoch="cue", metric="rsa"))
    rng = np.random.default_rng(100 + seed)
    for _ in range(3):
        model_order = rng.permutation(trials.sizes["trial"])
        recording_order = rng.permutation(recording.sizes["trial"])
        for permuted in (compare(trials.isel(trial=model_order), recording, n_shuffles=0),
                         compare(trials, recording.isel(trial=recording_order), n_shuffles=0)):
            xr.testing.assert_allclose(permuted["observed"], expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize("align", ["epoch", "time"])
def test_identical_data_scores_perfectly(model_a, align):
    result = compare(model_a, _as_recording(model_a), align=align, n_shuffles=20)
    structured = result.sel(epoch=STRUCTURED)
    np.testing.assert_allclose(structured["observed"].sel(metric="cka"), 1.0, atol=1e-9)
    np.testing.assert_allclose(structured["observed"].sel(metric="procrustes"), 0.0, atol=1e-5)
    np.testing.assert_allclose(structured["observed"].sel(metric="rsa"), 1.0, atol=1e-9)
    # Before the stimulus this deterministic network responds alike to every condition: RSA is undefined.
    assert np.isnan(float(result["observed"].sel(metric="rsa", epoch="fixation")))
    assert result.sizes["condition"] == 32 and list(result["epoch"].values)[-1] == "all"


def test_matched_network_scores_closer_than_another_network_and_shuffled_data(
        model_a_other_trials, model_b, recordings, shuffled):
    matched = compare(model_a_other_trials, recordings, n_shuffles=99).sel(epoch=STRUCTURED)
    other = compare(model_b, recordings, n_shuffles=99).sel(epoch=STRUCTURED)
    control = compare(model_a_other_trials, shuffled, n_shuffles=99)

    for similarity in ("cka", "rsa"):
        assert (matched["observed"].sel(metric=similarity) > other["observed"].sel(metric=similarity)).all()
    assert (matched["observed"].sel(metric="procrustes") < other["observed"].sel(metric="procrustes")).all()
    for epoch in ("delay", "decision"):
        for metric, better in (("cka", np.greater), ("procrustes", np.less), ("rsa", np.greater)):
            assert better(float(matched["observed"].sel(metric=metric, epoch=epoch)),
                          float(control["observed"].sel(metric=metric, epoch=epoch)))

    np.testing.assert_array_equal(matched["p_value"].values, 0.01)  # beyond every one of 99 shuffles
    structured = control["p_value"].sel(epoch=STRUCTURED)
    assert (structured > 0.05).all(), structured.to_pandas()
    assert float(control["p_value"].sel(metric="cka", epoch="fixation")) == 1.0  # only a shared time course


def test_result_layout_and_p_values(model_a_other_trials, recordings):
    result = compare(model_a_other_trials, recordings, n_shuffles=30, seed=5)
    assert result["observed"].dims == ("metric", "epoch")
    assert result["null"].dims == ("metric", "epoch", "shuffle") and result.sizes["shuffle"] == 30
    assert list(result["metric"].values) == ["cka", "procrustes", "rsa"]
    assert list(result["higher_is_similar"].values) == [True, False, True]
    assert list(result["epoch"].values) == ["fixation", "context", "stimulus", "delay", "decision", "all"]
    assert json.loads(result.attrs["conditions"]) == ["task", "context", "coh_motion", "coh_colour",
                                                      "coh_relevant", "ground_truth"]
    assert int(result["model_trials"].sum()) == 320 and int(result["recording_trials"].sum()) == 320
    assert set(result["context"].values) == {"motion", "colour"}
    for metric, similar in (("cka", True), ("procrustes", False), ("rsa", True)):
        observed = result["observed"].sel(metric=metric)
        null = result["null"].sel(metric=metric)
        beyond = (null >= observed - 1e-9) if similar else (null <= observed + 1e-9)
        expected = ((1 + beyond.sum("shuffle")) / 31).where(observed.notnull())
        xr.testing.assert_allclose(result["p_value"].sel(metric=metric), expected)
        xr.testing.assert_allclose(result["null_mean"].sel(metric=metric), null.mean("shuffle"))
    again = compare(model_a_other_trials, recordings, n_shuffles=30, seed=5)
    xr.testing.assert_identical(result, again)


def test_result_writes_to_netcdf_and_plots(model_a, recordings, tmp_path):
    result = compare(model_a, _small(recordings), n_shuffles=10, metrics=("cka", "procrustes"))
    result.to_netcdf(tmp_path / "comparison.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "comparison.nc", engine="h5netcdf") as opened:
        np.testing.assert_allclose(opened["observed"].values, result["observed"].values)
    path = plot_comparison(result, tmp_path / "figures" / "comparison.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in path.parent.iterdir()) == ["comparison.png"]  # no temporary file left


def test_time_alignment_interpolates_a_finer_recording(model_a):
    # The latents on a 25 ms grid (NaN after a trial's end): at the model's 50 ms steps the
    # interpolated condition averages are the model's own.
    latents = model_a["latents"].where(model_a["mask"]).rename(unit="neuron")
    fine = latents.interp(time=np.arange(0.0, float(model_a["time"][-1]) + 1, 25.0))
    fine["time"].attrs["units"] = "ms"
    fine = fine.drop_vars(["epoch", "epoch_canonical"])
    with pytest.raises(ValueError, match="NaN"):
        compare(model_a, fine, align="time", n_shuffles=0)
    result = compare(model_a, fine, align="time", nan_policy="omit", n_shuffles=0)
    np.testing.assert_allclose(result["observed"].sel(metric="cka", epoch=STRUCTURED), 1.0, atol=1e-9)
    np.testing.assert_allclose(result["observed"].sel(metric="rsa", epoch=STRUCTURED), 1.0, atol=1e-9)
    assert result.attrs["align"] == "time" and result.attrs["n_time_steps"] > 30


def test_epochs_from_the_time_axis_when_the_recording_has_none(model_a, recordings):
    with_epochs = compare(model_a, recordings, n_shuffles=0)
    without = compare(model_a, recordings.drop_vars("epoch"), n_shuffles=0)
    assert "median" in without.attrs["epoch_source"] and "epoch_windows_ms" in without.attrs
    assert json.loads(without.attrs["epoch_windows_ms"])["stimulus"] == [650.0, 1400.0]
    fixed = ["fixation", "context", "stimulus"]  # epochs with the same times in every trial
    xr.testing.assert_allclose(with_epochs["observed"].sel(epoch=fixed), without["observed"].sel(epoch=fixed))


def test_conditions_mapped_by_name_and_value(model_a, recordings):
    small = _small(recordings)
    renamed = small.rename(context="ctx").assign_coords(
        ctx=("trial", np.where(small["context"].values == "motion", "M", "C")),
        coh_motion=("trial", small["coh_motion"].values.astype(np.float32)))  # float32 values still match
    kwargs = {"n_shuffles": 0, "conditions": ["context", "coh_motion"]}
    expected = compare(model_a, small, **kwargs)
    mapped = compare(model_a, renamed, mapping={"ctx": ("context", {"M": "motion", "C": "colour"})}, **kwargs)
    xr.testing.assert_allclose(expected["observed"], mapped["observed"])
    assert mapped.sizes["condition"] == 8
    assert json.loads(mapped.attrs["mapping"]) == {"ctx": ["context", {"M": "motion", "C": "colour"}]}


def test_epoch_names_mapped(model_a, recordings):
    small = _small(recordings)
    cue = small.assign_coords(epoch=small["epoch"].where(small["epoch"] != "context", "cue"))
    assert "context" not in compare(model_a, cue, n_shuffles=0)["epoch"].values  # dropped: not on both sides
    mapped = compare(model_a, cue, n_shuffles=0, mapping={"epoch": {"cue": "context"}})
    xr.testing.assert_allclose(mapped["observed"], compare(model_a, small, n_shuffles=0)["observed"])


def test_nan_policies(model_a, recordings):
    data = _small(recordings)
    rates = data["rates"].values.copy()
    rates[[3, 5], 2, 7] = np.nan
    rates[4, 6, 11] = np.nan
    damaged = data.assign(rates=(data["rates"].dims, rates))
    expected = r"3 NaN/infinite values .* 2 neurons \(7, 11\), 3 trials, at times 100–300 ms"
    with pytest.raises(ValueError, match=expected):
        compare(model_a, damaged, n_shuffles=0)
    dropped = compare(model_a, damaged, n_shuffles=0, nan_policy="drop_neurons")
    assert json.loads(dropped.attrs["dropped_neurons"]) == ["7", "11"] and dropped.attrs["n_neurons"] == 38
    omitted = compare(model_a, damaged, n_shuffles=0, nan_policy="omit")
    assert omitted.attrs["n_neurons"] == 40 and np.isfinite(omitted["observed"].sel(epoch="all")).all()


# --------------------------------------------------------------------------- errors


def test_no_shared_conditions_names_both_sides(model_a, recordings):
    data = _small(recordings)
    renamed = data.rename({name: f"rec_{name}" for name in ("task", "context", "coh_motion", "coh_colour",
                                                            "coh_relevant", "ground_truth")})
    with pytest.raises(ValueError, match=r"no shared conditions: the model's trials have .*'coh_motion'.* the "
                                         r"recordings have .*'rec_context'"):
        compare(model_a, renamed)


def test_shared_names_without_shared_values(model_a, recordings):
    data = _small(recordings).assign_coords(context=("trial", np.full(80, "sound")))
    with pytest.raises(ValueError, match=r"no combination of their values.*mapping"):
        compare(model_a, data, conditions=["context"])
    with pytest.raises(ValueError, match=r"condition 'rule' is not in the model's trials"):
        compare(model_a, data, conditions=["rule"])


@pytest.mark.parametrize(("transform", "message"), [
    (lambda r: r.isel(trial=0, drop=True), r"must have dims \('trial', 'time', 'neuron'\), got \('time', 'neuron'\)"),
    (lambda r: r.rename(neuron="unit"), r"got \('trial', 'time', 'unit'\); rename it with \.rename\(unit='neuron'\)"),
    (lambda r: r.drop_vars("time"), r"no 'time' coordinate"),
    (lambda r: r.assign_coords(time=("time", r["time"].values / 1000, {"units": "s"})), r"in seconds"),
    (lambda r: r.assign_coords(time=("time", r["time"].values)), r"no units; it must be in ms"),
    (lambda r: r.assign_coords(time=("time", r["time"].values + 1e5, {"units": "ms"})), r"does not overlap"),
])
def test_malformed_recordings(model_a, recordings, transform, message):
    with pytest.raises(ValueError, match=message):
        rates = _small(recordings)["rates"].assign_coords(mask=_small(recordings)["mask"])
        compare(model_a, transform(rates), n_shuffles=0)


def test_too_few_conditions_for_rsa(model_a, recordings):
    with pytest.raises(ValueError, match=r"too few conditions for RSA: 2 shared combinations of \['context'\]"):
        compare(model_a, _small(recordings), conditions=["context"])
    result = compare(model_a, _small(recordings), conditions=["context"], metrics=("cka", "procrustes"),
                     n_shuffles=5)
    assert result.sizes["condition"] == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"align": "trial"}, r"align must be one of \('epoch', 'time'\), got 'trial'"),
    ({"nan_policy": "zero"}, r"nan_policy must be one of"),
    ({"metrics": ("cka", "svcca")}, r"metrics must be a non-empty subset"),
    ({"n_shuffles": -1}, r"n_shuffles must be an integer ≥ 0, got -1"),
    ({"epochs": ["response"]}, r"\['response'\] not on both sides; model epochs \['fixation'"),
    ({"variable": "spikes"}, r"variable='spikes' is not in the recordings; its data variables are \['rates'\]"),
])
def test_bad_arguments(model_a, recordings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare(model_a, _small(recordings), **kwargs)


def test_dataset_variable_choice(recordings):
    two = recordings.assign(counts=recordings["rates"] * 0.05)
    assert validate_recordings(two).name == "rates"
    assert validate_recordings(two, "counts").name == "counts"
    with pytest.raises(ValueError, match=r"data variables \['spikes', 'counts'\].*--variable") as error:
        validate_recordings(two.rename(rates="spikes"))
    assert "\n" not in str(error.value)


def test_a_file_with_two_data_variables_names_them_and_the_option(recordings, tmp_path):
    path = tmp_path / "two.nc"
    recordings.rename(rates="spikes").assign(counts=recordings["rates"] * 0.05).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"two\.nc.*\['spikes', 'counts'\].*--variable") as error:
        load_recordings(path)
    assert "\n" not in str(error.value)
    assert load_recordings(path, variable="counts").name == "counts"


# --------------------------------------------------------------------------- files and the script


def test_load_recordings_round_trip_and_errors(recordings, tmp_path):
    recordings.to_netcdf(tmp_path / "recordings.nc", engine="h5netcdf")
    loaded = load_recordings(tmp_path / "recordings.nc")
    assert loaded.dims == ("trial", "time", "neuron") and loaded["time"].attrs["units"] == "ms"
    assert "mask" in loaded.coords and "context" in loaded.coords
    unitless = recordings.assign_coords(time=("time", recordings["time"].values))
    unitless.to_netcdf(tmp_path / "unitless.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"unitless\.nc: .*no units"):
        load_recordings(tmp_path / "unitless.nc")
    with pytest.raises(FileNotFoundError, match="no recordings file"):
        load_recordings(tmp_path / "missing.nc")


def test_make_recordings_script_writes_a_valid_file(tiny_config, tmp_path):
    from neuroalrnn.training import Trainer

    run = tmp_path / "run"
    Trainer(tiny_config, run, progress=False).fit()
    out = tmp_path / "recordings.nc"
    make_recordings.main([str(run), "--out", str(out), "--trials", "24", "--neurons", "7", "--no-epoch"])
    loaded = load_recordings(out)
    assert dict(loaded.sizes) == {"trial": 24, "time": loaded.sizes["time"], "neuron": 7}
    assert "epoch" not in loaded.coords and loaded.attrs["noise"] == "poisson"
    valid = loaded["mask"].values
    assert np.isfinite(loaded.values[valid]).all() and np.isnan(loaded.values[~valid]).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recordings.nc", "run"]
