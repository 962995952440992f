"""``neuroalrnn fit``: AL-RNNs fitted to recordings, checked against answers known independently of the code.

Scores against NumPy restatements of NLB's and CtD's definitions; recovery of a linear AL-RNN whose
eigenvalues are known (the acceptance test of the fit); exact resumption; a held-out split the fit never
trains on; a run directory every run command reads; one-line CLI errors that leave nothing behind; and
inputs rebuilt from the task equal to the task's own.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from neuroalrnn.analyses.fit_scores import bits_per_spike, latent_r2, psth_r2
from neuroalrnn.analyses.recordings import read_recordings
from scipy.special import gammaln

from neuroalrnn import envs
from neuroalrnn.evaluation import evaluate_run
from neuroalrnn.evaluation.simulate import read_trials, simulate
from neuroalrnn.fitting import FitConfig, FitTrainer, is_fit_run, load_fit
from neuroalrnn.fitting.data import recorded_batch, split
from neuroalrnn.models import ALRNN
from neuroalrnn.training import Trainer, load_run
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.training.rundir import load_checkpoint
from neuroalrnn.workflows.cli import main
from neuroalrnn.workflows.run_analysis import analyze_run

TASK = "stimulus-selection"  # supplies only canonical epochs: the inputs come from the files
DT = 50.0  # ms, the task's time step
EIGENVALUES = np.array([0.9, 0.7, 0.5])  # of diag(A) + W of the ground-truth linear AL-RNN


# --------------------------------------------------------------------------- synthetic recordings


def _linear_truth(n_neurons: int, seed: int = 0) -> ALRNN:
    """A linear AL-RNN (P = 0, M = 3, K = 2) whose diag(A) + W = Q diag(EIGENVALUES) Q⁻¹ (not diagonal)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, 3))
    transition = basis @ np.diag(EIGENVALUES) @ np.linalg.inv(basis)
    model = ALRNN(n_inputs=2, n_outputs=n_neurons, n_units=3, n_nonlinear=0)
    with torch.no_grad():
        model.A.copy_(torch.tensor(np.diag(transition)))
        model.W.copy_(torch.tensor(transition - np.diag(np.diag(transition))))
        model.C.copy_(torch.tensor(rng.normal(size=(3, 2))))
        model.h.zero_()
        model.B.copy_(torch.tensor(rng.normal(size=(n_neurons, 3)) / np.sqrt(3.0)))
        model.b.copy_(torch.tensor(rng.normal(0.0, 0.5, size=n_neurons)))
    return model.eval()


