"""Sweeps: train and evaluate one run per point of a grid (model, M, P, seed, ...) and gather the results.

An experiment file (TOML) names fixed settings and a grid over any
:class:`~neuroalrnn.config.TrainConfig` field::

    name = "stimulus-selection-p"                # default: the file's stem
    out = "runs/sweeps/stimulus-selection-p"     # default: runs/sweeps/<name>
    description = "accuracy and regimes vs P"    # optional

    [fixed]                 # TrainConfig fields shared by every run
    task = "stimulus-selection"
    n_units = 32
    steps = 1500
    task_kwargs = { sigma = 0.2 }

    [grid]                  # TrainConfig fields, each a non-empty list: one run per combination
    model = ["alrnn", "gru", "lstm", "tanh"]
    n_nonlinear = [0, 1, 2, 4, 8, 32]
    seed = [0, 1, 2]

    [evaluate]              # all optional
    trials = 1000           # held-out test trials per run (default 1000)
    criterion = 0.9         # steps to criterion: first step with eval_accuracy >= this (default 0.9)
    save_trials = true      # write each run's test trials as trials.nc (default true)
    metrics = []            # names of extra per-run metrics registered in METRICS

A relative ``out`` is taken relative to the current working directory when the
file is loaded, like ``neuroalrnn train --out``. Everything is checked before
anything runs: unknown keys (listing the valid ones), empty or non-list grid
values, values of the wrong type, and every grid point's ``TrainConfig``; the
tasks are built once each.

**Baselines and P.** P (``n_nonlinear``) applies to AL-RNNs only. A grid point
of model ``tanh``, ``gru`` or ``lstm`` gets ``n_nonlinear = None`` and its P is
NaN, ``linear`` gets P = 0 and ``plrnn`` P = M; grid points that then coincide
are run once. So ``model = ["alrnn", "gru"]`` with six P values and three seeds
is 6 × 3 + 3 runs, not 12 × 3.

**Layout of ``out``**::

    experiment.toml      a copy of the experiment file
    results.nc           the gathered results (see results_dataset)
    figures/*.png        after plot_sweep
    runs/<run name>/     one ordinary run directory per grid point:
                         config.json, checkpoint.pt, metrics.csv, trials.nc,
                         result.json (written last, atomically)

A run's name lists its grid values in the grid's order, with ``n_nonlinear``
written ``P`` and ``n_units`` written ``M``: ``model=alrnn_P=4_seed=1``; P is
left out where it does not apply or is implied (``model=gru_seed=1``,
``model=linear_seed=0``). Characters other than letters, digits, ``.+-`` in a
value become ``-``.

**Resuming.** A run with a ``result.json`` is done and is skipped: its files
are not touched. A run with a checkpoint but no result is resumed
(:meth:`Trainer.resume`; a resumed run ends with the weights of an
uninterrupted one) or, when its training had finished, only evaluated again.
A run that raises is recorded in ``result.json`` with status ``"failed"``,
the stage (``training`` or ``evaluation``) and the error, and the sweep goes
on; a rerun skips it unless ``retry_failed=True`` (a failed training starts
over, a failed evaluation is redone on the trained model). A run directory
whose ``config.json`` differs from its grid point (other than in
``data_workers``, ``bank_cache``, ``checkpoint_every``) stops the sweep before
anything runs. One sweep at a time may use an ``out`` directory.

**Backends.** ``local`` runs the grid points in a pool of ``workers`` spawned
processes (default: min(cores, runs)), each with one torch thread;
``workers=0`` runs them one after another in this process (for debugging).
``ray`` sends each run to Ray as a task of one CPU: ``address=None`` starts a
local Ray instance with ``workers`` CPUs, an address joins a running cluster
(whose workers must have neuroalrnn installed and see ``out`` on a shared file
system). Ray is optional: ``pip install 'neuroalrnn[ray]'``. A run's result
does not depend on the backend.

**Extra metrics.** ``METRICS`` maps a name to a function ``(trials, model,
config) -> float`` of a run's test trials (the ``trials.nc`` Dataset), its
trained model and its TrainConfig; ``[evaluate] metrics = ["name"]`` computes
it for every run and stores it in ``result.json`` (``extra``) and as a
variable of ``results.nc``. The function must be importable (module level),
since the runs happen in other processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from .config import TrainConfig
from .rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    RunDirectoryError,
    load_checkpoint,
    read_config,
    read_metrics,
    versions,
)
from .storage import advisory_lock, atomic_write, save_figure, write_netcdf

__all__ = [
    "METRICS",
    "Evaluation",
    "Experiment",
    "ExperimentError",
    "GridPoint",
    "SweepError",
    "collect_results",
    "evaluate_run",
    "load_experiment",
    "parse_experiment",
    "plot_sweep",
    "results_dataset",
    "run_point",
    "run_sweep",
]

RESULT_FILE = "result.json"
RESULTS_FILE = "results.nc"
EXPERIMENT_COPY = "experiment.toml"
RUNS_FOLDER = "runs"
FIGURES_FOLDER = "figures"
BACKENDS = ("local", "ray")

# Grid fields whose dimension in results.nc (and run names) has the equations' name.
DIMENSION_NAMES = {"n_nonlinear": "P", "n_units": "M"}
# Models without nonlinear units to count: their P is NaN.
P_NOT_APPLICABLE = ("tanh", "gru", "lstm")
# Config fields that never change a run's result: a stored run may differ in them.
_RESULT_NEUTRAL = ("data_workers", "bank_cache", "checkpoint_every")
_TOP_LEVEL = ("name", "out", "description", "fixed", "grid", "evaluate")
_EVALUATE_DEFAULTS = {"trials": 1000, "criterion": 0.9, "save_trials": True, "metrics": []}

MetricFunction = Callable[[xr.Dataset, torch.nn.Module, TrainConfig], float]

#: Extra per-run metrics by name (see the module docstring); an experiment selects them with
#: ``[evaluate] metrics = [...]``. E.g. a sharing index across tasks: ``METRICS["sharing"] = sharing``.
def sharing_index(trials: xr.Dataset, model: torch.nn.Module, config: TrainConfig) -> float:
    """The network's sharing index across tasks (:func:`neuroalrnn.analyses.sharing.sharing_analysis`).

    NaN for a single-task run or a model without regimes.
    """
    from .analyses.sharing import sharing_analysis

    if np.unique(trials["task"].values).size < 2 or "regime" not in trials:
        return float("nan")
    return float(sharing_analysis(trials)["sharing_index"])


METRICS: dict[str, MetricFunction] = {"sharing_index": sharing_index}


class ExperimentError(ValueError):
    """An experiment file is malformed: the message lists every problem found."""


class SweepError(ValueError):
    """A sweep cannot run as asked (e.g. its run directories hold other configurations)."""


# ---------------------------------------------------------------------------------------------
# The experiment: parsing, validation and grid expansion


@dataclass(frozen=True)
class Evaluation:
    """How each run is evaluated after training (the ``[evaluate]`` table)."""

    trials: int = 1000
    criterion: float = 0.9
    save_trials: bool = True
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep: its name (run directory), its coordinates on the result dims, its config."""

    name: str
    coords: Mapping[str, Any]  # dim -> value; P is None where it does not apply
    config: TrainConfig


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: settings, the expanded grid points and the result dims."""

    name: str
    out: Path
    text: str
    source: Path | None
    description: str
    fixed: Mapping[str, Any]
    grid: Mapping[str, tuple]
    evaluation: Evaluation
    points: tuple[GridPoint, ...]
    dims: tuple[str, ...]
    coords: Mapping[str, tuple]

    @property
    def runs_dir(self) -> Path:
        return self.out / RUNS_FOLDER

    def run_dir(self, point: GridPoint) -> Path:
        return self.runs_dir / point.name

    def check_tasks(self) -> None:
        """Build each distinct task once, so an unknown task or bad task option fails before any run."""
        from .training import make_task

        seen = set()
        for point in self.points:
            key = (point.config.task, json.dumps(point.config.task_kwargs, sort_keys=True, default=str))
            if key not in seen:
                seen.add(key)
                try:
                    make_task(point.config)
                except ValueError as error:
                    raise ExperimentError(f"{self._where()}run {point.name}: {error}") from None

    def _where(self) -> str:
        return f"{self.source}: " if self.source is not None else ""


def load_experiment(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> Experiment:
    """Read and validate an experiment file; ``out`` overrides the file's ``out``."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"no experiment file at {path}")
    return parse_experiment(path.read_text(), source=path, out=out)


