"""Run directories: config.json, checkpoint.pt, metrics.csv, written atomically, read with clear errors.

Layout of a run directory::

    config.json     {"format_version": 1, "config": TrainConfig fields, "versions": {...}, "created": ...}
    checkpoint.pt   model + optimiser + RNG state + every metrics row so far (torch.save; loaded weights_only)
    metrics.csv     step, loss, accuracy, eval_accuracy, lr, wall_time
    .lock           held by the process that trains in the directory
    trials.nc       after `neuroalrnn evaluate` (see neuroalrnn.evaluation.simulate)
    figures/*.png

The checkpoint is the one atomic record of a run's state: it carries the metrics
rows up to its step, and ``metrics.csv`` is a copy of them (plus, after a
divergence, the rows of the steps after the last checkpoint) written just
after it. A kill between the two writes loses no row: :func:`read_metrics`
reads the rows from the checkpoint, and a resume or :func:`restore_metrics`
rewrites ``metrics.csv`` from it.

Paths stored in ``config.json`` (``bank_cache``) are relative to the run
directory when they lie inside it, absolute otherwise, and are always resolved
against the run directory, never the current directory. A ``config.json``
without ``format_version`` (written before it existed) is version 0; versions
0 and 1 share one layout.

Temporary files (``.<name>.*.tmp``) of killed writes are removed by
:func:`remove_temporaries`: those of dead processes on this host at once (see
:func:`neuroalrnn.storage.remove_stale_temporaries`), any other one, such as
an older version's temporaries without a process id or another host's, once
it is older than a day (no write of this package takes that long).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import pickle
import platform
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from ..formats import FORMAT_VERSION, FormatError, format_version, validate
from ..storage import advisory_lock, atomic_write, remove_stale_temporaries
from .config import TrainConfig

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
LOCK_FILE = ".lock"
METRIC_COLUMNS = ("step", "loss", "accuracy", "eval_accuracy", "lr", "wall_time")
STALE_TEMPORARY_SECONDS = 24 * 3600
_VERSIONED = ("neuroalrnn", "torch", "numpy", "neurogym", "gymnasium", "xarray", "h5netcdf", "matplotlib")
_STORED_PATHS = ("bank_cache",)
_OUR_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_-]+-\d+\.[^.]+\.tmp$")


class RunDirectoryError(ValueError):
    """A run directory is missing, incomplete, corrupt, or cannot be used as asked."""


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages a result depends on."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def exclusive(run_dir: str | os.PathLike):
    """Hold the run's lock (``.lock``) so two processes never train into one run; busy: RunDirectoryError."""
    busy = RunDirectoryError(f"another process is training in {run_dir}; wait for it or stop it")
    return advisory_lock(Path(run_dir) / LOCK_FILE, busy)


@contextlib.contextmanager
def training_session(
    run_dir: str | os.PathLike, *, resumed: bool, saved: Callable[[], bool], failed: Callable[[], bool] = lambda: False,
):
    """Hold ``run_dir`` while a run trains in it: the one open/close of every trainer (single, packed, fitted).

    A new run (``resumed=False``) may not go where a checkpoint is (RunDirectoryError). The directory is
    created if needed and locked (:func:`exclusive`) for the block. A run that ends without a checkpoint
    (``saved()`` False) because the block raised, or because ``failed()`` says so at its end, leaves nothing
    behind: no config.json, metrics.csv or lock file (the lock file last, while held), and no directory this
    call created (removed only if empty: never what another process put there).
    """
    run_dir = Path(run_dir)
    if not resumed and (run_dir / CHECKPOINT_FILE).exists():
        raise RunDirectoryError(
            f"{run_dir} already holds a run; resume it (--resume) or choose another output directory"
        )
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)

    def forget_unsaved() -> None:
        if not saved():
            for name in (CONFIG_FILE, METRICS_FILE, LOCK_FILE):
                (run_dir / name).unlink(missing_ok=True)

    try:
        with exclusive(run_dir):
            try:
                yield run_dir
            except BaseException:
                forget_unsaved()
                raise
            if failed():
                forget_unsaved()
    finally:
        if created and not saved():
            with contextlib.suppress(OSError):
                run_dir.rmdir()


# ----------------------------------------------------------------------------- paths stored in a run