def _pulses(n_trials: int, n_steps: int, rng: np.random.Generator, width: int = 3) -> np.ndarray:
    """(trial, time, 2) piecewise-constant inputs: N(0, 1) pulses of ``width`` steps, each present half the time."""
    n_pieces = -(-n_steps // width)
    levels = rng.normal(size=(n_trials, n_pieces, 2)) * (rng.random((n_trials, n_pieces, 2)) < 0.5)
    return np.repeat(levels, width, axis=1)[:, :n_steps].astype(np.float32)


def _recordings(model: ALRNN, *, observation: str, n_trials: int, n_steps: int, seed: int,
                variable_lengths: bool = False, noise_std: float = 0.05) -> xr.Dataset:
    """A recordings Dataset of ``model`` driven by random pulses; rates Gaussian around B z + b, or Poisson counts.

    Poisson: k ~ Poisson(softplus(B z + b)) per bin, stored as the rate k · 1000 / dt (whole counts). Each trial
    carries ``context`` (a/b, alternating) and ``source_trial`` (its index) as conditions.
    """
    rng = np.random.default_rng(seed)
    inputs = _pulses(n_trials, n_steps, rng)
    with torch.no_grad():
        outputs, _ = model(torch.from_numpy(inputs))
    outputs = outputs.numpy().astype(np.float64)
    if observation == "poisson":
        rates = rng.poisson(np.logaddexp(0.0, outputs)) * (1000.0 / DT)
    else:
        rates = outputs + noise_std * rng.normal(size=outputs.shape)
    lengths = np.full(n_trials, n_steps)
    if variable_lengths:
        lengths = rng.integers(2 * n_steps // 3, n_steps + 1, size=n_trials)
    mask = np.arange(n_steps)[None, :] < lengths[:, None]
    return xr.Dataset(
        {
            "rates": (("trial", "time", "neuron"), np.where(mask[:, :, None], rates, np.nan), {"units": "spikes/s"}),
            "mask": (("trial", "time"), mask),
            "inputs": (("trial", "time", "input"), np.where(mask[:, :, None], inputs, np.nan).astype(np.float32)),
        },
        coords={
            "time": ("time", np.arange(n_steps) * DT, {"units": "ms"}),
            "neuron": ("neuron", [f"n{index}" for index in range(rates.shape[-1])]),
            "input": ("input", ["left", "right"]),
            "context": ("trial", np.array(["a", "b"])[np.arange(n_trials) % 2]),
            "source_trial": ("trial", np.arange(n_trials)),
            "epoch": (("trial", "time"), np.where(mask, "stimulus", "")),
        },
    )


def _write(dataset: xr.Dataset, path):
    dataset.to_netcdf(path, engine="h5netcdf")
    return path


def _config(**changes) -> TrainConfig:
    values = {"task": TASK, "n_units": 4, "n_nonlinear": 1, "steps": 12, "lr": 0.02, "batch_size": 16,
              "data_workers": 0, "eval_every": 4, "checkpoint_every": 4, "seed": 1}
    return TrainConfig(**{**values, **changes})


def _weights(trainer_or_model) -> dict[str, torch.Tensor]:
    if isinstance(trainer_or_model, FitTrainer):
        return {**{f"model.{name}": value for name, value in trainer_or_model.model.state_dict().items()},
                **{f"encoder.{name}": value for name, value in trainer_or_model.encoder.state_dict().items()}}
    return dict(trainer_or_model.state_dict())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Recordings files: Poisson counts (variable trial lengths), Gaussian rates, and the counts without inputs."""
    folder = tmp_path_factory.mktemp("recordings")
    poisson = _recordings(_linear_truth(12, seed=2), observation="poisson", n_trials=60, n_steps=24, seed=3,
                          variable_lengths=True)
    return {
        "poisson": _write(poisson, folder / "poisson.nc"),
        "gaussian": _write(_recordings(_linear_truth(20), observation="gaussian", n_trials=200, n_steps=30, seed=1),
                           folder / "gaussian.nc"),
        "no_inputs": _write(poisson.drop_vars(["inputs", "input"]), folder / "no_inputs.nc"),
    }


@pytest.fixture(scope="module")
def poisson_fit(files, tmp_path_factory):
    """A short Poisson fit with sparse teacher forcing: its run directory."""
    run_dir = tmp_path_factory.mktemp("fits") / "poisson"
    FitTrainer(_config(steps=30, eval_every=10, checkpoint_every=10),
               FitConfig(recordings=str(files["poisson"]), forcing_interval=4, psth_by="context"), run_dir,
               progress=False).fit()
    return run_dir


# --------------------------------------------------------------------------- scores


def _nlb_bits_per_spike(rates: np.ndarray, counts: np.ndarray, mask: np.ndarray) -> float:
    """NLB's bits per spike restated: Poisson NLL with ln Γ(y + 1), null = each neuron's mean count on ``mask``."""
    y, rate = counts[mask], rates[mask]  # (bin, neuron)
    null = np.tile(y.mean(axis=0), (len(y), 1))

    def nll(lam):
        return np.sum(lam - y * np.log(lam) + gammaln(y + 1.0))

    return (nll(null) - nll(rate)) / (y.sum() * math.log(2.0))


def _poisson_data(seed: int = 0, shape=(40, 25, 6)):
    rng = np.random.default_rng(seed)
    n_trials, n_steps, n_neurons = shape
    phase = rng.uniform(0, 2 * np.pi, size=(n_trials, 1, n_neurons))
    rates = np.exp(0.3 + np.sin(np.arange(n_steps)[None, :, None] / 4.0 + phase))  # expected counts per bin
    counts = rng.poisson(rates).astype(np.float64)
    mask = rng.random((n_trials, n_steps)) < 0.8
    return rates, counts, mask


def test_bits_per_spike_is_nlb_formula_on_masked_bins():
    rates, counts, mask = _poisson_data()
    predicted = rates * np.random.default_rng(1).uniform(0.5, 1.5, size=rates.shape)
    expected = _nlb_bits_per_spike(predicted, counts, mask)
    # the bins off the mask are ignored, whatever they hold
    counts_off = np.where(mask[:, :, None], counts, np.nan)
    predicted_off = np.where(mask[:, :, None], predicted, 1e6)
    assert bits_per_spike(predicted_off, counts_off, mask) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_bits_per_spike_is_zero_for_the_mean_and_positive_for_the_true_rates():
    rates, counts, mask = _poisson_data(seed=2)
    mean = np.broadcast_to(counts[mask].mean(axis=0), counts.shape)
    assert bits_per_spike(mean, counts, mask) == pytest.approx(0.0, abs=1e-12)
    assert bits_per_spike(rates, counts, mask) > 0.1
    assert bits_per_spike(rates[..., ::-1], counts, mask) < 0  # the neurons' rates swapped: worse than the mean


def test_bits_per_spike_refuses_negative_rates_and_is_nan_without_spikes():
    rates, counts, mask = _poisson_data()
    with pytest.raises(ValueError, match="rates"):
        bits_per_spike(-rates, counts, mask)
    assert math.isnan(bits_per_spike(rates, np.zeros_like(counts), mask))


def _condition_data(seed: int = 0):
    """Counts whose mean depends on the condition (two groups) and time, with a mask of variable trial lengths."""
    rng = np.random.default_rng(seed)
    n_trials, n_steps, n_neurons = 30, 20, 5
    groups = np.array(["left", "right"])[np.arange(n_trials) % 2]
    shape = np.sin(np.arange(n_steps)[:, None] / 3.0 + np.arange(n_neurons)[None, :])
    means = 3.0 + 2.0 * np.where((groups == "left")[:, None, None], shape, -shape)
    observed = rng.poisson(means).astype(np.float64)
    lengths = rng.integers(12, n_steps + 1, size=n_trials)
    mask = np.arange(n_steps)[None, :] < lengths[:, None]
    return means, observed, mask, groups


def _psth_r2_restated(predicted, observed, mask, groups, min_trials):
    """NLB's PSTH R² by hand: group means over valid trials at bins with ≥ min_trials; R² per neuron, averaged."""
    true_rows, predicted_rows = [], []
    for label in np.unique(groups):
        members = np.flatnonzero(groups == label)
        for t in range(mask.shape[1]):
            valid = members[mask[members, t]]
            if len(valid) >= min_trials:
                true_rows.append(observed[valid, t].mean(axis=0))
                predicted_rows.append(predicted[valid, t].mean(axis=0))
    true, guess = np.array(true_rows), np.array(predicted_rows)
    r2 = 1.0 - ((true - guess) ** 2).sum(axis=0) / ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    return r2.mean()


def test_psth_r2_is_one_for_the_observations_and_drops_when_shuffled():
    means, observed, mask, groups = _condition_data()
    assert psth_r2(observed, observed, mask, groups) == pytest.approx(1.0, abs=1e-12)
    assert psth_r2(means, observed, mask, groups) == pytest.approx(
        _psth_r2_restated(means, observed, mask, groups, 2), abs=1e-10)
    assert psth_r2(means, observed, mask, groups) > 0.8
    shuffled = observed[np.random.default_rng(1).permutation(len(observed))]  # another condition's trials
    assert psth_r2(shuffled, observed, mask, groups) < 0.5


def test_psth_r2_leaves_out_bins_with_too_few_trials():
    means, observed, mask, groups = _condition_data()
    counts = np.array([[mask[groups == label, t].sum() for t in range(mask.shape[1])] for label in np.unique(groups)])
    assert (counts < 3).any() and (counts >= 3).any()  # some bins have fewer than 3 valid trials
    few = np.zeros(mask.shape, dtype=bool)
    for index, label in enumerate(np.unique(groups)):
        few[groups == label] = counts[index] < 3
    wrong_where_few = np.where(few[:, :, None], observed + 50.0, observed)
    assert psth_r2(wrong_where_few, observed, mask, groups, min_trials=3) == pytest.approx(1.0, abs=1e-12)
    assert psth_r2(wrong_where_few, observed, mask, groups, min_trials=1) < 0.5
    assert psth_r2(means, observed, mask, groups, min_trials=3) == pytest.approx(
        _psth_r2_restated(means, observed, mask, groups, 3), abs=1e-10)
    with pytest.raises(ValueError, match="min_trials"):
        psth_r2(means, observed, mask, groups, min_trials=len(groups))


def test_psth_r2_refuses_groups_of_the_wrong_shape():
    means, observed, mask, groups = _condition_data()
    with pytest.raises(ValueError, match="groups"):
        psth_r2(means, observed, mask, groups[:-1])
    with pytest.raises(ValueError, match="groups"):
        psth_r2(means, observed, mask, groups[:, None])


def test_latent_r2_is_one_for_an_affine_map_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    fitted = rng.normal(size=(40, 15, 4))
    mask = rng.random((40, 15)) < 0.9
    mixing = rng.normal(size=(4, 3))  # full column rank: the true latents are a linear image of the fitted
    true = fitted @ mixing + np.array([1.0, -2.0, 0.5])
    train, test = np.arange(30), np.arange(30, 40)
    assert latent_r2(fitted, true, mask, train, test) == pytest.approx(1.0, abs=1e-9)
    invertible = rng.normal(size=(4, 4)) + 3 * np.eye(4)
    assert latent_r2(fitted, fitted @ invertible - 1.0, mask, train, test) == pytest.approx(1.0, abs=1e-9)
    noise = rng.normal(size=(40, 15, 3))
    assert abs(latent_r2(fitted, noise, mask, train, test)) < 0.1
    with pytest.raises(ValueError, match="mask"):
        latent_r2(fitted[:, :-1], true, mask, train, test)


# --------------------------------------------------------------------------- settings


def test_fit_config_defaults_are_valid():
    fit = FitConfig(recordings="recordings.nc")  # every other setting at its default
    assert fit.psth_by is None and fit.observation == "poisson" and fit.inputs == "auto"
    assert FitConfig.from_dict(fit.to_dict()) == fit


# --------------------------------------------------------------------------- recovery of a known system


def test_fit_recovers_the_eigenvalues_of_a_linear_system(files, tmp_path):
    """Acceptance: a linear AL-RNN (P = 0) fitted to Gaussian rates of a known linear one has its eigenvalues."""
    truth = _linear_truth(20).params()
    assert np.sort(np.linalg.eigvals(np.diag(truth.A) + truth.W).real) == pytest.approx(np.sort(EIGENVALUES))
    config = TrainConfig(task=TASK, n_units=3, n_nonlinear=0, steps=300, lr=0.03, batch_size=32, data_workers=0,
                         eval_every=100, checkpoint_every=300)
    FitTrainer(config, FitConfig(recordings=str(files["gaussian"]), observation="gaussian", inputs="file",
                                 psth_by="context"), tmp_path / "fit", progress=False).fit()
    fitted = load_fit(tmp_path / "fit").model.params()
    eigenvalues = np.linalg.eigvals(np.diag(fitted.A) + fitted.W)
    assert np.abs(eigenvalues.imag).max() < 0.01
    # reached: 0.0012 at most over 6 seeds; an untrained model (A = 0.7, ‖W‖ = 0.25) is off by ~0.2
    assert np.sort(eigenvalues.real)[::-1] == pytest.approx(EIGENVALUES, abs=0.01)


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("forcing_interval", [0, 3], ids=["free", "forced"])
def test_resume_continues_exactly(files, tmp_path, forcing_interval):
    """k steps, then resume to 2k, equals 2k steps in one go (constant learning rate: the schedule is the same)."""
    fit = FitConfig(recordings=str(files["poisson"]), forcing_interval=forcing_interval, psth_by="context")
    straight = FitTrainer(_config(steps=12, schedule="constant"), fit, tmp_path / "straight", progress=False).fit()
    FitTrainer(_config(steps=6, schedule="constant"), fit, tmp_path / "resumed", progress=False).fit()
    resumed = FitTrainer.resume(tmp_path / "resumed", steps=12, progress=False).fit()
    assert resumed.step == straight.step == 12
    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), name
    assert len(resumed.metrics) == len(straight.metrics) == 12
    assert [row["loss"] for row in resumed.metrics] == [row["loss"] for row in straight.metrics]


def test_a_fit_stopped_by_a_signal_resumes_as_if_unbroken(files, tmp_path, monkeypatch):
    """Cosine schedule: SIGTERM after step 5 checkpoints there; resuming gives the weights of an unbroken fit."""
    fit = FitConfig(recordings=str(files["poisson"]), forcing_interval=2, psth_by="context")
    trainer = FitTrainer(_config(checkpoint_every=100), fit, tmp_path / "stopped", progress=False)
    update = trainer._update

    def update_then_stop(indices, lr):
        result = update(indices, lr)
        if trainer.step == 4:  # the 5th update is under way
            signal.raise_signal(signal.SIGTERM)
        return result

    monkeypatch.setattr(trainer, "_update", update_then_stop)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "stopped")["step"] == 5
    resumed = FitTrainer.resume(tmp_path / "stopped", progress=False).fit()
    straight = FitTrainer(_config(checkpoint_every=100), fit, tmp_path / "straight", progress=False).fit()
    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), name
    assert len(resumed.metrics) == len(straight.metrics) == 12