def parse_experiment(
    text: str, *, source: str | os.PathLike | None = None, out: str | os.PathLike | None = None
) -> Experiment:
    """Validate an experiment given as TOML text and expand its grid (see the module docstring)."""
    where = f"{source}: " if source is not None else ""
    toml = _toml_reader()
    try:
        document = toml.loads(text)
    except toml.TOMLDecodeError as error:
        raise ExperimentError(f"{where}not valid TOML: {error}") from None
    problems: list[str] = []

    unknown = sorted(set(document) - set(_TOP_LEVEL))
    if unknown:
        problems.append(f"unknown top-level keys {unknown}; valid keys: {list(_TOP_LEVEL)}")
    stem = Path(source).stem if source is not None else "sweep"
    name = document.get("name", stem)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"name must be a non-empty string, got {name!r}")
        name = stem
    description = document.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description must be a string, got {description!r}")
        description = ""
    out_value = out if out is not None else document.get("out", str(Path("runs", "sweeps", name)))
    if not isinstance(out_value, str | os.PathLike) or not str(out_value):
        problems.append(f"out must be a directory path (string), got {out_value!r}")
        out_value = Path("runs", "sweeps", name)

    fixed = _table(document, "fixed", problems)
    grid_table = _table(document, "grid", problems)
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    for table_name, table in (("fixed", fixed), ("grid", grid_table)):
        unknown = sorted(set(table) - set(fields))
        if unknown:
            problems.append(f"[{table_name}] has unknown keys {unknown}; valid keys (TrainConfig fields): {fields}")
    both = sorted(set(fixed) & set(grid_table))
    if both:
        problems.append(f"keys {both} are in both [fixed] and [grid]; keep each in one")

    fixed_values = {}
    for key, value in fixed.items():
        if key in fields:
            with _problem(problems):
                fixed_values[key] = _checked_value(f"fixed.{key}", key, value)
    grid: dict[str, tuple] = {}
    for key, values in grid_table.items():
        if key not in fields:
            continue
        if key == "task_kwargs":
            problems.append("task_kwargs cannot be a grid axis; put it in [fixed]")
            continue
        if not isinstance(values, list):
            problems.append(f"grid.{key} must be a list of values, got {values!r}")
            continue
        if not values:
            problems.append(f"grid.{key} is an empty list; give at least one value")
            continue
        checked = []
        for index, value in enumerate(values):
            with _problem(problems):
                checked.append(_checked_value(f"grid.{key}[{index}]", key, value))
        if len(checked) == len(values):
            if len(set(map(_hashable, checked))) < len(checked):
                problems.append(f"grid.{key} repeats a value: {values!r}")
            grid[key] = tuple(checked)

    evaluation = _evaluation(_table(document, "evaluate", problems), problems)
    if problems:
        raise ExperimentError(where + "; ".join(problems))

    points, problems = _expand(fixed_values, grid)
    if problems:
        shown = problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5 else [])
        raise ExperimentError(where + "; ".join(shown))
    dims, coords = _dimensions(grid, points)
    return Experiment(
        name=name, out=Path(os.path.abspath(Path(out_value).expanduser())), text=text,
        source=Path(source) if source is not None else None, description=description,
        fixed=fixed_values, grid=grid, evaluation=evaluation, points=tuple(points), dims=dims, coords=coords,
    )


