"""Sweeps: experiment validation, grid expansion, runs end to end, resume, failures, figures, backends."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import sys
from pathlib import Path

import filelock
import numpy as np
import torch
import pytest
import xarray as xr

from neuroalrnn.training.config import TrainConfig
from neuroalrnn.evaluation import accuracy_by
from neuroalrnn.training.rundir import CHECKPOINT_FILE, load_checkpoint, read_metrics
from neuroalrnn.evaluation.simulate import read_trials
from neuroalrnn.storage import write_netcdf
from neuroalrnn.workflows.sweeps import (
    METRICS,
    RESULT_FILE,
    RESULTS_FILE,
    ExperimentError,
    SweepError,
    collect_results,
    load_experiment,
    parse_experiment,
    plot_sweep,
    read_result,
    read_results,
    results_dataset,
    run_sweep,
)
from neuroalrnn.training import Trainer
from neuroalrnn.workflows.cli import main
from neuroalrnn.workflows.sweeps.runner import Job, _packed

ROOT = Path(__file__).resolve().parents[1]

# Six runs: an AL-RNN at two P values and a GRU (once, not once per P), two seeds each.
TINY = """
name = "tiny"
[fixed]
n_units = 8
steps = 20
batch_size = 8
eval_every = 10
eval_trials = 20
bank_size = 32
bank_reuse = 1
checkpoint_every = 10
[grid]
model = ["alrnn", "gru"]
n_nonlinear = [1, 4]
seed = [0, 1]
[evaluate]
trials = 40
criterion = 0.3
"""
TINY_RUNS = ["model=alrnn_P=1_seed=0", "model=alrnn_P=1_seed=1", "model=alrnn_P=4_seed=0",
             "model=alrnn_P=4_seed=1", "model=gru_seed=0", "model=gru_seed=1"]
# Keys of result.json that measure time or the moment, not the result.
TIMING = ("wall_time", "train_seconds", "evaluate_seconds", "finished_at", "versions", "traceback")

BASE = "[fixed]\nn_units = 8\nsteps = 20\n"


def _write(folder: Path, text: str, name: str = "tiny.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _comparable(results: xr.Dataset) -> xr.Dataset:
    return results.drop_vars("wall_time").assign_attrs(created="", out="", versions="")


def _result_without_timing(run_dir: Path) -> dict:
    return {key: value for key, value in read_result(run_dir).items() if key not in TIMING}


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """mtime and checksum of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*")) if path.is_file() and path.name != ".lock"
    }


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """The tiny sweep on the local backend: a pool of two spawned worker processes, every run alone."""
    folder = tmp_path_factory.mktemp("pool")
    path = _write(folder, TINY)
    results = run_sweep(path, workers=2, progress=False, out=folder / "out", pack=1)
    return path, folder / "out", results


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "stesp = 3\n", ["[fixed] has unknown keys ['stesp']", "valid keys", "'steps'"]),
        (BASE + "[grid]\nseeds = [0]\n", ["[grid] has unknown keys ['seeds']", "'seed'"]),
        (BASE + "[grid]\nseed = []\n", ["grid.seed is an empty list"]),
        (BASE + "[grid]\nseed = 3\n", ["grid.seed must be a list of values, got 3"]),
        (BASE + "[grid]\nseed = [0, 0]\n", ["grid.seed repeats a value"]),
        ("[fixed]\nsteps = 'many'\n", ["fixed.steps must be an integer, got 'many' (str)"]),
        ("[fixed]\nsteps = 1.5\n", ["fixed.steps must be an integer, got 1.5 (float)"]),
        ("[fixed]\nlr = 'fast'\n", ["fixed.lr must be a number, got 'fast' (str)"]),
        ("[grid]\nseed = [0, true]\n", ["grid.seed[1] must be an integer, got True (bool)"]),
        ("[grid]\nmodel = ['alrnn', 3]\n", ["grid.model[1] must be a string, got 3 (int)"]),
        ("[fixed]\nseed = 0\n[grid]\nseed = [1]\n", ["keys ['seed'] are in both [fixed] and [grid]"]),
        ("[grid]\ntask_kwargs = [{sigma = 1}]\n", ["task_kwargs cannot be a grid axis"]),
        ("[fixed]\nn_units = 4\n[grid]\nn_nonlinear = [2, 8]\n",
         ["run P=8: n_nonlinear (P) must lie in [0, n_units=4], got 8"]),
        ("[grid]\nmodel = ['alrnn', 'transformer']\n", ["run model=transformer: model must be one of"]),
        ("[evalute]\ntrials = 3\n", ["unknown top-level keys ['evalute']", "'evaluate'"]),
        ("[evaluate]\ntrials = 0\n", ["evaluate.trials must be a positive integer, got 0"]),
        ("[evaluate]\ncriterion = 2\n", ["evaluate.criterion must be a number in [0, 1], got 2"]),
        ("[evaluate]\ntrial = 10\n", ["[evaluate] has unknown keys ['trial']", "'trials'"]),
        ("[evaluate]\nmetrics = ['nope']\n", ["unknown metrics ['nope']"]),
        ("[grid]\ntask = ['a:b', 'a/b']\n", ["get the same run name 'task=a-b'"]),
        ("name = 3\n", ["name must be a non-empty string, got 3"]),
        ("[grid\nseed = [1]\n", ["not valid TOML"]),
        # every problem at once, not one per attempt
        (BASE + "stesp = 3\n[grid]\nseed = []\n", ["unknown keys ['stesp']", "grid.seed is an empty list"]),
    ],
)
def test_experiment_errors_name_the_problem(tmp_path, text, expected):
    path = _write(tmp_path, text, "bad.toml")
    with pytest.raises(ExperimentError) as error:
        load_experiment(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, message


def test_a_bad_task_stops_the_sweep_before_any_run(tmp_path):
    path = _write(tmp_path, TINY.replace("[grid]", "[grid]\ntask = ['stimulus-selection', 'rdm']"))
    with pytest.raises(ExperimentError, match="run task=rdm_model=alrnn_P=1_seed=0: unknown task 'rdm'"):
        run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    assert not (tmp_path / "out" / "runs").exists()


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    path = _write(tmp_path, TINY)
    with pytest.raises(ImportError, match=r"pip install 'neuroalrnn\[ray\]'"):
        run_sweep(path, backend="ray", progress=False, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "slurm"}, "backend must be one of local, ray; got 'slurm'"),
        ({"address": "auto"}, "address applies to the ray backend only"),
        ({"workers": -1}, "workers must be an integer >= 0, got -1"),
    ],
)
def test_bad_sweep_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(_write(tmp_path, TINY), progress=False, **options)


