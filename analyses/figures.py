"""Figures of the regime analyses. Each function returns a matplotlib Figure (no pyplot state).

* :func:`regime_raster` — regime of every step, trials sorted by condition, epoch changes marked;
* :func:`regime_epoch_heatmap` — the regime × epoch table, per task;
* :func:`eigenvalue_spectra` — eigenvalues of W_Ω on the unit circle, per regime;
* :func:`transition_graph` — regimes as nodes, transition probabilities as edges;
* :func:`latent_trajectories` — latent states on their first two principal
  components (against time for a one-unit network), coloured by regime, with
  fixed points marked (filled: real, hollow: virtual);
* :func:`fit_psths` — a fitted model's predicted PSTHs over the recorded ones, a few neurons by condition;
* :func:`alignment_map` — two models' regimes on the same steps (the paired co-occupancy), matches marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from ..storage import save_figure
from .core import regime_labels

__all__ = [
    "alignment_map",
    "eigenvalue_spectra",
    "fit_psths",
    "latent_trajectories",
    "regime_colours",
    "regime_epoch_heatmap",
    "regime_raster",
    "save_figure",
    "transition_graph",
]

_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78",
]
OTHER = "#d9d9d9"


def regime_colours(codes: Sequence) -> dict:
    """One colour per regime for the most occupied regimes (in the given order), grey after."""
    return {code: (_PALETTE[i] if i < len(_PALETTE) else OTHER) for i, code in enumerate(codes)}


def regime_raster(trials: xr.Dataset, order: Sequence, sort_by: Sequence[str] = (), max_trials: int = 200) -> Figure:
    """Regime of each step (rows: trials sorted by ``sort_by``), epoch changes as black ticks."""
    labels = regime_labels(trials).values
    mask = trials["mask"].values.astype(bool)
    keys = [trials[name].values for name in reversed([s for s in sort_by if s in trials.coords])]
    rows = np.lexsort(keys) if keys else np.arange(labels.shape[0])
    rows = rows[np.linspace(0, len(rows) - 1, min(max_trials, len(rows))).astype(int)]
    colours = regime_colours(order)
    # Only the drawn rows, and one comparison per coloured regime: at P = M there is about one regime per step.
    shown = labels[rows]
    image = np.where(np.isin(shown, np.asarray(order)), float(len(_PALETTE)), -1.0)  # "other" unless not in order
    for i, code in enumerate(order[: len(_PALETTE)]):
        image[shown == code] = i
    image[~mask[rows]] = np.nan
    palette = [colours[c] for c in order[: len(_PALETTE)]] + [OTHER]
    cmap = ListedColormap(palette)
    cmap.set_bad("white")
    norm = BoundaryNorm(np.arange(len(palette) + 1) - 0.5, len(palette))
    time = trials["time"].values
    dt = float(time[1] - time[0]) if len(time) > 1 else 1.0
    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot()
    ax.imshow(image, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
              extent=(time[0] - dt / 2, time[-1] + dt / 2, len(rows) - 0.5, -0.5))
    epochs = trials["epoch"].values[rows]
    change_r, change_t = np.nonzero(epochs[:, 1:] != epochs[:, :-1])
    keep = mask[rows][change_r, change_t + 1]
    ax.scatter(time[change_t[keep] + 1] - dt / 2, change_r[keep], marker="|", s=12, color="black", lw=0.8)
    ax.set_xlabel("time in trial (ms)")
    ax.set_ylabel("trial" + (f" (sorted by {', '.join(sort_by)})" if sort_by else ""))
    handles = [_patch(colours[c], f"Ω {c}") for c in order[: len(_PALETTE)]]
    if len(order) > len(_PALETTE):
        handles.append(_patch(OTHER, "other"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    ax.set_title("regime per time step (| = epoch change)")
    fig.tight_layout()
    return fig


def regime_epoch_heatmap(counts: xr.DataArray, max_regimes: int = 20) -> Figure:
    """Heatmap of P(epoch | regime) per task from a (task, regime, epoch) count table."""
    tasks = list(counts["task"].values)
    fig = Figure(figsize=(4.5 * len(tasks), 0.35 * min(max_regimes, counts.sizes["regime"]) + 2.2),
                 layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        table = counts.sel(task=task)
        used = table.sum("epoch") > 0
        table = table.isel(regime=np.flatnonzero(used.values)[:max_regimes])
        share = (table / table.sum("epoch")).values
        image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(table.sizes["epoch"]), [str(e) for e in table["epoch"].values], rotation=35, ha="right")
        ax.set_yticks(range(table.sizes["regime"]), [f"Ω {r}" for r in table["regime"].values])
        ax.set_title(f"P(epoch | regime) · {task}", fontsize=10)
        for (i, j), value in np.ndenumerate(share):
            if value >= 0.005:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.6 else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the regime's steps")
    return fig


def eigenvalue_spectra(real: xr.DataArray, imag: xr.DataArray, regimes: Sequence, colours: dict | None = None) -> Figure:
    """Eigenvalues of W_Ω per regime in the complex plane, with the unit circle."""
    regimes = list(regimes)
    n = len(regimes)
    columns = min(n, 4)
    rows = int(np.ceil(n / columns))
    fig = Figure(figsize=(3.0 * columns, 3.0 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    for ax, code in zip(axes, regimes, strict=False):
        ax.plot(circle.real, circle.imag, color="0.6", lw=0.8)
        colour = (colours or {}).get(code, "#1f77b4")
        ax.scatter(real.sel(regime=code), imag.sel(regime=code), s=10, color=colour)
        radius = float(np.hypot(real.sel(regime=code), imag.sel(regime=code)).max())
        ax.set_title(f"Ω {code}  ρ = {radius:.3f}", fontsize=9)
        ax.set_aspect("equal")
        limit = max(1.1, radius * 1.05)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.tick_params(labelsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("eigenvalues of W_Ω (unit circle in grey)")
    fig.tight_layout()
    return fig


def transition_graph(probability: xr.DataArray, occupancy: xr.DataArray, max_regimes: int = 12,
                     min_probability: float = 0.005) -> Figure:
    """Regimes on a circle (area ∝ occupancy), arrows for transitions with p ≥ min_probability."""
    codes = list(occupancy["regime"].values[:max_regimes])
    colours = regime_colours(codes)
    angles = np.pi / 2 - 2 * np.pi * np.arange(len(codes)) / max(len(codes), 1)
    position = {c: (np.cos(a), np.sin(a)) for c, a in zip(codes, angles, strict=True)}
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    for a in codes:
        for b in codes:
            if a == b:
                continue
            p = float(probability.sel(regime_from=a, regime_to=b))
            if not p >= min_probability:
                continue
            (x0, y0), (x1, y1) = position[a], position[b]
            ax.text(0.55 * x0 + 0.45 * x1 + 0.06, 0.55 * y0 + 0.45 * y1 + 0.06, f"{p:.3f}", fontsize=6, color="0.35")
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "-|>", "lw": 0.5 + 6 * p, "color": colours[a], "alpha": 0.7,
                                    "shrinkA": 14, "shrinkB": 14, "connectionstyle": "arc3,rad=0.15"})
    for code in codes:
        x, y = position[code]
        stay = float(probability.sel(regime_from=code, regime_to=code))
        ax.scatter([x], [y], s=300 + 3000 * float(occupancy.sel(regime=code)), color=colours[code], zorder=3)
        ax.text(x, y, f"Ω {code}", ha="center", va="center", fontsize=8, zorder=4)
        ax.text(1.22 * x, 1.22 * y, f"stay {stay:.2f}", ha="center", va="center", fontsize=7, color="0.3")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"regime transitions (p ≥ {min_probability}; node area ∝ occupancy)")
    return fig


def latent_trajectories(trials: xr.Dataset, order: Sequence, fixed_points: xr.DataArray | None = None,
                        fixed_point_real: xr.DataArray | None = None, max_trials: int = 60) -> Figure:
    """Latents on their first two principal components, coloured by regime; fixed points as stars.

    A network of one unit (M = 1) has one component: its state is drawn against time in the trial, and each
    fixed point as a horizontal line (solid: real, dashed: virtual).
    """
    from sklearn.decomposition import PCA

    mask = trials["mask"].values.astype(bool)
    latents = trials["latents"].transpose("trial", "time", "unit").values
    labels = regime_labels(trials).values
    time = trials["time"].values
    one_dimensional = latents.shape[-1] == 1
    with np.errstate(invalid="ignore", divide="ignore"):  # latents that never vary: shares of variance are NaN
        pca = PCA(n_components=1 if one_dimensional else 2).fit(latents[mask])

    def coordinates(states: np.ndarray, times: np.ndarray) -> np.ndarray:
        projected = pca.transform(states)
        return np.column_stack([times, projected[:, 0]]) if one_dimensional else projected

    extent = coordinates(latents[mask], np.broadcast_to(time, mask.shape)[mask])
    low, high = extent.min(axis=0), extent.max(axis=0)
    margin = np.where(high > low, 0.15 * (high - low), 1.0)  # a constant coordinate still gets a visible range
    low, high = low - margin, high + margin
    colours = regime_colours(order)
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.add_subplot()
    for trial in range(min(max_trials, latents.shape[0])):
        valid = mask[trial]
        points = coordinates(latents[trial][valid], time[valid])
        ax.plot(points[:, 0], points[:, 1], color="0.85", lw=0.5, zorder=1)
        ax.scatter(points[:, 0], points[:, 1], s=4, zorder=2,
                   c=[colours.get(code, OTHER) for code in labels[trial][valid]])
    if fixed_points is not None:
        stacked = fixed_points.stack(point=fixed_points.dims[:-1])
        points = stacked.transpose("point", ...).values
        real = fixed_point_real.stack(point=fixed_point_real.dims).values if fixed_point_real is not None else None
        finite = np.isfinite(points).all(axis=1)
        if finite.any():
            projected = pca.transform(points[finite])
            codes = stacked["regime"].values[finite]
            is_real = real[finite] if real is not None else np.ones(len(codes), bool)
            for position, code, ok in zip(projected, codes, is_real, strict=True):
                colour = colours.get(code, OTHER)
                if one_dimensional:
                    if low[1] <= position[0] <= high[1]:
                        ax.axhline(position[0], color=colour, ls="-" if ok else "--", lw=1.2, zorder=3)
                    continue
                x, y = position
                if not (low[0] <= x <= high[0] and low[1] <= y <= high[1]):
                    continue  # far virtual fixed points would shrink the trajectories to a dot
                ax.scatter([x], [y], marker="*", s=160, zorder=4, edgecolors="black", linewidths=0.8,
                           facecolors=colour if ok else "none")
    handles = [_patch(colours[c], f"Ω {c}") for c in order[: len(_PALETTE)]]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    if one_dimensional:
        ax.set_xlabel("time in trial (ms)")
        ax.set_ylabel("z (the one unit, centred)")
        marks = "lines: fixed points under each epoch's input, solid real, dashed virtual"
    else:
        share = pca.explained_variance_ratio_
        ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({share[1]:.0%})")
        marks = "★ fixed points under each epoch's input: filled real, hollow virtual"
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_title(f"latent trajectories by regime\n{marks} (those outside the view not drawn)", fontsize=9)
    fig.tight_layout()
    return fig


def _patch(colour: str, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, label=label)


def fit_psths(observed: np.ndarray, predicted: np.ndarray, mask: np.ndarray, groups: np.ndarray, dt: float,
              neurons: Sequence[int], names: Sequence[str] = (), max_groups: int = 6) -> Figure:
    """Recorded (dots) and predicted (lines) trial-averaged activity per condition group, one panel per neuron.

    ``observed``, ``predicted``: (trial, time, neuron) in one unit (e.g. spikes per bin); ``mask`` (trial, time);
    ``groups`` (trial,) labels; at most ``max_groups`` groups (the first in sorted order) are drawn.
    """
    labels = np.unique(groups)[:max_groups]
    colours = {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(labels)}
    columns = min(3, len(neurons))
    rows = -(-len(neurons) // columns)
    fig = Figure(figsize=(3.4 * columns, 2.4 * rows + 0.6))
    axes = fig.subplots(rows, columns, squeeze=False)
    time = np.arange(mask.shape[1]) * dt
    for ax, neuron in zip(axes.ravel(), neurons, strict=False):
        for label in labels:
            members = groups == label
            valid = mask[members]
            count = valid.sum(axis=0)
            keep = count >= 2
            mean = lambda values: (np.where(valid, values[members][..., neuron], 0.0).sum(axis=0)  # noqa: E731
                                   / np.maximum(count, 1))
            ax.plot(time[keep], mean(observed)[keep], ".", color=colours[label], ms=3, alpha=0.6)
            ax.plot(time[keep], mean(predicted)[keep], "-", color=colours[label], lw=1.2, label=str(label))
        ax.set_title(names[neuron] if len(names) else f"neuron {neuron}", fontsize=9)
        ax.set_xlabel("time from trial start (ms)", fontsize=8)
    for ax in axes.ravel()[len(neurons):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7, frameon=False)
    fig.suptitle("recorded (dots) and predicted (lines) trial averages", fontsize=10)
    fig.tight_layout()
    return fig


def alignment_map(alignment: xr.Dataset) -> Figure:
    """The paired co-occupancy of two models' regimes (share of steps), each regime of a's match outlined."""
    co = alignment["co_occupancy"].values
    fig = Figure(figsize=(0.45 * co.shape[1] + 2.5, 0.4 * co.shape[0] + 1.5))
    ax = fig.subplots()
    image = ax.imshow(co, cmap="Greys", aspect="auto")
    columns = list(alignment["regime_b"].values)
    for row, code in enumerate(alignment["match"].values):
        if code != -1:
            ax.add_patch(_rectangle(columns.index(code), row))
    ax.set_xticks(range(co.shape[1]), [str(code) for code in columns], fontsize=8)
    ax.set_yticks(range(co.shape[0]), [str(code) for code in alignment["regime_a"].values], fontsize=8)
    ax.set_xlabel("regime of model b")
    ax.set_ylabel("regime of model a")
    fig.colorbar(image, ax=ax, label="share of steps")
    ax.set_title(f"regimes on the same steps (NMI {float(alignment.attrs.get('nmi', np.nan)):.2f}); "
                 "matches outlined", fontsize=9)
    fig.tight_layout()
    return fig


def _rectangle(column: int, row: int):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#d62728", lw=1.5)