# --------------------------------------------------------------------------- held-out split


def test_split_is_deterministic_disjoint_and_sized():
    test, heldout = split(50, 23, test_fraction=0.2, heldout_fraction=0.3, seed=4)
    again_test, again_heldout = split(50, 23, test_fraction=0.2, heldout_fraction=0.3, seed=4)
    np.testing.assert_array_equal(test, again_test)
    np.testing.assert_array_equal(heldout, again_heldout)
    other_test, other_heldout = split(50, 23, test_fraction=0.2, heldout_fraction=0.3, seed=5)
    assert not (np.array_equal(test, other_test) and np.array_equal(heldout, other_heldout))
    assert len(test) == round(0.2 * 50) and len(heldout) == round(0.3 * 23)
    assert len(np.unique(test)) == len(test) and len(np.unique(heldout)) == len(heldout)
    assert 0 <= test.min() and test.max() < 50 and 0 <= heldout.min() and heldout.max() < 23
    train = np.setdiff1d(np.arange(50), test)
    assert len(train) + len(test) == 50 and not np.intersect1d(train, test).size
    # at least one trial on each side, at most N - 1 neurons held out
    assert len(split(2, 3, test_fraction=0.01, heldout_fraction=0.99, seed=0)[0]) == 1
    assert len(split(2, 3, test_fraction=0.99, heldout_fraction=0.99, seed=0)[1]) == 2


