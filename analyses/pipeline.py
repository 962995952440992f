"""One call for the whole regime analysis of a trials Dataset and an AL-RNN's parameters.

:func:`analyze` returns one Dataset (written as ``analysis.nc``) whose
variables come from the analysis modules, renamed so they can sit together:

* regime statistics (:func:`regime_statistics`): ``occupancy``, ``regime_count``,
  ``n_visits``, ``mean_dwell``, ``mean_dwell_ms``, ``median_dwell``,
  ``transition_count``, ``transition_probability`` (regime_from, regime_to),
  ``switch_fraction``, ``n_regimes``, ``n_steps``;
* regime–epoch map (:func:`regime_epoch_table`): ``epoch_count`` (task, regime,
  epoch), ``nmi`` (task), ``epoch_specificity``, ``main_epoch``,
  ``epoch_specific``, ``n_epochs_spanned`` (task, regime), and with a
  condition the same per value of the condition (dim ``condition_value``),
  prefixed ``by_condition_``; ``condition_count`` (condition_value, regime):
  steps per condition value and regime;
* per-regime dynamics (:func:`regime_dynamics`) for the ``max_regimes`` most
  occupied regimes, under each epoch's (and condition value's) mean input,
  labelled ``input_condition`` ("stimulus|motion"): ``W_regime``,
  ``eigenvalue_real``/``eigenvalue_imag`` (regime, mode), ``spectral_radius``,
  ``stable``, ``slow_mode``, ``fixed_point`` (regime, input_condition, unit),
  ``fixed_point_real``, ``gain`` (regime, output, input), ``operator_norm``,
  and ``typical_input`` (input_condition, input);
* primitives (:mod:`primitives`): ``integration_effect`` (regime, input),
  ``integration_eigenvalue``, ``integrates``; ``gating_gain``
  (condition_value, input), ``gating_index`` (condition_value,
  condition_value_other, input), ``gated`` (input);
  ``peak_norm``, ``peak_step``, ``amplifies`` (regime); ``boundary_fraction``,
  ``boundary_transient`` (regime).

Attributes record the evidence epoch (where the inputs vary most), the
horizon T (its median length in steps), the inputs that vary in it, and the
condition used.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import xarray as xr

from ..formats import FORMAT_VERSION
from ..models import ALRNNParams, bits_to_codes
from .core import regime_labels, validate_trials
from .dynamics import _one_library_thread, find_cycles, regime_dynamics
from .primitives import boundary_transients, gating, integration_modes, transient_amplification
from .regimes import MAX_TRANSITION_REGIMES, epoch_order, regime_epoch_table, regime_statistics

__all__ = ["analyze", "default_condition", "typical_inputs"]

_CONDITION_CANDIDATES = ("context", "rule")


def default_condition(trials: xr.Dataset) -> str | None:
    """A categorical per-trial condition worth splitting by (``context`` if present)."""
    for name in _CONDITION_CANDIDATES:
        if name in trials.coords and trials[name].dims == ("trial",):
            return name
    return None


def typical_inputs(trials: xr.Dataset, condition: str | None = None) -> xr.DataArray:
    """Mean input s̄ over the valid steps of each epoch (and condition value): (input_condition, input)."""
    validate_trials(trials, variables=("inputs", "mask"), coords=("epoch",))
    inputs = trials["inputs"].values
    valid = trials["mask"].values.astype(bool)
    epochs = trials["epoch"].values
    groups: list[tuple[str, np.ndarray]] = []
    for epoch in _epoch_order(trials):
        in_epoch = valid & (epochs == epoch)
        if condition is None:
            groups.append((epoch, in_epoch))
            continue
        for value in np.unique(trials[condition].values):
            steps = in_epoch & (trials[condition].values == value)[:, None]
            if steps.any():
                groups.append((f"{epoch}|{value}", steps))
    means = np.stack([inputs[steps].mean(axis=0) for _, steps in groups])
    return xr.DataArray(means, dims=("input_condition", "input"),
                        coords={"input_condition": [label for label, _ in groups], "input": trials["input"].values},
                        name="typical_input")


def analyze(
    trials: xr.Dataset,
    params: ALRNNParams,
    *,
    condition: str | None = "auto",
    max_regimes: int | None = 32,
    cycle_periods: tuple[int, ...] = (2,),
    max_cycle_sequences: int = 4096,
    step=None,
) -> xr.Dataset:
    """Regime statistics, regime–epoch map, per-regime dynamics and primitives in one Dataset.

    ``condition="auto"`` splits by ``context`` when the trials have it;
    ``None`` disables the split. Dynamics are computed for the ``max_regimes``
    most occupied regimes (``None``: every visited regime; the fraction of
    steps they cover is the attribute ``dynamics_coverage``). Transition
    counts and probabilities are left out above ``MAX_TRANSITION_REGIMES``
    visited regimes. With several tasks, the regime × epoch table gains a task
    ``"all tasks"``: every task's steps counted under their canonical epochs.

    k-cycles for each k in ``cycle_periods`` are searched exhaustively under
    each input condition when the (2^P)^k regime sequences number at most
    ``max_cycle_sequences`` (``find_cycles`` offers the SCYFI heuristic beyond,
    too slow to run by default at large P); each candidate is confirmed by
    iterating ``step`` (z, s) -> next z (default: the NumPy map of ``params``;
    pass the model's own step to confirm with the model itself).

    Linear algebra runs on one BLAS/LAPACK thread per core (threads restored
    on return): the matrices are small, and threaded BLAS loses badly when
    another job shares the cores. The gating test runs on a thread of its own
    while the per-regime dynamics are computed; the results do not depend on
    it.
    """
    validate_trials(trials, variables=("inputs", "latents", "regime", "mask"), coords=("epoch",))
    with _one_library_thread():
        return _analyze(trials, params, condition, max_regimes, cycle_periods, max_cycle_sequences, step)


def _analyze(
    trials: xr.Dataset,
    params: ALRNNParams,
    condition: str | None,
    max_regimes: int,
    cycle_periods: tuple[int, ...],
    max_cycle_sequences: int,
    step,
) -> xr.Dataset:
    if condition == "auto":
        condition = default_condition(trials)
    elif condition is not None and condition not in trials.coords:
        raise ValueError(f"no trial condition {condition!r}; conditions: {_conditions(trials)}")
    labels = regime_labels(trials).values[trials["mask"].values.astype(bool)]
    # Beyond MAX_TRANSITION_REGIMES visited regimes (e.g. P = M = 64) a dense transition matrix is too big.
    stats = regime_statistics(trials, transitions=np.unique(labels).size <= MAX_TRANSITION_REGIMES)
    order = stats["regime"].values
    result = stats.rename({"count": "regime_count"})

    table = regime_epoch_table(trials)
    pooled = _pooled_canonical_table(trials)
    if pooled is not None:
        table = xr.concat([table, pooled], dim="task", join="outer", data_vars="all")
    result = result.merge(_renamed_table(table, ""), join="outer")
    if condition is not None:
        by_condition = regime_epoch_table(trials, condition=condition).rename({condition: "condition_value"})
        result = result.merge(_renamed_table(by_condition, "by_condition_"), join="outer")
        result["condition_count"] = _condition_counts(trials, condition, order)

    evidence_epoch, horizon, varying = _evidence_epoch(trials)
    integer_codes = np.issubdtype(np.asarray(order).dtype, np.integer)
    attrs = {
        "condition": condition or "",
        "evidence_epoch": evidence_epoch,
        "horizon": horizon,
        "varying_inputs": json.dumps(varying),
        "n_trials": int(trials.sizes["trial"]),
    }
    if integer_codes:
        top = order[:max_regimes]
        attrs["dynamics_coverage"] = float(stats["occupancy"].sel(regime=top).sum())
        inputs = typical_inputs(trials, condition)
        with ThreadPoolExecutor(1) as background:
            # Gating needs no per-regime dynamics, so it fills the gaps the dynamics leave on the cores.
            gates = (background.submit(gating, params, trials, condition, epoch=evidence_epoch, horizon=horizon)
                     if condition is not None else None)
            dynamics = regime_dynamics(params, top, inputs.rename(input_condition="condition"))
            gates = gates.result() if gates is not None else None
        dynamics = dynamics.rename({"condition": "input_condition"})
        result = result.merge(dynamics.drop_vars([v for v in ("bits",) if v in dynamics]), join="outer")
        result["typical_input"] = inputs
        cycles, skipped = _cycles(params, inputs, cycle_periods, max_cycle_sequences, step)
        attrs["cycle_periods_searched"] = json.dumps([k for k in cycle_periods if k not in skipped])
        attrs["cycle_periods_skipped"] = json.dumps(skipped)
        if cycles is not None:
            result = result.merge(cycles)

        known = _KnownRegimeMatrices.of(params, dynamics)
        eigenvalues = dynamics["eigenvalue_real"].values + 1j * dynamics["eigenvalue_imag"].values
        integration = integration_modes(known, dynamics["regime"].values, horizon=horizon, eigenvalues=eigenvalues)
        result["integration_effect"] = integration["effect"]
        result["integration_eigenvalue"] = integration["eigenvalue"]
        result["integrates"] = integration["integrates"]
        amplification = transient_amplification(known, top, peak_regimes=8, dynamics=dynamics)
        for name in ("peak_norm", "peak_step", "amplifies"):
            result[name] = amplification[name]
        if gates is not None:
            result["gating_gain"] = gates["gain"]
            result["gating_index"] = gates["index"]
            result["gated"] = gates["gated"]
    boundary = boundary_transients(trials)
    result["boundary_fraction"] = boundary["boundary_fraction"]
    result["boundary_transient"] = boundary["transient"]
    result = result.reindex(regime=order)  # canonical regime order everywhere
    if "output" in result.dims and "output" in trials.coords and trials.sizes["output"] == result.sizes["output"]:
        result = result.assign_coords(output=trials["output"].values)  # the readout's names (actions, neurons)
    result = _restore_flags(result)
    result.attrs.update({**trials.attrs, **attrs, "format_version": FORMAT_VERSION})
    return result


@dataclass(frozen=True)
class _KnownRegimeMatrices(ALRNNParams):
    """The same parameters, handing out the stack of W_Ω that :func:`regime_dynamics` already built.

    ``integration_modes`` and ``transient_amplification`` would rebuild W_Ω
    for all the regimes they are given (M² floats per regime). Asked for
    exactly the regimes of ``codes`` (sorted by code, as both ask),
    :meth:`regime_matrix` returns that stack read-only; any other request is
    built afresh.
    """

    codes: np.ndarray | None = None
    matrices: np.ndarray | None = None

    @classmethod
    def of(cls, params: ALRNNParams, dynamics: xr.Dataset) -> _KnownRegimeMatrices:
        matrices = dynamics["W_regime"].transpose("regime", "unit", "unit_from").values.view()
        matrices.flags.writeable = False
        return cls(**{field.name: getattr(params, field.name) for field in fields(ALRNNParams)},
                   codes=dynamics["regime"].values, matrices=matrices)

    def regime_matrix(self, bits: np.ndarray) -> np.ndarray:
        bits = np.asarray(bits)
        if bits.shape == (len(self.codes), self.n_nonlinear) and np.array_equal(bits_to_codes(bits), self.codes):
            return self.matrices
        return super().regime_matrix(bits)


_FLAGS = ("stable", "fixed_point_real", "fixed_point_stable", "integrates", "amplifies", "epoch_specific",
          "by_condition_epoch_specific", "boundary_transient", "gated")


def _restore_flags(result: xr.Dataset) -> xr.Dataset:
    """Boolean variables that outer joins turned into objects with NaN: missing means False."""
    for name in _FLAGS:
        if name in result and result[name].dtype != bool:
            result[name] = result[name].fillna(False).astype(bool)
    return result


def _cycles(params: ALRNNParams, inputs: xr.DataArray, periods, max_sequences: int, step):
    """All k-cycles under every input condition, stacked on ``cycle`` (phases padded with NaN / -1)."""
    pieces, skipped = [], []
    longest = max(periods, default=0)
    for period in periods:
        if (2 ** params.n_nonlinear) ** period > max_sequences:
            skipped.append(period)
            continue
        for label, s in zip(inputs["input_condition"].values, inputs.values, strict=True):
            found = find_cycles(params, s, period, method="exhaustive", step=step)
            n = found.sizes["cycle"]
            if not n:
                continue
            found = found.reindex(phase=np.arange(longest))
            pieces.append(xr.Dataset(
                {
                    "cycle_points": found["points"],
                    "cycle_regimes": found["regimes"].fillna(-1).astype(np.int64),
                    "cycle_stable": found["stable"].astype(bool),
                    "cycle_spectral_radius": found["spectral_radius"],
                },
                coords={"cycle_condition": ("cycle", [str(label)] * n), "cycle_period": ("cycle", [period] * n)},
            ).drop_vars([name for name in ("cycle", "phase") if name in found.coords]))
    if not pieces:
        return None, skipped
    return xr.concat(pieces, dim="cycle"), skipped


POOLED_TASK = "all tasks"


def _pooled_canonical_table(trials: xr.Dataset) -> xr.Dataset | None:
    """For several tasks: the regime × canonical-epoch table of all tasks together, as task ``POOLED_TASK``.

    Tasks name their epochs differently (``sample``, ``stim1`` ...); pooled over
    tasks, each step counts under its canonical epoch (``epoch_canonical``).
    """
    if "task" not in trials.coords or "epoch_canonical" not in trials.variables:
        return None
    if np.unique(trials["task"].values).size < 2:
        return None
    pooled = trials.assign_coords(
        epoch=trials["epoch_canonical"], task=("trial", np.full(trials.sizes["trial"], POOLED_TASK))
    )
    return regime_epoch_table(pooled)


def _renamed_table(table: xr.Dataset, prefix: str) -> xr.Dataset:
    names = {"count": "epoch_count", "n_steps": "epoch_table_steps", "specific": "epoch_specific"}
    renamed = table.rename({k: v for k, v in names.items() if k in table})
    return renamed.rename({name: prefix + name for name in renamed.data_vars}) if prefix else renamed


def _condition_counts(trials: xr.Dataset, condition: str, order: np.ndarray) -> xr.DataArray:
    labels = regime_labels(trials).values
    valid = trials["mask"].values.astype(bool)
    values = np.unique(trials[condition].values)
    counts = np.zeros((len(values), len(order)), dtype=np.int64)
    index = {code: i for i, code in enumerate(order)}
    for a, value in enumerate(values):
        visited, n = np.unique(labels[valid & (trials[condition].values == value)[:, None]], return_counts=True)
        for code, count in zip(visited, n, strict=True):
            counts[a, index[code]] = count
    value_coord = values.astype(str) if values.dtype.kind in "OU" else values
    return xr.DataArray(counts, dims=("condition_value", "regime"),
                        coords={"condition_value": value_coord, "regime": order})


def _evidence_epoch(trials: xr.Dataset) -> tuple[str, int, list[str]]:
    """The epoch whose inputs vary most in time within trials (e.g. noisy evidence), its median length
    in steps, and the inputs that vary in it (context cues, constant within a trial, do not).

    Noiseless inputs (e.g. rebuilt from a recording's conditions) vary in no epoch within trials; then
    the epoch is the one whose per-trial mean inputs vary most across trials, counting only inputs that
    vary across trials first in that epoch and no longer in the next (a stimulus, not a cue that stays on)."""
    inputs = trials["inputs"].values
    valid = trials["mask"].values.astype(bool)
    epochs = trials["epoch"].values
    names = trials["input"].values
    best, best_variance, best_varying = "", -1.0, []
    across: dict[str, np.ndarray] = {}
    for epoch in _epoch_order(trials):
        steps = (valid & (epochs == epoch))[..., None]
        n = steps.sum(axis=1)
        mean = np.where(steps, inputs, 0).sum(axis=1) / np.maximum(n, 1)
        within = (np.where(steps, (inputs - mean[:, None, :]) ** 2, 0).sum(axis=1) / np.maximum(n, 1))
        variance = within[n[:, 0] > 0].mean(axis=0)  # within-trial variance over time, averaged over trials
        across[epoch] = mean[n[:, 0] > 0].var(axis=0)
        if variance.sum() > best_variance:
            best, best_variance = epoch, float(variance.sum())
            best_varying = [str(name) for name, v in zip(names, variance, strict=True) if v > 1e-8]
    if not best_varying and across:
        order = list(across)
        varies = {epoch: across[epoch] > 1e-8 for epoch in order}
        transient = {}
        for i, epoch in enumerate(order):
            before = np.any([varies[e] for e in order[:i]], axis=0) if i else np.zeros_like(varies[epoch])
            after = varies[order[i + 1]] if i + 1 < len(order) else np.ones_like(varies[epoch])
            transient[epoch] = np.where(varies[epoch] & ~before & ~after, across[epoch], 0.0)
        best = max(order, key=lambda epoch: float(transient[epoch].sum()))
        if transient[best].sum() > 0:
            best_varying = [str(name) for name, v in zip(names, transient[best], strict=True) if v > 1e-8]
    lengths = (valid & (epochs == best)).sum(axis=1)
    horizon = int(max(1, np.median(lengths[lengths > 0])))
    return best, horizon, best_varying


def _epoch_order(trials: xr.Dataset) -> list[str]:
    epochs = trials["epoch"].values
    valid = trials["mask"].values.astype(bool) & (epochs != "")
    return epoch_order(trials, epochs, valid)


def _conditions(trials: xr.Dataset) -> list[str]:
    return [name for name, coord in trials.coords.items() if coord.dims == ("trial",)]
