"""The package's data contract: every file neuroalrnn writes or reads, declared once, with one validator.

(Long by design: one declaration per file kind, the validator and the Markdown
renderer live together so that a file's schema is written once.)

Each file kind (``trials``, ``analysis``, ``sharing``, ``comparison``, ``alignment``,
``results``, ``recordings``, ``config``, ``checkpoint``, ``evaluation``,
``metrics``, ``result``) is a :class:`FileFormat` in :data:`FORMATS`: its
dimensions, coordinates, variables (dims and dtype), attributes or keys, and
the names it had in format version 0. :func:`validate` checks an in-memory
object against its declaration and returns it in the current naming;
:func:`read` loads a NetCDF or JSON file and validates it. ``docs/formats.md``
is generated from the declarations (:func:`render_markdown`, or
``python -m neuroalrnn.formats``), so the two cannot drift apart.

Versions: a file records ``format_version`` (:data:`FORMAT_VERSION`; a
NetCDF attribute, a top-level JSON key or a checkpoint entry); a file without
one is version 0 and is read through the declared renames. A file of a newer
version than this package knows is refused. ``metrics.csv`` has no room for a
version and follows its run's ``config.json``.

This module holds data more than logic, one declaration per file, which is
why it is longer than most: splitting it would scatter the contract.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "MILLISECOND_UNITS",
    "PROVENANCE_ATTRIBUTES",
    "Field",
    "FileFormat",
    "FormatError",
    "Layout",
    "StaleTrialsError",
    "Variable",
    "check_trials_match",
    "declared_parts",
    "description",
    "format_version",
    "read",
    "recording_variable",
    "render_markdown",
    "validate",
]

FORMAT_VERSION = 1
"""Format version written by this neuroalrnn; a file without ``format_version`` is version 0."""

MILLISECOND_UNITS = ("ms", "msec", "msecs", "millisecond", "milliseconds")
"""Accepted spellings of ``time.attrs["units"]``; the package writes ``"ms"``."""

PROVENANCE_ATTRIBUTES = ("n_trials", "seed", "simulated_with_noise", "checkpoint_step")
"""Attributes of ``trials.nc`` saying how its trials were simulated; results derived from trials copy them."""

ANY_LEADING = "..."
"""In a layout's dims: any leading dims, the same for every variable of the file (a sweep's grid axes)."""

# analysis.nc's dims over the values of its condition (version 0: ``value`` and ``value_other``).
ANALYSIS_CONDITION_DIM = "condition_value"
ANALYSIS_CONDITION_OTHER_DIM = "condition_value_other"


class FormatError(ValueError):
    """A file does not follow its declared format (missing or mistyped part, or a newer format version)."""


class StaleTrialsError(ValueError):
    """A stored ``trials.nc`` was simulated under other settings than the ones asked for."""


# ---------------------------------------------------------------------------------------------
# Declarations: the vocabulary

DTYPES: dict[str, tuple[str, str]] = {
    "float": ("f", "floating point"),
    "integer": ("iu", "integer"),
    "bool": ("b", "boolean"),
    "string": ("USO", "text"),
    "number": ("iuf", "integer or floating point"),
    "label": ("iufUSO", "text or number"),
    "uint8": ("u", "unsigned 8-bit integer"),
    "time": ("iufm", "numbers in ms, or timedelta"),
}
"""NetCDF dtype names used in the declarations: (NumPy dtype kinds, meaning)."""


def _is_integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    return _is_integer(value) or (isinstance(value, float | np.floating))


def _is_json_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except json.JSONDecodeError:
        return False
    return True


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and type(value).__module__.startswith("torch")


FIELD_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda value: isinstance(value, str), "text"),
    "integer": (_is_integer, "an integer"),
    "number": (_is_number, "a number"),
    "flag": (lambda value: _is_integer(value) and int(value) in (0, 1), "0 or 1"),
    "boolean": (lambda value: isinstance(value, bool | np.bool_), "true or false"),
    "json": (_is_json_text, "JSON text"),
    "mapping": (lambda value: isinstance(value, Mapping), "a mapping"),
    "tensor": (_is_tensor, "a torch tensor"),
    "byte tensor": (lambda value: _is_tensor(value) and str(value.dtype) == "torch.uint8", "a torch uint8 tensor"),
    "tensor mapping": (lambda value: isinstance(value, Mapping) and all(_is_tensor(item) for item in value.values()),
                       "a mapping of names to torch tensors"),
}
"""Kinds of attributes, JSON keys, checkpoint entries and CSV columns: (test, meaning)."""


@dataclass(frozen=True)
class Layout:
    """One accepted shape of a variable: its dims in order and its dtype name (a key of :data:`DTYPES`)."""

    dims: tuple[str, ...]
    dtype: str

    def __str__(self) -> str:
        return f"({', '.join(self.dims)}) {self.dtype}"


@dataclass(frozen=True)
class Variable:
    """A NetCDF variable or coordinate.

    ``layouts``: the accepted (dims, dtype) pairs, the usual one first.
    ``required``: must be present (from format version ``since`` on); an
    optional one's ``when`` says in words when it is present. ``units``: accepted values
    of its ``units`` attribute, the first one written (not checked for a
    timedelta). ``any_order``: dims may come in any order (files users write).
    """

    name: str
    layouts: tuple[Layout, ...]
    description: str
    required: bool = True
    since: int = 0
    when: str = ""
    units: tuple[str, ...] = ()
    any_order: bool = False


@dataclass(frozen=True)
class Field:
    """A NetCDF attribute, a JSON key, a checkpoint entry or a CSV column.

    ``kind`` is a key of :data:`FIELD_KINDS`; ``nullable``: JSON null allowed;
    ``required`` from format version ``since`` on, and with ``required_when``
    = (key, value) only when that key holds that value; ``choices``: the
    allowed values. A dotted name (``config.task``) is a key inside a mapping.
    """

    name: str
    kind: str
    description: str
    required: bool = True
    since: int = 0
    nullable: bool = False
    required_when: tuple[str, Any] | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class FileFormat:
    """The declaration of one file kind.

    ``storage``: ``netcdf`` (an ``xarray.Dataset``), ``json`` (a mapping),
    ``torch`` (a mapping saved with ``torch.save``) or ``csv`` (a header of
    column names). ``fields`` are the attributes / keys / entries / columns.
    ``renamed_in_version_0``: old name -> current name (dims, variables and
    coordinates of NetCDF files; dotted keys of JSON files), applied when a
    version-0 file is read. ``response_variable``: one data variable whose
    name the user chooses (recordings), declared as ``variables[0]``.
    ``open``: other variables, coordinates and attributes may be present.
    """

    kind: str
    filename: str
    storage: str
    intro: str
    written_by: str
    read_by: str
    dims: Mapping[str, str] = field(default_factory=dict)
    coordinates: tuple[Variable, ...] = ()
    variables: tuple[Variable, ...] = ()
    fields: tuple[Field, ...] = ()
    renamed_in_version_0: Mapping[str, str] = field(default_factory=dict)
    response_variable: bool = False
    versioned: bool = True
    example: str = ""


def _var(name: str, dims: str, dtype: str, description: str, **options: Any) -> Variable:
    """A Variable with one layout; ``dims`` space-separated ("trial time unit"; "" for a scalar)."""
    return Variable(name, (Layout(tuple(dims.split()), dtype),), description, **options)


def _vars(dims: str, dtype: str, descriptions: Mapping[str, str], **options: Any) -> tuple[Variable, ...]:
    """Several Variables sharing dims and dtype: ``descriptions`` maps each name to its meaning."""
    return tuple(_var(name, dims, dtype, description, **options) for name, description in descriptions.items())


# ---------------------------------------------------------------------------------------------
# Declarations: the files

_TRIAL_CONDITIONS = (
    "Every other coordinate on `trial` is a per-trial condition of the task (e.g. `context`, "
    "`coh_motion`, `ground_truth`)."
)

TRIALS = FileFormat(
    kind="trials",
    filename="trials.nc",
    storage="netcdf",
    intro=(
        "A model run on fresh trials of its task: inputs, targets, the model's outputs and latent states, "
        "and the regime of every step. One trial is one episode of the task, padded to the longest; `mask` "
        "marks the valid steps. Regime codes: bit i of the code is [z_{M-P+i} > 0] for the i-th nonlinear "
        "unit (code = sum_i bit_i 2^i); for P > 62 the bits are packed little-endian into `regime_byte` "
        "bytes. " + _TRIAL_CONDITIONS + " Provenance attributes record how the trials were simulated, so "
        "a reader can tell whether stored trials are the ones it needs (see `check_trials_match`)."
    ),
    written_by="neuroalrnn.evaluation.simulate.simulate / trials_dataset + write_trials (`neuroalrnn evaluate`, sweeps)",
    read_by="neuroalrnn.evaluation.simulate.read_trials (`neuroalrnn analyze`, `compare`)",
    dims={
        "trial": "one trial (episode)",
        "time": "time step from the start of each trial",
        "input": "input channel s_t",
        "unit": "model unit (latent dimension) z_t; the last P are the nonlinear ones",
        "output": "readout channel y_t",
        "regime_byte": "byte of a packed regime code (only when P > 62)",
    },
    coordinates=(
        _var("time", "time", "float", "start of each step, ms from trial start", units=("ms",)),
        _var("input", "input", "string", "input channel names"),
        _var("output", "output", "string", "output channel names"),
        _var("unit", "unit", "integer", "unit index 0..M-1"),
        _var("task", "trial", "string", "the trial's task name"),
        _var("epoch", "trial time", "string", "the task's own epoch name of each step (\"\" on padded steps)"),
        _var("epoch_canonical", "trial time", "string",
             "canonical epoch of each step: fixation, context, stimulus, delay, decision or other "
             "(\"\" on padded steps)"),
    ),
    variables=(
        _var("inputs", "trial time input", "float", "inputs s_t"),
        Variable("targets", (Layout(("trial", "time"), "integer"), Layout(("trial", "time", "output"), "float")),
                 "class labels (trial, time) for discrete tasks, or regression targets (trial, time, output)"),
        _var("outputs", "trial time output", "float", "readout y_t = B z_t + b (logits for discrete tasks)"),
        _var("latents", "trial time unit", "float", "latent states z_t"),
        _var("mask", "trial time", "bool", "valid (not padded) steps"),
        Variable("regime", (Layout(("trial", "time"), "integer"), Layout(("trial", "time", "regime_byte"), "uint8")),
                 "regime code of each step (packed bytes when P > 62)", required=False,
                 when="the model is an AL-RNN (not tanh, GRU or LSTM)"),
    ),
    fields=(
        Field("model", "string", "model kind (alrnn, linear, plrnn, tanh, gru, lstm)"),
        Field("n_units", "integer", "M, the number of units"),
        Field("n_nonlinear", "integer", "P, the number of nonlinear (ReLU) units"),
        Field("slope", "number", "α of the nonlinear units (φ(x) = α x for x ≤ 0; 0 = ReLU), for an AL-RNN; "
              "older files lack it", required=False),
        Field("dt", "number", "step length in ms"),
        Field("seed", "integer", "seed the trials were drawn with"),
        Field("epoch_names", "json", "JSON list of the tasks' epoch names"),
        Field("task_names", "json", "JSON list of the task names"),
        Field("target_kind", "string", "class or regression", choices=("class", "regression")),
        Field("scoring", "string", "how a trial is scored (e.g. choice)"),
        Field("tolerance", "number", "tolerance of regression scoring (0 for classes)"),
        Field("neuroalrnn_version", "string", "version of the package that simulated the trials"),
        Field("versions", "json", "JSON mapping of Python, platform and package versions"),
        Field("config", "json", "JSON of the run's TrainConfig", required=False),
        Field("evaluation", "json", "JSON of the evaluation summary (the evaluation.json layout), when the "
              "trials are a run's evaluation", required=False),
        Field("n_trials", "integer", "trials simulated", since=1),
        Field("simulated_with_noise", "flag", "1 when simulated with the model's recurrent noise on "
              "(`--noise`), whatever its σ; 0 for the noiseless model", since=1),
        Field("checkpoint_step", "integer", "training step of the checkpoint the model came from "
              "(-1: unknown, e.g. a model built in Python)", since=1),
    ),
)

_CONDITION_DIM_TEXT = "value of the analysis' condition (the `condition` attribute, e.g. context)"

ANALYSIS = FileFormat(
    kind="analysis",
    filename="analysis.nc",
    storage="netcdf",
    intro=(
        "The regime analysis of a run's trials (`neuroalrnn analyze`): regime statistics, the regime-epoch "
        "map, per-regime linear dynamics and the computational primitives. Regimes are ordered by occupancy "
        "(descending, ties by code). Regime labels are integer codes, or hex strings of the packed bytes when "
        "P > 62 (then no dynamics are computed). The trials' attributes are copied, so the file keeps their "
        "provenance; the definitions of every quantity are in the docstrings of `neuroalrnn.analyses`."
    ),
    written_by="neuroalrnn.analyses.pipeline.analyze, written by neuroalrnn.workflows.run_analysis.analyze_run",
    read_by="neuroalrnn.analyses.report, figures; users",
    dims={
        "regime": "a visited regime (label: code)",
        "regime_from": "regime at step t-1 of a transition",
        "regime_to": "regime at step t of a transition",
        "task": "task (with several tasks also \"all tasks\": every task's steps under canonical epochs)",
        "epoch": "epoch name",
        ANALYSIS_CONDITION_DIM: _CONDITION_DIM_TEXT,
        ANALYSIS_CONDITION_OTHER_DIM: "the same values, for pairs",
        "unit": "unit (row of W_regime)",
        "unit_from": "unit (column of W_regime)",
        "mode": "eigenmode of a regime's matrix",
        "input_condition": "epoch (and condition value) whose mean input drives the fixed points, "
                           "labelled \"epoch\" or \"epoch|value\"",
        "input": "input channel",
        "output": "readout channel",
        "bit": "nonlinear unit of a regime's bit pattern",
        "cycle": "a k-cycle found",
        "phase": "point of a cycle (padded to the longest period)",
    },
    coordinates=(
        _var("regime", "regime", "label", "regime code (hex text of packed bytes when P > 62)"),
        _var("task", "task", "string", "task name"),
        _var("epoch", "epoch", "string", "epoch name"),
    ),
    variables=(
        *_vars("regime", "integer", {"regime_count": "valid steps in the regime",
                                     "n_visits": "maximal runs of consecutive valid steps in the regime"}),
        *_vars("regime", "float", {"occupancy": "regime_count / valid steps",
                                   "mean_dwell": "mean run length (steps)", "mean_dwell_ms": "mean run length (ms)",
                                   "median_dwell": "median run length (steps)"}),
        *_vars("", "integer", {"n_steps": "valid steps", "n_pairs": "consecutive valid step pairs within a trial",
                               "n_regimes": "regimes visited"}),
        _var("switch_fraction", "", "float", "fraction of consecutive pairs at which the regime changes"),
        _var("transition_count", "regime_from regime_to", "integer", "consecutive pairs t-1 -> t",
             required=False, when="at most MAX_TRANSITION_REGIMES regimes are visited"),
        _var("transition_probability", "regime_from regime_to", "float", "transition_count / row sum",
             required=False, when="at most MAX_TRANSITION_REGIMES regimes are visited"),
        _var("epoch_count", "task regime epoch", "integer", "valid steps in regime and epoch"),
        _var("epoch_table_steps", "task", "integer", "valid steps with an epoch"),
        _var("nmi", "task", "float", "normalised mutual information of regime and epoch"),
        _var("epoch_specificity", "task regime", "float", "fraction of the regime's steps in its main epoch"),
        _var("main_epoch", "task regime", "string", "the regime's most frequent epoch"),
        _var("epoch_specific", "task regime", "bool", "epoch_specificity >= threshold"),
        _var("n_epochs_spanned", "task regime", "integer", "epochs holding a fair share of the regime's steps"),
        _var("condition_count", f"{ANALYSIS_CONDITION_DIM} regime", "integer", "valid steps per condition value "
             "and regime; the regime-epoch table per condition value has the same variables prefixed "
             f"`by_condition_` with the leading dim `{ANALYSIS_CONDITION_DIM}`", required=False,
             when="the analysis has a condition (e.g. context)"),
        _var("W_regime", "regime unit unit_from", "float", "W_Ω = diag(A) + W D_Ω", required=False,
             when="regime codes are integers (P <= 62)"),
        *_vars("regime mode", "float", {"eigenvalue_real": "real parts of the eigenvalues of W_Ω",
                                        "eigenvalue_imag": "imaginary parts of the eigenvalues of W_Ω"},
               required=False, when="regime codes are integers"),
        *_vars("regime", "float", {"spectral_radius": "largest |eigenvalue| of W_Ω",
                                   "operator_norm": "largest singular value of W_Ω",
                                   "integration_eigenvalue": "eigenvalue of the regime's integration mode",
                                   "peak_norm": "peak of ||W_Ω^k|| over k"},
               required=False, when="regime codes are integers"),
        *_vars("regime", "bool", {"stable": "spectral_radius < 1", "amplifies": "transient amplification: "
                                  "operator_norm > 1 while stable"}, required=False, when="regime codes are integers"),
        _var("peak_step", "regime", "integer", "k of the peak ||W_Ω^k||", required=False,
             when="regime codes are integers"),
        _var("slow_mode", "regime unit", "float", "eigenvector of the slowest mode", required=False,
             when="regime codes are integers"),
        _var("fixed_point", "regime input_condition unit", "float", "z* = (I - W_Ω)^-1 (C s̄ + h)",
             required=False, when="regime codes are integers"),
        *_vars("regime input_condition", "bool", {"fixed_point_real": "the bits of z* reproduce Ω",
                                                  "fixed_point_stable": "z* is stable (= stable)"},
               required=False, when="regime codes are integers"),
        _var("gain", "regime output input", "float", "B (I - W_Ω)^-1 C", required=False,
             when="regime codes are integers"),
        _var("typical_input", "input_condition input", "float", "mean input s̄ of each input condition",
             required=False, when="regime codes are integers"),
        _var("integration_effect", "regime input", "float", "input drive of the integration mode",
             required=False, when="regime codes are integers"),
        _var("integrates", "regime input", "bool", "the regime integrates the input", required=False,
             when="regime codes are integers"),
        _var("gating_gain", f"{ANALYSIS_CONDITION_DIM} input", "float", "occupancy-weighted input gain per "
             "condition value", required=False, when="regime codes are integers and the analysis has a condition"),
        _var("gating_index", f"{ANALYSIS_CONDITION_DIM} {ANALYSIS_CONDITION_OTHER_DIM} input", "float",
             "gating index between two condition values", required=False,
             when="regime codes are integers and the analysis has a condition"),
        _var("gated", "input", "bool", "the input is gated by the condition", required=False,
             when="regime codes are integers and the analysis has a condition"),
        _var("cycle_points", "cycle phase unit", "float", "points of each k-cycle", required=False,
             when="k-cycles were found"),
        _var("cycle_regimes", "cycle phase", "integer", "regime of each point (-1: padding)", required=False,
             when="k-cycles were found"),
        _var("cycle_stable", "cycle", "bool", "the cycle is stable", required=False, when="k-cycles were found"),
        _var("cycle_spectral_radius", "cycle", "float", "spectral radius of the cycle's product map",
             required=False, when="k-cycles were found"),
        _var("boundary_fraction", "regime", "float", "fraction of the regime's visits at epoch boundaries"),
        _var("boundary_transient", "regime", "bool", "the regime is a boundary transient"),
    ),
    fields=(
        Field("condition", "string", "trial condition the analysis splits by (\"\": none)"),
        Field("evidence_epoch", "string", "epoch whose inputs vary most within trials"),
        Field("horizon", "integer", "its median length in steps (T of the primitives)"),
        Field("varying_inputs", "json", "JSON list of the inputs that vary in the evidence epoch"),
        Field("n_trials", "integer", "trials analysed"),
        Field("regime_order", "string", "how regimes are ordered"),
        Field("dynamics_coverage", "number", "fraction of steps in the regimes whose dynamics were computed",
              required=False),
        Field("cycle_periods_searched", "json", "JSON list of the periods k searched", required=False),
        Field("cycle_periods_skipped", "json", "JSON list of the periods k too costly to search", required=False),
        Field("seed", "integer", "seed of the trials (the trials' attributes are copied)"),
        Field("simulated_with_noise", "flag", "the trials' provenance (see trials.nc)", since=1),
        Field("checkpoint_step", "integer", "the trials' provenance (see trials.nc)", since=1),
    ),
    renamed_in_version_0={"value": ANALYSIS_CONDITION_DIM, "value_other": ANALYSIS_CONDITION_OTHER_DIM},
)

_SHARING_REGIME_WHEN = "the trials have regimes (an AL-RNN)"
_SHARING_NULL_WHEN = "the null of shuffled task labels was computed (n_permutations > 0; absent in older files)"

SHARING = FileFormat(
    kind="sharing",
    filename="sharing.nc",
    storage="netcdf",
    intro=(
        "How much the tasks of a multi-task run share regimes, units and state subspaces (written by "
        "`neuroalrnn analyze` for runs with several tasks; compared across runs by `neuroalrnn sharing`). "
        "Only analysed steps count: valid, with an epoch, and not in the canonical fixation epoch. Pairwise "
        "matrices have dims (task, task_other) and are symmetric. The regime variables are absent for "
        "networks without regimes, whose summary numbers are then NaN. The null variables hold each sharing "
        "measure recomputed with the task labels shuffled across trials (`neuroalrnn.analyses.sharing_null`). "
        "Definitions: `neuroalrnn.analyses.sharing.sharing_analysis`."
    ),
    written_by="neuroalrnn.analyses.sharing.sharing_analysis, written by neuroalrnn.workflows.run_analysis.analyze_run",
    read_by="neuroalrnn.workflows.run_analysis.compare_runs_sharing (`neuroalrnn sharing`)",
    dims={
        "task": "task",
        "task_other": "the same tasks, for pairs",
        "epoch": "canonical epoch",
        "regime": "regime visited on analysed steps",
        "unit": "model unit",
        "k": "number of unit clusters tried",
        "cluster": "cluster of units",
        "pair": "task pair \"A|B\" (coordinates task_a, task_b)",
        "ftv_bin": "bin of fractional task variance (coordinate: bin centre)",
        "unit_kind": "linear or nonlinear units (an AL-RNN's last P units are nonlinear)",
        "component": "principal angle index",
        "measure": "sharing measure given a null (sharing_index, mean_jaccard, shared_regime_fraction, "
                   "shared_step_fraction, mean_covariance_similarity)",
        "permutation": "one shuffle of the task labels across trials",
    },
    coordinates=(
        _var("task", "task", "string", "task name"),
        _var("task_other", "task_other", "string", "task name"),
        _var("epoch", "epoch", "string", "canonical epoch"),
        _var("measure", "measure", "string", "name of the summary variable given a null", required=False,
             when=_SHARING_NULL_WHEN),
    ),
    variables=(
        *_vars("task", "integer", {"n_trials": "trials of the task", "n_steps": "analysed steps of the task"}),
        _var("n_steps_by_epoch", "epoch task", "integer", "analysed steps per epoch"),
        *_vars("", "float", {
            "sharing_index": "mean over task pairs of js_similarity (NaN without regimes)",
            "mean_jaccard": "mean over task pairs of jaccard (NaN without regimes)",
            "shared_regime_fraction": "regimes visited by several tasks / regimes visited (NaN without regimes)",
            "shared_step_fraction": "mean over tasks of shared_step_fraction_by_task (NaN without regimes)"}),
        _var("n_regimes", "", "number", "regimes visited by any task (NaN without regimes)"),
        _var("regime_count", "task regime", "integer", "analysed steps of the task in the regime",
             required=False, when=_SHARING_REGIME_WHEN),
        _var("occupancy", "task regime", "float", "p_A(regime)", required=False, when=_SHARING_REGIME_WHEN),
        _var("occupancy_by_epoch", "epoch task regime", "float", "occupancy within one epoch", required=False,
             when=_SHARING_REGIME_WHEN),
        _var("regimes_used", "task", "integer", "regimes the task visits", required=False,
             when=_SHARING_REGIME_WHEN),
        _var("n_tasks_using", "regime", "integer", "tasks visiting the regime", required=False,
             when=_SHARING_REGIME_WHEN),
        _var("shared_regime", "regime", "bool", "visited by more than one task", required=False,
             when=_SHARING_REGIME_WHEN),
        _var("shared_step_fraction_by_task", "task", "float", "the task's steps in shared regimes",
             required=False, when=_SHARING_REGIME_WHEN),
        *_vars("task task_other", "float", {"jaccard": "overlap of the visited regime sets",
                                            "js_similarity": "1 - Jensen-Shannon distance (base 2) of occupancies"},
               required=False, when=_SHARING_REGIME_WHEN),
        *_vars("epoch task task_other", "float", {"jaccard_by_epoch": "jaccard within one epoch",
                                                  "js_similarity_by_epoch": "js_similarity within one epoch"},
               required=False, when=_SHARING_REGIME_WHEN),
        *_vars("unit task", "float", {"task_variance": "variance of the unit across the task's trials, averaged "
                                      "over steps", "task_variance_normalised": "task_variance / its maximum over "
                                      "tasks (NaN: inactive unit)"}),
        _var("active_unit", "unit", "bool", "summed task variance above the threshold"),
        _var("unit_cluster", "unit", "integer", "cluster of the unit (-1: inactive)"),
        _var("silhouette", "k", "float", "mean silhouette with k clusters"),
        _var("n_unit_clusters", "", "integer", "k with the highest silhouette"),
        _var("cluster_centroid", "cluster task", "float", "mean normalised task variance of the cluster"),
        _var("cluster_size", "cluster", "integer", "units in the cluster"),
        _var("cluster_preferred_task", "cluster", "string", "task with the highest centroid"),
        _var("ftv", "pair unit", "float", "fractional task variance (TV_A - TV_B) / (TV_A + TV_B)"),
        _var("ftv_histogram", "pair ftv_bin", "integer", "active units per FTV bin"),
        _var("mean_abs_ftv", "", "float", "mean |FTV| over task pairs and active units"),
        *_vars("unit_kind", "float", {
            "tv_profile_similarity": "mean cosine similarity of the normalised task-variance rows of distinct "
                                     "active units of the kind (NaN: fewer than two)",
            "task_variance_share": "the kind's share of the summed task variance"}, required=False),
        *_vars("task task_other", "float", {
            "covariance_similarity": "<K_A, K_B>_F / (|K_A|_F |K_B|_F) of the tasks' unit covariances K",
            "subspace_overlap": "mean cos² of the principal angles"}),
        *_vars("epoch task task_other", "float", {
            "covariance_similarity_by_epoch": "covariance_similarity within one epoch",
            "subspace_overlap_by_epoch": "subspace_overlap within one epoch"}),
        _var("principal_angles", "task task_other component", "float", "principal angles (rad), ascending"),
        _var("n_components", "task", "integer", "principal components kept"),
        _var("n_components_by_epoch", "epoch task", "integer", "principal components kept per epoch"),
        *_vars("", "float", {"mean_covariance_similarity": "mean over task pairs of covariance_similarity",
                             "mean_subspace_overlap": "mean over task pairs of subspace_overlap"}),
        *_vars("measure", "float", {
            "null_observed": "the measure with the true task labels",
            "null_mean": "mean of the measure over task-label shuffles",
            "null_std": "standard deviation (ddof = 1) over shuffles",
            "null_q05": "5th percentile over shuffles",
            "null_q95": "95th percentile over shuffles",
            "null_normalised": "null_observed / null_mean (1 = as shared as with shuffled task labels)",
            "null_p_value": "one-sided permutation p-value that tasks share less than with shuffled labels, "
                            "(1 + #{shuffles at least as extreme}) / (n + 1)"},
               required=False, when=_SHARING_NULL_WHEN),
        _var("null_higher_is_shared", "measure", "bool", "a higher value of the measure means more sharing",
             required=False, when=_SHARING_NULL_WHEN),
        _var("null_distribution", "measure permutation", "float", "the measure under each shuffle", required=False,
             when=_SHARING_NULL_WHEN),
    ),
    fields=(
        Field("analysis", "string", "what the file holds"),
        Field("include_fixation", "flag", "1 when fixation steps were analysed"),
        Field("epoch_coord", "string", "the trials' epoch coordinate used"),
        Field("regimes", "string", "\"analysed\" or why not"),
        Field("n_trials", "integer", "trials analysed"),
        Field("seed", "integer", "seed of the trials", since=1),
        Field("simulated_with_noise", "flag", "the trials' provenance (see trials.nc)", since=1),
        Field("checkpoint_step", "integer", "the trials' provenance (see trials.nc)", since=1),
        Field("n_permutations", "integer", "task-label shuffles of the null (0: no null; absent in older files)",
              required=False),
        Field("unit_activity", "string", "what the unit measures (task variance, clusters, FTV) were computed on: "
              "rate = Φ*(z), state = z (absent in older files: state)", required=False, choices=("rate", "state")),
    ),
    renamed_in_version_0={"cka": "covariance_similarity", "cka_by_epoch": "covariance_similarity_by_epoch",
                          "mean_cka": "mean_covariance_similarity"},
)

COMPARISON = FileFormat(
    kind="comparison",
    filename="comparison.nc",
    storage="netcdf",
    intro=(
        "A run's condition-averaged latents compared with recorded neurons per epoch (`neuroalrnn compare`): "
        "linear CKA, Procrustes angular distance and RSA, each with a condition-shuffle null. `epoch` holds "
        "the compared epochs and then \"all\"; every matched condition is a coordinate on `condition`. "
        "Definitions: `neuroalrnn.analyses.compare`."
    ),
    written_by="neuroalrnn.analyses.compare.compare, written by `neuroalrnn compare` (cli._compare)",
    read_by="neuroalrnn.analyses.compare.plot_comparison; users",
    dims={"metric": "cka, procrustes or rsa", "epoch": "compared epoch, then \"all\"",
          "shuffle": "one shuffle of the null", "condition": "matched condition combination"},
    coordinates=(
        _var("metric", "metric", "string", "score name"),
        _var("higher_is_similar", "metric", "bool", "true for similarities (CKA, RSA), false for distances"),
        _var("epoch", "epoch", "string", "epoch"),
        _var("condition", "condition", "string", "label of the condition combination"),
    ),
    variables=(
        *_vars("metric epoch", "float", {"observed": "the score", "null_mean": "mean of the null scores",
                                         "null_std": "standard deviation of the null scores",
                                         "p_value": "shuffle-test p-value (see neuroalrnn.analyses.compare)"}),
        _var("null", "metric epoch shuffle", "float", "scores with shuffled condition labels"),
        *_vars("epoch", "integer", {"n_conditions": "conditions compared", "n_samples": "samples compared"}),
        *_vars("condition", "integer", {"model_trials": "model trials of the condition",
                                        "recording_trials": "recorded trials of the condition"}),
    ),
    fields=(
        Field("align", "string", "epoch or time", choices=("epoch", "time")),
        Field("n_bins", "integer", "points per epoch (0 with align=time)"),
        Field("n_shuffles", "integer", "shuffles of the null"),
        Field("seed", "integer", "seed of the shuffles"),
        Field("metrics", "json", "JSON list of the metrics"),
        Field("rdm_metric", "string", "distance of the RDMs"),
        Field("nan_policy", "string", "how non-finite recorded values were handled"),
        Field("conditions", "json", "JSON list of the matched condition names"),
        Field("mapping", "json", "JSON of the recording -> model condition mapping"),
        Field("variable", "string", "the recordings' data variable"),
        Field("n_units", "integer", "model units"),
        Field("n_neurons", "integer", "recorded neurons compared"),
        Field("model", "string", "model kind"),
        Field("model_seed", "integer", "seed of the model's trials"),
        Field("dt", "number", "model step in ms"),
    ),
)

RESULTS = FileFormat(
    kind="results",
    filename="results.nc",
    storage="netcdf",
    intro=(
        "The gathered results of a sweep: one dimension per grid axis (in the experiment's order; "
        "`n_nonlinear` is `P`, float with NaN where P does not apply, and `n_units` is `M`), written as `...` "
        "below. Numbers are NaN where absent; `status` is \"\" for a combination that is no grid point. Extra "
        "metrics of the experiment are further variables over the grid dims."
    ),
    written_by="neuroalrnn.workflows.sweeps.results.results_dataset (`neuroalrnn sweep`)",
    read_by="neuroalrnn.workflows.sweeps.results.read_results, neuroalrnn.workflows.sweeps.plots.plot_sweep",
    dims={ANY_LEADING: "the grid axes (e.g. model, P, seed)",
          "task": "task of the trials of a multi-task run (a grid axis when the grid varies `task`)",
          "subtask": "task of the trials when the grid has a `task` axis"},
    variables=(
        _var("status", "...", "string", "finished, failed, running (no result yet; another process holds the "
             "run), pending (no result yet) or \"\" (no such grid point)"),
        _var("error", "...", "string", "the error of a failed run"),
        _var("run", "...", "string", "run directory under runs/"),
        *_vars("...", "float", {
            "accuracy": "held-out test accuracy (mean trial score)",
            "test_loss": "training loss (weighted) on the test trials",
            "final_loss": "training loss at the last training step",
            "steps_to_criterion": "first training step whose held-out eval_accuracy >= criterion (NaN: never)",
            "steps_trained": "training steps done (fewer than steps after an early stop)",
            "regimes_used": "distinct regimes visited on valid test steps (NaN: no regimes)",
            "switch_fraction": "fraction of consecutive valid test steps at which the regime changes",
            "wall_time": "training plus evaluation time (s)"}),
        Variable("task_accuracy", (Layout((ANY_LEADING, "task"), "float"), Layout((ANY_LEADING, "subtask"), "float")),
                 "test accuracy per task of the trials; the task dim is `subtask` when the grid itself has a "
                 "`task` axis", required=False, when="the runs have several tasks"),
    ),
    fields=(
        Field("name", "string", "experiment name"),
        Field("description", "string", "experiment description"),
        Field("experiment", "string", "the experiment file's TOML text"),
        Field("criterion", "number", "accuracy criterion of steps_to_criterion"),
        Field("test_trials", "integer", "held-out test trials per run"),
        Field("out", "string", "the sweep's output folder"),
        Field("dimension_fields", "json", "JSON mapping of dims to TrainConfig fields"),
        Field("versions", "json", "JSON mapping of package versions"),
        Field("created", "string", "creation time (ISO 8601)"),
    ),
    renamed_in_version_0={"subtask": "task"},
)

_RECORDINGS_EXAMPLE = '''\
import numpy as np
import xarray as xr

from neuroalrnn.formats import FORMAT_VERSION, validate

n_trials, n_steps, n_neurons, dt = 4, 10, 3, 50.0
rates = np.random.default_rng(0).poisson(5.0, (n_trials, n_steps, n_neurons)).astype(np.float32)
epoch = np.where(np.arange(n_steps) < 4, "fixation", "stimulus")
recordings = xr.Dataset(
    {
        "rates": (("trial", "time", "neuron"), rates, {"units": "spikes/s"}),
        "mask": (("trial", "time"), np.ones((n_trials, n_steps), dtype=bool)),
    },
    coords={
        "time": ("time", np.arange(n_steps) * dt, {"units": "ms"}),
        "neuron": ("neuron", np.arange(n_neurons)),
        "context": ("trial", ["motion", "colour", "motion", "colour"]),
        "coh_motion": ("trial", [0.5, -0.5, 0.15, -0.15]),
        "epoch": (("trial", "time"), np.tile(epoch, (n_trials, 1))),
    },
    attrs={"format_version": FORMAT_VERSION, "description": "a toy recording"},
)
validate("recordings", recordings)  # raises FormatError naming what is wrong
recordings.to_netcdf("recordings.nc", engine="h5netcdf")
print(dict(recordings.sizes))
# then: neuroalrnn compare RUN_DIR recordings.nc
'''

RECORDINGS = FileFormat(
    kind="recordings",
    filename="recordings.nc",
    storage="netcdf",
    intro=(
        "Neural recordings to compare a model with (`neuroalrnn compare RUN RECORDINGS.nc`): the `trials.nc` "
        "layout with `neuron` instead of `unit`. One data variable holds the responses (trial, time, neuron), "
        "any name: the only data variable besides `mask` and `inputs`, else `rates` or `responses`, else the one "
        "named with `--variable`. An optional `inputs` (trial, time, input) holds the stimulus inputs the subject "
        "saw on each sample (what `neuroalrnn fit` drives a model with); it is never the response variable. "
        "Conditions are coordinates on `trial` with the model's names and values (e.g. "
        "`context` = motion / colour), or mapped onto them with `compare(..., mapping=...)`. Time is ms from "
        "trial start. Condition-averaged data is one trial per condition. Written by you (or "
        "`benchmarks/make_recordings.py` from a model). An NWB file (`.nwb`) is read into this same layout: "
        "its Units table's spikes binned into `rates` on the trials of its trials table, its other trial "
        "columns as conditions, its `<name>_time` columns as epoch starts and the TimeSeries in its "
        "`stimulus` group as `inputs` (docs/analyses.md, \"NWB recordings\")."
    ),
    written_by="you; benchmarks/make_recordings.py makes synthetic ones (NetCDF, or NWB with `--format nwb`)",
    read_by="neuroalrnn.analyses.recordings.read_recordings (NetCDF and NWB; `neuroalrnn compare`), "
            "neuroalrnn.analyses.compare.load_recordings / validate_recordings",
    dims={"trial": "one recorded trial (or one condition average)", "time": "sample within the trial",
          "neuron": "recorded neuron", "input": "stimulus input channel (of the optional `inputs`)"},
    coordinates=(
        _var("time", "time", "time", "sample start, ms from trial start (strictly increasing)",
             units=MILLISECOND_UNITS),
        Variable("epoch", (Layout(("trial", "time"), "string"), Layout(("time",), "string")),
                 "epoch names (else epochs are taken from the model's epoch times)", required=False, any_order=True),
    ),
    variables=(
        _var("rates", "trial time neuron", "number", "the responses (any name; see above), e.g. rates in "
             "spikes/s; NaN allowed outside `mask`", any_order=True),
        _var("mask", "trial time", "bool", "valid samples (default: all)", required=False, any_order=True),
        _var("inputs", "trial time input", "number", "the stimulus inputs on each sample (channel names in the "
             "`input` coordinate); NaN outside `mask` and where a channel has no value yet", required=False,
             any_order=True),
    ),
    response_variable=True,
    example=_RECORDINGS_EXAMPLE,
)

CONFIG = FileFormat(
    kind="config",
    filename="config.json",
    storage="json",
    intro=(
        "Everything needed to rebuild a training run: the `TrainConfig` fields (see "
        "`neuroalrnn.training.config.TrainConfig`) under `config`, with the versions of everything the result depends "
        "on. Paths stored in it (`bank_cache`) are relative to the run directory when they lie inside it."
    ),
    written_by="neuroalrnn.training.rundir.write_config (`neuroalrnn train`); neuroalrnn.fitting.FitTrainer "
               "(`neuroalrnn fit`)",
    read_by="neuroalrnn.training.rundir.read_config",
    fields=(
        Field("config", "mapping", "TrainConfig fields (task, task_kwargs, model, n_units, n_nonlinear, ...)"),
        Field("config.task", "string", "task name"),
        Field("config.model", "string", "model kind"),
        Field("config.n_units", "integer", "M"),
        Field("fit", "mapping", "a fit to recordings only (`neuroalrnn fit`): the FitConfig fields "
              "(neuroalrnn.fitting.FitConfig) and, under `data`, the recordings' sizes, names, per-neuron mean and "
              "scale, and the held-out `test_trials` and `heldout_neurons`", required=False),
        Field("versions", "mapping", "Python, platform and package versions"),
        Field("created", "string", "creation time (ISO 8601)"),
    ),
)

CHECKPOINT = FileFormat(
    kind="checkpoint",
    filename="checkpoint.pt",
    storage="torch",
    intro=(
        "The state of a run at a training step, saved with `torch.save` (atomically) and loaded with "
        "`torch.load(..., weights_only=True)`: a mapping of plain tensors and numbers, no pickled objects."
    ),
    written_by="neuroalrnn.training.rundir.save_checkpoint (Trainer.save, FitTrainer.save)",
    read_by="neuroalrnn.training.rundir.load_checkpoint (training.load_model, Trainer.resume, sweeps)",
    fields=(
        Field("step", "integer", "training steps done"),
        Field("elapsed", "number", "training seconds so far"),
        Field("model", "tensor mapping", "the model's state_dict (parameter name -> tensor)"),
        Field("optimizer", "mapping", "the optimiser's state_dict (needed to resume)"),
        Field("rng_torch", "byte tensor", "torch.get_rng_state() (needed to resume)"),
        Field("encoder", "tensor mapping", "a fit to recordings only: the teacher-forcing encoder's state_dict "
              "(weight, bias)", required=False),
        Field("metrics", "tensor", "every metrics.csv row up to `step`, (row, column) in the columns' order "
              "(NaN: empty)", required=False),
    ),
)

EVALUATION = FileFormat(
    kind="evaluation",
    filename="evaluation.json",
    storage="json",
    intro=(
        "The summary of a run's evaluation (`neuroalrnn evaluate`, and `analyze` / `compare` when they "
        "simulate): a copy, for people and scripts, of the `evaluation` attribute of the `trials.nc` written "
        "with it, from which it is rewritten whenever the two disagree. Numbers that are not finite are null."
    ),
    written_by="neuroalrnn.evaluation.write_evaluation (evaluate_run)",
    read_by="neuroalrnn.evaluation.read_evaluation; users",
    fields=(
        Field("accuracy", "number", "decision accuracy (mean trial score) over all trials", nullable=True),
        Field("accuracy_by_task", "mapping", "accuracy per task, in the task order"),
        Field("mean_over_tasks", "number", "mean of accuracy_by_task", nullable=True),
        Field("min_over_tasks", "number", "minimum of accuracy_by_task", nullable=True),
        Field("accuracy_by_coherence", "mapping", "task -> |coherence| -> accuracy, for trials with a `coherence` "
              "condition (neuroalrnn.evaluation.accuracy_by_strength); {} otherwise", required=False),
        Field("outcomes_by_task", "mapping", "task -> response kind (correct, withheld, distractor, elsewhere, "
              "responded) -> fraction of the task's trials, for ring-scored trials "
              "(neuroalrnn.evaluation.outcomes_by_task); {} otherwise", required=False),
        Field("accuracy_by_congruence", "mapping", "task -> {congruent, conflict, n_conflict}: accuracy when the "
              "unattended modality favours the same / the other stimulus, for two-modality decisions with one "
              "modality attended (neuroalrnn.evaluation.accuracy_by_congruence); {} otherwise", required=False),
        Field("n_trials", "integer", "trials simulated"),
        Field("seed", "integer", "trial seed"),
        Field("scoring", "string", "how a trial is scored"),
        Field("noise", "boolean", "simulated with the recurrent noise on"),
        Field("decision_mse", "number", "decision-epoch mean squared error (null unless the task is scored `regression`)",
              nullable=True, since=1),
        Field("test_loss", "number", "training loss on the test trials", nullable=True, since=1),
        Field("final_loss", "number", "loss of the last training step (null: no metrics)", nullable=True,
              since=1),
        Field("regimes_used", "integer", "regimes visited on valid steps (null: no regimes)", nullable=True,
              since=1),
        Field("switch_fraction", "number", "fraction of consecutive valid steps switching regime (null: no "
              "regimes)", nullable=True, since=1),
        Field("checkpoint_step", "integer", "training step of the checkpoint evaluated", since=1),
        Field("steps", "integer", "the run's configured training steps", since=1),
        Field("stopped_early", "boolean", "checkpoint_step < steps", since=1),
        Field("ceiling", "number", "mean ideal-observer accuracy over the trials whose task has noisy evidence "
              "(null: none has)", nullable=True, required=False),
        Field("ceiling_by_task", "mapping", "ideal-observer accuracy per task with noisy evidence, in the task "
              "order", required=False),
    ),
    renamed_in_version_0={"by_task": "accuracy_by_task"},
)

METRICS = FileFormat(
    kind="metrics",
    filename="metrics.csv",
    storage="csv",
    intro=(
        "One row per training step (comma-separated, with a header). `eval_accuracy` is empty except at "
        "evaluation steps. A CSV file has no room for `format_version`: it follows its run's `config.json`."
    ),
    written_by="neuroalrnn.training.rundir.write_metrics (Trainer.save)",
    read_by="neuroalrnn.training.rundir.read_metrics",
    fields=(
        Field("step", "integer", "training step (integer, from 1)"),
        Field("loss", "number", "training loss"),
        Field("accuracy", "number", "training-batch decision accuracy"),
        Field("eval_accuracy", "number", "held-out decision accuracy (empty between evaluations)"),
        Field("lr", "number", "learning rate"),
        Field("wall_time", "number", "seconds since the run started"),
    ),
    versioned=False,
)

_FINISHED = ("status", "finished")

RESULT = FileFormat(
    kind="result",
    filename="result.json",
    storage="json",
    intro=(
        "The outcome of one sweep point, written last and atomically in its run directory: a run with a "
        "result.json is done. Numbers that are not finite are written as null."
    ),
    written_by="neuroalrnn.workflows.sweeps.runner.run_point via neuroalrnn.workflows.sweeps.results.write_result",
    read_by="neuroalrnn.workflows.sweeps.results.read_result (the runner, collect_results)",
    fields=(
        Field("run", "string", "run name"),
        Field("coords", "mapping", "the point's grid coordinates"),
        Field("config", "mapping", "the point's TrainConfig fields"),
        Field("status", "string", "finished or failed", choices=("finished", "failed")),
        Field("stage", "string", "training or evaluation (null when finished)", nullable=True),
        Field("error", "string", "the error of a failed run", nullable=True),
        Field("traceback", "string", "its traceback", required=False),
        Field("versions", "mapping", "package versions"),
        Field("finished_at", "string", "time written (ISO 8601)"),
        Field("wall_time", "number", "seconds spent"),
        Field("accuracy", "number", "held-out test accuracy", nullable=True, required_when=_FINISHED),
        Field("accuracy_by_task", "mapping", "test accuracy per task", required_when=_FINISHED),
        Field("test_loss", "number", "training loss on the test trials", nullable=True, required_when=_FINISHED),
        Field("final_loss", "number", "training loss at the last step", nullable=True, required_when=_FINISHED),
        Field("criterion", "number", "accuracy criterion", required_when=_FINISHED),
        Field("steps_to_criterion", "integer", "first step reaching the criterion", nullable=True,
              required_when=_FINISHED),
        Field("steps_trained", "integer", "training steps done", required_when=_FINISHED),
        Field("stopped_early", "boolean", "stopped before its steps", required_when=_FINISHED),
        Field("regimes_used", "integer", "regimes visited (null: no regimes)", nullable=True,
              required_when=_FINISHED),
        Field("switch_fraction", "number", "regime switch fraction (null: no regimes)", nullable=True,
              required_when=_FINISHED),
        Field("test_trials", "integer", "test trials", required_when=_FINISHED),
        Field("test_seed", "integer", "seed of the test trials", required_when=_FINISHED),
        Field("extra", "mapping", "extra metrics", required_when=_FINISHED),
        Field("train_seconds", "number", "training seconds", required_when=_FINISHED),
        Field("evaluate_seconds", "number", "evaluation seconds", required_when=_FINISHED),
    ),
)

_GATED = "a condition with at least two values splits the trials (attribute condition)"

ALIGNMENT = FileFormat(
    kind="alignment",
    filename="alignment.nc",
    storage="netcdf",
    intro=(
        "The regimes of two AL-RNNs run on the same trials, matched (`neuroalrnn align FIT RUN`: model a is FIT, "
        "e.g. a fit to recordings, model b RUN, e.g. a task-trained network): where each regime is used, on "
        "which steps the two coincide, the match, the affine map between their latents, and the matched regimes' "
        "dynamics and gating. Variables on `regime_a` with the suffix `_b` hold model b's values for the matched "
        "regime (NaN when unmatched). Definitions: `neuroalrnn.analyses.alignment`."
    ),
    written_by="neuroalrnn.analyses.alignment.align_regimes, written by neuroalrnn.workflows.run_analysis.align_runs "
               "(`neuroalrnn align`)",
    read_by="neuroalrnn.analyses.figures.alignment_map; users",
    dims={"regime_a": "regime of model a (occupancy order)", "regime_b": "regime of model b (occupancy order)",
          "cell": "epoch × condition value (\"epoch|value\")", "unit_a": "unit of model a",
          "unit_b": "unit of model b", "input_condition": "epoch whose mean input the fixed points are under",
          "input": "input", "condition_value": "value of the condition",
          "condition_value_other": "the same values, for pairs"},
    coordinates=(
        _var("regime_a", "regime_a", "integer", "regime code of model a"),
        _var("regime_b", "regime_b", "integer", "regime code of model b"),
    ),
    variables=(
        *_vars("regime_a", "float", {"occupancy_a": "share of valid steps in the regime (model a)",
                                     "match_similarity": "profile_similarity of the matched pair",
                                     "match_agreement": "share of the regime's steps on which b is in the match",
                                     "spectral_radius_a": "spectral radius of W_Ω (model a)",
                                     "spectral_radius_b": "spectral radius of the matched W_Ω (model b)"}),
        _var("occupancy_b", "regime_b", "float", "share of valid steps in the regime (model b)"),
        _var("match", "regime_a", "integer", "matched regime of model b (-1: none)"),
        *_vars("regime_a regime_b", "float", {
            "profile_similarity": "1 − Jensen–Shannon distance of the two regimes' occupancy profiles",
            "co_occupancy": "share of valid steps with a in regime_a and b in regime_b"}),
        _var("latent_map", "unit_a unit_b", "float", "L of the least-squares map z_a ≈ L z_b + ℓ"),
        _var("latent_offset", "unit_a", "float", "ℓ of that map"),
        _var("fixed_point_distance", "regime_a input_condition", "float",
             "‖z*_a − (L z*_b + ℓ)‖ / RMS norm of a's latents"),
        _var("gating_index_a", "condition_value condition_value_other input", "float",
             "gating index of model a (its own readout)", required=False, when=_GATED),
        _var("gating_index_b", "condition_value condition_value_other input", "float",
             "gating index of model b (its own readout)", required=False, when=_GATED),
        _var("gating_agrees", "input", "bool", "the two indices agree in sign", required=False, when=_GATED),
    ),
    fields=(
        Field("condition", "string", "the condition of the cells and the gating test (\"\": epochs only)"),
        Field("match_by", "string", "what the match maximises", choices=("steps", "profile")),
        Field("n_matched", "integer", "regimes of a with a match"),
        Field("latent_r2", "number", "R² of a's latents from b's by the latent map"),
        Field("nmi", "number", "normalised mutual information of the two models' regime labels"),
        Field("n_trials", "integer", "trials"),
        Field("n_steps", "integer", "valid steps"),
    ),
)

FORMATS: dict[str, FileFormat] = {
    declaration.kind: declaration
    for declaration in (TRIALS, ANALYSIS, SHARING, COMPARISON, ALIGNMENT, RESULTS, RECORDINGS, CONFIG, CHECKPOINT,
                        EVALUATION, METRICS, RESULT)
}
"""Every file kind the package writes or reads, by kind name."""


# ---------------------------------------------------------------------------------------------
# Validation


def _declaration(kind: str) -> FileFormat:
    if kind not in FORMATS:
        raise ValueError(f"unknown file kind {kind!r}; kinds: {', '.join(FORMATS)}")
    return FORMATS[kind]


def description(kind: str, name: str) -> str:
    """The declared meaning of coordinate, variable or field ``name`` of file ``kind`` (one definition for writers)."""
    declaration = _declaration(kind)
    for spec in (*declaration.coordinates, *declaration.variables, *declaration.fields):
        if spec.name == name:
            return spec.description
    raise ValueError(f"file kind {kind!r} declares no {name!r}")


def declared_parts(kind: str) -> frozenset[str]:
    """Names of the coordinates, variables and fields that file ``kind`` declares."""
    declaration = _declaration(kind)
    return frozenset(spec.name for spec in (*declaration.coordinates, *declaration.variables, *declaration.fields))


def format_version(data: Any, *, kind: str = "", source: str | None = None) -> int:
    """The ``format_version`` of a Dataset (attribute) or mapping (key); 0 when it has none.

    Raises :class:`FormatError` for a value that is not an integer >= 0 or is
    newer than :data:`FORMAT_VERSION`.
    """
    holder = data.attrs if isinstance(data, xr.Dataset | xr.DataArray) else data
    where = source or (FORMATS[kind].filename if kind in FORMATS else "the file")
    if not isinstance(holder, Mapping) or "format_version" not in holder:
        return 0
    value = holder["format_version"]
    if not _is_integer(value) or int(value) < 0:
        raise FormatError(f"{where}: format_version must be an integer >= 0, got {value!r}")
    if int(value) > FORMAT_VERSION:
        from . import __version__

        raise FormatError(
            f"{where} was written by a newer neuroalrnn (format_version {int(value)}; neuroalrnn "
            f"{__version__} reads format versions up to {FORMAT_VERSION}): upgrade neuroalrnn to read it"
        )
    return int(value)


def validate(
    kind: str,
    data: Any,
    *,
    source: str | os.PathLike | None = None,
    parts: Iterable[str] | None = None,
    variable: str | None = None,
) -> Any:
    """Check ``data`` against the declaration of file ``kind``; return it in the current naming.

    ``data``: an ``xarray.Dataset`` for NetCDF kinds (a DataArray is accepted
    for ``recordings``), a mapping for JSON kinds and ``checkpoint``, the
    sequence of column names for ``metrics``. A version-0 object (no
    ``format_version``) is first renamed as declared; parts required only
    from version 1 on are not required of it. ``parts``: check only these
    variables / coordinates / fields (each must be present and well-formed),
    for in-memory objects that hold just what a function reads. ``variable``:
    the recordings' data variable (default: see :func:`recording_variable`).
    ``source`` names the file in messages.

    Raises :class:`FormatError` listing every problem: what is missing or
    wrong, and what was expected. Other parts may be present (ignored).
    """
    declaration = _declaration(kind)
    where = str(source) if source is not None else declaration.filename
    if parts is not None:
        parts = set(parts)
        known = set(declared_parts(kind))
        if declaration.response_variable and isinstance(data, xr.Dataset):
            known |= {str(name) for name in data.data_vars}
        unknown = sorted(parts - known)
        if unknown:
            raise ValueError(f"parts {unknown} are not declared for {declaration.filename}; declared: "
                             f"{sorted(known)}")
    if declaration.storage == "netcdf":
        return _validate_netcdf(declaration, data, where, parts, variable)
    if declaration.storage == "csv":
        return _validate_columns(declaration, data, where, parts)
    return _validate_mapping(declaration, data, where, parts)


def _validate_netcdf(declaration: FileFormat, data: Any, where: str, parts, variable) -> xr.Dataset:
    if isinstance(data, xr.DataArray) and declaration.response_variable:
        data = data.to_dataset(name=data.name if data.name is not None else "responses", promote_attrs=True)
    if not isinstance(data, xr.Dataset):
        raise FormatError(f"{where}: expected an xarray.Dataset in the {declaration.filename} layout, "
                          f"got {type(data).__name__}")
    version = format_version(data, kind=declaration.kind, source=where)
    if version == 0:
        data = _renamed(data, declaration.renamed_in_version_0)
    wanted = None if parts is None else set(parts)
    problems: list[str] = []
    missing: dict[str, list[tuple[str, str]]] = {}
    variables = list(declaration.variables)
    if declaration.response_variable:
        try:
            chosen = recording_variable(data, variable)
        except FormatError as error:
            raise _error(declaration, where, [str(error)], {}) from None
        variables[0] = Variable(chosen, declaration.variables[0].layouts, declaration.variables[0].description,
                                any_order=declaration.variables[0].any_order)
    leading: list[tuple[str, ...]] = []
    for spec, role in [(spec, "coordinate") for spec in declaration.coordinates] + [
            (spec, "variable") for spec in variables]:
        if wanted is not None and spec.name not in wanted and not (declaration.response_variable
                                                                   and spec is variables[0]):
            continue
        needed = wanted is not None or (spec.required and version >= spec.since)
        if spec.name not in data.variables:
            if needed:
                missing.setdefault(role, []).append((spec.name, _layouts_text(spec)))
            continue
        problems += _variable_problems(spec, data[spec.name], role, leading)
    for spec in declaration.fields:
        if wanted is not None and spec.name not in wanted:
            continue
        needed = wanted is not None or (spec.required and version >= spec.since)
        problems += _field_problems(spec, data.attrs, "attribute", needed, missing)
    _raise(declaration, where, problems, missing)
    return data


def _variable_problems(spec: Variable, array: xr.DataArray, role: str, leading: list) -> list[str]:
    for layout in spec.layouts:
        fixed = tuple(dim for dim in layout.dims if dim != ANY_LEADING)
        if ANY_LEADING in layout.dims:
            matches = array.dims[len(array.dims) - len(fixed):] == fixed and len(array.dims) >= len(fixed)
        elif spec.any_order:
            matches = sorted(array.dims) == sorted(fixed) and len(array.dims) == len(fixed)
        else:
            matches = tuple(array.dims) == fixed
        if not matches:
            continue
        if ANY_LEADING in layout.dims:
            grid = tuple(array.dims[: len(array.dims) - len(fixed)])
            if leading and grid != leading[0]:
                return [f"{role} {spec.name!r} has leading dims {grid}, expected the grid dims {leading[0]} "
                        "of the other variables"]
            leading.append(grid)
        kinds, meaning = DTYPES[layout.dtype]
        if array.dtype.kind not in kinds:
            return [f"{role} {spec.name!r} has dtype {array.dtype}, expected {layout.dtype} ({meaning})"]
        if spec.units and array.dtype.kind != "m":
            units = str(array.attrs.get("units", "")).strip().lower()
            if units not in spec.units:
                return [f"{role} {spec.name!r} has units {units or 'none'!r}, expected "
                        f"attrs['units'] = {spec.units[0]!r}"]
        return []
    return [f"{role} {spec.name!r} has dims {tuple(array.dims)}, expected {_layouts_text(spec)}"
            + (" in any order" if spec.any_order else "")]


def _layouts_text(spec: Variable) -> str:
    return " or ".join(str(layout) for layout in spec.layouts)


def _field_problems(spec: Field, holder: Mapping, role: str, needed: bool,
                    missing: dict[str, list[tuple[str, str]]]) -> list[str]:
    found, value = _lookup(holder, spec.name)
    if not found:
        if needed:
            missing.setdefault(role, []).append((spec.name, FIELD_KINDS[spec.kind][1]))
        return []
    if value is None and spec.nullable:
        return []
    test, meaning = FIELD_KINDS[spec.kind]
    if not test(value):
        return [f"{role} {spec.name!r} is {_shown(value)}, expected {meaning}"]
    if spec.choices and value not in spec.choices:
        return [f"{role} {spec.name!r} is {_shown(value)}, expected one of {list(spec.choices)}"]
    return []


def _shown(value: Any, limit: int = 60) -> str:
    """A short description of a value for a message: arrays by type and shape, long reprs cut."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lookup(holder: Mapping, dotted: str) -> tuple[bool, Any]:
    value: Any = holder
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _validate_mapping(declaration: FileFormat, data: Any, where: str, parts) -> Mapping:
    if not isinstance(data, Mapping):
        raise FormatError(f"{where}: expected a mapping (the {declaration.filename} layout), "
                          f"got {type(data).__name__}")
    version = format_version(data, kind=declaration.kind, source=where)
    if version == 0 and declaration.renamed_in_version_0:
        data = _renamed_keys(data, declaration.renamed_in_version_0)
    wanted = None if parts is None else set(parts)
    role = "entry" if declaration.storage == "torch" else "key"
    problems: list[str] = []
    missing: dict[str, list[tuple[str, str]]] = {}
    for spec in declaration.fields:
        if wanted is not None and spec.name not in wanted:
            continue
        needed = wanted is not None or (spec.required and version >= spec.since)
        if spec.required_when is not None and wanted is None:
            key, value = spec.required_when
            needed = version >= spec.since and data.get(key) == value
        problems += _field_problems(spec, data, role, needed, missing)
    _raise(declaration, where, problems, missing)
    return data


