"""Read neural recordings, NetCDF or NWB, into the one recordings Dataset that ``compare`` (and later ``fit``) take.

:func:`read_recordings` is the one reader: a ``.nwb`` file is read with
``pynwb``, anything else as the NetCDF layout of ``docs/formats.md``
(``recordings.nc``). Both return a Dataset that validates as the
``recordings`` format: a response variable over (trial, time, neuron), a
``mask`` (trial, time), one coordinate per trial condition, ``time`` in ms from
trial start and, when known, ``epoch`` (trial, time) and ``inputs`` (trial, time, input): the stimulus
inputs the subject saw, which ``neuroalrnn fit`` drives a model with (a NetCDF file may carry them as an
``inputs`` variable; it is never taken for the responses).

An NWB file is turned into that layout as follows (times in the file are in
seconds, as NWB prescribes):

* **Trials** are the rows of the ``trials`` table; trial i spans
  [``start_time``_i, ``stop_time``_i). Its samples are bins of ``bin_ms`` ms
  starting at ``start_time``_i; only bins that lie wholly inside the trial
  are kept (the remainder, shorter than one bin, is left out), so trial i has
  ⌊duration_i / bin_ms⌋ valid samples. Trials differ in length: ``mask`` marks
  the valid samples, and ``rates`` is NaN after a trial's end.
* **Rates** are spike counts of each unit of the ``Units`` table per bin
  (a spike at time s falls in bin ⌊(s − start_time_i) / bin⌋), divided by the
  bin width: spikes/s. The ``neuron`` coordinate holds the units' ids.
* **Conditions** are the trials table's other one-dimensional columns of
  numbers, text or booleans (e.g. ``context``, ``coh_motion``).
* **Epochs** come from its columns named ``<name>_time`` (``start_time`` and
  ``stop_time`` excepted): each marks the start of epoch ``<name>``, with a
  trailing ``_on`` or ``_start`` dropped (``stim_on_time`` → ``stim``,
  ``fixation_time`` → ``fixation``); a column ending in ``_off_time``,
  ``_stop_time`` or ``_end_time`` marks no start and is left out. A bin
  belongs to the epoch with the latest start at or before the bin's start; bins
  before every marked start belong to no epoch (``""``). NaN marks an epoch the
  trial does not have.
* **Inputs** are the ``TimeSeries`` in the file's ``stimulus`` group
  (``nwbfile.stimulus``), one input channel each, named after the series, in
  the order the file lists them (the ``input`` coordinate; HDF5 lists a
  group's members by name, so select channels by name, not position):
  ``inputs`` (trial, time, input) float32. Each one-dimensional numeric series is sampled on the trial grid:
  a bin takes the series' latest sample at or before the bin's start (times
  from ``timestamps``, or ``starting_time`` + i / ``rate``; a tolerance of
  1 µs absorbs float error at bin edges), in the series' unit (``data`` ×
  ``conversion`` + ``offset``). A bin before the series' first sample is NaN,
  and so is every bin outside ``mask``. A series of another shape (e.g.
  images) is left out with a warning. A file with no such series has no
  ``inputs``.
* ``mapping`` renames conditions (and maps their values) and epochs to the
  model's names, with the meaning of :func:`neuroalrnn.analyses.compare.compare`'s
  ``mapping`` (``{"coh_motion": "motion_coherence", "epoch": {"stim": "stimulus"}}``).

Bad files are refused with one line each (``ValueError``): no ``Units`` table,
no ``trials`` table, a unit with no spikes (``drop_empty_units=True`` drops it
with a warning instead), spike times outside every trial (how many;
``outside_trials="drop"`` leaves them out, for recordings that run between
trials). Conditions the model lacks are refused by ``compare`` itself, which
names both sides' conditions.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from ..formats import FORMAT_VERSION, validate
from .compare import _apply_mapping, validate_recordings

__all__ = ["DEFAULT_BIN_MS", "NWB_SUFFIXES", "OUTSIDE_TRIALS", "TRIAL_BOOKKEEPING", "read_recordings"]

DEFAULT_BIN_MS = 20.0
"""Bin width of an NWB file's rates when none is given (``neuroalrnn compare`` passes the run's dt instead)."""

NWB_SUFFIXES = (".nwb",)
OUTSIDE_TRIALS = ("raise", "drop")
_EPOCH_END_SUFFIXES = ("_off_time", "_stop_time", "_end_time")
_EPOCH_START_SUFFIXES = ("_on", "_start")
_BOUNDARY_COLUMNS = ("start_time", "stop_time")
TRIAL_BOOKKEEPING = ("trial_id", "start_time")
"""Per-trial coordinates an NWB file's recordings carry that are not task conditions (its trial ids and starts)."""


