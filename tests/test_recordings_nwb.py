"""NWB recordings: the synthetic writer, the one reader (NWB and NetCDF), its bad-file lines, and `compare` on NWB.

Also the stimulus inputs (NWB ``stimulus`` TimeSeries, a NetCDF ``inputs`` variable) and the ``--truth`` sidecar.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pynwb
import pytest
import xarray as xr
from benchmark_scripts import load
from neuroalrnn.analyses.compare import load_recordings
from neuroalrnn.analyses.recordings import read_recordings

from neuroalrnn.evaluation.simulate import read_trials, simulate
from neuroalrnn.formats import FormatError, recording_variable, validate
from neuroalrnn.storage import write_netcdf
from neuroalrnn.training import Trainer, load_model
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.workflows.cli import main

N_TRIALS, N_NEURONS = 40, 6


make_recordings = load("make_recordings")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    config = TrainConfig(n_units=8, n_nonlinear=2, steps=4, batch_size=4, eval_every=2, eval_trials=8,
                         checkpoint_every=2, bank_size=16, seed=1, data_workers=0)
    Trainer(config, run, progress=False).fit()
    return run


@pytest.fixture(scope="module")
def model_trials(run):
    config, model, env = load_model(run)
    return simulate(model, env, N_TRIALS, seed=3, task_name=config.task)


@pytest.fixture(scope="module")
def nwb_path(model_trials, tmp_path_factory):
    path = tmp_path_factory.mktemp("nwb") / "synthetic.nwb"
    make_recordings.write_nwb(make_recordings.synthetic_nwb(model_trials, N_NEURONS, seed=5), path)
    return path


def _spikes_and_trials(path):
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        nwbfile = io.read()
        spikes = [np.asarray(nwbfile.units["spike_times"][i]) for i in range(len(nwbfile.units))]
        table = nwbfile.trials.to_dataframe()
    return spikes, table


# ----------------------------------------------------------------------------- writer and round trip


def test_written_file_has_no_critical_inspector_issue(nwb_path):
    nwbinspector = pytest.importorskip("nwbinspector")
    messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=nwb_path))
    critical = [f"{m.check_function_name}: {m.message}" for m in messages
                if m.importance.value >= nwbinspector.Importance.CRITICAL.value]
    assert critical == []


@pytest.mark.parametrize("bin_ms", [20.0, 50.0, 35.0])
def test_binned_counts_equal_a_direct_histogram_of_the_spike_times(nwb_path, bin_ms):
    recordings = read_recordings(nwb_path, bin_ms=bin_ms)
    validate("recordings", recordings)
    spikes, table = _spikes_and_trials(nwb_path)
    bin_s = bin_ms / 1000
    counts = recordings["rates"].values * bin_s
    for trial, (start, stop) in enumerate(zip(table["start_time"], table["stop_time"], strict=True)):
        n_bins = int(np.floor((stop - start) / bin_s + 1e-9))
        assert recordings["mask"].values[trial].sum() == n_bins
        assert np.isnan(counts[trial, n_bins:]).all()
        edges = start + np.arange(n_bins + 1) * bin_s
        for unit, times in enumerate(spikes):
            expected = np.histogram(times, bins=edges)[0]
            np.testing.assert_allclose(counts[trial, :n_bins, unit], expected, atol=1e-4)
    assert recordings["rates"].attrs["units"] == "spikes/s"
    assert recordings["time"].values[1] == pytest.approx(bin_ms)


def test_conditions_and_epochs_come_back(nwb_path, model_trials):
    dt = float(model_trials.attrs["dt"])
    recordings = read_recordings(nwb_path, bin_ms=dt)
    for name in ("context", "coh_motion", "coh_colour", "task"):
        np.testing.assert_array_equal(recordings[name].values, model_trials[name].values)
    mask = model_trials["mask"].values
    assert recordings.sizes["time"] == mask.sum(axis=1).max()
    n_time = recordings.sizes["time"]
    np.testing.assert_array_equal(recordings["mask"].values, mask[:, :n_time])
    valid = recordings["mask"].values
    np.testing.assert_array_equal(recordings["epoch"].values[valid], model_trials["epoch"].values[:, :n_time][valid])


def test_the_synthetic_counts_follow_the_model_rates(nwb_path, model_trials):
    """At bin = dt each count is the writer's Poisson draw for that step: its mean follows the neurons' rates."""
    dt = float(model_trials.attrs["dt"])
    recordings = read_recordings(nwb_path, bin_ms=dt)
    rng = np.random.default_rng(5)
    rates, mask, _ = make_recordings.neuron_rates(model_trials, N_NEURONS, rng=rng)
    n_time = recordings.sizes["time"]
    valid = mask[:, :n_time]
    observed = recordings["rates"].values[valid].mean(axis=0)
    expected = rates[:, :n_time][valid].mean(axis=0)
    np.testing.assert_allclose(observed, expected, rtol=0.25)


def test_the_mapping_renames_conditions_values_and_epochs(nwb_path, model_trials):
    recordings = read_recordings(nwb_path, bin_ms=float(model_trials.attrs["dt"]), mapping={
        "context": ("rule", {"motion": "M", "colour": "C"}), "coh_motion": "motion_coherence",
        "epoch": {"stimulus": "stim"}})
    assert "context" not in recordings.coords and "coh_motion" not in recordings.coords
    assert set(recordings["rule"].values.tolist()) <= {"M", "C"}
    np.testing.assert_array_equal(recordings["motion_coherence"].values, model_trials["coh_motion"].values)
    epochs = set(np.unique(recordings["epoch"].values).tolist())
    assert "stim" in epochs and "stimulus" not in epochs


def test_netcdf_recordings_read_as_before(model_trials, tmp_path):
    synthetic = make_recordings.synthetic_recordings(model_trials, 5, seed=2)
    synthetic.attrs["format_version"] = 1
    path = write_netcdf(synthetic, tmp_path / "recordings.nc")
    read = read_recordings(path)
    xr.testing.assert_identical(read, validate("recordings", synthetic))
    xr.testing.assert_equal(load_recordings(path), read["rates"].assign_coords(mask=read["mask"]))


def test_an_nwb_file_reads_through_load_recordings(nwb_path):
    responses = load_recordings(nwb_path)
    assert responses.dims == ("trial", "time", "neuron") and "mask" in responses.coords


# ----------------------------------------------------------------------------- stimulus inputs


@pytest.mark.parametrize("bins_per_step", [1.0, 2.0, 1.5])
def test_the_model_inputs_come_back_from_the_stimulus_group(nwb_path, model_trials, bins_per_step):
    """Bin k (start k·bin) holds the input of the latest step at or before it: step ⌊k·bin/dt⌋; NaN on padding."""
    dt = float(model_trials.attrs["dt"])
    recordings = read_recordings(nwb_path, bin_ms=dt * bins_per_step)
    names = model_trials["input"].values.tolist()
    assert sorted(recordings["input"].values.tolist()) == sorted(names)
    assert recordings["inputs"].dtype == np.float32
    inputs = recordings["inputs"].sel(input=names).values  # the file lists its series by name
    valid = recordings["mask"].values
    step = np.floor(np.arange(recordings.sizes["time"]) * bins_per_step + 1e-9).astype(int)
    expected = model_trials["inputs"].values[:, step]
    np.testing.assert_array_equal(inputs[valid], expected[valid].astype(np.float32))
    assert np.isnan(inputs[~valid]).all() and (~valid).any()


def test_the_stimulus_series_say_what_they_are(nwb_path, model_trials):
    dt_s = float(model_trials.attrs["dt"]) / 1000
    with pynwb.NWBHDF5IO(str(nwb_path), mode="r") as io:
        nwbfile = io.read()
        series = nwbfile.stimulus["motion"]
        timestamps, unit, description = np.asarray(series.timestamps[:]), series.unit, series.description
        starts = nwbfile.trials["start_time"][:]
    mask = model_trials["mask"].values
    expected = (starts[:, None] + np.arange(mask.shape[1])[None, :] * dt_s)[mask]  # each valid step's start
    np.testing.assert_allclose(timestamps, expected, rtol=0, atol=1e-9)
    assert unit == "a.u." and "model input" in description


def test_a_stimulus_sample_holds_until_the_next_and_none_yet_is_nan(tmp_path):
    path = _nwb(tmp_path / "x.nwb", trials=((0.0, 1.0), (2.0, 2.5)), spikes=((0.1, 2.2),), stimulus=(
        {"name": "a", "data": [1.0, 2.0, 3.0], "timestamps": [0.5, 0.75, 2.1]},
        {"name": "b", "data": np.arange(12.0), "starting_time": 0.0, "rate": 4.0}))
    recordings = read_recordings(path, bin_ms=250)
    assert recordings["input"].values.tolist() == ["a", "b"]
    nan = np.nan
    np.testing.assert_array_equal(recordings["inputs"].sel(input="a").values, [[nan, nan, 1, 2], [2, 3, nan, nan]])
    np.testing.assert_array_equal(recordings["inputs"].sel(input="b").values, [[0, 1, 2, 3], [8, 9, nan, nan]])


def test_a_file_without_stimulus_series_has_no_inputs(model_trials, tmp_path):
    recordings = read_recordings(_nwb(tmp_path / "x.nwb"))
    assert "inputs" not in recordings and "input" not in recordings.coords
    assert len(make_recordings.synthetic_nwb(model_trials, 2, seed=5, keep_inputs=False).stimulus) == 0
    assert "inputs" not in make_recordings.synthetic_recordings(model_trials, 2, keep_inputs=False)


def test_netcdf_inputs_read_back_and_are_never_the_responses(model_trials, tmp_path):
    synthetic = make_recordings.synthetic_recordings(model_trials, 5, seed=2)
    path = write_netcdf(synthetic.rename(rates="spikes"), tmp_path / "recordings.nc")
    read = read_recordings(path)
    assert recording_variable(read) == "spikes" and load_recordings(path).name == "spikes"
    assert read["input"].values.tolist() == model_trials["input"].values.tolist()
    mask = read["mask"].values
    np.testing.assert_array_equal(read["inputs"].values[mask], model_trials["inputs"].values[mask])
    assert np.isnan(read["inputs"].values[~mask]).all()
    assert recording_variable(synthetic) == "rates"
    with pytest.raises(FormatError, match="not a response variable"):
        validate("recordings", synthetic, variable="inputs")


# ----------------------------------------------------------------------------- the --truth sidecar


@pytest.mark.parametrize("suffix, shuffle", [(".nc", False), (".nwb", False), (".nwb", True)])
def test_the_truth_sidecar_lines_up_with_the_file_trial_for_trial(run, tmp_path, capsys, suffix, shuffle):
    out, truth_path, n_trials, n_neurons, seed = tmp_path / f"rec{suffix}", tmp_path / "truth.nc", 12, 4, 7
    make_recordings.main([str(run), "--out", str(out), "--trials", str(n_trials), "--neurons", str(n_neurons),
                          "--seed", str(seed), "--truth", str(truth_path)]
                         + (["--noise", "none"] if suffix == ".nc" else []) + (["--shuffle-conditions"] * shuffle))
    capsys.readouterr()
    truth = read_trials(truth_path)
    config, model, env = load_model(run)
    expected = simulate(model, env, n_trials, seed=seed, task_name=config.task)  # the trials the script drew
    xr.testing.assert_equal(truth["latents"], expected["latents"])
    conditions = ["context", "coh_motion", "coh_colour"]
    for name in conditions:  # the truth keeps the true conditions, shuffled file or not
        np.testing.assert_array_equal(truth[name].values, expected[name].values)
    dt = float(truth.attrs["dt"])
    recordings = read_recordings(out, bin_ms=dt)
    mask, n_time = recordings["mask"].values, recordings.sizes["time"]
    np.testing.assert_array_equal(mask, truth["mask"].values[:, :n_time])
    inputs = recordings["inputs"].sel(input=truth["input"].values).values
    np.testing.assert_array_equal(inputs[mask], truth["inputs"].values[:, :n_time][mask])
    if suffix == ".nc":  # noiseless neurons: the file's rates are the truth's latents seen through them
        rates, _, _ = make_recordings.neuron_rates(truth, n_neurons, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(recordings["rates"].values[mask], rates[mask].astype(np.float32))
    else:
        table = _spikes_and_trials(out)[1]
        same = [np.array_equal(table[name].to_numpy(), truth[name].values) for name in conditions]
        assert same == [not shuffle] * len(conditions)
        for name in conditions:
            assert sorted(table[name].tolist()) == sorted(truth[name].values.tolist())


# ----------------------------------------------------------------------------- bad files: one line each


def _nwb(path, *, trials=((0.0, 1.0), (2.0, 3.0)), spikes=((0.1, 0.5, 2.2), (0.3, 2.9)), columns=None,
         units=True, stimulus=()):
    """A small NWB file: trials (start, stop) in s with optional columns {name: values}, units' spike times,
    and ``stimulus``: TimeSeries keyword arguments (name, data, timestamps or starting_time + rate)."""
    nwbfile = pynwb.NWBFile(session_description="a test file", identifier=path.stem,
                            session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    if columns is None:
        columns = {"context": ["motion", "colour"][: len(trials)]} if trials else {}
    for name in columns:
        nwbfile.add_trial_column(name=name, description=name)
    for i, (start, stop) in enumerate(trials):
        nwbfile.add_trial(start_time=start, stop_time=stop, **{name: values[i] for name, values in columns.items()})
    if units:
        for times in spikes:
            nwbfile.add_unit(spike_times=list(times))
    for series in stimulus:
        nwbfile.add_stimulus(pynwb.TimeSeries(unit="a.u.", description="a test input", **series))
    with pynwb.NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwbfile)
    return path


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_file_without_units_is_one_line(tmp_path):
    with pytest.raises(ValueError) as error:
        read_recordings(_nwb(tmp_path / "x.nwb", units=False))
    assert "has no Units table" in _one_line(error)


def test_a_file_without_trials_is_one_line(tmp_path):
    with pytest.raises(ValueError) as error:
        read_recordings(_nwb(tmp_path / "x.nwb", trials=()))
    assert "has no trials table" in _one_line(error)


def test_an_empty_unit_is_refused_or_dropped_with_a_warning(tmp_path):
    path = _nwb(tmp_path / "x.nwb", spikes=((0.1, 2.5), ()))
    with pytest.raises(ValueError) as error:
        read_recordings(path)
    assert "unit 1 of the Units table has no spikes" in _one_line(error)
    with pytest.warns(UserWarning, match="dropped unit 1 with no spikes"):
        recordings = read_recordings(path, drop_empty_units=True)
    assert recordings["neuron"].values.tolist() == [0]


def test_spikes_outside_every_trial_are_counted_in_one_line(tmp_path):
    path = _nwb(tmp_path / "x.nwb", spikes=((0.1, 1.5, 2.2), (0.3, 1.7, 1.8, 5.0)))
    with pytest.raises(ValueError) as error:
        read_recordings(path)
    assert "4 of 7 spike times (57.1%) fall outside every trial" in _one_line(error)
    recordings = read_recordings(path, outside_trials="drop", bin_ms=500)
    assert recordings.attrs["spikes_outside_trials"] == 4
    np.testing.assert_array_equal(recordings["rates"].values * 0.5, [[[1, 1], [0, 0]], [[1, 0], [0, 0]]])


def test_a_file_that_is_not_nwb_is_one_line(tmp_path):
    path = tmp_path / "x.nwb"
    path.write_text("not hdf5")
    with pytest.raises(ValueError) as error:
        read_recordings(path)
    assert "is not a readable NWB file" in _one_line(error)


def test_epoch_columns_follow_the_naming_rule(tmp_path):
    path = _nwb(tmp_path / "x.nwb", columns={"stim_on_time": [0.5, 2.25], "stim_off_time": [0.8, 2.6],
                                             "go_cue_time": [0.75, np.nan], "context": ["motion", "colour"]})
    recordings = read_recordings(path, bin_ms=250)
    assert recordings["epoch"].values.tolist() == [["", "", "stim", "go_cue"], ["", "stim", "stim", "stim"]]
    assert "stim_off_time" not in recordings.coords and "context" in recordings.coords


# ----------------------------------------------------------------------------- the command line


def test_compare_runs_end_to_end_on_an_nwb_file(run, tmp_path, capsys):
    path = tmp_path / "cli.nwb"
    make_recordings.main([str(run), "--out", str(path), "--format", "nwb", "--trials", "60", "--neurons", "8"])
    assert path.is_file()
    capsys.readouterr()
    assert main(["compare", str(run), str(path), "--trials", "60", "--shuffles", "5",
                 "--conditions", "context", "coh_relevant"]) == 0
    printed = capsys.readouterr().out
    assert "matched on context, coh_relevant" in printed and "cka" in printed
    assert (run / "comparison.nc").is_file()


def test_a_condition_the_model_lacks_without_a_mapping_is_one_line(run, tmp_path, capsys):
    path = _nwb(tmp_path / "renamed.nwb", columns={"rule": ["motion", "colour"]})
    assert main(["compare", str(run), str(path), "--trials", "20", "--shuffles", "0"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "no shared conditions" in line and "'rule'" in line


def test_a_bad_nwb_file_exits_1_with_one_line(run, tmp_path, capsys):
    path = _nwb(tmp_path / "bad.nwb", units=False)
    assert main(["compare", str(run), str(path), "--trials", "20"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("neuroalrnn: error: ") and "has no Units table" in err


def test_a_mapped_nwb_file_compares(run, tmp_path, capsys):
    path = tmp_path / "mapped.nwb"
    trials = simulate(*load_model(run)[1:], 60, seed=4, task_name=load_model(run)[0].task)
    trials = trials.rename({"context": "ctx"}).assign_coords(
        ctx=("trial", np.where(trials["context"].values == "motion", "M", "C")))
    make_recordings.write_nwb(make_recordings.synthetic_nwb(trials, 8, seed=2), path)
    capsys.readouterr()
    assert main(["compare", str(run), str(path), "--trials", "60", "--shuffles", "0", "--conditions", "context",
                 "coh_relevant", "--map", 'ctx=["context", {"M": "motion", "C": "colour"}]']) == 0
    assert "matched on context, coh_relevant" in capsys.readouterr().out


def test_an_nwb_recording_is_fitted_then_compared_and_aligned_with_its_source(run, nwb_path, tmp_path):
    """A fit to an NWB file: its trials carry the task's conditions (not the file's trial ids or start times),
    in the file's inputs, so `compare` matches them with the recordings and `align` pairs them with the source."""
    from neuroalrnn.analyses.compare import compare

    from neuroalrnn.fitting import FitConfig, FitTrainer, evaluate_fit
    from neuroalrnn.workflows.run_analysis import align_runs

    config = TrainConfig(n_units=6, n_nonlinear=2, steps=4, batch_size=8, eval_every=2, checkpoint_every=4,
                         data_workers=0)
    fit_dir = tmp_path / "fit"
    FitTrainer(config, FitConfig(recordings=str(nwb_path), test_fraction=0.5), fit_dir, progress=False).fit()
    trials, summary = evaluate_fit(fit_dir)
    assert summary["kind"] == "fit" and summary["n_trials"] == N_TRIALS // 2
    conditions = {name for name, coord in trials.coords.items() if coord.dims == ("trial",)}
    assert not conditions & {"trial_id", "start_time"}
    assert set(trials["task"].values) == {config.task}
    recordings = read_recordings(nwb_path, bin_ms=float(trials.attrs["dt"]))
    np.testing.assert_array_equal(trials["input"].values, load_model(run)[2].unwrapped.input_names)
    result = compare(trials, recordings, n_shuffles=5, seed=0)
    assert "context" in result.attrs["conditions"]
    _, lines = align_runs(fit_dir, run)
    assert lines[0] == "## Regimes aligned across models"
    assert (fit_dir / "alignment.nc").is_file() and (fit_dir / "figures" / "alignment.png").is_file()