def test_the_fit_never_trains_on_test_trials_and_the_encoder_sees_only_held_in_neurons(files, tmp_path):
    fit = FitConfig(recordings=str(files["poisson"]), forcing_interval=3, heldout_fraction=0.25, psth_by="context")
    trainer = FitTrainer(_config(steps=10), fit, tmp_path / "fit", progress=False)
    test, heldout = trainer.trials.test, trainer.trials.heldout
    n_trials, n_neurons = 60, 12
    assert len(test) == round(0.2 * n_trials) and len(heldout) == round(0.25 * n_neurons)
    expected_test, expected_heldout = split(n_trials, n_neurons, test_fraction=0.2, heldout_fraction=0.25, seed=1)
    np.testing.assert_array_equal(test, expected_test)
    np.testing.assert_array_equal(heldout, expected_heldout)
    assert trainer.encoder.in_features == n_neurons - len(heldout)
    assert trainer.trials.teacher.shape[-1] == n_neurons - len(heldout)
    seen = np.concatenate([trainer.batch_indices(step) for step in range(500)])
    assert not np.intersect1d(seen, test).size
    assert set(seen) == set(np.setdiff1d(np.arange(n_trials), test))  # every training trial gets drawn

    # the test trials' recordings changed beyond recognition: the fitted weights do not move by a bit
    trainer.fit()
    recordings = read_recordings(files["poisson"])
    rates = recordings["rates"].values.copy()
    rates[test] = rates[test] * 3 + 20.0  # still whole counts; NaN stays NaN
    inputs = recordings["inputs"].values.copy()
    inputs[test] = -inputs[test] + 1.0
    changed = _write(recordings.assign(rates=(recordings["rates"].dims, rates),
                                       inputs=(recordings["inputs"].dims, inputs)), tmp_path / "changed.nc")
    other = FitTrainer(_config(steps=10), fit.replace(recordings=str(changed)), tmp_path / "changed",
                       progress=False).fit()
    for name, value in _weights(trainer).items():
        assert torch.equal(value, _weights(other)[name]), name
    assert [row["loss"] for row in trainer.metrics] == [row["loss"] for row in other.metrics]