def _toml_reader() -> types.ModuleType:
    """tomllib (Python >= 3.11), else its backport tomli."""
    try:
        import tomllib
    except ModuleNotFoundError:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ImportError("reading experiment files needs Python >= 3.11 (tomllib) or tomli: "
                              "pip install tomli") from None
    return tomllib


def _table(document: dict, key: str, problems: list[str]) -> dict:
    value = document.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"[{key}] must be a table, got {value!r}")
        return {}
    return value


@contextlib.contextmanager
def _problem(problems: list[str]) -> Iterator[None]:
    try:
        yield
    except ExperimentError as error:
        problems.append(str(error))


def _field_kind(field: str) -> type:
    """The plain type a TrainConfig field takes from a TOML file (Optional and generics unwrapped)."""
    hint = typing.get_type_hints(TrainConfig)[field]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


_KIND_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}


def _checked_value(where: str, field: str, value: Any) -> Any:
    kind = _field_kind(field)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ExperimentError(f"{where} must be {_KIND_WORDS.get(kind, kind.__name__)}, "
                              f"got {value!r} ({type(value).__name__})")
    return value


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else (type(value), value)


def _evaluation(table: dict, problems: list[str]) -> Evaluation:
    unknown = sorted(set(table) - set(_EVALUATE_DEFAULTS))
    if unknown:
        problems.append(f"[evaluate] has unknown keys {unknown}; valid keys: {list(_EVALUATE_DEFAULTS)}")
    values = {**_EVALUATE_DEFAULTS, **{key: table[key] for key in table if key in _EVALUATE_DEFAULTS}}
    trials, criterion = values["trials"], values["criterion"]
    if isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0:
        problems.append(f"evaluate.trials must be a positive integer, got {trials!r}")
        trials = 1
    if isinstance(criterion, bool) or not isinstance(criterion, int | float) or not 0 <= criterion <= 1:
        problems.append(f"evaluate.criterion must be a number in [0, 1], got {criterion!r}")
        criterion = 0.9
    if not isinstance(values["save_trials"], bool):
        problems.append(f"evaluate.save_trials must be true or false, got {values['save_trials']!r}")
    metrics = values["metrics"]
    if not isinstance(metrics, list) or not all(isinstance(name, str) for name in metrics):
        problems.append(f"evaluate.metrics must be a list of metric names, got {metrics!r}")
        metrics = []
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        problems.append(f"evaluate.metrics names unknown metrics {unknown}; registered: {sorted(METRICS)}")
    reserved = [name for name in metrics if name in _RESULT_VARIABLES]
    if reserved:
        problems.append(f"evaluate.metrics {reserved} clash with results.nc variables")
    return Evaluation(trials=trials, criterion=float(criterion), save_trials=bool(values["save_trials"]),
                      metrics=tuple(metrics))


def effective_n_nonlinear(model: str, n_units: int, n_nonlinear: int | None) -> int | None:
    """P as the model uses it: None where it does not apply (tanh, gru, lstm), 0 for linear, M for plrnn."""
    if model in P_NOT_APPLICABLE:
        return None
    if model == "linear":
        return 0
    if model == "plrnn":
        return n_units
    return n_nonlinear


def _expand(fixed: dict, grid: dict[str, tuple]) -> tuple[list[GridPoint], list[str]]:
    """Every combination of the grid as a GridPoint; combinations that build the same run collapse."""
    points, problems, seen_names = [], [], {}
    keys = list(grid)
    defaults = TrainConfig()
    for combination in itertools.product(*(grid[key] for key in keys)):
        values = {**fixed, **dict(zip(keys, combination, strict=True))}
        model = values.get("model", defaults.model)
        n_units = values.get("n_units", defaults.n_units)
        p = effective_n_nonlinear(model, n_units, values.get("n_nonlinear", defaults.n_nonlinear))
        values["n_nonlinear"] = p
        coords = {DIMENSION_NAMES.get(key, key): value for key, value in zip(keys, combination, strict=True)}
        coords["P"] = p
        name = _run_name(keys, combination, model)
        if name in seen_names:
            if seen_names[name] == coords:
                continue  # e.g. a GRU listed once per P value: one run
            problems.append(f"grid points {seen_names[name]} and {coords} get the same run name {name!r}")
            continue
        seen_names[name] = coords
        try:
            config = TrainConfig(**values)
        except (ValueError, TypeError) as error:
            problems.append(f"run {name}: {error}")
            continue
        points.append(GridPoint(name=name, coords=coords, config=config))
    return points, problems


def _run_name(keys: Sequence[str], values: Sequence[Any], model: str) -> str:
    parts = [
        f"{DIMENSION_NAMES.get(key, key)}={_name_value(value)}"
        for key, value in zip(keys, values, strict=True)
        if not (key == "n_nonlinear" and model != "alrnn")
    ]
    return "_".join(parts) or "run"


def _name_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+\-]", "-", text)


def _dimensions(grid: dict[str, tuple], points: list[GridPoint]) -> tuple[tuple[str, ...], dict[str, tuple]]:
    """Result dims in grid order (P where n_nonlinear is, or after model when only the model varies P)."""
    dims = [DIMENSION_NAMES.get(key, key) for key in grid]
    p_values = {_p_key(point.coords["P"]) for point in points}
    if "P" not in dims and len(p_values) > 1:
        dims.insert(dims.index("model") + 1 if "model" in dims else 0, "P")
    coords = {DIMENSION_NAMES.get(key, key): tuple(values) for key, values in grid.items()}
    if "P" in dims:  # ascending, "does not apply" (NaN) last
        coords["P"] = tuple(sorted(p_values, key=lambda p: (p is None, p or 0)))
    return tuple(dims), {dim: coords[dim] for dim in dims}


