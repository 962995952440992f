"""Align the regimes of two AL-RNNs run on the same trials: "regime X of model a behaves like regime Y of model b".

Typical use: model a is fitted to neural recordings, model b is trained on
the task (or the other way round); both are simulated on the SAME trials and
:func:`align_regimes` says which regime of one plays the part of which regime
of the other, and whether the matched regimes have alike dynamics. The two
models may differ in size (M, P) and in what they read out (O, B); they share
the inputs (K). Definitions, for valid steps (``mask`` True) only:

1. **Paired trials.** ``trials_a`` and ``trials_b`` must have the same number
   of trials and of time steps, identical ``mask`` and ``epoch``, the same
   values of every per-trial condition (coordinate with dims ``(trial,)``)
   that both carry, the same number of inputs K and the same inputs on valid
   steps (to float32 precision); otherwise ``ValueError`` naming what differs.
2. **Regimes considered.** Per model, its regimes in the canonical order of
   :func:`~neuroalrnn.analyses.regimes.regime_statistics` (occupancy
   descending, code ascending) with occupancy (share of valid steps) ≥
   ``min_occupancy``, at most ``max_regimes`` of them. ``coverage_a`` /
   ``coverage_b`` (attributes) are the shares of valid steps they cover.
3. **Occupancy profile** of regime Ω: p(cell | Ω), its distribution over the
   cells epoch × value of ``condition`` (``"auto"``:
   :func:`~neuroalrnn.analyses.pipeline.default_condition` of ``trials_a``;
   ``None``: epochs only), counted by
   :func:`~neuroalrnn.analyses.regimes.regime_epoch_table`; cells are labelled
   ``"epoch|value"`` (``"epoch"`` without a condition).
   ``profile_similarity`` (regime_a, regime_b) = 1 − D_JS(p_a, p_b), with D_JS
   the Jensen–Shannon distance in bits
   (``scipy.spatial.distance.jensenshannon(p, q, base=2)``), so it lies in
   [0, 1] and is 1 for identical profiles. It compares *where and when* the
   regimes are used, not on which steps.
   ``co_occupancy`` (regime_a, regime_b) = share of valid steps on which model
   a is in regime_a AND model b in regime_b (the paired contingency table of
   the considered regimes). The attribute ``nmi`` is the normalised mutual
   information between the two models' regime labels over all valid steps
   (scikit-learn's ``normalized_mutual_info_score``, arithmetic mean); as in
   :func:`~neuroalrnn.analyses.regimes.regime_epoch_table`, it is 0 when
   either model uses a single regime.
4. **Match.** ``match`` (regime_a) is the regime_b that
   ``scipy.optimize.linear_sum_assignment`` assigns to each regime_a so that
   the total ``co_occupancy`` (``match_by="steps"``, the default: the two
   models are in the matched regimes on as many of the same steps as
   possible) or the total ``profile_similarity`` (``match_by="profile"``:
   used at the same epochs and conditions, step by step or not) is largest;
   −1 when a has more regimes than b and regime_a is left over. Ties are
   broken by the other criterion, weighted 10⁻⁶ (:data:`TIE_BREAK_WEIGHT`),
   so two identical models match each regime to itself even when two
   regimes share a profile. ``match_similarity`` (regime_a) is the matched pair's
   similarity and ``match_agreement`` (regime_a) = co_occupancy / occupancy_a,
   the share of regime_a's steps on which model b is in the matched regime
   (NaN when unmatched). ``n_matched`` (attribute) counts the matched regimes.
5. **Latent map.** The least-squares affine map from model b's latents to
   model a's on the valid steps, z_a ≈ L z_b + ℓ: ``latent_map`` L
   (unit_a, unit_b) and ``latent_offset`` ℓ (unit_a) (``numpy.linalg.lstsq``
   on centred latents, the minimum-norm L when b's latents are rank
   deficient). ``latent_r2`` (attribute) is the variance-weighted R² of a's
   latents predicted from b's: 1 − Σ‖z_a − L z_b − ℓ‖² / Σ‖z_a − z̄_a‖²
   (NaN when a's latents do not vary).
6. **Dynamics of matched pairs.** For each considered regime,
   :func:`~neuroalrnn.analyses.dynamics.regime_dynamics` gives W_Ω =
   diag(A) + W D_Ω, its spectral radius and eigenvalue of largest modulus:
   ``spectral_radius_a``, ``leading_eigenvalue_real_a`` /
   ``leading_eigenvalue_imag_a`` (regime_a), and the same ``_b`` variables
   on regime_a holding b's values for the matched regime_b (NaN when
   unmatched). Under each epoch's mean input s̄
   (:func:`~neuroalrnn.analyses.pipeline.typical_inputs` of ``trials_a``,
   without condition: dim ``input_condition``) the regime's fixed point
   z*_Ω = (I − W_Ω)^{-1}(C s̄ + h), real or virtual (``fixed_point_real_a``,
   ``fixed_point_real_b``), of each model; b's is mapped into a's space
   (``fixed_point_b_mapped`` = L z*_b + ℓ) and
   ``fixed_point_distance`` (regime_a, input_condition) =
   ‖z*_a − (L z*_b + ℓ)‖ / RMS norm of a's latents, where the RMS norm
   (attribute ``latent_rms_a``) = sqrt(mean over valid steps of ‖z_a,t‖²).
   NaN where I − W_Ω is singular in either model (condition number > 10¹²)
   or regime_a is unmatched.
7. **Gating.** With a condition of at least two values,
   :func:`~neuroalrnn.analyses.primitives.gating` is run on each model in
   the evidence epoch (the epoch where the inputs vary most, with its median
   length as horizon, as :func:`~neuroalrnn.analyses.pipeline.analyze`
   chooses them): ``gating_gain_a`` / ``gating_gain_b`` (condition_value,
   input) and ``gating_index_a`` / ``gating_index_b`` (condition_value,
   condition_value_other, input). Each index is computed through the model's
   OWN readout B (R_Ω = Σ_t B W_Ω^t C): a model fitted to neurons reads out
   neurons, a task-trained one the task outputs, so the indices compare how
   much each model lets input k through to what it reads out, not the same
   quantity. ``gating_agrees`` (input) = the index between the first two
   condition values has the same sign in both models; ``gating_compared``
   (input) = at least one of the two indices has magnitude ≥
   :data:`GATING_MIN_INDEX` (0.05); where neither does, the input is not
   gated by either model and ``gating_agrees`` is True.

The result is one Dataset with dims ``regime_a``, ``regime_b`` (coordinates:
the regime codes in canonical order), ``cell``, ``unit_a``, ``unit_b``,
``input_condition``, ``input`` and (with gating) ``condition_value``,
``condition_value_other``; attributes ``condition`` ("" for none),
``n_matched``, ``latent_r2``, ``nmi`` and the settings. Regime codes must be
integers (P ≤ 62 in both models).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import normalized_mutual_info_score

from ..models import MAX_INTEGER_CODE_BITS, ALRNNParams
from .core import regime_labels, validate_trials
from .dynamics import regime_dynamics
from .pipeline import _evidence_epoch, default_condition, typical_inputs
from .primitives import gating
from .regimes import regime_epoch_table, regime_statistics

__all__ = ["GATING_MIN_INDEX", "MATCH_BY", "TIE_BREAK_WEIGHT", "align_regimes", "alignment_report_lines"]

TIE_BREAK_WEIGHT = 1e-6
"""Weight of the second criterion in the assignment's objective: it only breaks ties in the first."""
MATCH_BY = ("steps", "profile")
"""What the assignment maximises: the shared steps (co-occupancy) or the profile similarity."""
GATING_MIN_INDEX = 0.05
"""Gating indices below this magnitude in both models are not compared (neither model gates the input)."""

