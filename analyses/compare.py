"""Model vs recordings: linear CKA, Procrustes shape distance and RSA on condition-averaged responses per epoch.

(Longer than most modules: the condition matching, alignment, three scores
and their shared shuffle null are one pipeline whose steps depend on each
other's layout.)

A recording is the ``trials.nc`` layout with ``neuron`` instead of ``unit``
(``docs/formats.md``): an ``xarray.DataArray`` (or a Dataset holding one) with dims
(trial, time, neuron), one coordinate per trial condition on ``trial``, a
``time`` coordinate in ms from trial start (``time.attrs["units"] == "ms"``;
the start of each sample, as in ``trials.nc``), optionally ``epoch``
(trial, time) or (time,) names and ``mask`` (trial, time) valid samples.

:func:`compare` does, in order:

1. **Conditions.** Every 1-D coordinate on ``trial`` is a condition (the
   model's ``task`` too). Recording conditions are renamed / their values
   mapped with ``mapping``; names present on one side only are dropped, and
   the trials are grouped by the combination of the remaining conditions'
   values. Combinations present on both sides are the compared conditions c;
   trials with any other combination are left out. Numbers match when equal
   to 6 significant digits (float32 0.05 == float64 0.05).
2. **Responses** are the model's ``latents`` z_t (units) and the recording
   (neurons), on valid samples only (the model's ``mask``; the recording's
   ``mask`` if it has one, else every sample).
3. **Alignment** to samples (c, k) matched on both sides:

   * ``align="epoch"``: each trial's valid samples in epoch e are resampled to
     ``n_bins`` points at relative positions (k + ½)/n_bins of the epoch
     (linear interpolation between samples at (j + ½)/L, held at the edges),
     then averaged over the trials of each condition. The model's epochs come
     from its ``epoch`` coordinate; the recording's from its own ``epoch``
     coordinate if it has one, else from its time axis: a sample at time t
     belongs to epoch e if start_e ≤ t < end_e, with start_e / end_e the
     model's median start / end time of e over trials (exact when the model's
     epochs have fixed times; give the recording an ``epoch`` coordinate for
     variable ones). ``n_bins=1`` is the plain within-epoch average.
   * ``align="time"``: condition averages at every time step of the model's
     dt grid inside the window where both time axes overlap; the recording's
     averages are interpolated linearly onto those times (``xarray.interp``).
     A step belongs to the epoch most of the model's valid trials are in at
     that step. Steps where any condition lacks data on either side are
     dropped.

   Each epoch is compared on its samples; ``"all"`` concatenates every
   compared epoch (when there are several), over the conditions present in
   all of them.
4. **Scores** on X (samples × units) and Y (samples × neurons), rows matched:

   * linear CKA (Kornblith et al. 2019): with column-centred X, Y,
     CKA = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) ∈ [0, 1]; 1 = same up to rotation and
     isotropic scaling. :func:`linear_cka`.
   * Procrustes angular shape distance (Williams et al. 2021, "Generalized
     shape metrics on neural representations", α = 1): X̃, Ỹ column-centred,
     scaled to unit Frobenius norm and zero-padded to equal width;
     θ = arccos ‖X̃ᵀỸ‖_* = arccos max_Q tr(X̃ᵀỸQ) over orthogonal Q ∈ [0, π/2];
     0 = same up to rotation, reflection, translation and scale.
     :func:`procrustes_distance`.
   * RSA (Kriegeskorte et al. 2008): per side, a condition × condition RDM of
     the condition patterns (all the epoch's bins × features concatenated) by
     ``scipy.spatial.distance.pdist`` (``rdm_metric``, default correlation
     distance 1 − r); the score is the Spearman correlation of the two RDMs'
     upper triangles (NaN when either RDM is constant, e.g. a fixation epoch
     in which a deterministic model responds identically to all conditions).
     :func:`rsa`.

5. **Shuffle null.** The recording's condition labels are permuted
   (``n_shuffles`` random permutations of c, the same for every bin and time
   step within a condition, drawn per epoch from ``seed``) and every score
   recomputed. p = (1 + #{null ≥ observed}) / (1 + n_shuffles) for the
   similarities (CKA, RSA), (1 + #{null ≤ observed}) / (1 + n_shuffles) for
   the distance (ties within 1e-9 count). This tests whether the *condition
   structure* matches; a time course shared by all conditions is not tested
   (its score survives every permutation, so p ≈ 1).

Cost: per epoch and permutation one product XᵀY_π (samples × rank) and, for
Procrustes, one small SVD (X and Y are first reduced to rank ≤ samples,
which leaves every score unchanged); RSA ranks the RDMs once. BLAS runs on
one thread during :func:`compare`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.spatial.distance import pdist, squareform
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from ..formats import FORMAT_VERSION, recording_variable
from ..system import jsonable
from .core import validate_trials
from .figures import save_figure
from .regimes import epoch_order

__all__ = [
    "ALIGNMENTS",
    "METRICS",
    "NAN_POLICIES",
    "RECORDING_DIMS",
    "compare",
    "comparison_figure",
    "linear_cka",
    "load_recordings",
    "plot_comparison",
    "procrustes_distance",
    "rdm",
    "rsa",
    "validate_recordings",
]

RECORDING_DIMS = ("trial", "time", "neuron")
METRICS = ("cka", "procrustes", "rsa")
ALIGNMENTS = ("epoch", "time")
NAN_POLICIES = ("raise", "drop_neurons", "omit")
ALL_EPOCHS = "all"
_SIMILARITY = {"cka": True, "procrustes": False, "rsa": True}
_LABELS = {"cka": "linear CKA (↑ similar)", "procrustes": "Procrustes angle, rad (↓ similar)",
           "rsa": "RSA: Spearman ρ of RDMs (↑ similar)"}
_MS_UNITS = ("ms", "msec", "msecs", "millisecond", "milliseconds")
_SECOND_UNITS = ("s", "sec", "secs", "second", "seconds")
_TIE = 1e-9
_CHUNK_ELEMENTS = 2_000_000  # permuted copies held at once (16 MB of float64)


# --------------------------------------------------------------------------- metrics


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of two (samples, features) matrices with matched rows: ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), centred."""
    return float(_ShapeScores(*_pair(X, Y)).scores(np.arange(len(X))[None], cka=True, procrustes=False)["cka"][0])