def resolve_in_run(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A path stored in a run, as an absolute path: a relative one is relative to ``run_dir``."""
    path = Path(path).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else Path(run_dir).absolute() / path))


def is_inside(run_dir: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` (absolute) lies in ``run_dir``, symbolic links followed."""
    return Path(path).resolve().is_relative_to(Path(run_dir).resolve())


def _stored_form(run_dir: Path, path: str) -> str:
    """How ``path`` (absolute) is written into config.json: relative to ``run_dir`` inside it, else absolute."""
    if is_inside(run_dir, path):
        return Path(os.path.relpath(Path(path).resolve(), run_dir.resolve())).as_posix()
    return str(path)


# ----------------------------------------------------------------------------- config.json


def write_config(run_dir: str | os.PathLike, config: TrainConfig, *, created: str | None = None) -> None:
    """Write ``config.json`` (paths in the stored form; ``created`` kept from an earlier record if given)."""
    run_dir = Path(run_dir)
    values = config.to_dict()
    for name in _STORED_PATHS:
        if values[name] is not None:
            values[name] = _stored_form(run_dir, values[name])
    record = {
        "format_version": FORMAT_VERSION,
        "config": values,
        "versions": versions(),
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(run_dir / CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_config_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The whole ``config.json`` record, its ``format_version`` filled in (0 when absent)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory: no {CONFIG_FILE}")
    try:
        record = json.loads(path.read_text())
        record = dict(validate("config", record, source=path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{path} is corrupt: {error}") from None
    except FormatError as error:
        raise RunDirectoryError(str(error)) from None
    record["format_version"] = format_version(record)
    return record


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig stored in ``run_dir/config.json``, its stored paths made absolute (see the module)."""
    record = read_config_record(run_dir)
    try:
        config = TrainConfig.from_dict(record["config"])
    except (ValueError, TypeError) as error:
        raise RunDirectoryError(f"{Path(run_dir) / CONFIG_FILE} is corrupt: {error}") from None
    stored = {name: getattr(config, name) for name in _STORED_PATHS if getattr(config, name) is not None}
    return config.replace(**{name: str(resolve_in_run(run_dir, value)) for name, value in stored.items()})


# ----------------------------------------------------------------------------- checkpoint.pt


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``checkpoint.pt`` atomically (``state`` must hold only tensors and plain containers)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(Path(run_dir) / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt`` with ``weights_only=True`` and check its structure.

    Guaranteed on return (the ``checkpoint`` format of
    :mod:`neuroalrnn.formats`): ``model`` is a mapping of tensors, ``step`` an
    integer >= 0, ``elapsed`` a number; ``metrics``, where present, a
    (row, column) tensor. The parts only a resume needs (optimiser and RNG
    state) are checked by :meth:`neuroalrnn.training.Trainer.resume`.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{Path(run_dir)} has no {CHECKPOINT_FILE}; train it first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused:
            raise RunDirectoryError(
                f"checkpoint {path} was refused as unsafe: it holds a Python object ({refused.group(1)}) that "
                "loading would run, and neuroalrnn loads only tensors and plain values (weights_only); "
                "neuroalrnn's own checkpoints never hold one"
            ) from None
        raise RunDirectoryError(
            f"checkpoint {path} is corrupt or not a torch checkpoint (a weights-only load refused it)"
        ) from None
    except Exception as error:  # torch raises several types for a damaged file
        raise RunDirectoryError(f"checkpoint {path} is corrupt or unreadable ({type(error).__name__})") from None
    problem = _checkpoint_problem(state, path)
    if problem:
        raise RunDirectoryError(problem)
    return state


def _checkpoint_problem(state: Any, path: Path) -> str | None:
    try:
        validate("checkpoint", state, source=path, parts=("model", "step", "elapsed"))
    except FormatError as error:
        return str(error)
    if state["step"] < 0:
        return f"checkpoint {path} is not a usable neuroalrnn checkpoint: 'step' is {state['step']}, below 0"
    metrics = state.get("metrics")
    if metrics is not None and not (
        isinstance(metrics, torch.Tensor) and metrics.ndim == 2 and metrics.shape[1] == len(METRIC_COLUMNS)
    ):
        return (f"checkpoint {path} is not a usable neuroalrnn checkpoint: 'metrics' must be a "
                f"(row, {len(METRIC_COLUMNS)}) tensor")
    return None


# ----------------------------------------------------------------------------- metrics


def metrics_tensor(rows: list[dict[str, Any]]) -> torch.Tensor:
    """Metrics rows as a float64 (row, column) tensor in ``METRIC_COLUMNS`` order; "" (not evaluated) is NaN."""
    values = [[math.nan if row[name] == "" else float(row[name]) for name in METRIC_COLUMNS] for row in rows]
    return torch.tensor(values, dtype=torch.float64).reshape(len(rows), len(METRIC_COLUMNS))


def metrics_rows(table: torch.Tensor) -> list[dict[str, Any]]:
    """The inverse of :func:`metrics_tensor` (exact: float64 holds every value written)."""
    rows = []
    for values in table.tolist():
        row: dict[str, Any] = {name: ("" if math.isnan(value) else value)
                               for name, value in zip(METRIC_COLUMNS, values, strict=True)}
        row["step"] = int(row["step"])
        rows.append(row)
    return rows


def write_metrics(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write ``metrics.csv`` atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(run_dir) / METRICS_FILE, buffer.getvalue())


def _read_metrics_file(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as handle:
            return [
                {key: (int(value) if key == "step" else _number(value)) for key, value in row.items()}
                for row in csv.DictReader(handle)
            ]
    except (ValueError, TypeError, csv.Error) as error:
        raise RunDirectoryError(f"{path} is corrupt: {error}") from None


def read_metrics(run_dir: str | os.PathLike, *, checkpoint: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every metrics row of the run, in step order, each step once.

    The rows up to the checkpoint's step come from the checkpoint (the
    authority; see the module); rows of later steps, which only a divergence
    leaves, from ``metrics.csv``. Without a checkpoint, or with one from before
    checkpoints carried metrics, ``metrics.csv`` alone. ``checkpoint``: the
    run's checkpoint already loaded (it is not read again).
    """
    run_dir = Path(run_dir)
    from_file = _read_metrics_file(run_dir)
    if checkpoint is None and not (run_dir / CHECKPOINT_FILE).is_file():
        return from_file
    state = load_checkpoint(run_dir) if checkpoint is None else checkpoint
    if state.get("metrics") is None:
        return from_file
    return metrics_rows(state["metrics"]) + [row for row in from_file if row["step"] > state["step"]]


def sync_metrics(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> bool:
    """Write ``rows`` to ``metrics.csv`` unless it holds exactly them already; whether it was written."""
    if _read_metrics_file(Path(run_dir)) == rows:
        return False
    write_metrics(run_dir, rows)
    return True


def restore_metrics(run_dir: str | os.PathLike, *, checkpoint: dict[str, Any] | None = None) -> bool:
    """Rewrite ``metrics.csv`` from the checkpoint if a kill left it behind; whether it was rewritten.

    Skipped (False) while another process trains in the run (it rewrites the
    file itself) or where the directory is not writable. ``checkpoint``: the
    checkpoint already loaded, for the first look (under the lock it is read
    again, as another process may have written it meanwhile).
    """
    if read_metrics(run_dir, checkpoint=checkpoint) == _read_metrics_file(Path(run_dir)):
        return False
    try:
        with exclusive(run_dir):
            return sync_metrics(run_dir, read_metrics(run_dir))
    except (RunDirectoryError, OSError):
        return False


def _number(text: str) -> float | str:
    return float(text) if text not in ("", None) else ""


# ----------------------------------------------------------------------------- temporaries


def remove_temporaries(run_dir: str | os.PathLike, max_age: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Remove the temporary files killed writes left in ``run_dir`` (and below); return what was removed.

    Removed: those of dead processes on this host, at once; any other
    ``.<name>...tmp`` file once it is older than ``max_age`` seconds. A live
    writer's fresh temporary file is never touched.
    """
    run_dir = Path(run_dir)
    removed: list[Path] = []
    if not run_dir.is_dir():
        return removed
    candidates = sorted(run_dir.rglob(".*.tmp"))
    for target in {path.parent / match.group("target") for path in candidates
                   if (match := _OUR_TEMPORARY.match(path.name))}:
        removed += remove_stale_temporaries(target)
    now = time.time()
    for path in candidates:
        if path in removed:
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and now - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
    return removed
