"""neuroalrnn.formats: every declared file validates as written by the package, broken ones are refused with
a message naming the problem, version-0 files are mapped, stale trials are recognised, the docs are generated."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from neuroalrnn.workflows import cli
from neuroalrnn.formats import (
    ANY_LEADING,
    DTYPES,
    FIELD_KINDS,
    FORMAT_VERSION,
    FORMATS,
    FormatError,
    StaleTrialsError,
    check_trials_match,
    format_version,
    read,
    render_markdown,
    validate,
)
from neuroalrnn.storage import write_netcdf

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = """
name = "formats"
[fixed]
task = "yang19"
task_kwargs = { tasks = ["go", "dm1"] }
n_units = 6
steps = 4
batch_size = 8
eval_every = 4
eval_trials = 16
bank_size = 16
bank_reuse = 1
[grid]
model = ["alrnn", "gru"]
n_nonlinear = [1]
[evaluate]
trials = 24
"""


def _recordings_from(trials: xr.Dataset, n_neurons: int = 5) -> xr.Dataset:
    """A recording of the trials' latents through a fixed random projection (a run is compared with itself)."""
    projection = np.random.default_rng(0).normal(size=(trials.sizes["unit"], n_neurons))
    rates = np.tensordot(trials["latents"].values, projection, axes=1).astype(np.float32)
    conditions = {name: coord for name, coord in trials.coords.items() if coord.dims == ("trial",)}
    return xr.Dataset(
        {"rates": (("trial", "time", "neuron"), rates), "mask": trials["mask"]},
        coords={**conditions, "time": trials["time"], "epoch": trials["epoch"]},
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One real file of every kind, written by the package itself (tiny runs, a few seconds in all)."""
    root = tmp_path_factory.mktemp("formats")
    single, multi = root / "single", root / "multi"
    assert cli.main(["train", "--units", "6", "--nonlinear", "2", "--steps", "6", "--batch-size", "8",
                     "--eval-trials", "16", "--bank-size", "16", "--data-workers", "0", "--out", str(single),
                     "--no-progress"]) == 0
    assert cli.main(["evaluate", str(single), "--trials", "40"]) == 0
    assert cli.main(["analyze", str(single), "--trials", "40"]) == 0
    write_netcdf(_recordings_from(read("trials", single / "trials.nc")), root / "recordings.nc")
    assert cli.main(["compare", str(single), str(root / "recordings.nc"), "--shuffles", "5"]) == 0
    assert cli.main(["align", str(single), str(single)]) == 0
    assert cli.main(["train", "--task", "yang19", "--task-option", 'tasks=["go","dm1"]', "--units", "6",
                     "--nonlinear", "2", "--steps", "4", "--batch-size", "8", "--eval-trials", "16",
                     "--bank-size", "16", "--data-workers", "0", "--out", str(multi), "--no-progress"]) == 0
    assert cli.main(["analyze", str(multi), "--trials", "30"]) == 0
    experiment = root / "experiment.toml"
    experiment.write_text(EXPERIMENT)
    assert cli.main(["sweep", str(experiment), "--workers", "0", "--out", str(root / "sweep"),
                     "--no-progress"]) == 0
    return {
        "trials": single / "trials.nc", "analysis": single / "analysis.nc", "sharing": multi / "sharing.nc",
        "comparison": single / "comparison.nc", "alignment": single / "alignment.nc",
        "results": root / "sweep" / "results.nc",
        "recordings": root / "recordings.nc", "config": single / "config.json",
        "checkpoint": single / "checkpoint.pt", "evaluation": single / "evaluation.json",
        "metrics": single / "metrics.csv", "result": next((root / "sweep" / "runs").glob("*/result.json")),
    }


def _load(kind: str, path: Path):
    """The file's content as validate() takes it (NetCDF and JSON also through read())."""
    storage = FORMATS[kind].storage
    if storage == "torch":
        return torch.load(path, weights_only=True)
    if storage == "csv":
        with path.open(newline="") as handle:
            return next(csv.reader(handle))
    if storage == "json":
        return json.loads(path.read_text())
    with xr.open_dataset(path, engine="h5netcdf", decode_timedelta=False) as opened:
        return opened.load()


def test_every_file_kind_is_covered():
    assert set(FORMATS) == {"trials", "analysis", "sharing", "comparison", "alignment", "results", "recordings",
                            "config", "checkpoint", "evaluation", "metrics", "result"}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_files_written_by_the_package_validate(files, kind):
    data = _load(kind, files[kind])
    validate(kind, data, source=files[kind])
    if FORMATS[kind].storage in ("netcdf", "json"):
        read(kind, files[kind])


def test_the_trials_written_by_evaluate_are_version_1_with_provenance(files):
    trials = read("trials", files["trials"])
    assert format_version(trials) == FORMAT_VERSION
    assert {key: int(trials.attrs[key]) for key in ("n_trials", "simulated_with_noise")} == {
        "n_trials": 40, "simulated_with_noise": 0}
    check_trials_match(trials, n_trials=40, noise=False, checkpoint_step=6)


def _first_required(kind: str):
    declaration = FORMATS[kind]
    for spec in (*declaration.variables, *declaration.coordinates, *declaration.fields):
        if spec.required and spec.since == 0 and "." not in spec.name:
            return spec.name
    raise AssertionError(f"{kind} declares nothing required")


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_a_file_missing_a_required_part_is_refused_by_name(files, kind):
    data = _load(kind, files[kind])
    name = _first_required(kind)
    storage = FORMATS[kind].storage
    if storage == "netcdf":
        broken = data.drop_vars(name) if name in data.variables else data.drop_attrs(deep=False)
    elif storage == "csv":
        broken = [column for column in data if column != name]
    else:
        broken = {key: value for key, value in data.items() if key != name}
    with pytest.raises(FormatError, match=rf"is not a valid {kind} file.*missing \w+ .*{name}"):
        validate(kind, broken)


@pytest.mark.parametrize("kind", [kind for kind, declaration in FORMATS.items() if declaration.versioned])
def test_a_file_from_a_newer_neuroalrnn_is_refused(files, kind):
    data = _load(kind, files[kind])
    if isinstance(data, xr.Dataset):
        data = data.assign_attrs(format_version=FORMAT_VERSION + 1)
    else:
        data = {**data, "format_version": FORMAT_VERSION + 1}
    with pytest.raises(FormatError, match=rf"written by a newer neuroalrnn \(format_version {FORMAT_VERSION + 1};"
                                          rf".*up to {FORMAT_VERSION}\): upgrade neuroalrnn"):
        validate(kind, data)


def test_wrong_dims_and_dtypes_are_named_with_what_was_expected(files):
    trials = read("trials", files["trials"])
    with pytest.raises(FormatError, match=r"variable 'latents' has dims \('unit', 'time', 'trial'\), expected "
                                          r"\(trial, time, unit\) float"):
        validate("trials", trials.transpose("unit", "time", "trial", ...))
    with pytest.raises(FormatError, match=r"variable 'mask' has dtype float64, expected bool"):
        validate("trials", trials.assign(mask=trials["mask"].astype(np.float64)))
    with pytest.raises(FormatError, match=r"coordinate 'time' has units 's', expected attrs\['units'\] = 'ms'"):
        validate("trials", trials.assign_coords(time=("time", trials["time"].values / 1000, {"units": "s"})))
    with pytest.raises(FormatError, match=r"attribute 'n_units' is '8', expected an integer"):
        validate("trials", trials.assign_attrs(n_units="8"))
    with pytest.raises(FormatError, match="attribute 'simulated_with_noise' is 2, expected 0 or 1"):
        validate("trials", trials.assign_attrs(simulated_with_noise=2))


def test_provenance_is_required_from_version_1_only(files):
    trials = _unversioned(read("trials", files["trials"]))
    old = trials.drop_attrs(deep=False).assign_attrs(
        {key: value for key, value in trials.attrs.items() if key not in ("simulated_with_noise", "checkpoint_step")})
    validate("trials", old)
    with pytest.raises(FormatError, match="missing attributes 'simulated_with_noise' 0 or 1, 'checkpoint_step'"):
        validate("trials", old.assign_attrs(format_version=1))


def _unversioned(dataset: xr.Dataset) -> xr.Dataset:
    return dataset.drop_attrs(deep=False).assign_attrs(
        {key: value for key, value in dataset.attrs.items() if key != "format_version"})


def test_version_0_names_are_mapped(files):
    results = _unversioned(read("results", files["results"]))
    assert validate("results", results.rename(task="subtask"))["task_accuracy"].dims == ("model", "P", "task")
    analysis = _unversioned(read("analysis", files["analysis"]))
    old_analysis = analysis.rename(condition_value="value", condition_value_other="value_other")
    xr.testing.assert_identical(validate("analysis", old_analysis), analysis)
    sharing = _unversioned(read("sharing", files["sharing"]))
    old_sharing = sharing.rename(covariance_similarity="cka", mean_covariance_similarity="mean_cka",
                                 covariance_similarity_by_epoch="cka_by_epoch")
    xr.testing.assert_identical(validate("sharing", old_sharing), sharing)
    evaluation = json.loads(files["evaluation"].read_text())
    old_evaluation = {("by_task" if key == "accuracy_by_task" else key): value for key, value in evaluation.items()
                      if key in ("accuracy", "accuracy_by_task", "mean_over_tasks", "min_over_tasks", "n_trials",
                                 "seed", "scoring", "noise")}
    assert validate("evaluation", old_evaluation)["accuracy_by_task"] == evaluation["accuracy_by_task"]


def test_a_grid_variable_over_other_grid_dims_is_refused(files):
    results = read("results", files["results"])
    odd = results.assign(accuracy=results["accuracy"].isel(model=0, drop=True))
    with pytest.raises(FormatError, match=r"variable 'accuracy' has leading dims \('P',\), expected the grid dims "
                                          r"\('model', 'P'\)"):
        validate("results", odd)


def test_result_json_needs_its_numbers_only_when_finished(files):
    record = json.loads(files["result"].read_text())
    failed = {key: record[key] for key in ("run", "coords", "config", "versions", "finished_at", "wall_time")}
    validate("result", {**failed, "status": "failed", "stage": "training", "error": "ValueError: boom"})
    with pytest.raises(FormatError, match=r"missing keys \['accuracy', 'accuracy_by_task'"):
        validate("result", {**failed, "status": "finished", "stage": None, "error": None})
    with pytest.raises(FormatError, match=r"key 'status' is 'done', expected one of \['finished', 'failed'\]"):
        validate("result", {**record, "status": "done"})


def test_checkpoint_entries_are_checked_by_kind(files):
    state = torch.load(files["checkpoint"], weights_only=True)
    with pytest.raises(FormatError, match=r"entry 'model' is \[1, 2\], expected a mapping of names to torch tensors"):
        validate("checkpoint", {**state, "model": [1, 2]})
    with pytest.raises(FormatError, match=r"entry 'rng_torch' is a Tensor of dtype torch.float32 and shape \(3,\), "
                                          "expected a torch uint8 tensor"):
        validate("checkpoint", {**state, "rng_torch": torch.zeros(3)})
    validate("checkpoint", {"model": state["model"], "step": 3}, parts=("model", "step"))


def test_parts_check_only_what_a_function_reads(files):
    trials = read("trials", files["trials"])
    subset = trials[["latents", "mask"]].drop_attrs(deep=False)
    assert validate("trials", subset, parts=("latents", "mask")) is not None
    with pytest.raises(FormatError, match="missing variable 'regime'"):
        validate("trials", subset, parts=("latents", "regime"))
    with pytest.raises(ValueError, match=r"parts \['neurons'\] are not declared for trials.nc"):
        validate("trials", subset, parts=("neurons",))


def test_recordings_variable_choice_order_and_time_units(files):
    recordings = read("recordings", files["recordings"])
    rates = recordings["rates"].transpose("neuron", "trial", "time")
    validate("recordings", recordings.assign(rates=rates))  # users' files may order dims freely
    validate("recordings", recordings["rates"])  # a DataArray is a recording too
    two = recordings.assign(spikes=recordings["rates"] * 2)
    assert validate("recordings", two) is not None  # "rates" is the default among several
    renamed = two.rename(rates="counts")
    with pytest.raises(FormatError, match=r"data variables \['counts', 'spikes'\]; pass variable="):
        validate("recordings", renamed)
    validate("recordings", renamed, variable="spikes")
    seconds = recordings.assign_coords(time=("time", recordings["time"].values / 1000, {"units": "s"}))
    with pytest.raises(FormatError, match=r"coordinate 'time' has units 's', expected attrs\['units'\] = 'ms'"):
        validate("recordings", seconds)
    with pytest.raises(FormatError, match=r"variable 'rates' has dims \('trial', 'time', 'unit'\)"):
        validate("recordings", recordings.rename(neuron="unit"))


def test_read_reports_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trials file at"):
        read("trials", tmp_path / "trials.nc")
    (tmp_path / "trials.nc").write_text("not NetCDF")
    with pytest.raises(FormatError, match="is not a readable NetCDF file"):
        read("trials", tmp_path / "trials.nc")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(FormatError, match="is not valid JSON"):
        read("config", tmp_path / "config.json")
    with pytest.raises(ValueError, match="unknown file kind 'trial'; kinds: trials, analysis"):
        validate("trial", xr.Dataset())


def _trials(**attrs) -> xr.Dataset:
    return xr.Dataset(attrs=attrs)


def test_check_trials_match_passes_matching_trials_and_unasked_checks():
    current = _trials(format_version=1, n_trials=500, simulated_with_noise=0, checkpoint_step=800)
    check_trials_match(current, n_trials=500, noise=False, checkpoint_step=800)
    check_trials_match(current)
    check_trials_match(_trials())  # nothing asked: even unknown provenance passes


@pytest.mark.parametrize(("stored", "asked", "expected"), [
    ({"n_trials": 50, "simulated_with_noise": 1, "checkpoint_step": 100}, {"n_trials": 500, "noise": False},
     r"stored trials 50, noise True; asked trials 500, noise False\. Simulate them again: "
     r"`neuroalrnn evaluate RUN_DIR --trials 500`"),
    ({"n_trials": 50, "simulated_with_noise": 0, "checkpoint_step": 100}, {"checkpoint_step": 800},
     r"stored checkpoint step 100; asked checkpoint step 800"),
    ({"n_trials": 50, "simulated_with_noise": 0, "checkpoint_step": -1}, {"checkpoint_step": 0},
     r"stored checkpoint step unknown; asked checkpoint step 0"),
    ({"n_trials": 50, "simulated_with_noise": 0, "checkpoint_step": 3}, {"noise": True},
     r"asked noise True\. Simulate them again: `neuroalrnn evaluate RUN_DIR --noise`"),
])
def test_check_trials_match_says_what_differs_and_what_to_run(stored, asked, expected):
    with pytest.raises(StaleTrialsError, match=expected):
        check_trials_match(_trials(format_version=1, **stored), **asked)


def test_version_0_trials_match_nothing_asked_and_the_message_names_the_run(files, tmp_path):
    old = _unversioned(read("trials", files["trials"]))
    run_dir = tmp_path / "old-run"
    write_netcdf(old, run_dir / "trials.nc")
    loaded = read("trials", run_dir / "trials.nc")
    # Even attributes that happen to be present are not trusted in a file without a version.
    with pytest.raises(StaleTrialsError, match=rf"stored trials unknown \(a file from before provenance was "
                                               rf"recorded\); asked trials 40\. Simulate them again: "
                                               rf"`neuroalrnn evaluate {re.escape(str(run_dir))} --trials 40`"):
        check_trials_match(loaded, n_trials=40)


def test_declarations_use_known_dtypes_kinds_and_documented_dims():
    for declaration in FORMATS.values():
        for spec in (*declaration.coordinates, *declaration.variables):
            for layout in spec.layouts:
                assert layout.dtype in DTYPES, (declaration.kind, spec.name)
                undocumented = [dim for dim in layout.dims if dim not in declaration.dims]
                assert not undocumented, (declaration.kind, spec.name, undocumented)
                assert layout.dims.count(ANY_LEADING) <= 1
        for spec in declaration.fields:
            assert spec.kind in FIELD_KINDS, (declaration.kind, spec.name)


def test_docs_formats_md_is_generated_from_the_declarations():
    assert (ROOT / "docs" / "formats.md").read_text() == render_markdown(), (
        "docs/formats.md is out of date: run `python -m neuroalrnn.formats > docs/formats.md`")


def test_the_recordings_example_in_the_docs_runs_and_writes_a_valid_file(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "formats.md").read_text()
    section = text[text.index("## recordings.nc"):]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/formats.md", "exec"), {})
    recordings = read("recordings", tmp_path / "recordings.nc")
    assert recordings["rates"].dims == ("trial", "time", "neuron")
