"""Figures of a sweep's results.nc: accuracy, regimes, steps to criterion and extra metrics against P,
and accuracy against the training-set size; written atomically as PNGs."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ...storage import save_figure
from .experiment import P_NOT_APPLICABLE
from .metrics import METRICS
from .results import read_results

__all__ = ["FIGURES_FOLDER", "plot_sweep"]

FIGURES_FOLDER = "figures"


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
    """One panel per value of the grid's ``task`` axis (not the trials' task dim of task_accuracy)."""
    if "task" in results["status"].dims:
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