def _validate_columns(declaration: FileFormat, data: Any, where: str, parts) -> list[str]:
    if isinstance(data, str) or not isinstance(data, Sequence):
        raise FormatError(f"{where}: expected the header's column names, got {type(data).__name__}")
    columns = [str(name) for name in data]
    wanted = None if parts is None else set(parts)
    missing = [(spec.name, "") for spec in declaration.fields
               if spec.required and (wanted is None or spec.name in wanted) and spec.name not in columns]
    problems = [f"it has columns {columns}"] if missing else []
    _raise(declaration, where, problems, {"column": missing} if missing else {})
    return columns


_PLURALS = {"entry": "entries"}


def _raise(declaration: FileFormat, where: str, problems: list[str],
           missing: Mapping[str, list[tuple[str, str]]]) -> None:
    if problems or missing:
        raise _error(declaration, where, problems, missing)


def _error(declaration: FileFormat, where: str, problems: list[str],
           missing: Mapping[str, list[tuple[str, str]]]) -> FormatError:
    """One FormatError listing what is missing (names with their expected layout) and what is wrong."""
    listed = []
    for role, entries in missing.items():
        plural = _PLURALS.get(role, role + "s") if len(entries) > 1 else role
        if len(entries) > 4:  # many missing: a file of another kind; the names say enough
            listed.append(f"missing {plural} {[name for name, _ in entries]}")
        else:
            listed.append(f"missing {plural} " + ", ".join(f"{name!r}" + (f" {what}" if what else "")
                                                           for name, what in entries))
    return FormatError(f"{where} is not a valid {declaration.kind} file (see {declaration.filename} in "
                       f"docs/formats.md): " + "; ".join(listed + problems))