# --------------------------------------------------------------------------- the run directory


def test_a_fit_loads_as_an_alrnn_with_one_output_per_neuron(poisson_fit):
    assert is_fit_run(poisson_fit)
    run = load_run(poisson_fit)
    assert isinstance(run.model, ALRNN) and not run.model.training
    assert run.model.n_outputs == 12 and run.model.n_inputs == 2
    assert (run.model.n_units, run.model.n_nonlinear, run.step) == (4, 1, 30)
    fitted = load_fit(poisson_fit)
    for name, value in fitted.model.state_dict().items():
        assert torch.equal(value, run.model.state_dict()[name]), name


def test_evaluate_run_scores_the_held_out_trials(poisson_fit, files):
    trials, summary = evaluate_run(poisson_fit)
    data = load_fit(poisson_fit).data
    test = np.asarray(data["test_trials"])
    assert summary["kind"] == "fit"
    assert math.isfinite(summary["co_bps"]) and math.isfinite(summary["psth_r2"])
    assert math.isfinite(summary["co_bps_free"]) and math.isfinite(summary["bps_all_free"])
    assert summary["n_trials"] == len(test) == 12 and summary["n_train_trials"] == 48
    assert summary["n_heldout_neurons"] == len(data["heldout_neurons"]) and summary["n_neurons"] == 12
    assert summary["psth_by"] == ["context"]

    stored = read_trials(poisson_fit / "trials.nc")
    assert stored.sizes["trial"] == len(test) and stored.sizes["output"] == 12
    np.testing.assert_array_equal(stored["source_trial"].values, test)  # the held-out trials, in order
    recordings = read_recordings(files["poisson"]).isel(trial=test)
    np.testing.assert_array_equal(stored["mask"].values, recordings["mask"].values)
    mask = stored["mask"].values
    np.testing.assert_array_equal(stored["inputs"].values[mask], recordings["inputs"].values[mask])
    xr.testing.assert_equal(trials["latents"], stored["latents"])
    assert (poisson_fit / "figures" / "psth.png").stat().st_size > 0