def _p_key(p: Any) -> int | None:
    """P as a key: None where it does not apply (None or NaN), else an int (NaN != NaN breaks sets)."""
    return None if p is None or (isinstance(p, float) and math.isnan(p)) else int(p)


# ---------------------------------------------------------------------------------------------
# One run: train (or resume), evaluate on held-out test trials, write result.json


def run_point(
    point: GridPoint, run_dir: str | os.PathLike, evaluation: Evaluation = Evaluation(),
    metrics: Mapping[str, MetricFunction] | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run of ``point`` in ``run_dir``, evaluate it, write and return its result.

    Any exception is recorded (status ``"failed"``, the stage, the error and its
    traceback) instead of raised; KeyboardInterrupt is not caught, so an
    interrupted run leaves no result and is resumed by the next sweep.
    """
    run_dir = Path(run_dir)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "run": point.name, "coords": dict(point.coords), "config": point.config.to_dict(),
        "status": "failed", "stage": "training", "error": None,
    }
    try:
        train_seconds = _train(point.config, run_dir)
        record["stage"] = "evaluation"
        evaluation_started = time.perf_counter()
        record.update(evaluate_run(run_dir, evaluation, metrics))
        record.update(status="finished", stage=None, train_seconds=train_seconds,
                      evaluate_seconds=time.perf_counter() - evaluation_started)
        record["wall_time"] = record["train_seconds"] + record["evaluate_seconds"]
    except Exception as error:  # recorded, not raised: one failing run must not stop the sweep
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()
        record["wall_time"] = time.perf_counter() - started
        with contextlib.suppress(Exception):
            record["steps_trained"] = int(load_checkpoint(run_dir)["step"])
    record["versions"] = versions()
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_result(run_dir, record)
    return record


def _train(config: TrainConfig, run_dir: Path) -> float:
    """Train the run to its end (fresh, resumed, or already done); the training seconds it took in all."""
    from .training import Trainer

    if (run_dir / CHECKPOINT_FILE).is_file():
        if not _training_done(read_config(run_dir), run_dir):
            Trainer.resume(run_dir, progress=False).fit()
    else:
        Trainer(config, run_dir, progress=False).fit()
    return float(load_checkpoint(run_dir)["elapsed"])


def _training_done(config: TrainConfig, run_dir: Path) -> bool:
    step = int(load_checkpoint(run_dir)["step"])
    if step >= config.steps:
        return True
    if config.target_accuracy > 0:  # an early stop leaves its last evaluation at the checkpoint's step
        rows = [row for row in read_metrics(run_dir) if row["step"] == step and row["eval_accuracy"] != ""]
        return bool(rows) and rows[-1]["eval_accuracy"] >= config.target_accuracy
    return False


def evaluate_run(
    run_dir: str | os.PathLike, evaluation: Evaluation = Evaluation(),
    metrics: Mapping[str, MetricFunction] | None = None,
) -> dict[str, Any]:
    """The metrics of a trained run, on ``evaluation.trials`` held-out test trials (noiseless model).

    Test trials are drawn with seed = config.seed + ``TEST_SEED_OFFSET`` (as
    ``neuroalrnn evaluate``), apart from training and evaluation trials.
    Returns ``accuracy`` (mean trial score, :func:`neuroalrnn.evaluation.accuracy_by`),
    ``accuracy_by_task`` (per value of the trials' ``task``), ``test_loss``
    (the training loss on the test trials), ``final_loss`` (training loss at
    the last step, from metrics.csv), ``steps_to_criterion`` (first step whose
    held-out ``eval_accuracy`` ≥ ``evaluation.criterion``, None if never; its
    resolution is ``eval_every``), ``steps_trained``, ``stopped_early``,
    ``regimes_used`` (distinct regime codes on valid test steps) and
    ``switch_fraction`` (fraction of consecutive valid steps at which any
    nonlinear unit changes sign; both None for tanh/GRU/LSTM, see
    :func:`neuroalrnn.analyses.regimes.regime_statistics`), ``extra`` (the
    chosen extra metrics) and the test trials' size and seed. With
    ``evaluation.save_trials`` the trials are written to ``run_dir/trials.nc``.
    """
    from . import envs
    from .analyses.regimes import regime_statistics
    from .evaluation import accuracy_by
    from .simulate import trials_dataset, write_trials
    from .training import TEST_SEED_OFFSET, load_model, task_loss

    run_dir = Path(run_dir)
    config, model, env = load_model(run_dir)
    seed = config.seed + TEST_SEED_OFFSET
    batch = envs.sample_trials(env, evaluation.trials, seed=seed, task_name=config.task,
                               weighting=config.weighting, decision_weight=config.decision_weight)
    with torch.no_grad():
        outputs, latents = model(torch.from_numpy(batch.inputs))
        test_loss = float(task_loss(outputs, batch))
    trials = trials_dataset(batch, outputs.numpy(), latents.numpy(), model, seed=seed, config=config.to_dict())
    if evaluation.save_trials:
        write_trials(trials, run_dir / "trials.nc")

    rows = read_metrics(run_dir)
    steps_trained = rows[-1]["step"] if rows else 0
    reached = [row["step"] for row in rows
               if row["eval_accuracy"] != "" and row["eval_accuracy"] >= evaluation.criterion]
    result = {
        "accuracy": float(accuracy_by(trials)),
        "accuracy_by_task": {str(task): float(value)
                             for task, value in accuracy_by(trials, "task").to_series().items()},
        "test_loss": test_loss,
        "final_loss": float(rows[-1]["loss"]) if rows else None,
        "criterion": evaluation.criterion,
        "steps_to_criterion": reached[0] if reached else None,
        "steps_trained": steps_trained,
        "stopped_early": steps_trained < config.steps,
        "regimes_used": None,
        "switch_fraction": None,
        "test_trials": evaluation.trials,
        "test_seed": seed,
    }
    if "regime" in trials:
        statistics = regime_statistics(trials, transitions=False)
        result["regimes_used"] = int(statistics["n_regimes"])
        result["switch_fraction"] = float(statistics["switch_fraction"])
    chosen = {name: METRICS[name] for name in evaluation.metrics} | dict(metrics or {})
    result["extra"] = {name: float(function(trials, model, config)) for name, function in chosen.items()}
    return result


def write_result(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``run_dir/result.json`` atomically (NaN and infinities as null)."""
    path = Path(run_dir) / RESULT_FILE
    atomic_write(path, json.dumps(_jsonable(record), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``result.json``, or None when it has none (or an unreadable one)."""
    path = Path(run_dir) / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# The sweep: skip what is done, run the rest on a backend, gather results.nc


@dataclass(frozen=True)
class _Job:
    point: GridPoint
    run_dir: str
    evaluation: Evaluation
    metrics: Mapping[str, MetricFunction]


def _run_job(job: _Job) -> dict[str, Any]:
    return run_point(job.point, job.run_dir, job.evaluation, job.metrics)


def _one_thread() -> None:
    torch.set_num_threads(1)


def _run_job_one_thread(job: _Job) -> dict[str, Any]:
    torch.set_num_threads(1)
    return _run_job(job)


def run_sweep(
    experiment: str | os.PathLike | Experiment,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    retry_failed: bool = False,
) -> xr.Dataset:
    """Run every grid point of an experiment not yet done, then write and return ``out/results.nc``.

    ``experiment``: a TOML file path or a loaded :class:`Experiment`; ``out``
    overrides its output directory. ``backend``: ``"local"`` (a process pool
    of ``workers`` processes, default min(cores, runs); ``workers=0`` runs in
    this process) or ``"ray"`` (``address`` of a running cluster, or None for
    a local Ray instance of ``workers`` CPUs). ``progress``: a bar over runs
    and one line per finished run. ``retry_failed``: run failed points again.
    See the module docstring for resuming and the result layout.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError("address applies to the ray backend only (backend='ray')")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if backend == "ray":
        _import_ray()
        if workers == 0:
            raise ValueError("workers=0 (run in this process) applies to the local backend only")
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment, out=out)
    elif out is not None:
        experiment = dataclasses.replace(experiment, out=Path(os.path.abspath(out)))
    experiment.check_tasks()
    metrics = {name: METRICS[name] for name in experiment.evaluation.metrics}

    experiment.out.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(experiment.out):
        _check_stored_configs(experiment)
        atomic_write(experiment.out / EXPERIMENT_COPY, experiment.text)
        records: dict[str, dict] = {}
        jobs: list[_Job] = []
        for point in experiment.points:
            run_dir = experiment.run_dir(point)
            record = read_result(run_dir)
            if record is not None and record["status"] == "failed" and retry_failed:
                _clear_failure(run_dir, record)
                record = None
            if record is not None:
                records[point.name] = record
            else:
                jobs.append(_Job(point, str(run_dir), experiment.evaluation, metrics))

        say = tqdm.write if progress else (lambda line: None)
        if records:
            say(f"{len(records)} of {len(experiment.points)} runs already done (skipped)")
        n_workers = min(workers if workers is not None else _cores(), len(jobs))
        if jobs:
            where = ("in this process" if n_workers == 0 else f"{n_workers} workers") if address is None \
                else f"cluster at {address}"
            say(f"running {len(jobs)} runs on the {backend} backend ({where}) into {experiment.out}")
        bar = tqdm(total=len(experiment.points), initial=len(records), desc=experiment.name, unit="run",
                   disable=not progress, dynamic_ncols=True)
        try:
            def finished(job: _Job, record: dict) -> None:
                records[job.point.name] = record
                bar.update(1)
                say(_summary(record))

            if jobs and backend == "ray":
                _run_ray(jobs, workers, address, finished)
            elif jobs:
                _run_local(jobs, n_workers, finished)
        finally:
            bar.close()
        results = results_dataset(experiment, records)
        write_results(results, experiment.out / RESULTS_FILE)
        counts = {status: int((results["status"] == status).sum()) for status in ("failed", "pending")}
        notes = [f"{count} {status}" for status, count in counts.items() if count]
        say(f"wrote {experiment.out / RESULTS_FILE}" + (f" ({', '.join(notes)})" if notes else ""))
        if counts["pending"]:
            say("runs still pending lost their worker process: rerun the sweep to finish them")
    return results


def collect_results(experiment: str | os.PathLike | Experiment, *, out: str | os.PathLike | None = None,
                    write: bool = False) -> xr.Dataset:
    """Gather the results of an experiment's runs from their ``result.json`` files, without running anything.

    Runs without a result (not started, still running, or interrupted) have
    status ``"pending"``. With ``write=True`` the Dataset is also written to
    ``out/results.nc``.
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment, out=out)
    elif out is not None:
        experiment = dataclasses.replace(experiment, out=Path(os.path.abspath(out)))
    records = {point.name: record for point in experiment.points
               if (record := read_result(experiment.run_dir(point))) is not None}
    results = results_dataset(experiment, records)
    if write:
        write_results(results, experiment.out / RESULTS_FILE)
    return results


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _sweep_lock(out: Path):
    """Keep a second sweep out of ``out`` while this one runs (an advisory lock, freed if the process dies)."""
    busy = SweepError(f"another sweep is running into {out}; wait for it or stop it")
    return advisory_lock(out / ".sweep.lock", busy)


def _check_stored_configs(experiment: Experiment) -> None:
    """Refuse to reuse run directories trained with another configuration than their grid point's."""
    conflicts = []
    for point in experiment.points:
        run_dir = experiment.run_dir(point)
        if (run_dir / CONFIG_FILE).is_file():
            try:
                stored = read_config(run_dir).to_dict()
            except RunDirectoryError as error:
                conflicts.append(f"{point.name}: {error}")
                continue
        elif (record := read_result(run_dir)) is not None and isinstance(record.get("config"), dict):
            stored = record["config"]
        else:
            continue
        wanted = point.config.to_dict()
        differences = [f"{key} {stored.get(key)!r} (stored) vs {wanted[key]!r}" for key in wanted
                       if key not in _RESULT_NEUTRAL and stored.get(key) != wanted[key]]
        if differences:
            conflicts.append(f"{point.name}: {', '.join(differences)}")
    if conflicts:
        shown = conflicts[:5] + ([f"and {len(conflicts) - 5} more"] if len(conflicts) > 5 else [])
        raise SweepError(
            f"run directories under {experiment.runs_dir} hold runs of another configuration "
            f"({'; '.join(shown)}); delete them or choose another out directory"
        )


def _clear_failure(run_dir: Path, record: dict) -> None:
    """Prepare a failed run for a retry: a failed training starts over, a failed evaluation is redone."""
    if record.get("stage") == "evaluation":
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
    else:
        shutil.rmtree(run_dir)


def _summary(record: dict) -> str:
    name = record["run"]
    if record["status"] != "finished":
        stage = f" during {record['stage']}" if record.get("stage") else ""
        return f"{name}: {record['status'].upper()}{stage}: {record.get('error')}"
    parts = [f"accuracy {record['accuracy']:.3f}"]
    if record.get("final_loss") is not None:
        parts.append(f"loss {record['final_loss']:.3g}")
    if record.get("regimes_used") is not None:
        parts.append(f"regimes {record['regimes_used']}, switches {record['switch_fraction']:.3f}")
    criterion = record.get("steps_to_criterion")
    parts.append(f"criterion {record['criterion']:g} at step {criterion}" if criterion is not None
                 else f"criterion {record['criterion']:g} not reached")
    parts.append(f"{record['wall_time']:.1f} s")
    return f"{name}: " + ", ".join(parts)


def _lost(job: _Job, error: BaseException) -> dict[str, Any]:
    """The record of a run whose worker died: pending (no result.json), so a rerun retries it."""
    return {"run": job.point.name, "coords": dict(job.point.coords), "status": "pending", "stage": None,
            "error": f"the worker running it stopped ({type(error).__name__}: {error}); rerun the sweep to finish it"}


def _run_local(jobs: list[_Job], workers: int, finished: Callable[[_Job, dict], None]) -> None:
    if workers == 0:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in jobs:
                finished(job, _run_job(job))
        finally:
            torch.set_num_threads(previous)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker, safe with torch's threads and on every platform.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_one_thread)
    try:
        futures = {pool.submit(_run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                record = future.result()
            except Exception as error:  # the worker process died (killed, out of memory)
                record = _lost(job, error)
            finished(job, record)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            "the ray backend needs Ray, which is not installed: pip install 'neuroalrnn[ray]'"
        ) from None
    return ray


def _run_ray(jobs: list[_Job], workers: int | None, address: str | None,
             finished: Callable[[_Job, dict], None]) -> None:
    """Each run as a Ray task of one CPU, at most ``workers`` in flight (all when None).

    Starts a local Ray instance (``address=None``, ``workers`` CPUs) or joins the
    cluster at ``address``, and shuts down only what it started: a Ray session
    the caller already initialised is used as it is.
    """
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=workers or min(_cores(), len(jobs)), include_dashboard=False,
                     configure_logging=False)
        else:
            ray.init(address=address, configure_logging=False)
    in_flight: dict[Any, _Job] = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_job_one_thread)
        waiting = list(jobs)
        limit = workers or len(jobs)  # at most this many runs in flight
        while waiting or in_flight:
            while waiting and len(in_flight) < limit:
                job = waiting.pop(0)
                in_flight[remote.remote(job)] = job
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for reference in done:
                job = in_flight.pop(reference)
                try:
                    record = ray.get(reference)
                except ray.exceptions.RayError as error:
                    record = _lost(job, error)
                finished(job, record)
    except BaseException:
        for reference in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(reference, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------
# results.nc

_RESULT_VARIABLES = {
    "accuracy": ("held-out test accuracy (mean trial score)", ""),
    "test_loss": ("training loss (weighted) on the test trials", ""),
    "final_loss": ("training loss at the last training step", ""),
    "steps_to_criterion": ("first training step whose held-out eval_accuracy >= criterion (NaN: never)", "steps"),
    "steps_trained": ("training steps done (fewer than steps after an early stop)", "steps"),
    "regimes_used": ("distinct regime codes visited on valid test steps (NaN: no regimes)", ""),
    "switch_fraction": ("fraction of consecutive valid test steps at which any nonlinear unit changes sign", ""),
    "wall_time": ("training plus evaluation time", "s"),
}


def results_dataset(experiment: Experiment, records: Mapping[str, Mapping[str, Any]]) -> xr.Dataset:
    """The sweep's results as one Dataset with a dimension per grid axis.

    Dims: the grid axes in the experiment's order, ``n_nonlinear`` as ``P``
    and ``n_units`` as ``M`` (P is float: NaN for tanh/GRU/LSTM, which sit
    only at P = NaN; AL-RNN models only at P values; a ``P`` dim also appears
    when only ``model`` varies P), and ``subtask`` for per-task accuracy.
    Variables: ``status`` ("finished", "failed", "pending": no result yet, or
    "" for a combination that is no grid point, e.g. a GRU at P = 4),
    ``error``, ``run`` (run directory name), ``accuracy``, ``test_loss``,
    ``final_loss``, ``steps_to_criterion``, ``steps_trained``,
    ``regimes_used``, ``switch_fraction``, ``wall_time``, ``task_accuracy``
    (dims + ``subtask``, only when a run's trials hold several tasks) and
    one variable per extra metric. Numbers are NaN where absent. Attributes:
    the experiment's name, description and TOML text, the criterion, the
    number of test trials, ``out``, package versions (JSON), the creation time.
    """
    dims = experiment.dims
    shape = tuple(len(experiment.coords[dim]) for dim in dims)
    index = {dim: {_cell_key(dim, value): i for i, value in enumerate(experiment.coords[dim])} for dim in dims}
    subtasks: list[str] = []
    extras: list[str] = list(experiment.evaluation.metrics)
    for record in records.values():
        by_task = record.get("accuracy_by_task") or {}
        if len(by_task) > 1:
            subtasks += [task for task in by_task if task not in subtasks]
        extras += [name for name in (record.get("extra") or {}) if name not in extras]

    text = {name: np.full(shape, "", dtype=object) for name in ("status", "error", "run")}
    numbers = {name: np.full(shape, np.nan) for name in [*_RESULT_VARIABLES, *extras]}
    task_accuracy = np.full((*shape, len(subtasks)), np.nan)
    for point in experiment.points:
        cell = tuple(index[dim][_cell_key(dim, point.coords[dim])] for dim in dims)
        record = records.get(point.name, {"status": "pending"})
        text["run"][cell] = point.name
        text["status"][cell] = record["status"]
        text["error"][cell] = record.get("error") or ""
        for name in _RESULT_VARIABLES:
            numbers[name][cell] = _number(record.get(name))
        for name in extras:
            numbers[name][cell] = _number((record.get("extra") or {}).get(name))
        for task, value in (record.get("accuracy_by_task") or {}).items():
            if task in subtasks:
                task_accuracy[(*cell, subtasks.index(task))] = _number(value)

    data_vars: dict[str, Any] = {
        "status": (dims, text["status"].astype(str),
                   {"description": "finished, failed, pending (no result yet), '' (no such grid point)"}),
        "error": (dims, text["error"].astype(str), {"description": "the error of a failed run"}),
        "run": (dims, text["run"].astype(str), {"description": f"run directory under {RUNS_FOLDER}/"}),
    }
    for name, (description, units) in _RESULT_VARIABLES.items():
        data_vars[name] = (dims, numbers[name], {"description": description} | ({"units": units} if units else {}))
    for name in extras:
        data_vars[name] = (dims, numbers[name], {"description": f"extra metric {name!r} (METRICS)"})
    coords: dict[str, Any] = {dim: (dim, _coordinate(dim, experiment.coords[dim])) for dim in dims}
    if subtasks:
        data_vars["task_accuracy"] = ((*dims, "subtask"), task_accuracy,
                                      {"description": "test accuracy per task of the trials (multi-task runs)"})
        coords["subtask"] = ("subtask", np.asarray(subtasks, dtype=str))
    if "P" in coords:
        coords["P"] = ("P", coords["P"][1], {"long_name": "P (n_nonlinear)",
                                             "description": "NaN: P does not apply (tanh, gru, lstm)"})
    attrs = {
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


def _cell_key(dim: str, value: Any) -> Any:
    return _p_key(value) if dim == "P" else _hashable(value)


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


def write_results(results: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a results Dataset to NetCDF (h5netcdf) atomically."""
    return write_netcdf(results, path)


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """Load ``results.nc`` (or the ``results.nc`` in a sweep's ``out`` directory) into memory."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}; run the sweep first")
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        return opened.load()


# ---------------------------------------------------------------------------------------------
# Figures


def plot_sweep(results: xr.Dataset | str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Figures of a sweep, written atomically as PNGs; returns their paths.

    ``results``: the Dataset of :func:`run_sweep`, or a path to ``results.nc``
    or to the sweep's ``out`` directory. ``out_dir`` defaults to ``<out>/figures``.

    - ``accuracy_vs_P.png``: test accuracy against P (symlog axis, so P = 0
      shows), the median over seeds as a line and every seed as a dot, one
      line per AL-RNN model and per value of the other grid axes; models
      without P (tanh, GRU, LSTM) as a horizontal line at their median with a
      band over their seeds' range. One panel per task.
    - ``regimes_vs_P.png``: regimes used against P (log₂ axis), with the bound 2^P.
    - ``steps_to_criterion_vs_P.png``: when some run reached the criterion.
    - ``<metric>_vs_P.png``: each extra metric of ``METRICS`` the sweep computed
      (e.g. ``sharing_index_vs_P.png``), where it has finite values.
    - ``accuracy_vs_train_trials.png``: when the grid has ``train_trials``:
      accuracy against the training-set size, one line per P and per baseline.

    Figures whose axis the grid lacks (no P dim, no train_trials) are not made.
    """
    if not isinstance(results, xr.Dataset):
        path = Path(results)
        results = read_results(path)
        default_dir = (path if path.is_dir() else path.parent) / FIGURES_FOLDER
    else:
        default_dir = Path(results.attrs.get("out", ".")) / FIGURES_FOLDER
    out_dir = Path(out_dir) if out_dir is not None else default_dir
    title = str(results.attrs.get("name", ""))
    written = []
    if "P" in results.dims:
        written.append(_plot_against_p(results, "accuracy", "test accuracy", out_dir / "accuracy_vs_P.png", title))
        if np.isfinite(results["regimes_used"].values).any():
            written.append(_plot_against_p(results, "regimes_used", "regimes used",
                                           out_dir / "regimes_vs_P.png", title, log_y=True))
        if np.isfinite(results["steps_to_criterion"].values).any():
            label = f"steps to accuracy ≥ {results.attrs.get('criterion', '')}"
            written.append(_plot_against_p(results, "steps_to_criterion", label,
                                           out_dir / "steps_to_criterion_vs_P.png", title))
        for metric in METRICS:
            if metric in results and np.isfinite(results[metric].values.astype(float)).any():
                written.append(_plot_against_p(results, metric, metric.replace("_", " "),
                                               out_dir / f"{metric}_vs_P.png", title))
    if "train_trials" in results.dims:
        written.append(_plot_against_size(results, out_dir / "accuracy_vs_train_trials.png", title))
    return written


def _panels(results: xr.Dataset) -> list[dict[str, Any]]:
    if "task" in results.dims:
        return [{"task": task} for task in results["task"].values]
    return [{}]


def _series(results: xr.Dataset, skip: Sequence[str]) -> list[dict[str, Any]]:
    """Every combination of the dims not in ``skip`` (one line each), as selection dicts."""
    dims = [dim for dim in results["status"].dims if dim not in skip]
    return [dict(zip(dims, values, strict=True))
            for values in itertools.product(*(results[dim].values for dim in dims))]


def _label(selection: dict[str, Any]) -> str:
    return ", ".join(str(value) if dim == "model" else f"{dim}={value}" for dim, value in selection.items())


def _figure(n_panels: int):
    from matplotlib.figure import Figure  # the object API: no pyplot global state

    fig = Figure(figsize=(4.8 * n_panels + 1.6, 3.8))
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _seed_cloud(ax, x: np.ndarray, values: np.ndarray, color, label: str) -> None:
    """Median over seeds (last axis) as a line, each seed as a dot."""
    finite = np.isfinite(values)
    keep = finite.any(axis=-1)
    if not keep.any():
        return
    x, values, finite = x[keep], values[keep], finite[keep]
    median = np.array([np.median(row[ok]) for row, ok in zip(values, finite, strict=True)])
    ax.plot(x, median, marker="o", color=color, label=label, lw=1.6, ms=4)
    xs = np.repeat(x[:, None], values.shape[-1], axis=1)
    ax.scatter(xs[finite], values[finite], color=color, s=12, alpha=0.45, lw=0)


def _save(fig, axes, title: str, path: Path) -> Path:
    """Legend beside the last panel, the title on top, then write the PNG atomically."""
    axes[-1].legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _seeds_last(array: xr.DataArray, dim: str) -> np.ndarray:
    if "seed" in array.dims:
        return array.transpose(dim, "seed").values
    return array.transpose(dim).values[:, None]


def _plot_against_p(results: xr.Dataset, variable: str, ylabel: str, path: Path, title: str,
                    *, log_y: bool = False) -> Path:
    from matplotlib import colormaps

    panels = _panels(results)
    fig, axes = _figure(len(panels))
    colors = colormaps["tab10"]
    p_values = results["P"].values
    has_p = np.isfinite(p_values)
    for ax, panel in zip(axes, panels, strict=True):
        data = results[variable].sel(panel)
        n_color = 0
        for selection in _series(results, skip=("P", "seed", *panel)):
            values = data.sel(selection)
            applicable = selection.get("model") not in P_NOT_APPLICABLE
            if applicable:
                _seed_cloud(ax, p_values[has_p], _seeds_last(values.isel(P=np.flatnonzero(has_p)), "P"),
                            colors(n_color % 10), _label(selection))
            elif not has_p.all():
                flat = values.isel(P=np.flatnonzero(~has_p)).values.ravel()
                flat = flat[np.isfinite(flat)]
                if flat.size:
                    color = colors(n_color % 10)
                    ax.axhline(np.median(flat), color=color, ls="--", lw=1.2,
                               label=f"{_label(selection)} (no P; band: range)")
                    ax.axhspan(flat.min(), flat.max(), color=color, alpha=0.12, lw=0)
            n_color += 1
        if variable == "regimes_used" and has_p.any():
            grid = np.sort(p_values[has_p])
            ax.plot(grid, 2.0 ** grid, color="0.6", ls=":", lw=1, label="2^P (bound)")
            ax.set_ylim(0.8, max(2.0, np.nanmax(results[variable].values) * 1.5))
        ax.set_xscale("symlog", linthresh=1)
        ticks = np.unique(p_values[has_p])
        ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        ax.set_xticks([], minor=True)
        if log_y:
            ax.set_yscale("log", base=2)
        ax.set_xlabel("P (nonlinear units)")
        ax.set_ylabel(ylabel)
        if panel:
            ax.set_title(f"task: {panel['task']}")
    return _save(fig, axes, title, path)


def _plot_against_size(results: xr.Dataset, path: Path, title: str) -> Path:
    from matplotlib import colormaps

    panels = _panels(results)
    fig, axes = _figure(len(panels))
    colors = colormaps["tab10"]
    sizes = results["train_trials"].values.astype(float)
    for ax, panel in zip(axes, panels, strict=True):
        data = results["accuracy"].sel(panel)
        for n_color, selection in enumerate(_series(results, skip=("train_trials", "seed", *panel))):
            values = data.sel(selection)
            if not np.isfinite(values.values).any():
                continue  # e.g. a GRU at a P value
            label = _label({dim: value for dim, value in selection.items()
                            if not (dim == "P" and not np.isfinite(value))})
            _seed_cloud(ax, sizes, _seeds_last(values, "train_trials"), colors(n_color % 10), label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{size:g}" for size in sizes])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("training trials")
        ax.set_ylabel("test accuracy")
        if panel:
            ax.set_title(f"task: {panel['task']}")
    return _save(fig, axes, title, path)