def test_no_module_imports_ray_at_import_time():
    # Static, so it holds whatever else the test session imported: ray is imported inside functions only.
    for path in [*(ROOT / "neuroalrnn").rglob("*.py"), *(ROOT / "envs").glob("*.py"),
                 *(ROOT / "analyses").glob("*.py")]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not any(name == "ray" or name.startswith("ray.") for name in names), path


# ---------------------------------------------------------------------------------------------
# Grid expansion and names


def test_baselines_run_once_not_once_per_p():
    experiment = parse_experiment(
        BASE + "[grid]\nmodel = ['alrnn', 'linear', 'plrnn', 'tanh', 'gru', 'lstm']\n"
        "n_nonlinear = [0, 2, 8]\nseed = [0, 1]\n"
    )
    names = [point.name for point in experiment.points]
    assert len(names) == len(set(names)) == 3 * 2 + 5 * 2
    assert experiment.dims == ("model", "P", "seed")
    assert experiment.coords["P"] == (0, 2, 8, None)
    by_name = {point.name: point for point in experiment.points}
    assert by_name["model=alrnn_P=2_seed=1"].config.n_nonlinear == 2
    assert by_name["model=gru_seed=0"].config.n_nonlinear is None
    assert by_name["model=gru_seed=0"].coords == {"model": "gru", "P": None, "seed": 0}
    assert by_name["model=linear_seed=0"].config.n_nonlinear == 0
    assert by_name["model=plrnn_seed=1"].coords["P"] == 8
    assert {name for name in names if name.startswith("model=lstm")} == {"model=lstm_seed=0", "model=lstm_seed=1"}

    results = results_dataset(experiment, {})
    assert dict(results.sizes) == {"model": 6, "P": 4, "seed": 2}
    status = results["status"]
    assert int((status == "pending").sum()) == 16 and int((status == "").sum()) == 6 * 4 * 2 - 16
    assert (status.sel(model="gru", P=np.nan) == "pending").all()
    assert (status.sel(model="gru", P=2) == "").all() and (status.sel(model="alrnn", P=np.nan) == "").all()
    assert (status.sel(model="linear", P=0) == "pending").all() and (status.sel(model="linear", P=2) == "").all()