def _renamed(dataset: xr.Dataset, renames: Mapping[str, str]) -> xr.Dataset:
    present = {old: new for old, new in renames.items()
               if old != new and (old in dataset.variables or old in dataset.dims) and new not in dataset.variables
               and new not in dataset.dims}
    return dataset.rename(present) if present else dataset


def _renamed_keys(record: Mapping, renames: Mapping[str, str]) -> dict:
    """A copy of ``record`` with its keys renamed (dotted names reach into nested mappings, copied on the way)."""
    record = dict(record)
    for old, new in renames.items():
        *path, old_key = old.split(".")
        new_key = new.split(".")[-1]
        holder: dict | None = record
        for key in path:
            if not isinstance(holder.get(key), Mapping):
                holder = None
                break
            holder[key] = dict(holder[key])
            holder = holder[key]
        if holder is not None and old_key in holder and new_key not in holder:
            holder[new_key] = holder.pop(old_key)
    return record


_NOT_RESPONSES = ("mask", "inputs")
"""Recordings data variables that are never the responses."""


def recording_variable(dataset: xr.Dataset, variable: str | None = None) -> str:
    """The name of a recordings Dataset's response variable.

    ``variable`` if given; else the only data variable besides ``mask`` and
    ``inputs`` (the stimulus inputs, never the responses); else ``rates`` or
    ``responses``. Raises :class:`FormatError` naming the candidates when none
    of these applies.
    """
    candidates = [str(name) for name in dataset.data_vars if name not in _NOT_RESPONSES]
    if not candidates:
        raise FormatError("missing variable 'rates' (trial, time, neuron) number: the responses (any name), "
                          "and the recordings have no data variable besides mask and inputs")
    if variable is not None:
        if variable in _NOT_RESPONSES:
            raise FormatError(f"variable={variable!r} is not a response variable (mask: valid samples; inputs: the "
                              f"stimulus inputs); pass one of {candidates}")
        if variable not in dataset.data_vars:
            raise FormatError(f"variable={variable!r} is not in the recordings; its data variables are {candidates}")
        return variable
    if len(candidates) == 1:
        return candidates[0]
    for name in ("rates", "responses"):
        if name in candidates:
            return name
    raise FormatError(f"the recordings have data variables {candidates}; pass variable= (`--variable`) one of "
                      "them (the default is the only one, else 'rates' or 'responses')")