_REQUIRED = ("inputs", "latents", "regime", "mask")


def align_regimes(
    trials_a: xr.Dataset,
    params_a: ALRNNParams,
    trials_b: xr.Dataset,
    params_b: ALRNNParams,
    *,
    condition: str | None = "auto",
    max_regimes: int = 16,
    min_occupancy: float = 0.01,
    match_by: str = "steps",
) -> xr.Dataset:
    """Match the regimes of model a to those of model b, both simulated on the same trials.

    ``trials_a`` / ``trials_b``: trials Datasets (``trials.nc`` layout) of the
    two models on the same trials; ``params_a`` / ``params_b``: their
    parameters. ``condition``: the per-trial condition whose values split the
    occupancy profiles and the gating test (``"auto"``: ``context`` or
    ``rule`` when present; ``None``: epochs only). ``max_regimes`` and
    ``min_occupancy`` choose the regimes considered per model. Every variable
    is defined in the module docstring.
    """
    _check_arguments(trials_a, params_a, "a")
    _check_arguments(trials_b, params_b, "b")
    if isinstance(max_regimes, bool) or not isinstance(max_regimes, int | np.integer) or max_regimes < 1:
        raise ValueError(f"max_regimes must be a positive integer, got {max_regimes!r}")
    if not 0.0 <= min_occupancy <= 1.0:
        raise ValueError(f"min_occupancy must lie in [0, 1], got {min_occupancy!r}")
    _check_paired(trials_a, trials_b)
    condition = _resolve_condition(trials_a, trials_b, condition)

    valid = trials_a["mask"].transpose("trial", "time").values.astype(bool)
    labels_a = regime_labels(trials_a).transpose("trial", "time").values[valid]
    labels_b = regime_labels(trials_b).transpose("trial", "time").values[valid]
    codes_a, occupancy_a = _considered(trials_a, max_regimes, min_occupancy, "a")
    codes_b, occupancy_b = _considered(trials_b, max_regimes, min_occupancy, "b")

    cells, profile_a = _profiles(trials_a, codes_a, condition)
    _, profile_b = _profiles(trials_b, codes_b, condition)
    similarity = _profile_similarity(profile_a, profile_b)
    co_occupancy = _co_occupancy(labels_a, labels_b, codes_a, codes_b)

    if match_by not in MATCH_BY:
        raise ValueError(f"match_by must be one of {MATCH_BY}, got {match_by!r}")
    if match_by == "steps":
        objective = co_occupancy + TIE_BREAK_WEIGHT * np.nan_to_num(similarity)
    else:
        objective = np.nan_to_num(similarity) + TIE_BREAK_WEIGHT * co_occupancy
    rows, columns = linear_sum_assignment(objective, maximize=True)
    matched = np.full(len(codes_a), -1, dtype=np.int64)
    matched[rows] = columns
    is_matched = matched >= 0
    match = np.where(is_matched, codes_b[np.maximum(matched, 0)], -1)
    match_similarity = np.full(len(codes_a), np.nan)
    match_similarity[rows] = similarity[rows, columns]
    match_agreement = np.full(len(codes_a), np.nan)
    match_agreement[rows] = co_occupancy[rows, columns] / occupancy_a[rows]

    latents_a = trials_a["latents"].transpose("trial", "time", "unit").values[valid].astype(np.float64)
    latents_b = trials_b["latents"].transpose("trial", "time", "unit").values[valid].astype(np.float64)
    latent_map, latent_offset, latent_r2 = _affine_map(latents_b, latents_a)
    rms_a = float(np.sqrt(np.mean(np.sum(latents_a**2, axis=1))))

    inputs = typical_inputs(trials_a)
    as_conditions = inputs.rename(input_condition="condition")
    dynamics_a = regime_dynamics(params_a, codes_a, as_conditions).sel(regime=codes_a)
    dynamics_b = regime_dynamics(params_b, codes_b, as_conditions).sel(regime=codes_b)

    def matched_values(values: np.ndarray, fill) -> np.ndarray:
        """b's per-regime values (regime_b, ...) on regime_a through ``match``; ``fill`` where unmatched."""
        out = np.full((len(codes_a), *values.shape[1:]), fill, dtype=np.result_type(values, type(fill)))
        out[is_matched] = values[matched[is_matched]]
        return out

    fixed_a = dynamics_a["fixed_point"].transpose("regime", "condition", "unit").values
    fixed_b = matched_values(dynamics_b["fixed_point"].transpose("regime", "condition", "unit").values, np.nan)
    fixed_b_mapped = fixed_b @ latent_map.T + latent_offset
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.linalg.norm(fixed_a - fixed_b_mapped, axis=-1) / rms_a

    regime_a, regime_b = ("regime_a",), ("regime_b",)
    per_pair = ("regime_a", "input_condition")
    data_vars = {
        "occupancy_a": (regime_a, occupancy_a, {"description": "share of valid steps in the regime (model a)"}),
        "occupancy_b": (regime_b, occupancy_b, {"description": "share of valid steps in the regime (model b)"}),
        "profile_a": (("regime_a", "cell"), profile_a, {"description": "p(cell | regime), model a"}),
        "profile_b": (("regime_b", "cell"), profile_b, {"description": "p(cell | regime), model b"}),
        "profile_similarity": (("regime_a", "regime_b"), similarity,
                               {"description": "1 - Jensen-Shannon distance (bits) between occupancy profiles"}),
        "co_occupancy": (("regime_a", "regime_b"), co_occupancy,
                         {"description": "share of valid steps with a in regime_a and b in regime_b"}),
        "match": (regime_a, match, {"description": "regime_b assigned to regime_a (-1: unmatched)"}),
        "match_similarity": (regime_a, match_similarity, {"description": "profile_similarity of the matched pair"}),
        "match_agreement": (regime_a, match_agreement,
                            {"description": "share of regime_a's steps on which b is in the matched regime"}),
        "latent_map": (("unit_a", "unit_b"), latent_map, {"description": "L of z_a ~ L z_b + offset"}),
        "latent_offset": (("unit_a",), latent_offset, {"description": "offset of z_a ~ L z_b + offset"}),
        "typical_input": (("input_condition", "input"), inputs.values),
        "spectral_radius_a": (regime_a, dynamics_a["spectral_radius"].values),
        "spectral_radius_b": (regime_a, matched_values(dynamics_b["spectral_radius"].values, np.nan),
                              {"description": "spectral radius of the matched regime_b"}),
        "leading_eigenvalue_real_a": (regime_a, dynamics_a["eigenvalue_real"].values[:, 0]),
        "leading_eigenvalue_imag_a": (regime_a, dynamics_a["eigenvalue_imag"].values[:, 0]),
        "leading_eigenvalue_real_b": (regime_a, matched_values(dynamics_b["eigenvalue_real"].values[:, 0], np.nan)),
        "leading_eigenvalue_imag_b": (regime_a, matched_values(dynamics_b["eigenvalue_imag"].values[:, 0], np.nan)),
        "fixed_point_a": (("regime_a", "input_condition", "unit_a"), fixed_a),
        "fixed_point_b_mapped": (("regime_a", "input_condition", "unit_a"), fixed_b_mapped,
                                 {"description": "matched regime_b's fixed point mapped into a's space"}),
        "fixed_point_real_a": (per_pair, dynamics_a["fixed_point_real"].transpose("regime", "condition").values),
        "fixed_point_real_b": (per_pair, matched_values(
            dynamics_b["fixed_point_real"].transpose("regime", "condition").values, False)),
        "fixed_point_distance": (per_pair, distance,
                                 {"description": "||z*_a - (L z*_b + offset)|| / RMS norm of a's latents"}),
    }
    coords = {
        "regime_a": codes_a,
        "regime_b": codes_b,
        "cell": cells,
        "unit_a": trials_a["unit"].values if "unit" in trials_a.coords else np.arange(params_a.n_units),
        "unit_b": trials_b["unit"].values if "unit" in trials_b.coords else np.arange(params_b.n_units),
        "input_condition": inputs["input_condition"].values,
        "input": inputs["input"].values,
    }
    attrs = {
        "condition": condition or "",
        "n_matched": int(is_matched.sum()),
        "latent_r2": latent_r2,
        "nmi": _nmi(labels_a, labels_b),
        "latent_rms_a": rms_a,
        "coverage_a": float(occupancy_a.sum()),
        "coverage_b": float(occupancy_b.sum()),
        "n_steps": int(valid.sum()),
        "n_trials": int(trials_a.sizes["trial"]),
        "max_regimes": int(max_regimes),
        "min_occupancy": float(min_occupancy),
        "tie_break_weight": TIE_BREAK_WEIGHT,
        "match_by": match_by,
        "n_units_a": params_a.n_units,
        "n_units_b": params_b.n_units,
        "n_nonlinear_a": params_a.n_nonlinear,
        "n_nonlinear_b": params_b.n_nonlinear,
    }
    result = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    if condition is not None and np.unique(trials_a[condition].values).size >= 2:
        gates = _gating(trials_a, params_a, trials_b, params_b, condition)
        result = result.merge(gates)
        result.attrs.update(gates.attrs)
    return result