def test_p_becomes_a_dim_when_only_the_model_varies_it():
    experiment = parse_experiment("[fixed]\nn_nonlinear = 2\n[grid]\nmodel = ['gru', 'alrnn']\n")
    assert experiment.dims == ("model", "P")
    assert [point.name for point in experiment.points] == ["model=gru", "model=alrnn"]
    assert results_dataset(experiment, {})["P"].values.tolist()[0] == 2.0


def test_run_names_are_stable_and_safe():
    experiment = parse_experiment(
        "[grid]\ntask = ['neurogym:PerceptualDecisionMaking-v0']\nn_units = [16]\nlr = [0.001, 1e-05]\n"
        "fast_step = [false]\n"
    )
    assert [point.name for point in experiment.points] == [
        "task=neurogym-PerceptualDecisionMaking-v0_M=16_lr=0.001_fast_step=false",
        "task=neurogym-PerceptualDecisionMaking-v0_M=16_lr=1e-05_fast_step=false",
    ]
    assert parse_experiment(BASE).points[0].name == "run"  # no grid: one run
    assert parse_experiment("[grid]\nlr = [1]\n").points[0].config.lr == 1.0  # a number field takes an int


def test_out_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_experiment('name = "x"\nout = "sweeps/x"\n').out == tmp_path / "sweeps" / "x"
    assert parse_experiment('name = "y"\n').out == tmp_path / "runs" / "sweeps" / "y"
    assert parse_experiment('out = "a"\n', out="b").out == tmp_path / "b"


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda path: path.name)
def test_shipped_experiments_are_valid(path):
    from neuroalrnn.envs import list_tasks
    from neuroalrnn.training import make_task

    experiment = load_experiment(path)
    assert experiment.points and all(isinstance(point.config, TrainConfig) for point in experiment.points)
    assert "P" in experiment.dims and len({point.name for point in experiment.points}) == len(experiment.points)
    assert experiment.out == Path.cwd() / "runs" / "sweeps" / experiment.name
    registered = [point for point in experiment.points if point.config.task in list_tasks()]
    for point in {point.config.task: point for point in registered}.values():
        make_task(point.config)  # the task builds with the experiment's options


# ---------------------------------------------------------------------------------------------
# Running, results.nc, figures


