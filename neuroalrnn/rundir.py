"""Run directories: config.json, checkpoint.pt, metrics.csv, written atomically.

Layout of a run directory::

    config.json     {"config": TrainConfig fields, "versions": {...}, "created": ...}
    checkpoint.pt   model + optimiser + RNG state (torch.save; loaded weights_only)
    metrics.csv     step, loss, accuracy, eval_accuracy, lr, wall_time
    trials.nc       after `neuroalrnn evaluate` (see neuroalrnn.simulate)
    figures/*.png
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .storage import atomic_write

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = ("step", "loss", "accuracy", "eval_accuracy", "lr", "wall_time")
_VERSIONED = ("neuroalrnn", "torch", "numpy", "neurogym", "gymnasium", "xarray", "h5netcdf", "matplotlib")


class RunDirectoryError(ValueError):
    """A run directory is missing, incomplete or corrupt."""


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages a result depends on."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_config(run_dir: Path, config: TrainConfig) -> None:
    record = {
        "config": config.to_dict(),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(run_dir / CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig stored in ``run_dir/config.json``, with clear errors."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory: no {CONFIG_FILE}")
    try:
        record = json.loads(path.read_text())
        return TrainConfig.from_dict(record["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunDirectoryError(f"{path} is corrupt: {error}") from None


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(run_dir / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt`` with ``weights_only=True``."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{Path(run_dir)} has no {CHECKPOINT_FILE}; train it first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise RunDirectoryError(f"checkpoint {path} is corrupt or unreadable ({type(error).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise RunDirectoryError(f"checkpoint {path} is not a neuroalrnn checkpoint")
    return state


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / METRICS_FILE, buffer.getvalue())


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [
            {key: (_number(value) if key != "step" else int(value)) for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


def _number(text: str) -> float | str:
    return float(text) if text not in ("", None) else ""