def alignment_report_lines(alignment: xr.Dataset) -> list[str]:
    """Markdown lines of the report section "Regimes aligned across models" for an :func:`align_regimes` result."""
    if not isinstance(alignment, xr.Dataset):
        raise TypeError(f"alignment must be the xarray.Dataset from align_regimes, got {type(alignment).__name__}")
    missing = [name for name in ("match", "match_similarity", "occupancy_a", "fixed_point_distance",
                                 "spectral_radius_a", "spectral_radius_b") if name not in alignment]
    if missing:
        raise ValueError(f"alignment lacks {missing}; pass the Dataset that align_regimes returns")
    a = alignment
    condition = a.attrs.get("condition", "")
    cells = f"epoch × {condition}" if condition else "epoch"
    lines = [
        "## Regimes aligned across models",
        "",
        f"Model a (M = {a.attrs.get('n_units_a', '?')}, P = {a.attrs.get('n_nonlinear_a', '?')}) and model b "
        f"(M = {a.attrs.get('n_units_b', '?')}, P = {a.attrs.get('n_nonlinear_b', '?')}) ran on the same "
        f"{a.attrs.get('n_trials', '?')} trials ({a.attrs.get('n_steps', '?')} valid steps). Regimes are matched "
        + ("so that the two models are in matched regimes on as many of the same steps as possible; the profile "
           f"similarity compares where each is used, its occupancy over the {cells} cells, as 1 − Jensen–Shannon "
           "distance (1: the same profile)." if a.attrs.get("match_by", "steps") == "steps" else
           f"by where they are used: their occupancy over the {cells} cells, compared as 1 − Jensen–Shannon "
           "distance (1: the same profile)."),
        "",
        f"{a.attrs.get('n_matched', '?')} of model a's {a.sizes['regime_a']} regimes considered "
        f"(covering {100 * float(a.attrs.get('coverage_a', np.nan)):.0f} % of steps) were matched to one of model "
        f"b's {a.sizes['regime_b']}. Normalised mutual information between the two models' regimes, step by step: "
        f"{float(a.attrs.get('nmi', np.nan)):.2f}. Model b's latents predict model a's through an affine map with "
        f"R² = {float(a.attrs.get('latent_r2', np.nan)):.3f}.",
        "",
    ]
    head = ["regime a", "occupancy a", "regime b", "profile similarity", "same steps", "ρ(W_Ω) a", "ρ(W_Ω) b",
            "fixed-point distance (median)"]
    rows = []
    for i, code in enumerate(a["regime_a"].values):
        match = int(a["match"].values[i])
        distances = a["fixed_point_distance"].values[i]
        finite = distances[np.isfinite(distances)]
        rows.append([
            int(code),
            f"{100 * float(a['occupancy_a'].values[i]):.1f} %",
            match if match >= 0 else "—",
            _number(a["match_similarity"].values[i]),
            _percent(a["match_agreement"].values[i]) if "match_agreement" in a else "",
            _number(a["spectral_radius_a"].values[i]),
            _number(a["spectral_radius_b"].values[i]),
            _number(np.median(finite)) if finite.size else "—",
        ])
    lines += _table(head, rows)
    lines += [
        "",
        "Same steps: the share of regime a's steps on which model b is in the matched regime. Fixed-point distance: "
        "‖z*_a − (L z*_b + ℓ)‖ over each epoch's mean input, with model b's fixed point mapped into model a's "
        "latent space, relative to the RMS norm of model a's latents (median over epochs).",
        "",
    ]
    if "gating_agrees" in a:
        values = a["condition_value"].values
        compared = a["gating_compared"].values
        if not compared.any():
            lines.append(f"Neither model gates any input by {condition} (|gating index| < {GATING_MIN_INDEX}).")
        else:
            first, second = str(values[0]), str(values[1])
            parts = []
            for k in np.flatnonzero(compared):
                index_a = float(a["gating_index_a"].values[0, 1, k])
                index_b = float(a["gating_index_b"].values[0, 1, k])
                verdict = "agree" if a["gating_agrees"].values[k] else "disagree"
                parts.append(f"{a['input'].values[k]} {index_a:+.2f} vs {index_b:+.2f} ({verdict})")
            lines.append(
                f"Gating index ({first} vs {second}) of model a vs model b: " + "; ".join(parts) + ". Each index "
                "is computed through the model's own readout B, so a model fitted to neurons and a task-trained "
                "model compare how much each lets the input through to what it reads out."
            )
        lines.append("")
    return lines


