"""`analyze` and `neuroalrnn analyze DIR`: the combined Dataset, files, report and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from neuroalrnn import ALRNN
from neuroalrnn.models import ALRNNParams
from neuroalrnn.analyses.pipeline import analyze, typical_inputs
from neuroalrnn.analyses.regimes import regime_statistics
from neuroalrnn.workflows.cli import main
from neuroalrnn.training.config import TrainConfig
from neuroalrnn.evaluation.simulate import simulate
from neuroalrnn.training import Trainer


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "small"
    config = TrainConfig(n_units=16, n_nonlinear=3, steps=150, batch_size=16, eval_every=150, eval_trials=50,
                         checkpoint_every=150, seed=1)
    Trainer(config, run, progress=False).fit()
    return run


@pytest.fixture(scope="module")
def trials_and_params():
    torch.manual_seed(0)
    model = ALRNN(5, 3, 12, 3).eval()
    return simulate(model, "stimulus-selection", 60, seed=2), model.params()


def test_typical_inputs_are_epoch_means(trials_and_params):
    trials, _ = trials_and_params
    means = typical_inputs(trials, "context")
    steps = trials["mask"].values & (trials["epoch"].values == "context")
    steps &= (trials["context"].values == "motion")[:, None]
    np.testing.assert_allclose(means.sel(input_condition="context|motion"), trials["inputs"].values[steps].mean(0))
    assert float(means.sel(input_condition="decision|colour", input="fixation")) == 0.0  # the go cue


def test_noiseless_inputs_find_the_stimulus_epoch_by_how_trials_differ(trials_and_params):
    """Inputs rebuilt from conditions (sigma = 0) vary in no epoch within a trial: the evidence epoch is then
    where the inputs first differ across trials and stop differing after (the stimulus, not the context cue)."""
    from neuroalrnn import envs
    from neuroalrnn.analyses.pipeline import _evidence_epoch

    _, params = trials_and_params
    trials = simulate(ALRNN.from_params(params).eval(), envs.make("stimulus-selection", sigma=0), 60, seed=2)
    epoch, horizon, varying = _evidence_epoch(trials)
    assert (epoch, horizon, varying) == ("stimulus", 15, ["motion", "colour"])


def test_analysis_dataset(trials_and_params, tmp_path):
    trials, params = trials_and_params
    result = analyze(trials, params)
    stats = regime_statistics(trials)
    np.testing.assert_array_equal(result["regime"].values, stats["regime"].values)  # canonical order
    np.testing.assert_allclose(result["occupancy"].values, stats["occupancy"].values)
    for name in ("epoch_count", "nmi", "by_condition_epoch_count", "condition_count", "W_regime", "fixed_point",
                 "fixed_point_real", "eigenvalue_real", "integration_effect", "gating_index", "amplifies",
                 "boundary_transient", "typical_input"):
        assert name in result, name
    assert result["fixed_point"].dims == ("regime", "input_condition", "unit")
    assert list(result["output"].values) == list(trials["output"].values)  # gains name the readout's channels
    assert result.attrs["condition"] == "context" and result.attrs["evidence_epoch"] == "stimulus"
    assert json.loads(result.attrs["varying_inputs"]) == ["motion", "colour"]
    assert result.attrs["horizon"] == 15
    for name in ("stable", "fixed_point_real", "integrates", "amplifies", "gated", "boundary_transient"):
        assert result[name].dtype == bool, name
    # fixed points solve z* = W_Ω z* + C s̄ + h for their regime and input condition
    code = result["regime"].values[0]
    W = result["W_regime"].sel(regime=code).values
    for condition in result["input_condition"].values:
        z = result["fixed_point"].sel(regime=code, input_condition=condition).values
        s = result["typical_input"].sel(input_condition=condition).values
        np.testing.assert_allclose(W @ z + params.C @ s + params.h, z, atol=1e-8)
    path = tmp_path / "analysis.nc"
    result.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as loaded:
        xr.testing.assert_allclose(loaded.load(), result)


def test_primitives_in_the_pipeline_match_direct_calls(trials_and_params):
    """The pipeline hands the primitives the W_Ω it already built; their answers are those of plain params."""
    from neuroalrnn.analyses import integration_modes, transient_amplification

    trials, params = trials_and_params
    result = analyze(trials, params)
    codes = result["regime"].values
    by_code = result.sortby("regime")
    eigenvalues = by_code["eigenvalue_real"].values + 1j * by_code["eigenvalue_imag"].values
    integration = integration_modes(params, codes, horizon=result.attrs["horizon"], eigenvalues=eigenvalues)
    amplification = transient_amplification(params, codes, peak_regimes=8)
    assert result.sizes["regime"] <= 32  # all of them analysed (max_regimes=32)
    for name, expected in (("integration_effect", integration["effect"]), ("integrates", integration["integrates"]),
                           ("integration_eigenvalue", integration["eigenvalue"])):
        np.testing.assert_array_equal(result[name].values, expected.sel(regime=codes).values, err_msg=name)
    for name in ("peak_norm", "peak_step", "amplifies"):
        np.testing.assert_allclose(result[name].values, amplification[name].sel(regime=codes).values, rtol=1e-12)


def test_known_regime_matrices_are_served_only_when_asked_for_exactly():
    from neuroalrnn.models import codes_to_bits
    from neuroalrnn.analyses.dynamics import regime_dynamics
    from neuroalrnn.analyses.pipeline import _KnownRegimeMatrices

    rng = np.random.default_rng(0)
    M, P = 6, 3
    params = ALRNNParams(A=rng.uniform(0, 0.5, M), W=rng.normal(0, 0.5, (M, M)), h=np.zeros(M),
                         C=rng.normal(size=(M, 2)), B=rng.normal(size=(1, M)), b=np.zeros(1), n_nonlinear=P)
    inputs = xr.DataArray(np.zeros((1, 2)), dims=("condition", "input"))
    dynamics = regime_dynamics(params, [6, 1, 3], inputs)
    known = _KnownRegimeMatrices.of(params, dynamics)
    served = known.regime_matrix(codes_to_bits([1, 3, 6], P))
    assert served is known.matrices and not served.flags.writeable
    np.testing.assert_array_equal(served, params.regime_matrix(codes_to_bits([1, 3, 6], P)))
    for other in ([1, 3], [1, 6, 3], [0, 1, 3]):  # anything else is built afresh
        rebuilt = known.regime_matrix(codes_to_bits(other, P))
        assert rebuilt.flags.writeable
        np.testing.assert_array_equal(rebuilt, params.regime_matrix(codes_to_bits(other, P)))


def test_analyze_restores_library_threads(trials_and_params):
    from threadpoolctl import threadpool_info

    trials, params = trials_and_params
    torch.set_num_threads(2)  # the autouse fixture restores its own setting afterwards
    before = [(library["filepath"], library["num_threads"]) for library in threadpool_info()]
    analyze(trials, params, max_regimes=2)
    assert torch.get_num_threads() == 2
    assert [(library["filepath"], library["num_threads"]) for library in threadpool_info()] == before


def test_analyze_without_condition_and_bad_condition(trials_and_params):
    trials, params = trials_and_params
    plain = analyze(trials, params, condition=None)
    assert "gating_index" not in plain and "condition_count" not in plain
    with pytest.raises(ValueError, match="no trial condition 'weather'"):
        analyze(trials, params, condition="weather")


def test_max_regimes_limits_the_dynamics(trials_and_params):
    trials, params = trials_and_params
    result = analyze(trials, params, max_regimes=2)
    assert int(result["spectral_radius"].notnull().sum()) == min(2, result.sizes["regime"])
    assert 0 < result.attrs["dynamics_coverage"] <= 1


def test_cli_analyze_writes_files_and_report(small_run, capsys):
    assert main(["analyze", str(small_run), "--trials", "80"]) == 0
    out = capsys.readouterr().out
    assert "analysis.nc" in out and "report.md" in out
    assert (small_run / "trials.nc").is_file()  # simulated because it was missing
    for name in ("regime_raster", "regime_epoch", "transitions", "spectra", "trajectories"):
        assert (small_run / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    report = (small_run / "report.md").read_text()
    for heading in ("## Regimes used", "## Which regimes serve which epoch", "## Fixed points and slow modes",
                    "## Computational primitives", "![Regime raster](figures/regime_raster.png)"):
        assert heading in report
    with xr.open_dataset(small_run / "analysis.nc", engine="h5netcdf") as analysis:
        assert analysis.attrs["n_trials"] == 80
        assert float(analysis["occupancy"].sum()) == pytest.approx(1.0)


def test_cli_analyze_refuses_a_baseline(tmp_path, capsys):
    run = tmp_path / "gru"
    assert main(["train", "--out", str(run), "--model", "gru", "--units", "6", "--steps", "2", "--batch-size", "4",
                 "--eval-every", "2", "--eval-trials", "8", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"neuroalrnn: error: regime analyses need an AL-RNN; {run} holds a gru model"


def test_trained_model_stays_at_its_real_fixed_points(small_run):
    """Fixed points from the analysis are fixed points of the trained model itself."""
    from neuroalrnn.analyses import find_fixed_points
    from neuroalrnn.training import load_model

    _, model, env = load_model(small_run)
    params = model.params()
    trials = simulate(model, env, 40, seed=4)
    inputs = typical_inputs(trials)
    exact = model.double()
    checked = 0
    for s in inputs.values:
        found = find_fixed_points(params, s)
        for point, stable in zip(found["point"].values, found["stable"].values, strict=True):
            steps = 50 if stable else 1  # an unstable point drifts away once rounding pushes it
            z = torch.from_numpy(point)[None]
            drive = torch.from_numpy(np.asarray(s, dtype=np.float64)) @ exact.C.T + exact.h
            with torch.no_grad():
                for _ in range(steps):
                    z = exact.step(z, drive)
            np.testing.assert_allclose(z[0].numpy(), point, atol=1e-8, rtol=1e-8)
            checked += 1
    assert checked >= 1, "the trained network should have at least one real fixed point"


def test_pipeline_finds_a_known_two_cycle():
    """z' = 0.25 z − 2.25 relu(z) + s has, at s = 1, the stable 2-cycle (−2/3, 5/6) through regimes 0 → 1."""
    params = ALRNNParams(A=np.array([0.25]), W=np.array([[-2.25]]), h=np.zeros(1), C=np.array([[1.0]]),
                         B=np.array([[1.0]]), b=np.zeros(1), n_nonlinear=1)
    model = ALRNN(1, 1, 1, 1).double()
    with torch.no_grad():
        for name in ("A", "W", "h", "C", "B", "b"):
            getattr(model, name).copy_(torch.from_numpy(getattr(params, name)))
    inputs = torch.ones(1, 12, 1, dtype=torch.float64)
    outputs, latents = model(inputs)
    trials = xr.Dataset(
        {"inputs": (("trial", "time", "input"), inputs.numpy()),
         "latents": (("trial", "time", "unit"), latents.detach().numpy()),
         "outputs": (("trial", "time", "output"), outputs.detach().numpy()),
         "regime": (("trial", "time"), model.regimes(latents)),
         "mask": (("trial", "time"), np.ones((1, 12), bool))},
        coords={"epoch": (("trial", "time"), np.array([["hold"] * 12]))},
    )
    from neuroalrnn.workflows.run_analysis import model_step

    result = analyze(trials, params, condition=None, step=model_step(model))
    assert result.sizes["cycle"] == 1
    np.testing.assert_allclose(result["cycle_points"].values[0, :, 0], [-2 / 3, 5 / 6], rtol=1e-10)
    assert result["cycle_regimes"].values.tolist() == [[0, 1]]
    assert bool(result["cycle_stable"].values[0]) and result["cycle_condition"].values.tolist() == ["hold"]