def read(kind: str, path: str | os.PathLike, **options: Any) -> Any:
    """Load a NetCDF or JSON file of ``kind`` fully into memory and :func:`validate` it.

    ``options`` go to :func:`validate` (``parts``, ``variable``). Raises
    ``FileNotFoundError`` when ``path`` is no file and :class:`FormatError`
    when it cannot be parsed or does not follow its format. (``checkpoint.pt``
    and ``metrics.csv`` are read by :mod:`neuroalrnn.training.rundir`, which validates
    what it loads.)
    """
    declaration = _declaration(kind)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} file at {path}")
    if declaration.storage == "netcdf":
        try:
            # decode_timedelta=False: a time axis in ms stays numbers.
            with xr.open_dataset(path, engine="h5netcdf", decode_timedelta=False) as opened:
                data = opened.load()
        except (OSError, ValueError) as error:
            raise FormatError(f"{path} is not a readable NetCDF file ({type(error).__name__}: {error})") from None
    elif declaration.storage == "json":
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise FormatError(f"{path} is not valid JSON ({error})") from None
    else:
        raise ValueError(f"read() reads NetCDF and JSON files; read {declaration.filename} with neuroalrnn.training.rundir")
    return validate(kind, data, source=path, **options)


# ---------------------------------------------------------------------------------------------
# Provenance of trials.nc