# ---------------------------------------------------------------- checks


def _check_arguments(trials: xr.Dataset, params: ALRNNParams, name: str) -> None:
    if not isinstance(params, ALRNNParams):
        raise TypeError(
            f"params_{name} must be ALRNNParams (use ALRNNParams.from_model(model)), got {type(params).__name__}"
        )
    if not isinstance(trials, xr.Dataset):
        raise TypeError(f"trials_{name} must be an xarray.Dataset in the trials.nc layout, got {type(trials).__name__}")
    validate_trials(trials, dims=("trial", "time", "unit", "input"), variables=_REQUIRED, coords=("epoch",))
    if params.n_nonlinear > MAX_INTEGER_CODE_BITS:
        raise ValueError(
            f"model {name} has P={params.n_nonlinear} nonlinear units; aligning regimes needs integer regime codes "
            f"(P ≤ {MAX_INTEGER_CODE_BITS})"
        )
    if trials.sizes["unit"] != params.n_units:
        raise ValueError(
            f"trials_{name} has {trials.sizes['unit']} units but params_{name} has M={params.n_units}; pass the "
            "parameters of the model that produced the trials"
        )
    if trials.sizes["input"] != params.n_inputs:
        raise ValueError(
            f"trials_{name} has {trials.sizes['input']} inputs but params_{name} has K={params.n_inputs}"
        )