def test_more_than_62_nonlinear_units_get_statistics_but_no_dynamics():
    torch.manual_seed(1)
    model = ALRNN(5, 3, 70, 70).eval()
    trials = simulate(model, "stimulus-selection", 10, seed=0)
    result = analyze(trials, model.params())
    assert result["regime"].dtype.kind == "U"  # hex labels of the packed bits
    assert float(result["occupancy"].sum()) == pytest.approx(1.0)
    assert "W_regime" not in result and "fixed_point" not in result
    from neuroalrnn.analyses.report import render_report

    report = render_report(result, {}, title="big")
    assert "Per-regime dynamics need integer regime codes (P ≤ 62)." in report


def test_multi_task_runs_get_a_pooled_canonical_epoch_table():
    import numpy as np

    from neuroalrnn import envs
    from neuroalrnn.analyses import analyze
    from neuroalrnn.analyses.report import render_report
    from neuroalrnn.models import build_model
    from neuroalrnn.evaluation.simulate import simulate

    torch.manual_seed(0)
    env = envs.make("yang19", tasks=["dm1", "dms"])
    model = build_model("alrnn", n_inputs=35, n_outputs=17, n_units=16, n_nonlinear=3)
    trials = simulate(model, env, 60, seed=0)
    analysis = analyze(trials, model.params(), max_regimes=4)
    assert set(analysis["task"].values) == {"dm1", "dms", "all tasks"}
    pooled = analysis["epoch_count"].sel(task="all tasks")
    mask = trials["mask"].values
    for epoch in ("fixation", "stimulus", "delay", "decision"):
        expected = int(((trials["epoch_canonical"].values == epoch) & mask).sum())
        assert int(pooled.sel(epoch=epoch).sum()) == expected
    assert int(np.nansum(pooled.values)) == int(mask.sum())
    report = render_report(analysis, {})
    assert "All 2 tasks together" in report


