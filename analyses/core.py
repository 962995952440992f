"""Shared pieces of the analyses: regime labels of a trials Dataset and the Dataset validator.

Analyses take a trials Dataset (the ``trials.nc`` layout) and a model's
parameters (:class:`~neuroalrnn.models.ALRNNParams`, re-exported here with
the regime-code encoder and decoder), never a Trainer.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import formats
from ..models import MAX_INTEGER_CODE_BITS, ALRNNParams, bits_to_codes, codes_to_bits

__all__ = [
    "MAX_INTEGER_CODE_BITS",
    "ALRNNParams",
    "bits_to_codes",
    "codes_to_bits",
    "label_positions",
    "regime_labels",
    "validate_trials",
]


def regime_labels(trials: xr.Dataset) -> xr.DataArray:
    """(trial, time) regime label of every step; -1 (or "") on padded steps.

    For P ≤ 62 labels are the int64 codes; for packed codes (P > 62) they are
    the bytes as a hex string (little-endian bit order, as stored).
    """
    validate_trials(trials, variables=("regime", "mask"))
    regime = trials["regime"]
    mask = trials["mask"].values.astype(bool)
    if "regime_byte" in regime.dims:
        packed = regime.transpose("trial", "time", "regime_byte").values
        labels = np.array([[row.tobytes().hex() for row in trial] for trial in packed], dtype=object)
        labels[~mask] = ""
        return xr.DataArray(labels.astype(str), dims=("trial", "time"), coords=regime.coords.to_dataset().coords,
                            name="regime")
    return regime.where(trials["mask"], -1).astype(np.int64)


def label_positions(values: np.ndarray, names) -> np.ndarray:
    """Position of each of ``values`` in ``names`` (int64, the shape of ``values``); every value must be in ``names``."""
    lookup = {name: position for position, name in enumerate(np.asarray(names).tolist())}
    unique, inverse = np.unique(values, return_inverse=True)
    per_unique = np.asarray([lookup[value] for value in unique.tolist()], dtype=np.int64)
    return per_unique[inverse.ravel()].reshape(np.shape(values))


def validate_trials(
    trials: xr.Dataset,
    dims: tuple[str, ...] = ("trial", "time"),
    variables: tuple[str, ...] = (),
    coords: tuple[str, ...] = (),
) -> xr.Dataset:
    """Check that ``trials`` has the named dimensions, variables and coordinates.

    Parts that ``trials.nc``'s declaration names (``neuroalrnn.formats``) are
    checked against it (dims and dtypes); other coordinates (a task's own
    conditions) only for presence. Raises ``ValueError`` naming what is
    missing or wrong, so a Dataset from elsewhere (e.g. with ``dim_0``) fails
    at the boundary rather than deep inside.
    """
    if not isinstance(trials, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset in the trials.nc layout, got {type(trials).__name__}")
    missing_dims = [d for d in dims if d not in trials.dims]
    missing_vars = [v for v in variables if v not in trials.data_vars]
    missing_coords = [c for c in coords if c not in trials.coords]
    problems = []
    if missing_dims:
        problems.append(f"dimensions {missing_dims} (has {list(trials.dims)})")
    if missing_vars:
        problems.append(f"variables {missing_vars}")
    if missing_coords:
        problems.append(f"coordinates {missing_coords}")
    if problems:
        raise ValueError("trials Dataset lacks " + "; ".join(problems))
    declared = formats.declared_parts("trials")
    formats.validate("trials", trials, parts=[name for name in (*variables, *coords) if name in declared])
    return trials