def _check_paired(trials_a: xr.Dataset, trials_b: xr.Dataset) -> None:
    """ValueError naming everything that shows the two Datasets are not the same trials."""
    problems = []
    for dim in ("trial", "time", "input"):
        if trials_a.sizes[dim] != trials_b.sizes[dim]:
            problems.append(f"number of {dim}s ({trials_a.sizes[dim]} vs {trials_b.sizes[dim]})")
    if problems:
        raise ValueError("trials_a and trials_b are not the same trials: they differ in " + "; ".join(problems))
    mask_a = trials_a["mask"].transpose("trial", "time").values.astype(bool)
    mask_b = trials_b["mask"].transpose("trial", "time").values.astype(bool)
    if not np.array_equal(mask_a, mask_b):
        problems.append(f"mask ({_where_differs(mask_a != mask_b)})")
    epoch_a = trials_a["epoch"].transpose("trial", "time").values
    epoch_b = trials_b["epoch"].transpose("trial", "time").values
    if not np.array_equal(epoch_a, epoch_b):
        problems.append(f"epoch ({_where_differs(epoch_a != epoch_b)})")
    for name in _shared_conditions(trials_a, trials_b):
        values_a, values_b = trials_a[name].values, trials_b[name].values
        numeric = values_a.dtype.kind in "fc" and values_b.dtype.kind in "fc"
        if not np.array_equal(values_a, values_b, equal_nan=numeric):
            differs = np.flatnonzero(values_a != values_b)
            problems.append(f"condition {name!r} ({differs.size} trials, first: trial {differs[:1].tolist()})")
    if not problems:
        inputs_a = trials_a["inputs"].transpose("trial", "time", "input").values[mask_a].astype(np.float64)
        inputs_b = trials_b["inputs"].transpose("trial", "time", "input").values[mask_a].astype(np.float64)
        if not np.allclose(inputs_a, inputs_b, rtol=1e-6, atol=1e-6):
            problems.append("inputs on valid steps")
    if problems:
        raise ValueError(
            "trials_a and trials_b are not the same trials: they differ in " + "; ".join(problems)
            + ". Simulate both models on the same sampled trials (same task, seed and number of trials)"
        )