def test_report_names_the_norm_of_amplifying_regimes_without_a_computed_peak(trials_and_params):
    """Peaks over powers are only computed for the most occupied regimes; the others show ‖W_Ω‖, never 'nan'."""
    from neuroalrnn.analyses.report import render_report

    trials, params = trials_and_params
    result = analyze(trials, params)
    codes = result["regime"].values
    result["amplifies"] = ("regime", np.ones(len(codes), dtype=bool))
    result["peak_norm"] = ("regime", np.where(np.arange(len(codes)) == 0, 2.5, np.nan))
    text = render_report(result, figures={})
    assert f"Ω {codes[0]} (peak ‖W_Ω^k‖ = 2.50 at k = " in text
    norm = float(result["operator_norm"].sel(regime=codes[-1]))
    assert f"Ω {codes[-1]} (‖W_Ω‖ = {norm:.2f})" in text
    assert "nan" not in text


# ----------------------------------------------------------------------------- stale trials, failures, edge sizes

TINY = ["--units", "8", "--nonlinear", "2", "--batch-size", "4", "--eval-trials", "8", "--bank-size", "16",
        "--no-progress"]


def test_analyze_after_a_resume_does_not_reuse_the_old_trials(tmp_path, capsys):
    """train to 100, evaluate, train --resume --steps 800, analyze: the analysed trials are the step-800 model's."""
    from neuroalrnn.envs import sample_trials
    from neuroalrnn.training import TEST_SEED_OFFSET, load_model

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "100", "--eval-every", "100", "--checkpoint-every", "100",
                 *TINY]) == 0
    assert main(["evaluate", str(run), "--trials", "60"]) == 0
    assert main(["train", "--resume", str(run), "--steps", "800", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(run), "--max-regimes", "4"]) == 0
    assert "checkpoint step 100" in capsys.readouterr().out  # said why it simulated again
    with xr.open_dataset(run / "analysis.nc", engine="h5netcdf") as analysis:
        assert analysis.attrs["checkpoint_step"] == 800
    trials = xr.load_dataset(run / "trials.nc", engine="h5netcdf")
    config, model, env = load_model(run)
    batch = sample_trials(env, trials.sizes["trial"], seed=config.seed + TEST_SEED_OFFSET, task_name=config.task)
    with torch.no_grad():
        _, latents = model(torch.from_numpy(batch.inputs))
    np.testing.assert_array_equal(trials["latents"].values, latents.numpy())