def read_recordings(
    path: str | os.PathLike,
    *,
    mapping: Mapping | None = None,
    bin_ms: float | None = None,
    variable: str | None = None,
    drop_empty_units: bool = False,
    outside_trials: str = "raise",
) -> xr.Dataset:
    """Read a recordings file (NWB by its ``.nwb`` suffix, else NetCDF) as a ``recordings`` Dataset.

    Args:
        path: the file.
        mapping: file condition name -> model condition name, value map or (name, value map); the key
            ``"epoch"`` maps epoch names (as ``compare``'s ``mapping``). Default: names kept.
        bin_ms: NWB only: bin width in ms (default :data:`DEFAULT_BIN_MS`).
        variable: NetCDF only: the response variable (default: see ``formats.recording_variable``).
        drop_empty_units: NWB only: drop units with no spikes (with a warning) instead of refusing the file.
        outside_trials: NWB only: ``"raise"`` (default) refuses spike times outside every trial, ``"drop"``
            leaves them out.

    Returns:
        The Dataset (module docstring); an NWB file's response variable is ``rates`` (spikes/s) and its
        attributes say how it was binned.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming the file and what is wrong with it (``FormatError`` for the layout).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no recordings file at {path}")
    if path.suffix.lower() in NWB_SUFFIXES:
        if variable is not None:
            raise ValueError(f"variable={variable!r} (--variable) selects a NetCDF file's variable; {path} is NWB, "
                             "whose responses are the binned spikes of its Units table")
        dataset = _read_nwb(path, bin_ms, drop_empty_units, outside_trials)
    else:
        dataset = _read_netcdf(path, variable)
    if mapping:
        dataset = _mapped(dataset, mapping, path)
    return dataset


# --------------------------------------------------------------------------- NetCDF


def _read_netcdf(path: Path, variable: str | None) -> xr.Dataset:
    try:
        # decode_timedelta=False: a time axis in "milliseconds" stays numbers (and xarray does not warn).
        with xr.open_dataset(path, engine="h5netcdf", decode_timedelta=False) as opened:
            dataset = opened.load()
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable NetCDF file ({type(error).__name__}: {error}); "
                         "recordings are NetCDF (.nc) or NWB (.nwb)") from None
    try:
        validate_recordings(dataset, variable)  # its messages carry the specific fixes
        return validate("recordings", dataset, variable=variable, source=path)
    except ValueError as error:
        message = str(error)
        raise ValueError(message if str(path) in message else f"{path}: {message}") from None


# --------------------------------------------------------------------------- NWB


def _read_nwb(path: Path, bin_ms: float | None, drop_empty_units: bool, outside_trials: str) -> xr.Dataset:
    if outside_trials not in OUTSIDE_TRIALS:
        raise ValueError(f"outside_trials must be one of {OUTSIDE_TRIALS}, got {outside_trials!r}")
    bin_ms = DEFAULT_BIN_MS if bin_ms is None else bin_ms
    if isinstance(bin_ms, bool) or not isinstance(bin_ms, int | float | np.number) or not bin_ms > 0:
        raise ValueError(f"bin_ms must be a number of ms > 0, got {bin_ms!r}")
    from pynwb import NWBHDF5IO

    try:
        io = NWBHDF5IO(str(path), mode="r")
        nwbfile = io.read()
    except Exception as error:  # pynwb/hdmf/h5py raise many kinds for a file that is not NWB
        raise ValueError(f"{path} is not a readable NWB file ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    try:
        if nwbfile.units is None:
            raise ValueError(f"{path} has no Units table: the spike times of the recorded neurons must be in "
                             "nwbfile.units (NWBFile.add_unit(spike_times=...))")
        if nwbfile.trials is None or len(nwbfile.trials) == 0:
            raise ValueError(f"{path} has no trials table: the trial start and stop times (and conditions) "
                             "must be in nwbfile.trials (NWBFile.add_trial(start_time=..., stop_time=...))")
        spikes, unit_ids = _spike_trains(nwbfile.units)
        columns = {name: nwbfile.trials[name].data[:] for name in nwbfile.trials.colnames
                   if _is_plain_column(nwbfile.trials[name])}
        trial_ids = np.asarray(nwbfile.trials.id.data[:])
        stimulus = _stimulus_series(nwbfile, path)
        description = str(nwbfile.session_description)
        identifier = str(nwbfile.identifier)
    finally:
        io.close()
    start = np.asarray(columns.pop("start_time"), dtype=np.float64)
    stop = np.asarray(columns.pop("stop_time"), dtype=np.float64)
    if not (np.isfinite(start).all() and np.isfinite(stop).all() and (stop > start).all()):
        raise ValueError(f"{path}: every trial needs finite start_time < stop_time (s)")

    empty = [unit for unit, train in zip(unit_ids, spikes, strict=True) if len(train) == 0]
    if empty and not drop_empty_units:
        raise ValueError(f"{path}: unit {_few(empty)} of the Units table has no spikes at all; remove it or pass "
                         "drop_empty_units=True (--drop-empty-units) to leave it out")
    if empty:
        warnings.warn(f"{path}: dropped unit {_few(empty)} with no spikes", stacklevel=3)
        keep = [i for i, train in enumerate(spikes) if len(train)]
        spikes, unit_ids = [spikes[i] for i in keep], [unit_ids[i] for i in keep]
    if not spikes:
        raise ValueError(f"{path}: the Units table has no units")

    bin_s = float(bin_ms) / 1000.0
    n_bins = np.floor((stop - start) / bin_s + 1e-9).astype(np.int64)
    if (n_bins < 1).any():
        short = np.flatnonzero(n_bins < 1)
        raise ValueError(f"{path}: trial {_few(trial_ids[short].tolist())} is shorter than one bin of {bin_ms:g} ms; "
                         "pass a smaller bin_ms (--bin-ms)")
    counts, outside, total = _bin_spikes(spikes, start, stop, n_bins, bin_s)
    if outside and outside_trials == "raise":
        raise ValueError(
            f"{path}: {outside} of {total} spike times ({outside / total:.1%}) fall outside every trial (trials "
            f"span {start.min():g}–{stop.max():g} s, spikes {min(t.min() for t in spikes):g}–"
            f"{max(t.max() for t in spikes):g} s); check that both are in seconds on one clock, or pass "
            "outside_trials='drop' (--outside-trials drop) if the recording runs between trials"
        )

    n_time = int(n_bins.max())
    mask = np.arange(n_time)[None, :] < n_bins[:, None]
    rates = np.where(mask[:, :, None], counts / bin_s, np.nan).astype(np.float32)
    time = np.arange(n_time) * float(bin_ms)
    coords: dict = {
        "time": ("time", time, {"units": "ms"}),
        "neuron": ("neuron", np.asarray(unit_ids)),
        # On trial, yet no model has them as conditions, so compare leaves them out of the matching.
        "trial_id": ("trial", trial_ids),
        "start_time": ("trial", start, {"units": "s", "description": "trial start in the NWB file's session time"}),
    }
    epoch_columns = {name: columns.pop(name) for name in list(columns) if name.endswith("_time")}
    for name, values in columns.items():
        coords[name] = ("trial", _condition_values(values))
    labels = _epoch_labels(epoch_columns, start, n_time, bin_s)
    if labels is not None:
        coords["epoch"] = (("trial", "time"), labels)
    data_vars = {
        "rates": (("trial", "time", "neuron"), rates, {"units": "spikes/s"}),
        "mask": (("trial", "time"), mask),
    }
    if stimulus:
        coords["input"] = ("input", list(stimulus))
        inputs = np.stack([_sample_series(times, values, start, n_time, bin_s)
                           for times, values, _ in stimulus.values()], axis=-1)
        data_vars["inputs"] = (("trial", "time", "input"), np.where(mask[:, :, None], inputs, np.nan).astype(np.float32),
                               {"description": "the file's stimulus TimeSeries, each at its latest sample at or "
                                               "before the bin's start (NaN: no sample yet, or outside mask)",
                                "units_by_input": json.dumps({name: unit for name, (_, _, unit) in stimulus.items()})})
    attrs = {
        "format_version": FORMAT_VERSION,
        "description": description,
        "source": str(path),
        "source_format": "nwb",
        "nwb_identifier": identifier,
        "bin_ms": float(bin_ms),
        "spikes_outside_trials": int(outside),
        "epoch_columns": json.dumps(sorted(epoch_columns)),
    }
    dataset = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return validate("recordings", dataset, source=path)


def _stimulus_series(nwbfile, path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """The stimulus group's 1-D numeric TimeSeries, in file order: name -> (times in s, values, unit)."""
    from pynwb import TimeSeries

    series: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    skipped = []
    for name, item in nwbfile.stimulus.items():
        if not isinstance(item, TimeSeries):
            skipped.append(name)
            continue
        data = np.asarray(item.data[:])
        if data.ndim != 1 or data.dtype.kind not in "biuf":
            skipped.append(name)
            continue
        values = data.astype(np.float64) * float(item.conversion) + float(getattr(item, "offset", 0.0) or 0.0)
        if item.timestamps is not None:
            times = np.asarray(item.timestamps[:], dtype=np.float64)
        else:
            times = float(item.starting_time) + np.arange(len(values)) / float(item.rate)
        if len(times) != len(values):
            raise ValueError(f"{path}: stimulus series {name!r} has {len(values)} samples but {len(times)} timestamps")
        if not _is_sorted(times):
            raise ValueError(f"{path}: the timestamps of stimulus series {name!r} are not in ascending order, as NWB "
                             "requires; sort the samples by time")
        series[str(name)] = (times, values, str(item.unit))
    if skipped:
        warnings.warn(f"{path}: left stimulus series {_few(skipped)} out of inputs (only one-dimensional numeric "
                      "TimeSeries are input channels)", stacklevel=4)
    return series