def test_analyze_run_writes_the_analysis_of_a_fit(poisson_fit):
    paths = analyze_run(poisson_fit, log=lambda line: None)
    assert poisson_fit / "analysis.nc" in {Path(path) for path in paths.values()}
    with xr.open_dataset(poisson_fit / "analysis.nc", engine="h5netcdf") as analysis:
        assert int(analysis.attrs["n_trials"]) == 12  # the held-out trials
        assert int(analysis.attrs["checkpoint_step"]) == 30
        assert analysis.sizes["output"] == 12 and analysis.sizes["input"] == 2  # a gain per neuron and input


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["{missing}"], "no recordings file", id="missing recordings"),
        pytest.param(["{gaussian}"], "--observation gaussian", id="poisson on rates"),
        pytest.param(["{no_inputs}", "--inputs", "file"], "no `inputs` variable", id="inputs file without inputs"),
        pytest.param(["{poisson}", "--resume", "{other}"], "exactly one of --out", id="both out and resume"),
    ],
)
def test_fit_command_refuses_bad_input_in_one_line_and_leaves_nothing(files, tmp_path, capsys, arguments, message):
    names = {"missing": tmp_path / "missing.nc", "other": tmp_path / "other", **files}
    argv = ["fit", *[argument.format(**names) for argument in arguments], "--task", TASK, "--units", "4",
            "--nonlinear", "1", "--steps", "3", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neuroalrnn: error: "), captured.err
    assert message in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "other").exists()


