"""Experiment files: parse and validate a sweep's TOML file and expand its grid into runs.

An experiment file names fixed settings and a grid over any
:class:`~neuroalrnn.training.config.TrainConfig` field::

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
    trials = 1000           # held-out test trials per run (default: neuroalrnn.training.config.DEFAULT_TEST_TRIALS)
    criterion = 0.9         # steps to criterion: first step with eval_accuracy >= this (default 0.9)
    save_trials = true      # write each run's test trials as trials.nc (default true)
    metrics = []            # names of extra per-run metrics registered in METRICS

A relative ``out`` is taken relative to the current working directory when the
file is loaded, like ``neuroalrnn train --out``. Everything is checked before
anything runs: unknown keys (listing the valid ones), empty or non-list grid
values, values of the wrong type, and every grid point's ``TrainConfig``; the
tasks are built once each (:meth:`Experiment.check_tasks`).

**Baselines and P.** P (``n_nonlinear``) applies to AL-RNNs only. A grid point
of model ``tanh``, ``gru`` or ``lstm`` gets ``n_nonlinear = None`` and its P is
NaN, ``linear`` gets P = 0 and ``plrnn`` P = M; grid points that then coincide
are run once. So ``model = ["alrnn", "gru"]`` with six P values and three seeds
is 6 × 3 + 3 runs, not 12 × 3.

**Run names.** A run's name lists its grid values in the grid's order, with
``n_nonlinear`` written ``P`` and ``n_units`` written ``M``:
``model=alrnn_P=4_seed=1``; P is left out where it does not apply or is implied
(``model=gru_seed=1``, ``model=linear_seed=0``). Characters other than letters,
digits, ``.+-`` in a value become ``-``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...training.config import DEFAULT_TEST_TRIALS, TrainConfig
from .metrics import METRICS, RESULT_VARIABLES

__all__ = [
    "DIMENSION_NAMES",
    "P_NOT_APPLICABLE",
    "Evaluation",
    "Experiment",
    "ExperimentError",
    "GridPoint",
    "cell_key",
    "effective_n_nonlinear",
    "load_experiment",
    "parse_experiment",
    "resolve_experiment",
]

RUNS_FOLDER = "runs"

# Grid fields whose dimension in results.nc (and run names) has the equations' name.
DIMENSION_NAMES = {"n_nonlinear": "P", "n_units": "M"}
# Models without nonlinear units to count: their P is NaN.
P_NOT_APPLICABLE = ("tanh", "gru", "lstm")
_TOP_LEVEL = ("name", "out", "description", "fixed", "grid", "evaluate")
_EVALUATE_DEFAULTS = {"trials": DEFAULT_TEST_TRIALS, "criterion": 0.9, "save_trials": True, "metrics": []}


class ExperimentError(ValueError):
    """An experiment file is malformed: the message lists every problem found."""


@dataclass(frozen=True)
class Evaluation:
    """How each run is evaluated after training (the ``[evaluate]`` table)."""

    trials: int = DEFAULT_TEST_TRIALS
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

    def on_device(self, device: str) -> Experiment:
        """The same experiment with every run's ``device`` set to ``device``."""
        points = tuple(dataclasses.replace(point, config=point.config.replace(device=device))
                       for point in self.points)
        return dataclasses.replace(self, points=points)

    def check_tasks(self) -> None:
        """Build each distinct task once, so an unknown task or bad task option fails before any run."""
        from ...training import make_task

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


def resolve_experiment(experiment: str | os.PathLike | Experiment, out: str | os.PathLike | None = None
                       ) -> Experiment:
    """``experiment`` loaded (a file path) or as given (an :class:`Experiment`), with ``out`` overriding its ``out``."""
    if not isinstance(experiment, Experiment):
        return load_experiment(experiment, out=out)
    if out is not None:
        return dataclasses.replace(experiment, out=Path(os.path.abspath(Path(out).expanduser())))
    return experiment


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
    reserved = [name for name in metrics if name in RESULT_VARIABLES]
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
            config = TrainConfig.for_task(**values)
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


def cell_key(dim: str, value: Any) -> Any:
    """A coordinate value on a result dim as a set/dict key (P: None or an int; a table: its JSON)."""
    return _p_key(value) if dim == "P" else _hashable(value)