def _shared_conditions(trials_a: xr.Dataset, trials_b: xr.Dataset) -> list[str]:
    """Names of the per-trial coordinates (dims ``(trial,)``) that both Datasets carry."""
    return sorted(
        str(name) for name, coord in trials_a.coords.items()
        if coord.dims == ("trial",) and name in trials_b.coords and trials_b[name].dims == ("trial",)
    )


def _where_differs(differs: np.ndarray) -> str:
    trial, time = np.nonzero(differs)
    return f"{trial.size} steps, first at trial {int(trial[0])}, time index {int(time[0])}"


def _resolve_condition(trials_a: xr.Dataset, trials_b: xr.Dataset, condition: str | None) -> str | None:
    if condition is None:
        return None
    shared = _shared_conditions(trials_a, trials_b)
    if condition == "auto":
        condition = default_condition(trials_a)
        if condition is None or condition in shared:
            return condition
    if not isinstance(condition, str) or condition not in shared:
        raise ValueError(
            f"condition must be 'auto', None or a per-trial condition that both trials carry, got {condition!r}; "
            f"shared conditions: {shared}"
        )
    return condition


# ---------------------------------------------------------------- pieces


def _considered(trials: xr.Dataset, max_regimes: int, min_occupancy: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes and occupancies of the regimes considered (definition 2), canonical order."""
    statistics = regime_statistics(trials, transitions=False)
    codes = statistics["regime"].values
    occupancy = statistics["occupancy"].values
    keep = np.flatnonzero(occupancy >= min_occupancy)[:max_regimes]
    if keep.size == 0:
        raise ValueError(
            f"no regime of model {name} has occupancy >= min_occupancy={min_occupancy} (largest: "
            f"{occupancy.max(initial=0.0):.3g}); lower min_occupancy"
        )
    return codes[keep].astype(np.int64), occupancy[keep]


def _profiles(trials: xr.Dataset, codes: np.ndarray, condition: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Cell labels and p(cell | regime) (regime, cell) for ``codes`` (definition 3)."""
    counts = regime_epoch_table(trials, condition=condition)["count"].sum("task").sel(regime=codes)
    epochs = counts["epoch"].values.astype(str)
    if condition is None:
        table = counts.transpose("regime", "epoch").values
        cells = epochs
    else:
        table = counts.transpose("regime", "epoch", condition).values.reshape(len(codes), -1)
        values = counts[condition].values.astype(str)
        cells = np.asarray([f"{epoch}|{value}" for epoch in epochs for value in values])
    totals = table.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cells, np.where(totals > 0, table / np.maximum(totals, 1), np.nan)


def _profile_similarity(profile_a: np.ndarray, profile_b: np.ndarray) -> np.ndarray:
    """1 − Jensen–Shannon distance (bits) of every pair of rows; NaN for a regime without a profile."""
    similarity = np.full((len(profile_a), len(profile_b)), np.nan)
    for i, p in enumerate(profile_a):
        for j, q in enumerate(profile_b):
            if np.isfinite(p).all() and np.isfinite(q).all():
                similarity[i, j] = 1.0 - jensenshannon(p, q, base=2)
    # Rounding can leave a distance a hair outside [0, 1].
    return np.clip(similarity, 0.0, 1.0)


def _co_occupancy(labels_a: np.ndarray, labels_b: np.ndarray, codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """Share of valid steps in (regime_a, regime_b) for the considered regimes."""
    index_a = _positions(labels_a, codes_a)
    index_b = _positions(labels_b, codes_b)
    both = (index_a >= 0) & (index_b >= 0)
    counts = np.bincount(index_a[both] * len(codes_b) + index_b[both], minlength=len(codes_a) * len(codes_b))
    return counts.reshape(len(codes_a), len(codes_b)) / max(labels_a.size, 1)


def _positions(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Position of each label in ``codes``; −1 for labels not among them."""
    order = np.argsort(codes)
    found = np.searchsorted(codes[order], labels)
    found = np.minimum(found, len(codes) - 1)
    hit = codes[order][found] == labels
    return np.where(hit, order[found], -1)


def _nmi(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    if labels_a.size == 0:
        return float("nan")
    if np.unique(labels_a).size <= 1 or np.unique(labels_b).size <= 1:
        return 0.0  # the convention of regime_epoch_table; scikit-learn would give 1 when both hold one label
    return float(normalized_mutual_info_score(labels_a, labels_b, average_method="arithmetic"))


def _affine_map(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares target ≈ L source + offset: (L, offset, variance-weighted R²)."""
    n_steps, n_source = source.shape
    if n_steps <= n_source + 1:
        raise ValueError(
            f"the latent map from model b's {n_source} units needs more than {n_source + 1} valid steps, got "
            f"{n_steps}; pass more trials"
        )
    mean_source, mean_target = source.mean(axis=0), target.mean(axis=0)
    centred_target = target - mean_target
    coefficients, *_ = np.linalg.lstsq(source - mean_source, centred_target, rcond=None)
    latent_map = coefficients.T
    offset = mean_target - latent_map @ mean_source
    residual = centred_target - (source - mean_source) @ coefficients
    total = float(np.sum(centred_target**2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else float("nan")
    return latent_map, offset, r2


def _gating(
    trials_a: xr.Dataset, params_a: ALRNNParams, trials_b: xr.Dataset, params_b: ALRNNParams, condition: str
) -> xr.Dataset:
    """Definition 7: both models' gating gains and indices, and whether the indices' signs agree."""
    epoch, horizon, _ = _evidence_epoch(trials_a)
    gates_a = gating(params_a, trials_a, condition, epoch=epoch, horizon=horizon)
    gates_b = gating(params_b, trials_b, condition, epoch=epoch, horizon=horizon)
    index_a = gates_a["index"].values[0, 1]
    index_b = gates_b["index"].values[0, 1]
    compared = (np.abs(index_a) >= GATING_MIN_INDEX) | (np.abs(index_b) >= GATING_MIN_INDEX)
    agrees = ~compared | (np.sign(index_a) == np.sign(index_b))
    result = xr.Dataset(
        {
            "gating_gain_a": gates_a["gain"],
            "gating_gain_b": gates_b["gain"],
            "gating_index_a": gates_a["index"],
            "gating_index_b": gates_b["index"],
            "gating_agrees": ("input", agrees),
            "gating_compared": ("input", compared),
        }
    )
    result.attrs.update(evidence_epoch=epoch, horizon=horizon, gating_min_index=GATING_MIN_INDEX,
                        gating_readout="each model's own readout B")
    return result


# ---------------------------------------------------------------- report helpers


def _number(value) -> str:
    value = float(value)
    return f"{value:.2f}" if np.isfinite(value) else "—"


def _percent(value) -> str:
    value = float(value)
    return f"{100 * value:.0f} %" if np.isfinite(value) else "—"


def _table(head: list[str], rows: list[list]) -> list[str]:
    def row(cells: list) -> str:
        # A "|" inside a cell (e.g. "stimulus|motion") would split the column.
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return [row(head), "|" + "---|" * len(head)] + [row(cells) for cells in rows]