def test_analyze_does_not_analyse_noisy_or_fewer_trials_than_asked(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "4", "--eval-every", "4", "--noise", "0.5", *TINY]) == 0
    assert main(["evaluate", str(run), "--noise", "--trials", "50"]) == 0
    assert main(["analyze", str(run), "--trials", "500", "--max-regimes", "4"]) == 0
    with xr.open_dataset(run / "analysis.nc", engine="h5netcdf") as analysis:
        assert analysis.attrs["n_trials"] == 500 and analysis.attrs["simulated_with_noise"] == 0
    assert json.loads((run / "evaluation.json").read_text())["n_trials"] == 500


@pytest.mark.parametrize("failing", ["render_report", "latent_trajectories"])
def test_an_analysis_that_fails_writes_nothing(tmp_path, capsys, monkeypatch, failing):
    from neuroalrnn.workflows import run_analysis

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "4", "--eval-every", "4", *TINY]) == 0
    assert main(["evaluate", str(run), "--trials", "40"]) == 0
    before = sorted(path.relative_to(run) for path in run.rglob("*"))

    def fail(*args, **kwargs):
        raise ValueError(f"{failing} failed")

    monkeypatch.setattr(run_analysis.figs if failing == "latent_trajectories" else run_analysis, failing, fail)
    capsys.readouterr()
    assert main(["analyze", str(run)]) == 1
    assert f"{failing} failed" in capsys.readouterr().err
    assert sorted(path.relative_to(run) for path in run.rglob("*")) == before


@pytest.mark.parametrize("n_nonlinear", [0, 1])
def test_a_one_unit_network_is_analysed(tmp_path, capsys, n_nonlinear):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--units", "1", "--nonlinear", str(n_nonlinear), "--steps", "4",
                 "--eval-every", "4", "--batch-size", "4", "--eval-trials", "8", "--bank-size", "16",
                 "--no-progress"]) == 0
    assert main(["analyze", str(run), "--trials", "30"]) == 0
    report = (run / "report.md").read_text()
    assert "## Regimes used" in report
    assert "figures/trajectories.png" in report
    assert (run / "analysis.nc").is_file() and (run / "figures" / "trajectories.png").is_file()


def test_sharing_refuses_results_of_an_older_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--task", "yang19", "--task-option", 'tasks=["go", "dm1"]',
                 "--steps", "2", "--eval-every", "2", *TINY]) == 0
    assert main(["analyze", str(run), "--trials", "40", "--max-regimes", "2"]) == 0
    capsys.readouterr()
    assert main(["sharing", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sharing", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "checkpoint step 2" in err and "at step 4" in err and f"`neuroalrnn analyze {run}`" in err