def test_results_hold_each_runs_own_numbers(tiny_sweep):
    path, out, results = tiny_sweep
    assert results["status"].dims == ("model", "P", "seed")
    assert results["P"].values.tolist()[:2] == [1.0, 4.0] and np.isnan(results["P"].values[2])
    xr.testing.assert_identical(read_results(out / RESULTS_FILE), results)
    assert (out / "experiment.toml").read_text() == TINY == results.attrs["experiment"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(TINY_RUNS)
    assert int((results["status"] == "finished").sum()) == 6

    for point in load_experiment(path, out=out).points:
        run_dir = out / "runs" / point.name
        cell = results.sel(model=point.coords["model"], P=np.nan if point.coords["P"] is None else point.coords["P"],
                           seed=point.coords["seed"])
        trials = read_trials(run_dir / "trials.nc")
        rows = read_metrics(run_dir)
        assert str(cell["run"].values) == point.name and str(cell["status"].values) == "finished"
        assert trials.sizes["trial"] == 40
        assert float(cell["accuracy"]) == pytest.approx(float(accuracy_by(trials)))
        assert float(cell["final_loss"]) == pytest.approx(rows[-1]["loss"])
        assert float(cell["steps_trained"]) == rows[-1]["step"] == 20
        reached = [row["step"] for row in rows if row["eval_accuracy"] != "" and row["eval_accuracy"] >= 0.3]
        if reached:
            assert float(cell["steps_to_criterion"]) == reached[0]
        else:
            assert np.isnan(cell["steps_to_criterion"])
        if point.coords["model"] == "gru":
            assert "regime" not in trials
            assert np.isnan(cell["regimes_used"]) and np.isnan(cell["switch_fraction"])
            continue
        regime, mask = trials["regime"].values, trials["mask"].values
        assert float(cell["regimes_used"]) == len(np.unique(regime[mask]))
        pairs = mask[:, 1:] & mask[:, :-1]
        switches = (regime[:, 1:] != regime[:, :-1])[pairs]
        assert float(cell["switch_fraction"]) == pytest.approx(switches.mean())
    assert (results["status"].sel(model="gru", P=[1, 4]) == "").all()
    assert np.isnan(results["accuracy"].sel(model="alrnn", P=np.nan)).all()

    collected = collect_results(path, out=out)
    xr.testing.assert_identical(_comparable(collected), _comparable(results))


def test_plots_are_written(tiny_sweep, tmp_path):
    _, out, results = tiny_sweep
    paths = plot_sweep(out / RESULTS_FILE, out_dir=tmp_path / "figures")
    names = {path.name for path in paths}
    assert {"accuracy_vs_P.png", "regimes_vs_P.png"} <= names
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_sweep(results)[0].parent == out / "figures"


def test_extra_metrics_get_a_figure_against_p(tiny_sweep, tmp_path):
    _, _, results = tiny_sweep
    with_metric = results.assign(sharing_index=results["accuracy"] * 0 + 0.5)
    names = [path.name for path in plot_sweep(with_metric, out_dir=tmp_path)]
    assert "sharing_index_vs_P.png" in names
    assert "sharing_index_vs_P.png" not in [path.name for path in plot_sweep(results, out_dir=tmp_path / "x")]


def test_train_trials_figure_from_a_results_dataset(tmp_path):
    experiment = parse_experiment(
        "[fixed]\nn_units = 8\n[grid]\ntask = ['a', 'b']\ntrain_trials = [32, 128]\nmodel = ['alrnn', 'gru']\n"
        "n_nonlinear = [2, 8]\nseed = [0, 1]\n"
    )
    rng = np.random.default_rng(0)
    records = {
        point.name: {"status": "finished", "accuracy": rng.uniform(), "steps_to_criterion": 100,
                     "regimes_used": None if point.coords["P"] is None else int(rng.integers(1, 5))}
        for point in experiment.points
    }
    paths = plot_sweep(results_dataset(experiment, records), out_dir=tmp_path)
    assert [path.name for path in paths] == ["accuracy_vs_P.png", "regimes_vs_P.png",
                                            "steps_to_criterion_vs_P.png", "accuracy_vs_train_trials.png"]


def test_per_task_accuracy_does_not_split_the_figures_into_panels(tmp_path):
    # Panels are the grid's task axis; the trials' own `task` dim (of task_accuracy) is not one.
    experiment = parse_experiment("[fixed]\nn_units = 8\n[grid]\nmodel = ['alrnn', 'gru']\nn_nonlinear = [1, 4]\n")
    records = {point.name: {"status": "finished", "accuracy": 0.5, "accuracy_by_task": {"go": 0.25, "anti": 0.75}}
               for point in experiment.points}
    results = results_dataset(experiment, records)
    assert "task" in results.dims and "task" not in results["status"].dims
    assert [path.name for path in plot_sweep(results, out_dir=tmp_path)] == ["accuracy_vs_P.png"]


def test_results_use_the_task_dim_and_read_old_subtask_files(tmp_path):
    experiment = parse_experiment("[fixed]\nn_units = 8\n[grid]\nseed = [0, 1]\n")
    records = {point.name: {"status": "finished", "accuracy_by_task": {"go": 0.5 + point.coords["seed"] / 4,
                                                                        "anti": 0.25}}
               for point in experiment.points}
    results = results_dataset(experiment, records)
    assert results["task_accuracy"].dims == ("seed", "task") and "subtask" not in results.dims
    assert results["task_accuracy"].sel(task="go").values.tolist() == [0.5, 0.75]

    old = results.rename({"task": "subtask"})  # as written before the rename, without a format_version
    del old.attrs["format_version"]
    write_netcdf(old, tmp_path / "old.nc")
    old = read_results(tmp_path / "old.nc")
    assert old["task_accuracy"].dims == ("seed", "task")
    np.testing.assert_array_equal(old["task_accuracy"].sel(task="anti").values, [0.25, 0.25])

    # A grid over tasks keeps `task` for its axis; the trials' tasks are then `subtask`, on writing and reading.
    by_suite = parse_experiment("[fixed]\nn_units = 8\n[grid]\ntask = ['stimulus-selection', 'yang19']\n")
    records = {point.name: {"status": "finished", "accuracy_by_task": {"go": 1.0, "anti": 0.0}}
               for point in by_suite.points}
    write_netcdf(results_dataset(by_suite, records), tmp_path / "suites.nc")
    suites = read_results(tmp_path / "suites.nc")
    assert suites["task_accuracy"].dims == ("task", "subtask")
    assert suites["task"].values.tolist() == ["stimulus-selection", "yang19"]


@pytest.mark.slow
def test_ray_backend_gives_the_same_results(tiny_sweep, tmp_path):
    pytest.importorskip("ray")
    path, out, results = tiny_sweep
    ray_results = run_sweep(path, backend="ray", workers=1, progress=False, out=tmp_path / "ray", pack=1)
    xr.testing.assert_identical(_comparable(ray_results), _comparable(results))
    for name in TINY_RUNS:
        assert _result_without_timing(tmp_path / "ray" / "runs" / name) == _result_without_timing(out / "runs" / name)
    a = read_trials(out / "runs" / TINY_RUNS[2] / "trials.nc")
    b = read_trials(tmp_path / "ray" / "runs" / TINY_RUNS[2] / "trials.nc")
    np.testing.assert_array_equal(a["latents"].values, b["latents"].values)


# ---------------------------------------------------------------------------------------------
# Resume and failures


def test_an_interrupted_sweep_finishes_without_redoing_finished_runs(tiny_sweep, tmp_path):
    path, _, fresh = tiny_sweep
    out = tmp_path / "out"
    run_sweep(path, workers=0, progress=False, out=out, pack=1)
    runs = out / "runs"
    # Killed during evaluation: trained, no result yet.
    evaluated = runs / "model=alrnn_P=1_seed=0"
    (evaluated / RESULT_FILE).unlink()
    (evaluated / "trials.nc").unlink()
    # Killed during training: a checkpoint at step 10 of 20, as Ctrl-C leaves it.
    interrupted = runs / "model=alrnn_P=4_seed=1"
    shutil.rmtree(interrupted)
    point = next(p for p in load_experiment(path).points if p.name == interrupted.name)
    trainer = Trainer(point.config, interrupted, progress=False)
    save = trainer.save

    def save_then_stop():
        save()
        if trainer.step == 10:
            raise KeyboardInterrupt

    trainer.save = save_then_stop
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(interrupted)["step"] == 10 and not (interrupted / RESULT_FILE).exists()
    partial = collect_results(path, out=out)
    assert partial["status"].sel(model="alrnn", P=4, seed=1) == "pending"

    untouched = {name: _snapshot(runs / name) for name in TINY_RUNS if name not in (evaluated.name, interrupted.name)}
    checkpoint = _snapshot(evaluated)[CHECKPOINT_FILE]
    resumed = run_sweep(path, workers=0, progress=False, out=out, pack=1)

    for name, files in untouched.items():
        assert _snapshot(runs / name) == files, name
    assert _snapshot(evaluated)[CHECKPOINT_FILE] == checkpoint  # evaluated again, not retrained
    assert load_checkpoint(interrupted)["step"] == 20
    xr.testing.assert_identical(_comparable(resumed), _comparable(fresh))
    for name in TINY_RUNS:
        assert _result_without_timing(runs / name) == _result_without_timing(tiny_sweep[1] / "runs" / name)


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    text = "[fixed]\nn_units = 8\nsteps = 6\nbatch_size = 8\neval_every = 3\neval_trials = 10\nbank_size = 16\n" \
           "n_nonlinear = 2\n[grid]\nlr = [0.003, 1e12]\n[evaluate]\ntrials = 10\n"
    path = _write(tmp_path, text)
    results = run_sweep(path, workers=0, out=tmp_path / "out")
    assert results["status"].values.tolist() == ["finished", "failed"]
    assert str(results["error"].sel(lr=1e12).values).startswith("TrainingDiverged: training diverged at step")
    assert np.isnan(results["accuracy"].sel(lr=1e12)) and np.isfinite(results["accuracy"].sel(lr=0.003))
    failed = tmp_path / "out" / "runs" / "lr=1000000000000.0"
    record = read_result(failed)
    assert record["status"] == "failed" and record["stage"] == "training" and "TrainingDiverged" in record["traceback"]
    printed = capsys.readouterr().out
    assert "lr=1000000000000.0: FAILED during training: TrainingDiverged" in printed
    assert "lr=0.003: accuracy" in printed

    before = _snapshot(tmp_path / "out" / "runs")
    again = run_sweep(path, workers=0, progress=False, out=tmp_path / "out")  # a failed run is not retried
    assert _snapshot(tmp_path / "out" / "runs") == before
    xr.testing.assert_identical(_comparable(again), _comparable(results))
    retried = run_sweep(path, workers=0, progress=False, out=tmp_path / "out", retry_failed=True)
    assert retried["status"].values.tolist() == ["finished", "failed"]
    assert (failed / RESULT_FILE).stat().st_mtime_ns != before[f"{failed.name}/{RESULT_FILE}"][0]


def _trial_count(trials, model, config) -> float:
    if _trial_count.broken and config.seed == 1:
        raise RuntimeError("metric not ready")
    return float(trials.sizes["trial"])


def test_extra_metrics_and_retrying_a_failed_evaluation(tmp_path, monkeypatch):
    monkeypatch.setitem(METRICS, "trial_count", _trial_count)
    monkeypatch.setattr(_trial_count, "broken", True, raising=False)
    text = "[fixed]\nn_units = 8\nsteps = 4\nbatch_size = 4\neval_every = 2\neval_trials = 10\nbank_size = 8\n" \
           "[grid]\nseed = [0, 1]\n[evaluate]\ntrials = 12\nmetrics = ['trial_count']\n"
    path = _write(tmp_path, text)
    results = run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    assert results["status"].values.tolist() == ["finished", "failed"]
    assert results["trial_count"].values[0] == 12 and np.isnan(results["trial_count"].values[1])
    failed = tmp_path / "out" / "runs" / "seed=1"
    assert read_result(failed)["stage"] == "evaluation"
    assert read_result(failed)["error"] == "RuntimeError: metric not ready"

    checkpoint = _snapshot(failed)[CHECKPOINT_FILE]
    _trial_count.broken = False
    retried = run_sweep(path, workers=0, progress=False, out=tmp_path / "out", retry_failed=True)
    assert retried["status"].values.tolist() == ["finished", "finished"]
    assert retried["trial_count"].values.tolist() == [12.0, 12.0]
    assert _snapshot(failed)[CHECKPOINT_FILE] == checkpoint  # evaluated again, not retrained


def test_a_changed_experiment_does_not_reuse_other_runs(tmp_path):
    text = "[fixed]\nn_units = 8\nsteps = 4\nbatch_size = 4\neval_every = 2\neval_trials = 10\nbank_size = 8\n" \
           "[grid]\nseed = [0]\n[evaluate]\ntrials = 10\n"
    path = _write(tmp_path, text)
    run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    before = _snapshot(tmp_path / "out" / "runs")
    path.write_text(text.replace("steps = 4", "steps = 6"))
    with pytest.raises(SweepError, match=r"\(seed=0: steps 4 \(stored\) vs 6\); delete them or choose another out"):
        run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    assert _snapshot(tmp_path / "out" / "runs") == before
    # a setting that cannot change the result may differ
    path.write_text(text.replace("[grid]", "data_workers = 1\n[grid]"))
    run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    assert _snapshot(tmp_path / "out" / "runs") == before


def test_one_sweep_at_a_time_per_out_directory(tmp_path):
    path = _write(tmp_path, TINY)
    (tmp_path / "out").mkdir()
    with filelock.FileLock(tmp_path / "out" / ".sweep.lock", timeout=0):
        with pytest.raises(SweepError, match="another sweep is running into"):
            run_sweep(path, workers=0, progress=False, out=tmp_path / "out")


def test_result_json_is_plain_json(tiny_sweep):
    _, out, _ = tiny_sweep
    text = (out / "runs" / "model=gru_seed=0" / RESULT_FILE).read_text()
    record = json.loads(text)  # NaN is stored as null, so any JSON reader takes it
    assert "NaN" not in text and record["regimes_used"] is None and record["coords"]["P"] is None


# ---------------------------------------------------------------------------------------------
# Packs


@pytest.fixture(scope="module")
def packed_sweep(tiny_sweep, tmp_path_factory):
    """The tiny sweep packed by default: its four AL-RNN runs train as one pack, the GRUs alone."""
    path = tiny_sweep[0]
    out = tmp_path_factory.mktemp("packed") / "out"
    return out, run_sweep(path, workers=0, progress=False, out=out)


def test_a_packed_sweep_gives_each_run_its_solo_result(tiny_sweep, packed_sweep, tmp_path, capsys):
    _, solo_out, solo = tiny_sweep
    packed_out, packed = packed_sweep
    assert (packed["status"] == solo["status"]).all()
    for name in ("accuracy", "regimes_used", "steps_trained"):
        xr.testing.assert_equal(packed[name], solo[name])
    xr.testing.assert_allclose(packed["final_loss"], solo["final_loss"], rtol=1e-4)
    for name in TINY_RUNS[:4]:
        a = load_checkpoint(packed_out / "runs" / name)["model"]
        b = load_checkpoint(solo_out / "runs" / name)["model"]
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # the CLI takes --pack; a rerun finds every run done; the packs depend on the experiment only
    assert main(["sweep", str(tiny_sweep[0]), "--out", str(packed_out), "--no-progress", "--pack", "2"]) == 0
    assert "6 runs finished, 0 failed" in capsys.readouterr().out
    jobs = [Job(point, "", None, {}) for point in load_experiment(tiny_sweep[0]).points]
    assert [len(unit.members) if hasattr(unit, "members") else 1 for unit in _packed(jobs, None)] == [4, 1, 1]
    assert [len(unit.members) if hasattr(unit, "members") else 1 for unit in _packed(jobs, 3)] == [2, 2, 1, 1]  # near-equal packs
    assert all(not hasattr(unit, "members") for unit in _packed(jobs, 1))


def test_a_killed_packed_sweep_resumes_to_the_uninterrupted_results(tiny_sweep, packed_sweep, tmp_path, monkeypatch):
    from neuroalrnn.training import PackTrainer

    path = tiny_sweep[0]
    reference = packed_sweep[1]
    save = PackTrainer._save

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if min(trainer.step for trainer in self.trainers) >= 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(PackTrainer, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    monkeypatch.undo()
    steps = [load_checkpoint(tmp_path / "out" / "runs" / name)["step"] for name in TINY_RUNS[:4]]
    assert steps == [10] * 4
    resumed = run_sweep(path, workers=0, progress=False, out=tmp_path / "out")
    xr.testing.assert_identical(_comparable(resumed), _comparable(reference))