def check_trials_match(
    trials: xr.Dataset, *, n_trials: int | None = None, noise: bool | None = None,
    checkpoint_step: int | None = None,
) -> None:
    """Raise :class:`StaleTrialsError` unless ``trials`` (a trials Dataset) was simulated as asked.

    Each argument left ``None`` is not checked. The comparison uses the
    provenance attributes ``n_trials``, ``simulated_with_noise`` and
    ``checkpoint_step`` of format version 1; a version-0 file has none, so
    its provenance is unknown and it matches nothing that is asked, and a
    ``checkpoint_step`` of -1 (unknown) matches no asked step. The message
    says what is stored, what was asked, and the command that simulates
    the trials again.
    """
    asked = {"n_trials": n_trials, "noise": noise, "checkpoint_step": checkpoint_step}
    asked = {key: value for key, value in asked.items() if value is not None}
    if not asked:
        return
    source = trials.encoding.get("source")
    version = format_version(trials, kind="trials", source=source)
    attrs = trials.attrs if version >= 1 else {}
    stored = {
        "n_trials": _integer_or_none(attrs.get("n_trials")),
        "noise": None if "simulated_with_noise" not in attrs else bool(int(attrs["simulated_with_noise"])),
        "checkpoint_step": _integer_or_none(attrs.get("checkpoint_step")),
    }
    if stored["checkpoint_step"] == -1:
        stored["checkpoint_step"] = None
    wanted = {key: bool(value) if key == "noise" else int(value) for key, value in asked.items()}
    differing = [key for key in wanted if stored[key] != wanted[key]]
    if not differing:
        return
    run_dir = str(Path(source).parent) if source else "RUN_DIR"
    command = f"neuroalrnn evaluate {run_dir}"
    if "n_trials" in wanted:
        command += f" --trials {wanted['n_trials']}"
    if wanted.get("noise"):
        command += " --noise"
    words = {"n_trials": "trials", "noise": "noise", "checkpoint_step": "checkpoint step"}
    have = ", ".join(f"{words[key]} {'unknown' if stored[key] is None else stored[key]}" for key in wanted)
    want = ", ".join(f"{words[key]} {wanted[key]}" for key in wanted)
    unknown = " (a file from before provenance was recorded)" if version == 0 else ""
    raise StaleTrialsError(
        f"the stored trials{f' in {source}' if source else ''} do not match what was asked: stored {have}"
        f"{unknown}; asked {want}. Simulate them again: `{command}`"
    )


