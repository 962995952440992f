"""Regime statistics of a trials Dataset: occupancy, dwell times, transitions and the regime–epoch map.

Every function reads the ``regime`` and ``mask`` variables of a Dataset in the
``trials.nc`` layout (dims ``trial``, ``time``) through :func:`regime_labels`,
so int64 codes and packed codes (P > 62, labels become hex strings) are handled
alike. Only valid steps (``mask`` True) count. Two steps are *consecutive* when
they are valid, in the same trial and at times t−1 and t: a padded step or a
trial boundary never joins two steps into a pair or a run.

Regimes are always listed in one canonical order: by occupancy (number of
valid steps) descending, ties by code ascending (numeric for int codes,
lexicographic for hex labels). Everything is computed on plain arrays of
regime indices with ``np.bincount``; labels are attached at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .core import label_positions, regime_labels, validate_trials

__all__ = ["dwell_times", "occupancy_by", "regime_epoch_table", "regime_statistics"]

# Above this many regimes a dense (regime_from, regime_to) matrix needs hundreds of MB.
MAX_TRANSITION_REGIMES = 4096

_RESERVED = ("regime", "mask")


def regime_statistics(trials: xr.Dataset, *, transitions: bool = True) -> xr.Dataset:
    r"""Occupancy, dwell times and transitions of the regimes visited in ``trials``.

    With N = number of valid steps and a *run* (visit) = a maximal sequence of
    consecutive valid steps of one trial in the same regime:

    - ``count`` (regime): number of valid steps in regime Ω; ``occupancy`` =
      count / N.
    - ``n_visits`` (regime): number of runs in Ω; ``mean_dwell`` = count /
      n_visits (steps), ``mean_dwell_ms`` = mean_dwell · dt, ``median_dwell``
      (steps) = median run length (mean of the two middle runs when even).
    - ``transition_count`` (regime_from, regime_to): number of consecutive
      pairs (t−1 → t) with regime Ω at t−1 and Ω' at t, self-transitions
      included; ``transition_probability`` = transition_count / its row sum,
      NaN for a regime with no outgoing pair (visited only at a trial's end).
    - scalars: ``n_steps`` = N, ``n_pairs`` = number of consecutive pairs,
      ``n_regimes`` = number of regimes visited, ``switch_fraction`` = fraction
      of consecutive pairs whose regimes differ, i.e. at which any nonlinear
      unit changes sign (NaN without pairs).

    dt is ``trials.attrs["dt"]`` (ms), else the spacing of a uniform ``time``
    coordinate, else NaN. ``transitions=False`` skips the two transition
    matrices (needed above ``MAX_TRANSITION_REGIMES`` regimes, where a dense
    matrix would not fit in memory).
    """
    steps = _regime_steps(trials)
    n_regimes = steps.codes.size
    runs = _runs(steps.index)
    n_visits = np.bincount(runs.regime, minlength=n_regimes)
    n_steps = int(steps.count.sum())
    dt = _dt(trials)

    source, target = _pairs(steps.index)
    n_pairs = source.size
    switch_fraction = float(np.mean(source != target)) if n_pairs else np.nan

    with np.errstate(invalid="ignore", divide="ignore"):
        occupancy = steps.count / n_steps if n_steps else np.full(n_regimes, np.nan)
        mean_dwell = steps.count / n_visits
    regime = ("regime", steps.codes)
    data_vars = {
        "count": ("regime", steps.count, {"description": "valid steps in the regime"}),
        "occupancy": ("regime", occupancy, {"description": "count / valid steps"}),
        "n_visits": ("regime", n_visits, {"description": "maximal runs of consecutive valid steps in the regime"}),
        "mean_dwell": ("regime", mean_dwell, {"description": "count / n_visits", "units": "steps"}),
        "mean_dwell_ms": ("regime", mean_dwell * dt, {"description": "mean_dwell * dt", "units": "ms"}),
        "median_dwell": ("regime", _median_by_group(runs.length, runs.regime, n_regimes),
                         {"description": "median run length", "units": "steps"}),
        "n_steps": ((), n_steps, {"description": "valid steps"}),
        "n_pairs": ((), n_pairs, {"description": "consecutive valid step pairs (t-1, t) within a trial"}),
        "n_regimes": ((), n_regimes, {"description": "regimes visited"}),
        "switch_fraction": ((), switch_fraction,
                            {"description": "fraction of consecutive pairs at which the regime changes"}),
    }
    coords = {"regime": regime}
    if transitions:
        if n_regimes > MAX_TRANSITION_REGIMES:
            raise ValueError(
                f"{n_regimes} regimes visited: a dense transition matrix would hold {n_regimes ** 2:,} entries "
                f"(limit {MAX_TRANSITION_REGIMES} regimes); pass transitions=False"
            )
        counts = np.bincount(source * n_regimes + target, minlength=n_regimes * n_regimes)
        counts = counts.reshape(n_regimes, n_regimes)
        outgoing = counts.sum(axis=1, keepdims=True)
        probability = np.divide(counts, outgoing, out=np.full(counts.shape, np.nan), where=outgoing > 0)
        pair_dims = ("regime_from", "regime_to")
        data_vars["transition_count"] = (pair_dims, counts, {"description": "consecutive pairs t-1 -> t"})
        data_vars["transition_probability"] = (pair_dims, probability,
                                               {"description": "transition_count / row sum (NaN: no pair)"})
        coords.update(regime_from=("regime_from", steps.codes), regime_to=("regime_to", steps.codes))
    attrs = {"dt": dt, "regime_order": "occupancy descending, code ascending"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def occupancy_by(trials: xr.Dataset, by: str) -> xr.DataArray:
    r"""Fraction of each group's valid steps spent in each regime, dims (``by``, regime).

    occupancy[g, Ω] = #{valid steps with group g and regime Ω} / #{valid steps
    with group g}, so every row sums to 1. ``by`` names a variable or
    coordinate of ``trials`` with dims (trial, time) such as ``epoch``, or
    (trial,) such as ``task`` or ``context`` (broadcast over time). Steps
    whose group is "" (padding) are left out. Groups: epochs in epoch order
    (see :func:`regime_epoch_table`), any other variable's values sorted.
    The coordinate ``n_steps`` (``by``) holds each group's number of steps.
    """
    steps = _regime_steps(trials)
    groups = _grouping(trials, by)
    valid = (steps.index >= 0) & ~_blank(groups)
    if by == "epoch":
        names = np.asarray(epoch_order(trials, groups, valid), dtype=str)
    else:
        names = _sorted_values(groups[valid])
    group = label_positions(groups[valid], names)
    n_regimes = steps.codes.size
    counts = np.bincount(group * n_regimes + steps.index[valid], minlength=len(names) * n_regimes)
    counts = counts.reshape(len(names), n_regimes)
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        occupancy = counts / totals[:, None]
    return xr.DataArray(
        occupancy,
        dims=(by, "regime"),
        coords={by: (by, names), "regime": ("regime", steps.codes), "n_steps": (by, totals)},
        name="occupancy",
        attrs={"description": f"fraction of each {by}'s valid steps spent in each regime"},
    )


def regime_epoch_table(
    trials: xr.Dataset,
    *,
    condition: str | None = None,
    threshold: float = 0.9,
    min_fraction: float = 0.05,
) -> xr.Dataset:
    r"""Regime × epoch contingency table per task, and how epoch-specific each regime is.

    Over the valid steps with an epoch label (n_{Ωe} = steps of the task in
    regime Ω and epoch e, n_Ω = Σ_e n_{Ωe}):

    - ``count`` (task, regime, epoch): n_{Ωe}. Without a ``task`` coordinate
      there is one task, "all".
    - ``n_steps`` (task): Σ n_{Ωe}.
    - ``nmi`` (task): normalised mutual information between regime and epoch
      labels, NMI = I(R; E) / ((H(R) + H(E)) / 2) with p_{Ωe} = n_{Ωe} / n
      (scikit-learn's ``normalized_mutual_info_score`` with
      ``average_method="arithmetic"``). NMI = 0 when the task's steps hold a
      single regime or a single epoch (scikit-learn would give 1 when both
      hold one); NaN for a task with no steps.
    - ``epoch_specificity`` (task, regime): max_e n_{Ωe} / n_Ω, NaN when the
      task never visits Ω; ``main_epoch``: the argmax epoch ("" when not
      visited; the earlier epoch on ties); ``specific``: specificity ≥
      ``threshold``; ``n_epochs_spanned``: #{e : n_{Ωe} / n_Ω ≥
      ``min_fraction``} (0 when not visited).

    Epochs are ordered as in ``trials.attrs["epoch_names"]`` (a JSON list) when
    present, the rest by first appearance in time (earliest time step, then
    name); only epochs present on valid steps are kept. Regimes are in the
    canonical order of the whole Dataset (as in :func:`regime_statistics`),
    so regimes unused by a task have zero counts. ``condition`` names a
    per-trial coordinate (e.g. ``"context"``): every variable is then
    computed separately for each of its values, on a leading dimension named
    after it, e.g. ``count`` (context, task, regime, epoch).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction!r}")
    steps = _regime_steps(trials)
    if "epoch" not in trials.variables:
        raise ValueError("trials Dataset lacks the coordinate 'epoch' (trial, time) of epoch names")
    epochs = _grouping(trials, "epoch")
    valid = (steps.index >= 0) & ~_blank(epochs)
    epoch_names = epoch_order(trials, epochs, valid)

    task = _per_trial(trials, "task") if "task" in trials.variables else np.full(trials.sizes["trial"], "all")
    task_names = _sorted_values(task)
    levels: list[tuple[str, np.ndarray, np.ndarray]] = [("task", task_names, label_positions(task, task_names))]
    if condition is not None:
        if condition in ("task", "epoch", "regime", "trial", "time"):
            raise ValueError(f"condition must be a per-trial condition other than {condition!r}, e.g. 'context'")
        values = _per_trial(trials, condition)
        condition_names = _sorted_values(values)
        levels.insert(0, (condition, condition_names, label_positions(values, condition_names)))

    # One flat group index over the leading (condition, task) levels, then regime, then epoch.
    group = np.zeros(trials.sizes["trial"], dtype=np.int64)
    for _, names, per_trial in levels:
        group = group * len(names) + per_trial
    n_groups = int(np.prod([len(names) for _, names, _ in levels]))
    n_regimes, n_epochs = steps.codes.size, len(epoch_names)
    trial_of_step = np.nonzero(valid)[0]
    flat = (group[trial_of_step] * n_regimes + steps.index[valid]) * n_epochs + label_positions(epochs[valid], epoch_names)
    counts = np.bincount(flat, minlength=n_groups * n_regimes * n_epochs).reshape(n_groups, n_regimes, n_epochs)

    per_regime = counts.sum(axis=2)
    used = per_regime > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = counts / per_regime[..., None]
    largest = counts.max(axis=2, initial=0)
    specificity = np.where(used, largest / np.maximum(per_regime, 1), np.nan)
    main_index = counts.argmax(axis=2) if n_epochs else np.zeros(per_regime.shape, dtype=np.int64)
    main_epoch = np.where(used, np.asarray(list(epoch_names) + [""], dtype=str)[main_index], "")
    spanned = np.where(used[..., None], fractions >= min_fraction, False).sum(axis=2)

    lead_dims = tuple(name for name, _, _ in levels)
    lead_shape = tuple(len(names) for _, names, _ in levels)

    def shaped(array: np.ndarray) -> np.ndarray:
        return array.reshape(lead_shape + array.shape[1:])

    regime_dims = (*lead_dims, "regime")
    data_vars = {
        "count": ((*lead_dims, "regime", "epoch"), shaped(counts), {"description": "valid steps in regime and epoch"}),
        "n_steps": (lead_dims, shaped(counts.sum(axis=(1, 2))), {"description": "valid steps with an epoch"}),
        "nmi": (lead_dims, shaped(_normalised_mutual_information(counts)),
                {"description": "I(regime; epoch) / mean(H(regime), H(epoch)); 0 if either has one value"}),
        "epoch_specificity": (regime_dims, shaped(specificity),
                              {"description": "fraction of the regime's steps in its most frequent epoch"}),
        "main_epoch": (regime_dims, shaped(main_epoch), {"description": "the regime's most frequent epoch"}),
        "specific": (regime_dims, shaped(specificity >= threshold), {"description": "epoch_specificity >= threshold"}),
        "n_epochs_spanned": (regime_dims, shaped(spanned),
                             {"description": "epochs holding at least min_fraction of the regime's steps"}),
    }
    coords = {name: (name, names) for name, names, _ in levels}
    coords.update(regime=("regime", steps.codes), epoch=("epoch", np.asarray(epoch_names, dtype=str)))
    attrs = {"threshold": threshold, "min_fraction": min_fraction, "nmi_normalisation": "arithmetic"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def dwell_times(trials: xr.Dataset) -> xr.DataArray:
    """Length in steps of every run (maximal sequence of consecutive valid steps of a trial in one regime).

    Returns dims (``run``,), runs in (trial, time) order, with coordinates
    ``regime`` (the run's regime code), ``trial_index`` (position of its
    trial) and ``start_step`` (time index of its first step); ``attrs["dt"]``
    converts steps to ms.
    """
    steps = _regime_steps(trials)
    runs = _runs(steps.index)
    return xr.DataArray(
        runs.length,
        dims=("run",),
        coords={
            "regime": ("run", steps.codes[runs.regime]),
            "trial_index": ("run", runs.trial),
            "start_step": ("run", runs.start),
        },
        name="dwell",
        attrs={"units": "steps", "dt": _dt(trials), "description": "run length of each visit to a regime"},
    )


@dataclass(frozen=True)
class _RegimeSteps:
    codes: np.ndarray  # (R,) regime labels, canonical order
    index: np.ndarray  # (trial, time) int64 position in ``codes``; -1 on padded steps
    count: np.ndarray  # (R,) valid steps per regime


@dataclass(frozen=True)
class _Runs:
    length: np.ndarray  # (n_runs,) steps
    regime: np.ndarray  # (n_runs,) position in the canonical codes
    trial: np.ndarray
    start: np.ndarray


def _regime_steps(trials: xr.Dataset) -> _RegimeSteps:
    validate_trials(trials, variables=("regime", "mask"))
    regime_dims, mask_dims = set(trials["regime"].dims), set(trials["mask"].dims)
    if regime_dims not in ({"trial", "time"}, {"trial", "time", "regime_byte"}):
        raise ValueError(
            f"regime must have dims (trial, time), or (trial, time, regime_byte) for packed codes; "
            f"got {trials['regime'].dims}"
        )
    if mask_dims != {"trial", "time"}:
        raise ValueError(f"mask must have dims (trial, time), got {trials['mask'].dims}")
    labels = regime_labels(trials).transpose("trial", "time").values
    valid = trials["mask"].transpose("trial", "time").values.astype(bool)
    unique, inverse, counts = np.unique(labels[valid], return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")  # np.unique sorts codes, so ties stay code-ascending
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    index = np.full(labels.shape, -1, dtype=np.int64)
    index[valid] = rank[inverse.ravel()]
    return _RegimeSteps(codes=unique[order], index=index, count=counts[order].astype(np.int64))


def _runs(index: np.ndarray) -> _Runs:
    valid = index >= 0
    continues = np.zeros_like(valid)
    continues[:, 1:] = valid[:, 1:] & valid[:, :-1] & (index[:, 1:] == index[:, :-1])
    starts = valid & ~continues
    # A run's steps are adjacent among the valid steps in (trial, time) order.
    run_of_step = np.cumsum(starts.ravel())[valid.ravel()] - 1
    trial, start = np.nonzero(starts)
    length = np.bincount(run_of_step, minlength=trial.size).astype(np.int64)
    return _Runs(length=length, regime=index[trial, start], trial=trial, start=start)


def _pairs(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regime indices at t−1 and t of every consecutive valid pair within a trial."""
    paired = (index[:, 1:] >= 0) & (index[:, :-1] >= 0)
    return index[:, :-1][paired], index[:, 1:][paired]


def _median_by_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    order = np.lexsort((values, group))
    ordered = values[order].astype(np.float64)
    sizes = np.bincount(group, minlength=n_groups)
    first = np.cumsum(sizes) - sizes
    median = np.full(n_groups, np.nan)
    has = sizes > 0
    lower, upper = first + (sizes - 1) // 2, first + sizes // 2
    median[has] = (ordered[lower[has]] + ordered[upper[has]]) / 2
    return median


def _normalised_mutual_information(counts: np.ndarray) -> np.ndarray:
    """NMI (arithmetic) of the contingency tables counts (..., R, E); 0 if one side has a single value."""
    total = counts.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        joint = counts / total[..., None, None]
        rows, columns = joint.sum(axis=-1), joint.sum(axis=-2)
        independent = rows[..., :, None] * columns[..., None, :]
        information = np.where(joint > 0, joint * np.log(joint / independent), 0.0).sum(axis=(-2, -1))
        entropy_rows = -np.where(rows > 0, rows * np.log(rows), 0.0).sum(axis=-1)
        entropy_columns = -np.where(columns > 0, columns * np.log(columns), 0.0).sum(axis=-1)
        nmi = np.clip(information, 0.0, None) / ((entropy_rows + entropy_columns) / 2)
    single = ((rows > 0).sum(axis=-1) <= 1) | ((columns > 0).sum(axis=-1) <= 1)
    return np.where(total == 0, np.nan, np.where(single, 0.0, nmi))


def _dt(trials: xr.Dataset) -> float:
    if "dt" in trials.attrs:
        return float(trials.attrs["dt"])
    if "time" in trials.coords and trials.sizes.get("time", 0) > 1:
        spacing = np.diff(np.asarray(trials["time"].values, dtype=float))
        if np.allclose(spacing, spacing[0]):
            return float(spacing[0])
    return float("nan")


def _groupable(trials: xr.Dataset) -> list[str]:
    return sorted(
        str(name) for name, variable in trials.variables.items()
        if name not in _RESERVED and variable.dims and set(variable.dims) <= {"trial", "time"}
    )


def _grouping(trials: xr.Dataset, by: str) -> np.ndarray:
    """Values of ``by`` broadcast to (trial, time)."""
    if by not in _groupable(trials):
        raise ValueError(
            f"cannot group by {by!r}: it must be a variable or coordinate with dims (trial, time), (trial,) "
            "or (time,); "
            f"valid names: {_groupable(trials)}"
        )
    variable = trials[by]
    shape = (trials.sizes["trial"], trials.sizes["time"])
    if set(variable.dims) == {"trial", "time"}:
        return variable.transpose("trial", "time").values
    if variable.dims == ("trial",):
        return np.broadcast_to(variable.values[:, None], shape)
    return np.broadcast_to(variable.values[None, :], shape)


def _per_trial(trials: xr.Dataset, name: str) -> np.ndarray:
    if name not in trials.variables or trials[name].dims != ("trial",):
        valid = sorted(str(key) for key, variable in trials.variables.items() if variable.dims == ("trial",))
        raise ValueError(f"{name!r} must be a per-trial coordinate with dims (trial,); valid names: {valid}")
    return trials[name].values


def _sorted_values(values: np.ndarray) -> np.ndarray:
    unique = np.unique(values)
    return unique[~_blank(unique)]


def _blank(values: np.ndarray) -> np.ndarray:
    """True where a label is "" (padding); never for numeric labels."""
    if values.dtype.kind in "OUS":
        return values == ""
    return np.zeros(values.shape, dtype=bool)


def epoch_order(trials: xr.Dataset, epochs: np.ndarray, valid: np.ndarray) -> list[str]:
    """Epochs on valid steps: ``attrs["epoch_names"]`` order first, then by first time step, then name."""
    present, inverse = np.unique(epochs[valid], return_inverse=True)
    first = np.full(present.size, np.iinfo(np.int64).max)
    np.minimum.at(first, inverse.ravel(), np.nonzero(valid)[1])
    by_appearance = [str(present[i]) for i in np.lexsort((present, first))]
    declared = trials.attrs.get("epoch_names")
    if declared is None:
        return by_appearance
    if isinstance(declared, str):
        try:
            declared = json.loads(declared)
        except json.JSONDecodeError as error:
            raise ValueError(f"attrs['epoch_names'] must be a JSON list of names, got {declared!r}") from error
    declared = [str(name) for name in np.atleast_1d(declared)]
    return [name for name in declared if name in by_appearance] + [
        name for name in by_appearance if name not in declared
    ]
