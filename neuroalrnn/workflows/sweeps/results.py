"""A sweep's result files: each run's ``result.json`` and the gathered ``results.nc``.

``result.json`` is the last file a run writes (atomically): its status
(``finished`` or ``failed``), its numbers (:data:`~neuroalrnn.workflows.sweeps.metrics.RESULT_VARIABLES`,
``accuracy_by_task``, ``extra``), and on failure the stage and the error.

``results.nc`` holds every grid point's result on one grid (see
:func:`results_dataset`); it is always built from the ``result.json`` files on
disk, so the two never disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ... import formats
from ...storage import atomic_write
from ...system import jsonable
from ...training.rundir import versions
from .experiment import DIMENSION_NAMES, RUNS_FOLDER, Experiment, cell_key
from .metrics import RESULT_VARIABLES

__all__ = [
    "RESULTS_FILE",
    "RESULT_FILE",
    "STATUSES",
    "read_result",
    "read_results",
    "results_dataset",
    "write_result",
]

RESULT_FILE = "result.json"
RESULTS_FILE = "results.nc"
#: The values of results.nc's ``status``: a run's outcome, or where a run without a result stands.
STATUSES = {
    "finished": "trained and evaluated",
    "failed": "raised an error (see error); a rerun skips it unless retry_failed",
    "running": "no result yet, and another process holds the run directory",
    "pending": "no result yet: not started, or stopped before its end; a rerun finishes it",
    "": "no such grid point (e.g. a GRU at a P value)",
}
# The trials' own task dim is named as in trials.nc, and "subtask" where the grid has a `task` axis.
TASK_DIM = "task"
_SUBTASK_DIM = "subtask"


def write_result(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``run_dir/result.json`` atomically (NaN and infinities as null)."""
    path = Path(run_dir) / RESULT_FILE
    atomic_write(path, json.dumps(jsonable(record), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``result.json``, or None when it has none (or an unreadable one)."""
    path = Path(run_dir) / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def results_dataset(experiment: Experiment, records: Mapping[str, Mapping[str, Any]]) -> xr.Dataset:
    """The sweep's results as one Dataset with a dimension per grid axis.

    ``records`` maps a run name to its ``result.json`` record, or for a run
    without one to ``{"status": "pending" or "running", "error": note}``;
    a grid point missing from ``records`` is pending.

    Dims: the grid axes in the experiment's order, ``n_nonlinear`` as ``P``
    and ``n_units`` as ``M`` (P is float: NaN for tanh/GRU/LSTM, which sit
    only at P = NaN; AL-RNN models only at P values; a ``P`` dim also appears
    when only ``model`` varies P), and ``task`` (the test trials' task, as in
    trials.nc) for per-task accuracy; when the grid itself has a ``task``
    axis, the trials' task dim is ``subtask``.
    Variables: ``status`` (:data:`STATUSES`), ``error``, ``run`` (run
    directory name), ``accuracy``, ``test_loss``, ``final_loss``,
    ``steps_to_criterion``, ``steps_trained``, ``regimes_used``,
    ``switch_fraction``, ``wall_time``, ``task_accuracy`` (the grid dims and
    the trials' task dim, only when a run's trials hold several tasks) and one
    variable per extra metric. Numbers are NaN where absent. Attributes: the
    experiment's name, description and TOML text, the criterion, the number of
    test trials, ``out``, package versions (JSON), the creation time, the
    ``format_version`` (:mod:`neuroalrnn.formats` declares the file).
    """
    dims = experiment.dims
    task_dim = _SUBTASK_DIM if TASK_DIM in dims else TASK_DIM
    shape = tuple(len(experiment.coords[dim]) for dim in dims)
    index = {dim: {cell_key(dim, value): i for i, value in enumerate(experiment.coords[dim])} for dim in dims}
    tasks: list[str] = []
    extras: list[str] = list(experiment.evaluation.metrics)
    for record in records.values():
        by_task = record.get("accuracy_by_task") or {}
        if len(by_task) > 1:
            tasks += [task for task in by_task if task not in tasks]
        extras += [name for name in (record.get("extra") or {}) if name not in extras]

    text = {name: np.full(shape, "", dtype=object) for name in ("status", "error", "run")}
    numbers = {name: np.full(shape, np.nan) for name in [*RESULT_VARIABLES, *extras]}
    task_accuracy = np.full((*shape, len(tasks)), np.nan)
    for point in experiment.points:
        cell = tuple(index[dim][cell_key(dim, point.coords[dim])] for dim in dims)
        record = records.get(point.name, {"status": "pending"})
        text["run"][cell] = point.name
        text["status"][cell] = record["status"]
        text["error"][cell] = record.get("error") or ""
        for name in RESULT_VARIABLES:
            numbers[name][cell] = _number(record.get(name))
        for name in extras:
            numbers[name][cell] = _number((record.get("extra") or {}).get(name))
        for task, value in (record.get("accuracy_by_task") or {}).items():
            if task in tasks:
                task_accuracy[(*cell, tasks.index(task))] = _number(value)

    data_vars: dict[str, Any] = {
        "status": (dims, text["status"].astype(str),
                   {"description": "; ".join(f"{status or repr('')}: {meaning}"
                                             for status, meaning in STATUSES.items())}),
        "error": (dims, text["error"].astype(str), {"description": "the error of a failed run"}),
        "run": (dims, text["run"].astype(str), {"description": f"run directory under {RUNS_FOLDER}/"}),
    }
    for name, (description, units) in RESULT_VARIABLES.items():
        data_vars[name] = (dims, numbers[name], {"description": description} | ({"units": units} if units else {}))
    for name in extras:
        data_vars[name] = (dims, numbers[name], {"description": f"extra metric {name!r} (METRICS)"})
    coords: dict[str, Any] = {dim: (dim, _coordinate(dim, experiment.coords[dim])) for dim in dims}
    if tasks:
        data_vars["task_accuracy"] = ((*dims, task_dim), task_accuracy,
                                      {"description": "test accuracy per task of the trials (multi-task runs)"})
        coords[task_dim] = (task_dim, np.asarray(tasks, dtype=str))
    if "P" in coords:
        coords["P"] = ("P", coords["P"][1], {"long_name": "P (n_nonlinear)",
                                             "description": "NaN: P does not apply (tanh, gru, lstm)"})
    attrs = {
        "format_version": formats.FORMAT_VERSION,
        "name": experiment.name,
        "description": experiment.description,
        "experiment": experiment.text,
        "criterion": experiment.evaluation.criterion,
        "test_trials": experiment.evaluation.trials,
        "out": str(experiment.out),
        "dimension_fields": json.dumps({DIMENSION_NAMES.get(key, key): key for key in experiment.grid}),
        "versions": json.dumps(versions()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _coordinate(dim: str, values: tuple) -> np.ndarray:
    if dim == "P":
        return np.asarray([np.nan if value is None else value for value in values], dtype=float)
    if all(isinstance(value, str) for value in values):
        return np.asarray(values, dtype=str)
    return np.asarray(values)


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool | str):
        return float(value) if isinstance(value, bool) else np.nan
    return float(value)


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """Load ``results.nc`` (or the ``results.nc`` in a sweep's ``out`` directory) into memory, validated.

    A file of format version 0 (written before ``format_version``) names the
    trials' task dim ``subtask`` even where the grid has no ``task`` axis; it
    is read with that dim named ``task``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}; run the sweep first")
    return formats.read("results", path)