def _integer_or_none(value: Any) -> int | None:
    return int(value) if _is_integer(value) else None


# ---------------------------------------------------------------------------------------------
# docs/formats.md

_PREAMBLE = """\
# Data formats

<!-- Generated by `python -m neuroalrnn.formats > docs/formats.md` from the declarations in
neuroalrnn/formats.py; edit those, not this file (a test checks they agree). -->

Every file neuroalrnn writes or reads, with its dimensions, variables, attributes and keys. The
declarations live in `neuroalrnn.formats`; one validator checks each kind
(`runs/demo` is the run `make demo` writes):

```
from neuroalrnn.formats import read, validate

trials = read("trials", "runs/demo/trials.nc")  # load + validate; FormatError says what is wrong
validate("recordings", my_dataset)              # an in-memory object
```

**Versions.** Files record `format_version` (now {version}): a NetCDF attribute, a top-level JSON key,
a checkpoint entry. A file without it is version 0 and is still read: names that changed are mapped
(listed per file under *Version 0*), and parts marked "from version 1" are not required of it. A file
with a newer `format_version` than the installed neuroalrnn knows is refused with a message to upgrade.

**Dtypes.** {dtypes}.

**Extra parts.** Files may hold variables, coordinates, attributes and keys beyond those listed;
readers ignore them.

**Your own recordings.** To compare a model with recorded neurons, write them as in
[recordings.nc](#recordingsnc); its section ends with a short example that builds a valid file.

| kind | file | written by |
| --- | --- | --- |
"""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _required_text(required: bool, since: int, when: str) -> str:
    if not required:
        return f"if {when}" if when else "no"
    return f"from version {since}" if since else "yes"