def _sample_series(times: np.ndarray, values: np.ndarray, start: np.ndarray, n_time: int, bin_s: float) -> np.ndarray:
    """(trial, time) value of the latest sample at or before each bin's start; NaN before the first sample."""
    bin_start = start[:, None] + np.arange(n_time)[None, :] * bin_s
    latest = np.searchsorted(times, bin_start + 1e-6, side="right") - 1  # 1 µs: float error at bin edges
    return np.where(latest >= 0, values[np.clip(latest, 0, None)] if len(values) else np.nan, np.nan)


def _spike_trains(units) -> tuple[list[np.ndarray], list]:
    """Per unit, its spike times (s, as float64), and the unit ids."""
    if "spike_times" not in units.colnames:
        raise ValueError("the Units table has no spike_times column")
    flat = np.asarray(units["spike_times"].target.data[:], dtype=np.float64)
    ends = np.asarray(units["spike_times"].data[:], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    ids = np.asarray(units.id.data[:]).tolist()
    return [flat[a:b] for a, b in zip(starts, ends, strict=True)], ids


def _is_plain_column(column) -> bool:
    """A one-value-per-trial column of numbers, text or booleans (not ragged, not references)."""
    from hdmf.common import VectorIndex

    if isinstance(column, VectorIndex) or getattr(column, "target", None) is not None:
        return False
    data = column.data
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) != 1:
        return False
    dtype = getattr(data, "dtype", None)
    return dtype is None or np.dtype(dtype).kind in "biufUSO"