def test_fit_command_fits_and_prints_the_co_smoothing_score(files, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["fit", str(files["poisson"]), "--task", TASK, "--units", "4", "--nonlinear", "1", "--steps", "5",
                   "--batch-size", "8", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    line = next(line for line in captured.out.splitlines() if line.startswith("co-smoothing bits/spike"))
    assert math.isfinite(float(line.split(":")[1].split(";")[0]))
    assert "PSTH R² (by context)" in captured.out
    assert load_fit(out).step == 5 and (out / "trials.nc").is_file()


# --------------------------------------------------------------------------- inputs rebuilt from the task


def test_inputs_rebuilt_from_the_task_equal_the_task_inputs(tmp_path):
    env = envs.make(TASK, sigma=0)
    source = simulate(ALRNN(5, 3, 4, 1, generator=torch.Generator().manual_seed(0)), env, 24, seed=7)
    mask = source["mask"].transpose("trial", "time").values
    lengths = mask.sum(axis=1)
    assert len(np.unique(lengths)) > 1  # the delays differ: the trials differ in length
    recordings = xr.Dataset(
        {"rates": (("trial", "time", "neuron"), np.random.default_rng(0).normal(size=(*mask.shape, 3))),
         "mask": (("trial", "time"), mask)},
        coords={"time": ("time", source["time"].values, {"units": "ms"}), "neuron": ("neuron", [0, 1, 2]),
                "epoch": (("trial", "time"), source["epoch"].transpose("trial", "time").values.astype(str)),
                **{name: ("trial", coord.values) for name, coord in source.coords.items()
                   if coord.dims == ("trial",) and name not in ("trial", "task")}})
    read = read_recordings(_write(recordings, tmp_path / "recordings.nc"))
    batch = recorded_batch(read, observation="gaussian", inputs="task", env=envs.make(TASK, sigma=0))
    expected = source["inputs"].transpose("trial", "time", "input").values
    np.testing.assert_array_equal(batch.inputs[mask], expected[mask])
    assert not batch.inputs[~mask].any()
    assert batch.input_names == tuple(str(name) for name in source["input"].values)


def test_train_and_fit_refuse_to_resume_each_others_runs(poisson_fit, tmp_path, capsys):
    task_run = tmp_path / "task"
    Trainer(_config(steps=2, eval_every=2, checkpoint_every=2), task_run, progress=False).fit()
    assert main(["train", "--resume", str(poisson_fit), "--steps", "99"]) == 1
    assert "neuroalrnn fit --resume" in capsys.readouterr().err
    assert main(["fit", "--resume", str(task_run), "--steps", "99"]) == 1
    assert "neuroalrnn train --resume" in capsys.readouterr().err
