"""simulate -> trials.nc: layout, regime codes, NetCDF round trip; accuracy and psychometric curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from neuroalrnn import ALRNN, GRUBaseline, regime_codes
from neuroalrnn.envs import make
from neuroalrnn.evaluation import accuracy_by, choices, decision_choice, psychometric
from neuroalrnn.formats import FORMAT_VERSION, FormatError, StaleTrialsError, check_trials_match
from neuroalrnn.evaluation.simulate import read_trials, simulate, write_trials
from neuroalrnn.storage import write_netcdf


@pytest.fixture
def model() -> ALRNN:
    torch.manual_seed(0)
    return ALRNN(5, 3, 10, 4, noise_std=0.1).eval()


def test_dataset_layout(model):
    trials = simulate(model, "stimulus-selection", 7, seed=1)
    assert dict(trials.sizes) == {"trial": 7, "time": trials.sizes["time"], "input": 5, "unit": 10, "output": 3}
    for name in ("inputs", "targets", "outputs", "latents", "regime", "mask"):
        assert name in trials
    assert trials["epoch"].dims == ("trial", "time")
    assert set(np.unique(trials["epoch"].values)) <= {"fixation", "context", "stimulus", "delay", "decision", ""}
    assert (trials["epoch"].values == "").tolist() == (~trials["mask"].values).tolist()
    assert trials["time"].attrs["units"] == "ms"
    np.testing.assert_allclose(np.diff(trials["time"].values), 50.0)
    for condition in ("context", "coh_motion", "coh_colour", "ground_truth", "task"):
        assert trials[condition].dims == ("trial",)
    assert list(trials["output"].values) == ["fixate", "left", "right"]
    assert trials.attrs["model"] == "alrnn" and trials.attrs["n_nonlinear"] == 4 and trials.attrs["slope"] == 0.0
    assert trials.attrs["n_units"] == 10 and trials.attrs["dt"] == 50.0 and trials.attrs["seed"] == 1


def test_outputs_regimes_and_inputs_are_consistent_with_the_model(model):
    trials = simulate(model, "stimulus-selection", 5, seed=2)
    latents = trials["latents"].values
    np.testing.assert_allclose(
        trials["outputs"].values, latents @ model.B.detach().numpy().T + model.b.detach().numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(trials["regime"].values, regime_codes(latents, 4))
    with torch.no_grad():
        _, again = model(torch.from_numpy(trials["inputs"].values))
    np.testing.assert_allclose(again.numpy(), latents, atol=1e-6)  # eval mode: noise off


def test_same_seed_same_trials_and_noise_flag(model):
    first = simulate(model, "stimulus-selection", 4, seed=5)
    second = simulate(model, "stimulus-selection", 4, seed=5)
    xr.testing.assert_identical(first.drop_attrs(), second.drop_attrs())
    noisy = simulate(model, "stimulus-selection", 4, seed=5, noise=True)
    assert not np.allclose(noisy["latents"].values, first["latents"].values)
    assert not model.training


def test_netcdf_round_trip(tmp_path, model):
    trials = simulate(model, "stimulus-selection", 6, seed=3, config={"seed": 3})
    path = write_trials(trials, tmp_path / "trials.nc")
    loaded = read_trials(path)
    xr.testing.assert_identical(loaded, trials)
    assert loaded["mask"].dtype == bool
    assert not list(tmp_path.glob(".*tmp"))


def test_read_trials_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trials file"):
        read_trials(tmp_path / "missing.nc")
    xr.Dataset({"x": ("trial", [1, 2])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(FormatError, match=r"other.nc is not a valid trials file.*missing variables \['inputs'"):
        read_trials(tmp_path / "other.nc")


def test_provenance_attributes_record_how_trials_were_simulated(model):
    plain = simulate(model, "stimulus-selection", 3, seed=4)
    assert plain.attrs["format_version"] == FORMAT_VERSION
    assert (plain.attrs["n_trials"], plain.attrs["seed"]) == (3, 4)
    assert plain.attrs["simulated_with_noise"] == 0 and plain.attrs["checkpoint_step"] == -1
    noisy = simulate(model, "stimulus-selection", 3, seed=4, noise=True, checkpoint_step=250)
    assert noisy.attrs["simulated_with_noise"] == 1 and noisy.attrs["checkpoint_step"] == 250
    check_trials_match(noisy, n_trials=3, noise=True, checkpoint_step=250)
    with pytest.raises(StaleTrialsError, match="noise True"):
        check_trials_match(noisy, noise=False)


def test_written_trials_keep_their_provenance_and_are_validated(tmp_path, model):
    trials = simulate(model, "stimulus-selection", 2, seed=0, noise=True, checkpoint_step=7)
    loaded = read_trials(write_trials(trials, tmp_path / "trials.nc"))
    assert {key: loaded.attrs[key] for key in ("n_trials", "simulated_with_noise", "checkpoint_step")} == {
        "n_trials": 2, "simulated_with_noise": 1, "checkpoint_step": 7}
    with pytest.raises(FormatError, match="missing variable 'latents'"):
        write_trials(trials.drop_vars("latents"), tmp_path / "broken.nc")
    assert not (tmp_path / "broken.nc").exists()


def test_version_0_trials_are_read_without_provenance(tmp_path, model):
    trials = simulate(model, "stimulus-selection", 2, seed=0)
    old = trials.drop_attrs(deep=False).assign_attrs(
        {key: value for key, value in trials.attrs.items()
         if key not in ("format_version", "n_trials", "simulated_with_noise", "checkpoint_step")})
    write_netcdf(old, tmp_path / "trials.nc")
    loaded = read_trials(tmp_path / "trials.nc")
    assert "format_version" not in loaded.attrs
    with pytest.raises(StaleTrialsError, match="before provenance was recorded"):
        check_trials_match(loaded, n_trials=2)


def test_many_nonlinear_units_give_packed_regimes():
    big = ALRNN(5, 3, 70, 70).eval()
    trials = simulate(big, "stimulus-selection", 2, seed=0)
    assert trials["regime"].dims == ("trial", "time", "regime_byte")
    bits = np.unpackbits(trials["regime"].values, axis=-1, bitorder="little")[..., :70]
    np.testing.assert_array_equal(bits.astype(bool), trials["latents"].values > 0)


def test_baselines_have_no_regimes():
    trials = simulate(GRUBaseline(5, 3, 8).eval(), "stimulus-selection", 3, seed=0)
    assert "regime" not in trials and trials.attrs["model"] == "gru" and "slope" not in trials.attrs


def test_input_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="n_inputs=4"):
        simulate(ALRNN(4, 3, 8, 2), "stimulus-selection", 2)


def test_decision_choice_majority_and_ties():
    outputs = np.zeros((3, 4, 3))
    outputs[0, :, 2] = 1  # right at every step
    outputs[1, 1:3, 1] = 1  # two left, two fixate (ties go to fixate)
    outputs[1, [0, 3], 0] = 1
    outputs[2, :3, 1] = 1  # three left, one right
    outputs[2, 3, 2] = 1
    decision = np.ones((3, 4), dtype=bool)
    np.testing.assert_array_equal(decision_choice(outputs, decision), [2, 0, 1])


def _perfect_trials(n_trials: int = 200) -> xr.Dataset:
    """Trials whose outputs follow the context-relevant evidence exactly."""
    env = make("stimulus-selection")
    model = ALRNN(5, 3, 4, 0)
    trials = simulate(model, env, n_trials, seed=11)
    targets = trials["targets"].values
    outputs = np.eye(3)[targets] * 5.0
    return trials.assign(outputs=(("trial", "time", "output"), outputs.astype(np.float32)))


def test_accuracy_and_psychometric_of_a_perfect_observer():
    trials = _perfect_trials()
    assert float(accuracy_by(trials)) == 1.0
    per_context = accuracy_by(trials, "context")
    assert set(per_context["context"].values) == {"motion", "colour"}
    assert np.all(per_context.values == 1.0)
    assert np.all(choices(trials)["correct_choice"].values == trials["ground_truth"].values)
    curve = psychometric(trials)
    motion_in_motion = curve.sel(context="motion", modality="coh_motion").dropna("coherence")
    assert np.all(motion_in_motion.sel(coherence=motion_in_motion.coherence > 0) == 1.0)
    assert np.all(motion_in_motion.sel(coherence=motion_in_motion.coherence < 0) == 0.0)
    colour_in_motion = curve.sel(context="motion", modality="coh_colour").dropna("coherence")
    assert 0.2 < float(colour_in_motion.mean()) < 0.8  # the irrelevant modality is ignored


def test_accuracy_by_unknown_condition_lists_conditions():
    with pytest.raises(ValueError, match="conditions: .*context"):
        accuracy_by(_perfect_trials(20), "colour_of_sky")


def test_simulate_on_trials_gives_another_model_the_same_trials(model):
    """A second model on the first one's trials: its own responses, the trials' inputs, epochs and conditions."""
    from neuroalrnn.evaluation.simulate import simulate_on_trials

    trials = simulate(model, "stimulus-selection", 9, seed=3)
    other = ALRNN(5, 7, 6, 2, generator=torch.Generator().manual_seed(4)).eval()
    paired = simulate_on_trials(other, trials)
    assert dict(paired.sizes) == {**dict(trials.sizes), "unit": 6, "output": 7}
    with torch.no_grad():
        outputs, latents = other(torch.from_numpy(trials["inputs"].values))
    mask = trials["mask"].values
    np.testing.assert_allclose(paired["latents"].values[mask], latents.numpy()[mask], rtol=1e-6)
    np.testing.assert_allclose(paired["outputs"].values[mask], outputs.numpy()[mask], rtol=1e-6)
    np.testing.assert_array_equal(paired["regime"].values, regime_codes(paired["latents"].values, 2))
    for name in ("inputs", "mask", "epoch", "context", "coh_relevant"):
        xr.testing.assert_equal(paired[name], trials[name])
    assert paired.attrs["n_units"] == 6 and paired.attrs["n_nonlinear"] == 2 and "targets" not in paired
    assert paired.attrs["slope"] == other.slope
    with pytest.raises(ValueError, match="n_inputs"):
        simulate_on_trials(ALRNN(4, 3, 6, 2), trials)
