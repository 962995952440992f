"""Figures of the sharing analysis (:mod:`.sharing`). Each function returns a matplotlib Figure (no pyplot state).

* :func:`task_variance_heatmap` — normalised task variance, units sorted by cluster (Yang et al. 2019, Fig. 2);
* :func:`ftv_histograms` — fractional task variance of the units for chosen task pairs;
* :func:`sharing_matrices` — task × task Jaccard, 1 − JS, unit covariance similarity and subspace overlap heatmaps;
* :func:`sharing_null_figure` — each measure's distribution under shuffled task labels, with the observed value;
* :func:`sharing_comparison_figure` — summary metrics across runs (e.g. P = 2, 8, 128) from
  :func:`~neuroalrnn.analyses.sharing.compare_sharing`, and, when the runs hold the null of shuffled task labels,
  each measure against the run with its null band (5–95 %) and significant runs marked;
  :func:`plot_sharing_comparison` also writes it.

:func:`sharing_figures` gives them all as {caption: (file name, Figure)} and
:func:`save_figure` writes a Figure atomically (temporary file, then rename),
so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figures import save_figure
from .sharing import pair_mean
from .sharing_null import NULL_MEASURES

__all__ = [
    "ftv_histograms",
    "plot_sharing_comparison",
    "save_figure",
    "sharing_comparison_figure",
    "sharing_figures",
    "sharing_matrices",
    "sharing_null_figure",
    "task_variance_heatmap",
]

_NULL_TITLES = {
    "sharing_index": "regime sharing index (1 − JS)",
    "mean_jaccard": "Jaccard of visited regimes",
    "shared_regime_fraction": "regimes shared",
    "shared_step_fraction": "steps in shared regimes",
    "mean_covariance_similarity": "unit covariance similarity\n(regime-free)",
}

_MATRICES = {
    "jaccard": "Jaccard (visited regimes)",
    "js_similarity": "1 − JS distance (regime occupancy)",
    "covariance_similarity": "cosine of unit covariances",
    "subspace_overlap": "mean cos² principal angles",
}


def sharing_figures(result: xr.Dataset, ftv_pairs: Sequence[str] | None = None) -> dict[str, tuple[str, Figure]]:
    """All figures of one sharing result as {caption: (file name, Figure)}, ready for :func:`save_figure`."""
    figures = {
        "Task variance of units (normalised, sorted by cluster)": ("sharing_task_variance.png",
                                                                   task_variance_heatmap(result)),
        "Sharing between tasks": ("sharing_matrices.png", sharing_matrices(result)),
    }
    if result.sizes.get("pair", 0):
        figures["Fractional task variance"] = ("sharing_ftv.png", ftv_histograms(result, pairs=ftv_pairs))
    if "null_distribution" in result:
        figures["Sharing against shuffled task labels"] = ("sharing_null.png", sharing_null_figure(result))
    return figures


def task_variance_heatmap(result: xr.Dataset) -> Figure:
    """Normalised task variance (tasks × active units), units grouped by cluster; cluster borders in white."""
    normalised = result["task_variance_normalised"].transpose("unit", "task").values
    cluster = result["unit_cluster"].values
    tasks = [str(t) for t in result["task"].values]
    active = np.flatnonzero(cluster >= 0)
    preferred = {int(c): list(tasks).index(str(t))
                 for c, t in zip(result["cluster"].values, result["cluster_preferred_task"].values, strict=True)}
    if active.size:
        # Within a cluster, units most selective for the cluster's preferred task first.
        key = [normalised[u, preferred[int(cluster[u])]] for u in active]
        units = active[np.lexsort((-np.asarray(key), cluster[active]))]
    else:
        units = active
    fig = Figure(figsize=(min(14.0, 3.0 + 0.06 * max(units.size, 20)), 1.6 + 0.28 * len(tasks)),
                 layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(normalised[units].T, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    boundaries = np.flatnonzero(np.diff(cluster[units])) + 0.5
    for x in boundaries:
        ax.axvline(x, color="white", lw=1.2)
    starts = np.concatenate([[-0.5], boundaries])
    ends = np.concatenate([boundaries, [units.size - 0.5]])
    for c, (start, end) in zip(np.unique(cluster[units]), zip(starts, ends, strict=True), strict=False):
        ax.text((start + end) / 2, -0.7, str(int(c)), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(f"unit (active: {units.size} of {cluster.size}; sorted by cluster, numbers on top)")
    ax.set_title(f"normalised task variance · {int(result['n_unit_clusters'])} clusters", fontsize=10, pad=14)
    fig.colorbar(image, ax=ax, shrink=0.8, label="TV / max over tasks")
    return fig


def ftv_histograms(result: xr.Dataset, pairs: Sequence[str] | None = None, max_pairs: int = 8) -> Figure:
    """Histogram of FTV_u(A, B) over active units for each pair "A|B" (default: the first ``max_pairs``)."""
    labels = [str(p) for p in result["pair"].values]
    chosen = list(pairs) if pairs is not None else labels[:max_pairs]
    unknown = [p for p in chosen if p not in labels]
    if unknown:
        raise ValueError(f"pairs {unknown} are not in the result; available pairs: {labels[:20]}"
                         + (" ..." if len(labels) > 20 else ""))
    columns = min(3, max(len(chosen), 1))
    rows = int(np.ceil(len(chosen) / columns)) if chosen else 1
    fig = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    centres = result["ftv_bin"].values
    width = float(result["ftv_bin"].attrs.get("bin_width", centres[1] - centres[0] if centres.size > 1 else 2.0))
    for ax, label in zip(axes, chosen, strict=False):
        pair = result.sel(pair=label)
        counts = pair["ftv_histogram"].values
        ax.bar(centres, counts, width=width * 0.9, color="#1f77b4")
        ax.set_xlim(-1.05, 1.05)
        ax.set_title(f"{pair['task_a'].item()} vs {pair['task_b'].item()}  (n = {int(counts.sum())})", fontsize=9)
        ax.set_xlabel(f"FTV  (−1: only {pair['task_b'].item()}, +1: only {pair['task_a'].item()})", fontsize=8)
        ax.set_ylabel("units", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(chosen):]:
        ax.set_visible(False)
    fig.suptitle("fractional task variance (TV_A − TV_B) / (TV_A + TV_B)", fontsize=10)
    return fig


def sharing_matrices(result: xr.Dataset, epoch: str | None = None, annotate_below: int = 9) -> Figure:
    """Task × task heatmaps of the sharing measures (pooled, or within one canonical ``epoch``), all on [0, 1]."""
    names = [name for name in _MATRICES if name in result]
    if epoch is not None:
        epochs = [str(e) for e in result["epoch"].values]
        if epoch not in epochs:
            raise ValueError(f"epoch must be one of {epochs}, got {epoch!r}")
        names = [name for name in names if f"{name}_by_epoch" in result]
    tasks = [str(t) for t in result["task"].values]
    size = min(5.5, 2.2 + 0.2 * len(tasks))
    columns = 2 if len(names) == 4 else max(len(names), 1)
    rows = int(np.ceil(len(names) / columns))
    fig = Figure(figsize=(size * columns + 1.0, size * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    image = None
    for position, (ax, name) in enumerate(zip(axes, names, strict=True)):
        matrix = result[f"{name}_by_epoch"].sel(epoch=epoch) if epoch is not None else result[name]
        values = matrix.transpose("task", "task_other").values
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(tasks)), tasks, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks if position % columns == 0 else [""] * len(tasks), fontsize=7)
        mean = pair_mean(values)
        ax.set_title(f"{_MATRICES[name]}\nmean over pairs {mean:.2f}", fontsize=9)
        if len(tasks) < annotate_below:
            for (i, j), value in np.ndenumerate(values):
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 0.6 else "black")
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8)
    where = f" · epoch {epoch} (blank: a task without this epoch)" if epoch is not None else " · all analysed steps"
    fig.suptitle("sharing between tasks" + where, fontsize=10)
    return fig


def sharing_null_figure(result: xr.Dataset, significance: float = 0.05) -> Figure:
    """Histogram of each measure under shuffled task labels, the observed value as a line (red when p ≤ significance).

    ``result`` is a :func:`~neuroalrnn.analyses.sharing.sharing_analysis` result computed with ``n_permutations`` > 0.
    """
    if "null_distribution" not in result:
        raise ValueError("result holds no null (compute it with sharing_analysis(..., n_permutations=200))")
    measures = [str(m) for m in result["measure"].values]
    fig = Figure(figsize=(2.6 * len(measures), 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(measures), squeeze=False)).ravel()
    for ax, measure in zip(axes, measures, strict=True):
        row = result.sel(measure=measure)
        sample = row["null_distribution"].values
        sample = sample[np.isfinite(sample)]
        observed, p = float(row["null_observed"]), float(row["null_p_value"])
        ax.hist(sample, bins=min(30, max(5, sample.size // 5)), color="#999999")
        if np.isfinite(observed):
            ax.axvline(observed, color="#d62728" if p <= significance else "#1f77b4", lw=2)
        ax.set_title(f"{_NULL_TITLES.get(measure, measure)}\np = {p:.3g}", fontsize=8)
        ax.set_xlabel("value (line: observed)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("shuffles", fontsize=8)
    fig.suptitle(f"sharing against {result.sizes['permutation']} shuffles of the task labels", fontsize=10)
    return fig


def sharing_comparison_figure(table: xr.Dataset, significance: float = 0.05) -> Figure:
    """Summary metrics per run (x: runs in table order): similarities, shared fractions, regime and cluster counts.

    When ``table`` holds the null of shuffled task labels (``null_*`` variables on ``measure``), a second row
    plots each measure per run (regime measures and the regime-free covariance similarity side by side) over
    its null band, the 5–95 % range of the shuffles with the shuffled mean as a dashed line; a filled red
    marker is a run whose tasks share significantly less than chance (one-sided p ≤ ``significance``).
    """
    if "run" not in table.dims:
        raise ValueError("table must be a compare_sharing result with a 'run' dimension")
    runs = [str(r) for r in table["run"].values]
    x = np.arange(len(runs))
    with_null = "null_p_value" in table and "measure" in table.dims and np.isfinite(table["null_p_value"].values).any()
    fig = Figure(figsize=(max(7.0, 1.2 * len(runs) + 5.0, 2.4 * table.sizes.get("measure", 0) if with_null else 0),
                          9.0 if with_null else 6.0), layout="constrained")
    if with_null:
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.0, 1.1])
        _null_panels(bottom, table, x, runs, significance)
    else:
        top = fig
    _summary_panels(top, table, x, runs)
    fig.suptitle("sharing across tasks, by run", fontsize=11)
    return fig


def _null_panels(fig, table: xr.Dataset, x: np.ndarray, runs: list[str], significance: float) -> None:
    measures = [str(m) for m in table["measure"].values]
    axes = np.atleast_1d(fig.subplots(1, len(measures), squeeze=False)).ravel()
    for ax, measure in zip(axes, measures, strict=True):
        row = table.sel(measure=measure)
        observed, mean = row["null_observed"].values, row["null_mean"].values
        low, high, p = row["null_q05"].values, row["null_q95"].values, row["null_p_value"].values
        ax.fill_between(x, low, high, color="#bbbbbb", alpha=0.6, lw=0, label="shuffled labels 5–95 %")
        ax.plot(x, mean, color="#555555", ls="--", lw=1, label="shuffled mean")
        ax.plot(x, observed, color="#1f77b4", marker="o", ms=4, label="observed")
        significant = np.isfinite(p) & (p <= significance)
        ax.plot(x[significant], observed[significant], ls="none", marker="o", ms=8, color="#d62728",
                label=f"p ≤ {significance:g}")
        long_labels = len(runs) > 4 or max(map(len, runs)) * len(runs) > 24  # 5 narrow panels side by side
        ax.set_xticks(x, runs, fontsize=7, rotation=45 if long_labels else 0,
                      ha="right" if long_labels else "center")
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.set_ylim(-0.03, 1.03)
        level = NULL_MEASURES.get(measure, (True, "", ""))[1]
        ax.set_title(_NULL_TITLES.get(measure, measure), fontsize=8, color="#2c7f2c" if level == "states" else "black")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, frameon=False, loc="best")
    fig.suptitle("against shuffled task labels (green title: regime-free)", fontsize=9)


def _summary_panels(fig, table: xr.Dataset, x: np.ndarray, runs: list[str]) -> None:
    panels = [
        ("similarity between tasks", ["sharing_index", "mean_jaccard", "mean_covariance_similarity", "mean_subspace_overlap"], (0, 1)),
        ("shared fractions", ["shared_regime_fraction", "shared_step_fraction", "active_unit_fraction",
                              "mean_abs_ftv"], (0, 1)),
        ("regimes visited", ["n_regimes", "mean_regimes_per_task"], None),
        ("unit clusters", ["n_unit_clusters"], None),
    ]
    axes = fig.subplots(2, 2).ravel()
    for ax, (title, names, limits) in zip(axes, panels, strict=True):
        for name in names:
            if name in table and np.isfinite(table[name].values).any():
                ax.plot(x, table[name].values, marker="o", label=name.replace("_", " "))
        ax.set_xticks(x, runs, fontsize=8)
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.set_title(title, fontsize=10)
        if title == "unit clusters":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if limits is not None:
            ax.set_ylim(-0.03, 1.03)
        if title == "regimes visited" and np.nanmax(table["n_regimes"].values, initial=0) > 50:
            ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)


def plot_sharing_comparison(table: xr.Dataset, path: str | os.PathLike | None = None, dpi: int = 110,
                            significance: float = 0.05) -> Figure:
    """:func:`sharing_comparison_figure`, written atomically to ``path`` as PNG when given; returns the Figure."""
    figure = sharing_comparison_figure(table, significance=significance)
    if path is not None:
        save_figure(figure, path, dpi=dpi)
    return figure