def procrustes_distance(X: np.ndarray, Y: np.ndarray) -> float:
    """Angular Procrustes shape distance arccos ‖X̃ᵀỸ‖_* (radians, in [0, π/2]); X̃, Ỹ centred, unit norm, padded."""
    return float(
        _ShapeScores(*_pair(X, Y)).scores(np.arange(len(X))[None], cka=False, procrustes=True)["procrustes"][0]
    )


def rdm(patterns: np.ndarray, metric: str = "correlation") -> np.ndarray:
    """Condensed condition × condition dissimilarities of (conditions, features) patterns (``scipy`` ``pdist``)."""
    patterns = np.asarray(patterns, dtype=np.float64)
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be (conditions, features), got shape {patterns.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return pdist(patterns, metric=metric)


def rsa(X: np.ndarray, Y: np.ndarray, metric: str = "correlation") -> float:
    """Spearman correlation of the RDMs of two (conditions, features) pattern matrices; NaN if either is constant."""
    X, Y = _pair(X, Y)
    if len(X) < 3:
        raise ValueError(f"RSA needs at least 3 conditions (an RDM with ≥ 3 entries), got {len(X)}")
    score = _RankRSA(_pattern_rdm(X, metric), _pattern_rdm(Y, metric), len(X))
    return float(score.scores(np.arange(len(X))[None])[0])


def _pattern_rdm(patterns: np.ndarray, metric: str) -> np.ndarray | None:
    """The RDM of the patterns, or None when they are all equal up to rounding (RSA undefined)."""
    spread = np.abs(patterns - patterns.mean(axis=0)).max()
    if not spread > 1e-9 * max(np.abs(patterns).max(), 1e-300):
        return None  # e.g. a deterministic model before the stimulus: averages differ only by rounding
    return rdm(patterns, metric)


class _ShapeScores:
    """CKA and Procrustes distance of X against row-permuted copies of Y (rows = samples)."""

    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.X, self.Y = _normalised(X), _normalised(Y)
        if self.X is not None and self.Y is not None:
            self.self_x = np.linalg.norm(self.X.T @ self.X)
            self.self_y = np.linalg.norm(self.Y.T @ self.Y)

    def scores(self, row_perms: np.ndarray, *, cka: bool, procrustes: bool) -> dict[str, np.ndarray]:
        n = len(row_perms)
        out = {"cka": np.full(n, np.nan), "procrustes": np.full(n, np.nan)}
        if self.X is None or self.Y is None:  # a side without variance across samples
            return out
        # Σ_i x_i y_π(i) = Σ_j x_π⁻¹(j) y_j: permute whichever side has fewer columns (a cheaper copy).
        permute_x = self.X.shape[1] < self.Y.shape[1]
        fixed, moved = (self.Y, self.X) if permute_x else (self.X, self.Y)
        if permute_x:
            row_perms = np.argsort(row_perms, axis=1)
        chunk = max(1, _CHUNK_ELEMENTS // moved.size)
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            cross = np.matmul(fixed.T[None], moved[row_perms[part]])  # (shuffles, columns of fixed, of moved)
            if cka:
                out["cka"][part] = np.square(cross).sum(axis=(1, 2)) / (self.self_x * self.self_y)
            if procrustes:
                nuclear = np.linalg.svd(cross, compute_uv=False).sum(axis=-1)
                out["procrustes"][part] = np.arccos(np.clip(nuclear, -1.0, 1.0))
        return out


def _tied(distances: np.ndarray) -> np.ndarray:
    """Distances rounded to :data:`_TIE` of the largest one, so that distances equal up to rounding rank as ties."""
    resolution = _TIE * np.abs(distances).max(initial=0.0)
    return np.round(distances / resolution) if resolution > 0 else np.zeros_like(distances)


class _RankRSA:
    """Spearman correlation of a model RDM with row-and-column-permuted copies of a recording RDM.

    Each RDM is ranked after :func:`_tied`: conditions that share a state give distances that differ only in
    their last bits, and ranking those would break their ties by chance.
    """

    def __init__(self, rdm_x: np.ndarray | None, rdm_y: np.ndarray | None, n_conditions: int) -> None:
        self.valid = bool(rdm_x is not None and rdm_y is not None and np.isfinite(rdm_x).all()
                          and np.isfinite(rdm_y).all() and np.ptp(_tied(rdm_x)) > 0 and np.ptp(_tied(rdm_y)) > 0)
        if not self.valid:
            return
        rank_x = rankdata(_tied(rdm_x))
        self.rank_x = (rank_x - rank_x.mean()) / np.linalg.norm(rank_x - rank_x.mean())
        rank_y = rankdata(_tied(rdm_y))
        self.square_y = squareform((rank_y - rank_y.mean()) / np.linalg.norm(rank_y - rank_y.mean()))
        self.upper = np.triu_indices(n_conditions, k=1)

    def scores(self, perms: np.ndarray) -> np.ndarray:
        if not self.valid:
            return np.full(len(perms), np.nan)
        # Ranks of a permuted RDM are the permuted ranks, so ranking happens once.
        permuted = self.square_y[perms[:, self.upper[0]], perms[:, self.upper[1]]]
        return permuted @ self.rank_x


def _pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"X and Y must be (samples, features) with the same samples; got {X.shape} and {Y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("X and Y must be finite")
    return X, Y


def _normalised(X: np.ndarray) -> np.ndarray | None:
    """Column-centred, unit-Frobenius X, reduced to rank ≤ samples (cross-products unchanged); None if constant."""
    centred = X - X.mean(axis=0)
    norm = np.linalg.norm(centred)
    if not norm > 1e-12 * np.linalg.norm(X):  # constant up to rounding (whatever the data's scale)
        return None
    centred = centred / norm
    if centred.shape[1] > centred.shape[0]:
        # X = U S Vᵀ: XᵀY and ‖XᵀX‖ only see U S, and row permutations act on U.
        U, S, _ = np.linalg.svd(centred, full_matrices=False)
        centred = U * S
    return np.ascontiguousarray(centred)


# --------------------------------------------------------------------------- inputs


def validate_recordings(recordings: xr.DataArray | xr.Dataset, variable: str | None = None) -> xr.DataArray:
    """The recording as a (trial, time, neuron) DataArray with ``time`` in ms (float); ValueError says what is wrong.

    A Dataset's data variable is ``variable``, else its only one (besides
    ``mask``), else ``rates`` or ``responses``
    (:func:`neuroalrnn.formats.recording_variable`); a ``mask`` variable becomes a
    coordinate and the Dataset's attributes are kept (the variable's win).
    ``time`` must carry ``attrs["units"] = "ms"`` (or be a timedelta).
    """
    if isinstance(recordings, xr.Dataset):
        name = recording_variable(recordings, variable)
        data = recordings[name].copy()
        data.attrs = {**recordings.attrs, **data.attrs}  # the file's description travels with the responses
        if "mask" in recordings.data_vars and "mask" not in data.coords:
            data = data.assign_coords(mask=recordings["mask"])
    elif isinstance(recordings, xr.DataArray):
        if variable is not None:
            raise ValueError(f"variable={variable!r} selects a Dataset's data variable; the recordings are a DataArray")
        data = recordings
    else:
        raise TypeError(f"recordings must be an xarray DataArray or Dataset, got {type(recordings).__name__}")

    if set(data.dims) != set(RECORDING_DIMS):
        hint = ""
        if "unit" in data.dims and "neuron" not in data.dims:
            hint = "; rename it with .rename(unit='neuron')"
        elif "trial" not in data.dims:
            hint = ("; condition-averaged data needs one 'trial' per condition: "
                    ".expand_dims('trial') plus condition coordinates on 'trial'")
        raise ValueError(f"recordings must have dims {RECORDING_DIMS}, got {tuple(data.dims)}{hint}")
    data = data.transpose(*RECORDING_DIMS)
    if data.dtype.kind not in "iuf":
        raise ValueError(f"recordings must be numeric, got dtype {data.dtype}")
    time = _time_ms(data, "recordings", require_units=True)
    data = data.assign_coords(time=("time", time, {"units": "ms"}))
    if "mask" in data.coords:
        mask = data.coords["mask"]
        if set(mask.dims) - {"trial", "time"} or mask.dtype != bool:
            raise ValueError(f"recordings' mask must be bool over (trial, time), got {mask.dtype} over {mask.dims}")
    if "epoch" in data.coords and data.coords["epoch"].dims not in (("trial", "time"), ("time",), ("time", "trial")):
        raise ValueError(
            f"recordings' epoch coordinate must be over (trial, time) or (time,), got {data['epoch'].dims}"
        )
    return data


def load_recordings(path: str | os.PathLike, variable: str | None = None) -> xr.DataArray:
    """Read a recordings file (NetCDF, or NWB by its ``.nwb`` suffix) as a validated (trial, time, neuron) DataArray.

    The file is read by :func:`neuroalrnn.analyses.recordings.read_recordings` (the one reader; see it for the
    NWB options) and its responses taken out by :func:`validate_recordings`.
    """
    from .recordings import read_recordings

    return validate_recordings(read_recordings(path, variable=variable), variable)


def _time_ms(data: xr.DataArray | xr.Dataset, side: str, require_units: bool) -> np.ndarray:
    fix = "give it one: .assign_coords(time=('time', times_in_ms, {'units': 'ms'}))"
    if "time" not in data.coords:
        raise ValueError(f"{side} have no 'time' coordinate (ms from trial start); {fix}")
    time = data.coords["time"]
    if time.dims != ("time",):
        raise ValueError(f"{side}' time coordinate must be 1-D over 'time', got dims {time.dims}")
    values = time.values
    if values.dtype.kind == "m":
        values = values / np.timedelta64(1, "ms")
    else:
        units = str(time.attrs.get("units", "")).strip().lower()
        if units in _SECOND_UNITS:
            raise ValueError(f"{side}' time is in seconds (units={units!r}); multiply it by 1000 and set units='ms'")
        if units and units not in _MS_UNITS:
            raise ValueError(f"{side}' time must be in ms from trial start, got units={units!r}")
        if not units and require_units:
            raise ValueError(f"{side}' time coordinate has no units; it must be in ms: set time.attrs['units'] = 'ms'")
        if values.dtype.kind not in "iuf":
            raise ValueError(f"{side}' time must be numbers in ms, got dtype {values.dtype}")
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all() or (len(values) > 1 and not (np.diff(values) > 0).all()):
        raise ValueError(f"{side}' time coordinate must be finite and strictly increasing (ms)")
    return values


def _trial_conditions(data: xr.DataArray | xr.Dataset) -> dict[str, np.ndarray]:
    return {str(name): coord.values for name, coord in data.coords.items()
            if coord.dims == ("trial",) and name != "trial"}


def _key(value):
    """Matching key of a condition value: strings as themselves, numbers to 6 significant digits."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if math.isnan(number) else float(f"{number:.6g}")


def _sort_key(combination: tuple) -> tuple:
    return tuple((1, v) if isinstance(v, str) else (0, v) for v in combination)


def _apply_mapping(conditions: dict[str, np.ndarray], mapping: Mapping | None) -> dict[str, np.ndarray]:
    if not mapping:
        return dict(conditions)
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a dict, got {type(mapping).__name__}")
    renamed: dict[str, np.ndarray] = {name: values for name, values in conditions.items() if name not in mapping}
    for name, target in mapping.items():
        if name not in conditions:
            raise ValueError(f"mapping names the recording condition {name!r}, but the recording's conditions are "
                             f"{sorted(conditions)}")
        if isinstance(target, str):
            new_name, value_map = target, None
        elif isinstance(target, Mapping):
            new_name, value_map = name, target
        elif (isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str)
              and isinstance(target[1], Mapping)):
            new_name, value_map = target
        else:
            raise TypeError(
                f"mapping[{name!r}] must be a model condition name, a dict of values {{recording: model}}, or a "
                f"(name, dict) pair; got {target!r}"
            )
        values = conditions[name]
        if value_map:
            by_key = {_key(k): v for k, v in value_map.items()}
            values = np.array([by_key.get(_key(v), v) for v in values.tolist()], dtype=object)
        if new_name in renamed:
            raise ValueError(f"mapping gives two recording conditions the name {new_name!r}")
        renamed[new_name] = values
    return renamed


def _combination_keys(conditions: dict[str, np.ndarray], names: list[str]) -> list[tuple]:
    columns = []
    for name in names:
        columns.append([_key(v) for v in np.asarray(conditions[name]).tolist()])
    return list(zip(*columns, strict=True))


def _match_conditions(model_conditions, recording_conditions, conditions, mapping):
    """(names, shared combination keys, model condition index per trial, recording index per trial, info)."""
    recording_conditions = _apply_mapping(recording_conditions, mapping)
    after = " (after mapping)" if mapping else ""
    if conditions is None:
        names = [name for name in model_conditions if name in recording_conditions]
        if not names:
            raise ValueError(
                f"no shared conditions: the model's trials have conditions {sorted(model_conditions)}, the "
                f"recordings have {sorted(recording_conditions)}{after}; name the recording's conditions as the "
                "model's, or pass mapping={'recording name': 'model name'}"
            )
    else:
        names = [conditions] if isinstance(conditions, str) else [str(name) for name in conditions]
        if not names:
            raise ValueError("conditions must name at least one condition (or be None for all shared ones)")
        for name in names:
            for side, present in (("model's trials", model_conditions), ("recordings", recording_conditions)):
                if name not in present:
                    raise ValueError(f"condition {name!r} is not in the {side}; they have {sorted(present)}{after}")
    model_keys = _combination_keys(model_conditions, names)
    recording_keys = _combination_keys(recording_conditions, names)
    shared = sorted(set(model_keys) & set(recording_keys), key=_sort_key)
    if not shared:
        def values(source):
            return {name: sorted({str(v) for v in np.asarray(source[name]).tolist()})[:8] for name in names}
        raise ValueError(
            f"the model and the recordings share the conditions {names} but no combination of their values: "
            f"model {values(model_conditions)}, recordings {values(recording_conditions)}; map values with "
            "mapping={'name': {recording value: model value}}"
        )
    index = {key: i for i, key in enumerate(shared)}
    model_index = np.array([index.get(k, -1) for k in model_keys], dtype=np.int64)
    recording_index = np.array([index.get(k, -1) for k in recording_keys], dtype=np.int64)
    info = {
        "conditions_only_in_model": sorted(set(model_conditions) - set(recording_conditions)),
        "conditions_only_in_recordings": sorted(set(recording_conditions) - set(model_conditions)),
        "combinations_only_in_model": len(set(model_keys) - set(shared)),
        "combinations_only_in_recordings": len(set(recording_keys) - set(shared)),
    }
    # Labels use the model's own values (first trial of each combination).
    first = {}
    for trial, i in enumerate(model_index):
        if i >= 0 and i not in first:
            first[i] = trial
    levels = {name: [np.asarray(model_conditions[name])[first[i]] for i in range(len(shared))] for name in names}
    return names, levels, model_index, recording_index, info


def _check_finite(values: np.ndarray, valid: np.ndarray, neurons: np.ndarray, time: np.ndarray, nan_policy: str):
    """Apply ``nan_policy`` to non-finite values at valid samples; returns the mask of neurons kept."""
    bad = ~np.isfinite(values) & valid[:, :, None]
    keep = np.ones(values.shape[2], dtype=bool)
    if not bad.any():
        return keep
    if nan_policy == "raise":
        trials, steps, columns = np.nonzero(bad)
        raise ValueError(
            f"the recordings contain {bad.sum()} NaN/infinite values at valid samples: in {np.unique(columns).size} "
            f"neurons ({_few(neurons[np.unique(columns)])}), {np.unique(trials).size} trials, at times "
            f"{time[steps.min()]:g}–{time[steps.max()]:g} ms. Pass nan_policy='drop_neurons' to drop those "
            "neurons, nan_policy='omit' to leave NaNs out of the averages, or mark samples after a trial's end "
            "invalid with a bool mask (trial, time)"
        )
    if nan_policy == "drop_neurons":
        keep = ~bad.any(axis=(0, 1))
        if not keep.any():
            raise ValueError("nan_policy='drop_neurons' drops every neuron: each has NaN at some valid sample")
    return keep


def _few(values, n: int = 6) -> str:
    values = [str(v) for v in np.asarray(values).tolist()]
    return ", ".join(values[:n]) + (f", … ({len(values)} in all)" if len(values) > n else "")


# --------------------------------------------------------------------------- alignment


def _resample_epoch(values, valid, labels, epoch, n_bins, per_feature):
    """Trial-wise resampling of epoch ``epoch`` to ``n_bins`` points: (sums, weights), (trial, bin, feature)."""
    selected = valid & (labels == epoch)
    length = selected.sum(axis=1)
    rank = np.cumsum(selected, axis=1) - 1
    centres = (np.arange(n_bins) + 0.5) / n_bins
    position = np.clip(centres[None, :] * length[:, None] - 0.5, 0, np.maximum(length - 1, 0)[:, None])
    # Linear-interpolation weights of each step for each bin (a hat function of the step's rank): (trial, bin, time).
    weight = np.clip(1.0 - np.abs(rank[:, None, :] - position[:, :, None]), 0.0, None) * selected[:, None, :]
    finite = np.isfinite(values)
    sums = np.matmul(weight, np.where(finite, values, 0.0))
    if per_feature:
        weights = np.matmul(weight, finite.astype(np.float64))
    else:
        weights = np.broadcast_to(weight.sum(axis=2)[:, :, None], sums.shape)
    return sums, weights


def _condition_means(sums, weights, condition, n_conditions):
    """Mean over the trials of each condition of the per-trial averages sums/weights: (condition, bin, feature).

    The result does not depend on the order of the trials, to the last bit: the trials are put in a canonical
    order (by condition, then by their content) and each condition's are summed one after the other.
    """
    weights = np.broadcast_to(weights, sums.shape)
    has = weights > 1e-12
    per_trial = np.where(has, sums / np.where(has, weights, 1.0), 0.0)
    shape = per_trial.shape[1:]
    means = np.full((n_conditions, int(np.prod(shape))), np.nan)
    kept = np.flatnonzero((condition >= 0) & (condition < n_conditions))
    if not kept.size:
        return means.reshape(n_conditions, *shape)
    values = per_trial.reshape(len(per_trial), -1)[kept]
    order = np.lexsort((_content_keys(values), condition[kept]))
    values, counted, groups = values[order], has.reshape(len(has), -1)[kept][order], condition[kept][order]
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    total = np.add.reduceat(values, starts, axis=0)
    count = np.add.reduceat(counted.astype(np.float64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means[groups[starts]] = np.where(count > 0, total / count, np.nan)
    return means.reshape(n_conditions, *shape)


def _content_keys(rows: np.ndarray) -> np.ndarray:
    """One number per row that depends only on the row's values (equal rows, equal keys), for a canonical order."""
    direction = np.random.default_rng(0).standard_normal(rows.shape[1])
    return np.array([float(np.dot(np.nan_to_num(row), direction)) for row in rows])


def _epoch_windows(time, dt, labels, valid, epochs):
    """The model's median start and end time (ms) of each epoch over the trials that have it."""
    windows = {}
    for epoch in epochs:
        selected = valid & (labels == epoch)
        has = selected.any(axis=1)
        first = selected.argmax(axis=1)[has]
        last = selected.shape[1] - 1 - selected[:, ::-1].argmax(axis=1)[has]
        windows[epoch] = (float(np.median(time[first])), float(np.median(time[last] + dt)))
    return windows


def _labels_from_windows(time, windows) -> np.ndarray:
    labels = np.full(time.shape, "", dtype=object)
    for epoch, (start, end) in reversed(list(windows.items())):  # earlier epochs win overlaps
        labels[(time >= start) & (time < end)] = epoch
    return labels


# --------------------------------------------------------------------------- compare


def _one_blas_thread(function):
    """Run ``function`` with one BLAS/LAPACK thread (restored after): its matrix products and SVDs are small."""

    @functools.wraps(function)
    def limited(*args, **kwargs):
        with threadpool_limits(1):
            return function(*args, **kwargs)

    return limited


@_one_blas_thread
def compare(
    model_trials: xr.Dataset,
    recordings: xr.DataArray | xr.Dataset,
    *,
    conditions: Sequence[str] | None = None,
    mapping: Mapping | None = None,
    align: str = "epoch",
    epochs: Sequence[str] | None = None,
    n_bins: int = 5,
    metrics: Sequence[str] = METRICS,
    n_shuffles: int = 1000,
    seed: int = 0,
    variable: str | None = None,
    nan_policy: str = "raise",
    rdm_metric: str = "correlation",
) -> xr.Dataset:
    """Compare a model's condition-averaged latents with recorded neurons per epoch (see the module docstring).

    Args:
        model_trials: the ``trials.nc`` Dataset (``latents``, ``mask``, condition coordinates, ``epoch``, ``time``).
        recordings: (trial, time, neuron) DataArray or a Dataset holding one (:func:`validate_recordings`).
        conditions: condition names to match; default every name present on both sides.
        mapping: recording condition name -> model condition name (``{"ctx": "context"}``), -> a value map
            ``{"context": {"M": "motion"}}``, or -> both ``{"ctx": ("context", {"M": "motion"})}``; values
            not in a value map are kept. The key ``"epoch"`` maps the recording's epoch names instead:
            ``{"epoch": {"cue": "context"}}``.
        align: ``"epoch"`` (resample each epoch to ``n_bins`` points) or ``"time"`` (the model's dt grid).
        epochs: epochs to compare (default every epoch both sides have, in the model's order).
        n_bins: points per epoch for ``align="epoch"``; 1 averages over the epoch.
        metrics: any of ``"cka"``, ``"procrustes"``, ``"rsa"``.
        n_shuffles: condition-label permutations of the recording for the null; 0 skips the null
            (with 1000, the default, p ≥ 1/1001).
        seed: seed of the permutations.
        variable: the data variable of a Dataset recording.
        nan_policy: non-finite recording values at valid samples: ``"raise"`` (default), ``"drop_neurons"``
            (drop every neuron with one) or ``"omit"`` (leave them out of the averages).
        rdm_metric: ``scipy.spatial.distance.pdist`` metric of the RDMs.

    Returns:
        Dataset with dims ``metric``, ``epoch`` (the compared epochs, then ``"all"``), ``shuffle`` and
        ``condition``: ``observed``, ``null_mean``, ``null_std``, ``p_value`` (metric, epoch); ``null``
        (metric, epoch, shuffle); ``n_conditions``, ``n_samples`` (epoch); ``model_trials`` and
        ``recording_trials`` (condition), with one coordinate per matched condition on ``condition`` and
        ``higher_is_similar`` on ``metric``. Attributes record the parameters and what was matched or dropped.
    """
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {metrics}")
    for name, value, minimum in (("n_bins", n_bins, 1), ("n_shuffles", n_shuffles, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")

    validate_trials(model_trials, dims=("trial", "time", "unit"), variables=("latents", "mask"),
                    coords=("epoch",) if align == "epoch" else ())
    recording = validate_recordings(recordings, variable)
    model_time = _time_ms(model_trials, "model trials", require_units=False)
    model_dt = float(model_trials.attrs.get("dt", np.diff(model_time).min() if len(model_time) > 1 else 1.0))
    record_time = recording["time"].values

    if mapping is not None and not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a dict, got {type(mapping).__name__}")
    condition_mapping = {name: target for name, target in (mapping or {}).items() if name != "epoch"}
    epoch_mapping = (mapping or {}).get("epoch")
    if epoch_mapping is not None and not isinstance(epoch_mapping, Mapping):
        raise TypeError(f"mapping['epoch'] must be a dict {{recording epoch: model epoch}}, got {epoch_mapping!r}")
    names, levels, model_condition, record_condition, info = _match_conditions(
        _trial_conditions(model_trials), _trial_conditions(recording), conditions, condition_mapping)
    n_conditions = len(levels[names[0]])
    if n_conditions < 2:
        raise ValueError(f"only one condition combination is shared ({_label(levels, names, 0)}); the scores "
                         "need at least 2 (RSA at least 3): match on more conditions")
    if "rsa" in metrics and n_conditions < 3:
        raise ValueError(
            f"too few conditions for RSA: {n_conditions} shared combinations of {names}; an RDM needs at least 3. "
            "Match on more conditions or pass metrics=('cka', 'procrustes')"
        )

    model_values = model_trials["latents"].transpose("trial", "time", "unit").values.astype(np.float64)
    model_valid = model_trials["mask"].transpose("trial", "time").values.astype(bool)
    if not np.isfinite(model_values[model_valid]).all():
        raise ValueError("the model's latents are not finite at valid steps (a diverged network?)")
    record_values = recording.values.astype(np.float64)
    record_valid = (recording.coords["mask"].broadcast_like(recording.isel(neuron=0, drop=True))
                    .transpose("trial", "time").values.astype(bool)
                    if "mask" in recording.coords else np.ones(record_values.shape[:2], dtype=bool))
    model_end = model_time[model_valid.any(axis=0)].max() + model_dt if model_valid.any() else model_time[0]
    if record_time[-1] < model_time[0] or record_time[0] >= model_end:
        raise ValueError(
            f"the recordings' time axis ({record_time[0]:g}–{record_time[-1]:g} ms) does not overlap the model's "
            f"({model_time[0]:g}–{model_end:g} ms); both must be in ms from trial start"
        )

    neurons = recording["neuron"].values if "neuron" in recording.coords else np.arange(record_values.shape[2])
    keep = _check_finite(record_values, record_valid, neurons, record_time, nan_policy)
    record_values = record_values[:, :, keep]
    info["dropped_neurons"] = [str(n) for n in np.asarray(neurons)[~keep].tolist()]

    model_use = model_valid & (model_condition >= 0)[:, None]
    record_use = record_valid & (record_condition >= 0)[:, None]
    if align == "epoch":
        blocks, details = _align_epochs(model_trials, model_values, model_use, model_condition, model_time, model_dt,
                                        recording, record_values, record_use, record_condition, record_time,
                                        epochs, n_bins, n_conditions, nan_policy == "omit", epoch_mapping)
    else:
        blocks, details = _align_time(model_trials, model_values, model_use, model_condition, model_time,
                                      record_values, record_use, record_condition, record_time,
                                      epochs, n_conditions, nan_policy == "omit")

    epoch_names = list(blocks)
    observed, null, used_conditions, used_samples = _score_blocks(blocks, metrics, n_shuffles, seed, rdm_metric)
    p_value = _p_values(observed, null, metrics)
    # The null is all-finite or all-NaN per (metric, epoch); with no shuffles its summaries are NaN.
    null_mean = null.mean(axis=-1) if n_shuffles else np.full(observed.shape, np.nan)
    null_std = null.std(axis=-1) if n_shuffles else np.full(observed.shape, np.nan)

    condition_labels = [_label(levels, names, i) for i in range(n_conditions)]
    coords = {
        "metric": ("metric", metrics),
        "higher_is_similar": ("metric", [_SIMILARITY[m] for m in metrics]),
        "epoch": ("epoch", epoch_names),
        "shuffle": ("shuffle", np.arange(n_shuffles)),
        "condition": ("condition", condition_labels),
    }
    reserved = {"metric", "epoch", "shuffle", "condition", "higher_is_similar"}
    for name in names:
        if name not in reserved:
            coords[name] = ("condition", _coordinate_values(levels[name]))
    data_vars = {
        "observed": (("metric", "epoch"), observed),
        "null_mean": (("metric", "epoch"), null_mean),
        "null_std": (("metric", "epoch"), null_std),
        "p_value": (("metric", "epoch"), p_value),
        "null": (("metric", "epoch", "shuffle"), null),
        "n_conditions": (("epoch",), np.array(used_conditions, dtype=np.int64)),
        "n_samples": (("epoch",), np.array(used_samples, dtype=np.int64)),
        "model_trials": (("condition",), np.bincount(model_condition[model_condition >= 0], minlength=n_conditions)),
        "recording_trials": (("condition",),
                             np.bincount(record_condition[record_condition >= 0], minlength=n_conditions)),
    }
    attrs = {
        "align": align,
        "n_bins": int(n_bins) if align == "epoch" else 0,
        "n_shuffles": int(n_shuffles),
        "seed": int(seed),
        "metrics": json.dumps(metrics),
        "format_version": FORMAT_VERSION,
        "rdm_metric": rdm_metric,
        "nan_policy": nan_policy,
        "conditions": json.dumps(names),
        "mapping": json.dumps(jsonable(mapping or {})),
        "variable": str(recording.name) if recording.name is not None else "",
        "n_units": int(model_values.shape[2]),
        "n_neurons": int(record_values.shape[2]),
        "model": str(model_trials.attrs.get("model", "")),
        "model_seed": int(model_trials.attrs.get("seed", -1)),
        "dt": model_dt,
        **{key: json.dumps(value) if not isinstance(value, int) else value for key, value in info.items()},
        **details,
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _score_blocks(blocks: dict, metrics: list[str], n_shuffles: int, seed: int, rdm_metric: str):
    """Observed scores (metric, epoch), null (metric, epoch, shuffle), conditions and samples per epoch.

    Each block is X (condition, bin, unit), Y (condition, bin, neuron); permutation 0 is the identity
    (the observed score), then ``n_shuffles`` random permutations of the recording's conditions, the
    same for every bin of a condition.
    """
    rng = np.random.default_rng(seed)
    observed = np.full((len(metrics), len(blocks)), np.nan)
    null = np.full((len(metrics), len(blocks), n_shuffles), np.nan)
    used_conditions, used_samples = [], []
    shape = {"cka": "cka" in metrics, "procrustes": "procrustes" in metrics}
    for j, (X, Y, _) in enumerate(blocks.values()):
        C, B = X.shape[:2]
        used_conditions.append(C)
        used_samples.append(C * B)
        perms = np.vstack([np.arange(C)[None], rng.permuted(np.tile(np.arange(C), (n_shuffles, 1)), axis=1)])
        if C < 2:
            continue
        scores = {}
        if any(shape.values()):
            row_perms = (perms[:, :, None] * B + np.arange(B)).reshape(len(perms), C * B)
            scores = _ShapeScores(X.reshape(C * B, -1), Y.reshape(C * B, -1)).scores(row_perms, **shape)
        if "rsa" in metrics and C >= 3:
            scores["rsa"] = _RankRSA(_pattern_rdm(X.reshape(C, -1), rdm_metric),
                                     _pattern_rdm(Y.reshape(C, -1), rdm_metric), C).scores(perms)
        for i, metric in enumerate(metrics):
            if metric in scores:
                observed[i, j] = scores[metric][0]
                null[i, j] = scores[metric][1:]
    return observed, null, used_conditions, used_samples


def _p_values(observed: np.ndarray, null: np.ndarray, metrics: list[str]) -> np.ndarray:
    """(1 + #{null at least as similar as observed}) / (1 + n_shuffles); NaN without a score or a null."""
    n_shuffles = null.shape[-1]
    p_value = np.full(observed.shape, np.nan)
    for i, metric in enumerate(metrics):
        for j in range(observed.shape[1]):
            if np.isfinite(observed[i, j]) and n_shuffles:
                values = null[i, j]
                beyond = values >= observed[i, j] - _TIE if _SIMILARITY[metric] else values <= observed[i, j] + _TIE
                p_value[i, j] = (1 + beyond.sum()) / (1 + n_shuffles)
    return p_value


def _label(levels, names, i) -> str:
    return ", ".join(f"{name}={levels[name][i]}" for name in names)


def _coordinate_values(values: list) -> np.ndarray:
    array = np.asarray(values)
    return array.astype(str) if array.dtype.kind in "OUS" else array


def _select_epochs(requested, available_model, available_record, source):
    shared = [e for e in available_model if e in available_record]
    if requested is None:
        if not shared:
            raise ValueError(f"the model and the recordings share no epoch: model epochs {available_model}, "
                             f"recording epochs {sorted(available_record)} ({source})")
        return shared
    requested = [requested] if isinstance(requested, str) else [str(e) for e in requested]
    missing = [e for e in requested if e not in shared]
    if missing or not requested:
        raise ValueError(f"epochs={requested}: {missing} not on both sides; model epochs {available_model}, recording "
                         f"epochs {sorted(available_record)} ({source})")
    return requested


def _align_epochs(model_trials, model_values, model_use, model_condition, model_time, model_dt, recording,
                  record_values, record_use, record_condition, record_time, epochs, n_bins, n_conditions, omit,
                  epoch_mapping):
    model_labels = model_trials["epoch"].transpose("trial", "time").values.astype(str)
    model_epochs = epoch_order(model_trials, model_labels, model_use)
    if "epoch" in recording.coords:
        record_labels = np.broadcast_to(
            recording.coords["epoch"].broadcast_like(recording.isel(neuron=0, drop=True))
            .transpose("trial", "time").values.astype(str), record_use.shape)
        source = "the recordings' epoch coordinate"
        windows = None
        if epoch_mapping:
            present, inverse = np.unique(record_labels, return_inverse=True)
            renamed = np.array([str(epoch_mapping.get(name, name)) for name in present.tolist()], dtype=object)
            record_labels = renamed[inverse].reshape(record_labels.shape).astype(str)
            source += " (after mapping)"
    else:
        windows = _epoch_windows(model_time, model_dt, model_labels, model_use, model_epochs)
        record_labels = np.broadcast_to(_labels_from_windows(record_time, windows).astype(str), record_use.shape)
        source = "the model's median epoch times " + ", ".join(f"{e} {a:g}–{b:g} ms" for e, (a, b) in windows.items())
    record_epochs = set(np.unique(record_labels[record_use]).tolist()) - {""}
    if windows is not None and not record_epochs:
        raise ValueError(f"the recordings' time axis ({record_time[0]:g}–{record_time[-1]:g} ms) falls in none of "
                         f"the model's epochs ({source})")
    chosen = _select_epochs(epochs, model_epochs, record_epochs, source)
    blocks = {}
    for epoch in chosen:
        sums, weights = _resample_epoch(model_values, model_use, model_labels, epoch, n_bins, per_feature=False)
        X = _condition_means(sums, weights, model_condition, n_conditions)
        sums, weights = _resample_epoch(record_values, record_use, record_labels, epoch, n_bins, per_feature=omit)
        Y = _condition_means(sums, weights, record_condition, n_conditions)
        blocks[epoch] = _present(X, Y)
    _add_all(blocks)
    details = {"epoch_source": source}
    if windows is not None:
        details["epoch_windows_ms"] = json.dumps(windows)
    return blocks, details


def _align_time(model_trials, model_values, model_use, model_condition, model_time, record_values, record_use,
                record_condition, record_time, epochs, n_conditions, omit):
    inside = (model_time >= record_time[0]) & (model_time <= record_time[-1]) & model_use.any(axis=0)
    steps = np.flatnonzero(inside)
    if not steps.size:
        raise ValueError(f"the recordings' time axis ({record_time[0]:g}–{record_time[-1]:g} ms) does not overlap "
                         f"the model's valid steps ({model_time[model_use.any(axis=0)].min():g}–"
                         f"{model_time[model_use.any(axis=0)].max():g} ms)")
    X = _condition_means(np.where(model_use[:, steps, None], model_values[:, steps], 0.0),
                         model_use[:, steps, None].astype(np.float64), model_condition, n_conditions)
    record_weights = record_use[:, :, None] & (np.isfinite(record_values) if omit else True)
    Y_native = _condition_means(np.where(record_weights, record_values, 0.0), record_weights.astype(np.float64),
                                record_condition, n_conditions)
    Y = (xr.DataArray(Y_native, dims=("condition", "time", "neuron"), coords={"time": record_time})
         .interp(time=model_time[steps]).values)
    complete = np.isfinite(X).all(axis=(0, 2)) & np.isfinite(Y).all(axis=(0, 2))
    if not complete.any():
        raise ValueError("no time step in the overlap of the two time axes has data for every condition on both sides")
    steps, X, Y = steps[complete], X[:, complete], Y[:, complete]
    everywhere = np.ones(n_conditions, dtype=bool)
    if "epoch" not in model_trials.coords:
        if epochs is not None:
            raise ValueError(f"epochs={epochs} needs the model's epoch coordinate, which model_trials lack")
        return {ALL_EPOCHS: (X, Y, everywhere)}, _time_details(model_time, steps)
    epoch_values = model_trials["epoch"].transpose("trial", "time").values.astype(str)
    labels = np.empty(len(steps), dtype=object)
    for k, step in enumerate(steps):
        names, counts = np.unique(epoch_values[model_use[:, step], step], return_counts=True)
        labels[k] = names[counts.argmax()]
    order = [e for e in epoch_order(model_trials, epoch_values, model_use) if e in set(labels)]
    chosen = order if epochs is None else _select_epochs(epochs, order, set(order), "each step's most common "
                                                         "model epoch inside the overlapping time window")
    blocks = {epoch: (X[:, labels == epoch], Y[:, labels == epoch], everywhere) for epoch in chosen}
    if len(chosen) > 1:
        span = np.isin(labels, chosen)
        blocks[ALL_EPOCHS] = (X[:, span], Y[:, span], everywhere)
    return blocks, _time_details(model_time, steps)


def _time_details(model_time, steps) -> dict:
    return {"time_window_ms": json.dumps([float(model_time[steps[0]]), float(model_time[steps[-1]])]),
            "n_time_steps": int(len(steps))}


def _present(X, Y):
    """Keep the conditions with data in every bin on both sides: (X, Y, present mask over all conditions)."""
    present = np.isfinite(X).all(axis=(1, 2)) & np.isfinite(Y).all(axis=(1, 2))
    return X[present], Y[present], present


def _add_all(blocks) -> None:
    if len(blocks) < 2:
        return
    everywhere = np.logical_and.reduce([present for _, _, present in blocks.values()])
    X = np.concatenate([x[everywhere[p]] for x, _, p in blocks.values()], axis=1)
    Y = np.concatenate([y[everywhere[p]] for _, y, p in blocks.values()], axis=1)
    blocks[ALL_EPOCHS] = (X, Y, everywhere)


# --------------------------------------------------------------------------- figure


def comparison_figure(result: xr.Dataset, max_points: int = 300) -> Figure:
    """One row per metric: per epoch the shuffle null (grey dots, black 2.5–97.5 % bar) and the observed score (red)."""
    metrics = [str(m) for m in result["metric"].values]
    epochs = [str(e) for e in result["epoch"].values]
    fig = Figure(figsize=(max(5.0, 1.0 * len(epochs) + 2.5), 2.3 * len(metrics) + 0.6), layout="constrained")
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, epoch in enumerate(epochs):
            null = result["null"].sel(metric=metric, epoch=epoch).values
            null = null[np.isfinite(null)]
            if null.size:
                shown = null if null.size <= max_points else rng.choice(null, max_points, replace=False)
                ax.scatter(i + rng.uniform(-0.18, 0.18, shown.size), shown, s=4, color="0.7", lw=0, zorder=1)
                low, high = np.percentile(null, [2.5, 97.5])
                ax.vlines(i, low, high, color="black", lw=2, zorder=2)
                ax.hlines(null.mean(), i - 0.15, i + 0.15, color="black", lw=1, zorder=2)
            value = float(result["observed"].sel(metric=metric, epoch=epoch))
            p = float(result["p_value"].sel(metric=metric, epoch=epoch))
            if np.isfinite(value):
                ax.scatter([i], [value], marker="D", s=36, color="#d62728", zorder=3)
            text = "n/a" if not np.isfinite(value) else (f"p={p:.2g}" if np.isfinite(p) else "")
            ax.annotate(text, (i, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(epochs)), epochs)
        ax.set_xlim(-0.6, len(epochs) - 0.4)
        ax.set_ylabel(_LABELS.get(metric, metric), fontsize=8)
        ax.tick_params(labelsize=8)
    handles = [Line2D([], [], marker="D", ls="", color="#d62728", label="observed"),
               Line2D([], [], marker="o", ls="", ms=3, color="0.7", label="null (recording conditions shuffled)"),
               Line2D([], [], color="black", lw=2, label="null 2.5–97.5 %")]
    axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=3, frameon=False, fontsize=7)
    names = json.loads(result.attrs.get("conditions", "[]"))
    fig.suptitle(f"model vs recordings · {result.sizes['condition']} conditions ({', '.join(names)}) · "
                 f"{result.attrs.get('n_shuffles', 0)} shuffles · align={result.attrs.get('align', '?')}", fontsize=9)
    return fig


def plot_comparison(result: xr.Dataset, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write :func:`comparison_figure` to ``path`` atomically (temporary file beside it, then rename)."""
    return save_figure(comparison_figure(result), path, dpi=dpi)