def _condition_values(values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "SO":
        array = np.array([v.decode() if isinstance(v, bytes) else v for v in array.tolist()])
        if array.dtype.kind == "O":
            array = array.astype(str)
    return array


def _bin_spikes(spikes, start, stop, n_bins, bin_s) -> tuple[np.ndarray, int, int]:
    """Counts (trial, bin, unit) on each trial's grid, spikes outside every trial, spikes in all."""
    n_trials, n_time = len(start), int(n_bins.max())
    counts = np.zeros((n_trials, n_time, len(spikes)), dtype=np.float64)
    order = np.argsort(start, kind="stable")
    sorted_start, sorted_stop = start[order], stop[order]
    outside = total = 0
    for unit, train in enumerate(spikes):
        total += len(train)
        covered = np.zeros(len(train), dtype=bool)
        # Trials may overlap in principle; each trial counts the spikes inside it.
        first = np.searchsorted(train, sorted_start, side="left") if _is_sorted(train) else None
        for rank, trial in enumerate(order):
            if first is not None:
                lo = first[rank]
                hi = np.searchsorted(train, sorted_stop[rank], side="left")
                inside = np.arange(lo, hi)
            else:
                inside = np.flatnonzero((train >= start[trial]) & (train < stop[trial]))
            covered[inside] = True
            index = np.floor((train[inside] - start[trial]) / bin_s).astype(np.int64)
            index = index[index < n_bins[trial]]  # the partial bin at the trial's end is left out
            counts[trial, :, unit] += np.bincount(index, minlength=n_time)[:n_time]
        outside += int((~covered).sum())
    return counts, outside, total


def _is_sorted(values: np.ndarray) -> bool:
    return len(values) < 2 or bool((np.diff(values) >= 0).all())


def _epoch_name(column: str) -> str | None:
    """The epoch a ``<name>_time`` column starts (module docstring), or None for one that marks no start."""
    if column in _BOUNDARY_COLUMNS or column.endswith(_EPOCH_END_SUFFIXES):
        return None
    name = column.removesuffix("_time")
    for suffix in _EPOCH_START_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name.removesuffix(suffix)
    return name


def _epoch_labels(columns: Mapping[str, np.ndarray], start, n_time: int, bin_s: float) -> np.ndarray | None:
    """(trial, time) epoch names from the epoch start columns; None when the file marks no epoch."""
    starts = {}
    for column, values in columns.items():
        name = _epoch_name(column)
        values = np.asarray(values)
        if name is not None and values.dtype.kind in "iuf":
            starts[name] = np.asarray(values, dtype=np.float64) - start  # s from trial start, NaN: not in the trial
    if not starts:
        return None
    names = list(starts)
    onsets = np.stack([starts[name] for name in names], axis=1)  # (trial, epoch)
    bin_start = np.arange(n_time) * bin_s
    # Latest onset at or before each bin's start (a tolerance of 1 µs absorbs float error at bin edges).
    began = onsets[:, None, :] <= bin_start[None, :, None] + 1e-6  # (trial, time, epoch); NaN compares False
    latest = np.where(began, onsets[:, None, :], -np.inf)
    which = latest.argmax(axis=2)
    labels = np.array(names, dtype=object)[which]
    labels[~began.any(axis=2)] = ""
    return labels.astype(str)


def _few(values, n: int = 5) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


# --------------------------------------------------------------------------- mapping


def _mapped(dataset: xr.Dataset, mapping: Mapping, path: Path) -> xr.Dataset:
    """``dataset`` with its conditions and epochs renamed / their values mapped to the model's (module docstring)."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a dict, got {type(mapping).__name__}")
    epoch_mapping = mapping.get("epoch")
    if epoch_mapping is not None and not isinstance(epoch_mapping, Mapping):
        raise TypeError(f"mapping['epoch'] must be a dict {{file epoch: model epoch}}, got {epoch_mapping!r}")
    conditions = {str(name): coord.values for name, coord in dataset.coords.items()
                  if coord.dims == ("trial",) and name != "trial"}
    try:
        renamed = _apply_mapping(conditions, {k: v for k, v in mapping.items() if k != "epoch"})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    dataset = dataset.drop_vars(list(conditions))
    dataset = dataset.assign_coords({name: ("trial", _condition_values(values)) for name, values in renamed.items()})
    if epoch_mapping:
        if "epoch" not in dataset.coords:
            raise ValueError(f"{path}: mapping maps epochs {sorted(epoch_mapping)}, but the file marks no epochs")
        epoch = dataset.coords["epoch"]
        present = set(np.unique(epoch.values).tolist()) - {""}
        unknown = sorted(set(epoch_mapping) - present)
        if unknown:
            raise ValueError(f"{path}: mapping maps epochs {unknown} that the file does not have; its epochs are "
                             f"{sorted(present)}")
        relabelled = np.vectorize(lambda name: str(epoch_mapping.get(name, name)), otypes=[object])(epoch.values)
        dataset = dataset.assign_coords(epoch=(epoch.dims, relabelled.astype(str)))
    dataset.attrs["mapping"] = json.dumps({str(k): v for k, v in mapping.items()}, default=str)
    return dataset