def render_markdown() -> str:
    """The text of ``docs/formats.md``, generated from :data:`FORMATS`."""
    dtypes = "; ".join(f"`{name}`: {meaning}" for name, (_, meaning) in DTYPES.items())
    lines = [_PREAMBLE.replace("{version}", str(FORMAT_VERSION)).replace("{dtypes}", dtypes).rstrip("\n")]
    for declaration in FORMATS.values():
        lines.append(f"| [`{declaration.kind}`](#{declaration.filename.replace('.', '')}) | "
                     f"`{declaration.filename}` | {_cell(declaration.written_by)} |")
    for declaration in FORMATS.values():
        lines += ["", f"## {declaration.filename}", "", declaration.intro, "",
                  f"Kind `{declaration.kind}`. Written by: {declaration.written_by}. Read by: {declaration.read_by}."]
        if declaration.dims:
            lines += ["", "| dimension | meaning |", "| --- | --- |"]
            lines += [f"| `{name}` | {_cell(text)} |" for name, text in declaration.dims.items()]
        for title, specs in (("coordinate", declaration.coordinates), ("variable", declaration.variables)):
            if specs:
                lines += ["", f"| {title} | dims and dtype | required | meaning |", "| --- | --- | --- | --- |"]
                for spec in specs:
                    layout = " or ".join(f"({', '.join(layout.dims)}) {layout.dtype}" for layout in spec.layouts)
                    if spec.any_order:
                        layout += ", dims in any order"
                    if spec.units:
                        layout += f"; units `{spec.units[0]}`"
                    lines.append(f"| `{spec.name}` | {_cell(layout)} | "
                                 f"{_cell(_required_text(spec.required, spec.since, spec.when))} | "
                                 f"{_cell(spec.description)} |")
        role = {"netcdf": "attribute", "json": "key", "torch": "entry", "csv": "column"}[declaration.storage]
        lines += ["", f"| {role} | kind | required | meaning |", "| --- | --- | --- | --- |"]
        if declaration.versioned:
            lines.append(f"| `format_version` | integer | no (absent: version 0) | format version, "
                         f"{FORMAT_VERSION} when written now |")
        for spec in declaration.fields:
            required = _required_text(spec.required, spec.since, "")
            if spec.required_when is not None:
                required = f"when {spec.required_when[0]} is {spec.required_when[1]}"
            kind = spec.kind + (" or null" if spec.nullable else "")
            if spec.choices:
                kind += ": " + ", ".join(str(choice) for choice in spec.choices)
            lines.append(f"| `{spec.name}` | {_cell(kind)} | {_cell(required)} | {_cell(spec.description)} |")
        renames = {old: new for old, new in declaration.renamed_in_version_0.items() if old != new}
        if renames:
            lines += ["", "Version 0: " + ", ".join(f"`{old}` is read as `{new}`" for old, new in renames.items())
                      + "."]
        if declaration.example:
            lines += ["", "A minimal valid file, built with xarray and checked before writing:", "",
                      "```python", declaration.example.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
