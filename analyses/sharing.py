r"""Sharing across tasks: do tasks use the same regimes, the same units and the same state subspaces?

(One module for the three levels below, because they share the task
grouping, the epoch selection and the Dataset they fill; hence its length.)

Three levels, each a function of a multi-task trials Dataset (the
``trials.nc`` layout: dims ``trial``, ``time``, ``unit``; coords ``task``
(trial) and ``epoch_canonical`` (trial, time); variables ``latents``,
``mask`` and, for AL-RNNs, ``regime``):

1. **Regimes** — which linear regimes Ω each task visits and how long
   (Jaccard overlap, 1 − Jensen–Shannon distance, shared regimes, one
   sharing index per network).
2. **Units** — task variance and fractional task variance of every unit,
   and clusters of units by their task-variance profile (Yang et al. 2019,
   "Task representations in neural networks trained to perform many
   cognitive tasks", Nat Neurosci 22:297).
3. **Subspaces** — similarity of the tasks' unit covariance matrices and principal angles between the
   tasks' latent-state subspaces, overall and per canonical epoch.

*Analysed steps*: a step counts when it is valid (``mask``), carries an epoch
label and — by default — is not in the canonical ``fixation`` epoch
(``include_fixation=True`` keeps it). Fixation is left out because every
task of a multi-task battery starts with the same fixation period under the
same input (only the rule input differs), so counting it would make tasks look
shared by construction. The same analysed steps are used at every level.

:func:`sharing_analysis` returns everything in one Dataset (dims ``task``,
``task_other``, ``regime``, ``epoch`` (canonical epochs), ``unit``,
``cluster``, ``k``, ``pair``, ``ftv_bin``, ``component`` and, for the
null of shuffled task labels (:mod:`.sharing_null`), ``measure`` and
``permutation``);
:func:`compare_sharing` tabulates several of them (e.g. networks with
different P) on a ``run`` dimension; :func:`sharing_report_lines` writes a
Markdown section. Figures are in :mod:`.sharing_figures`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.linalg import subspace_angles
from scipy.special import rel_entr

from .. import formats
from ..envs.epochs import CANONICAL_EPOCHS
from ..models.alrnn import phi_star
from .core import label_positions, regime_labels
from .sharing_null import (
    DEFAULT_PERMUTATIONS,
    NULL_MEASURES,
    NULL_VARIABLES,
    sharing_null,
)

__all__ = [
    "YANG_FTV_PAIRS",
    "compare_sharing",
    "pair_mean",
    "principal_subspace",
    "sharing_analysis",
    "sharing_report_lines",
    "unit_activity",
    "unit_covariance_similarity",
    "validate_sharing_trials",
]

FIXATION = "fixation"
UNIT_ACTIVITIES = {
    "rate": "Φ*(z): the state on the linear units, φ(z) (ReLU) on the nonlinear ones, as Yang measured rates",
    "state": "the latent state z of every unit",
}
"""What Yang's unit measures (task variance, clusters, FTV) are computed on: ``unit_activity`` of
:func:`sharing_analysis`."""
_ACTIVITY_WORDS = {"rate": "rates Φ*(z) (ReLU on the nonlinear units)", "state": "states z"}
AL_RNN_KINDS = ("alrnn", "linear", "plrnn")  # model kinds whose latents are states z with Φ*(z) as the rates
CLUSTERING_METHODS = ("kmeans", "ward")
KMEANS_INITIALISATIONS = 20  # Yang et al.'s analysis/clustering.py: KMeans(n_init=20, random_state=0)

YANG_FTV_PAIRS: tuple[tuple[str, str], ...] = (
    ("dm1", "dm2"),
    ("ctxdm1", "ctxdm2"),
    ("dm1", "anti"),
    ("dm1", "ctxdm1"),
    ("go", "rtgo"),
    ("dlydm1", "dm1"),
    ("dmc", "dnmc"),
    ("ctxdm1", "ctxdlydm1"),
)
"""The task pairs whose FTV histograms Yang et al. (2019) show (Fig. 3; ``plot_hist_varprop_selection`` in
github.com/gyyang/multitask ``analysis/variance.py``), in his order, with his rule names mapped to this package's
``yang19`` task names (dm1, dm2; contextdm1, contextdm2; dm1, fdanti; dm1, contextdm1; fdgo, reactgo; delaydm1,
dm1; dmcgo, dmcnogo; contextdm1, contextdelaydm1). The default ``ftv_pairs`` of :func:`sharing_analysis` when the
trials hold both tasks of at least one of them."""

# Summary metrics of one sharing_analysis result, as tabulated by compare_sharing.
SUMMARY_METRICS = {
    "sharing_index": "mean over task pairs of 1 − JS distance of regime occupancy",
    "mean_jaccard": "mean over task pairs of the Jaccard overlap of visited regime sets",
    "shared_regime_fraction": "fraction of visited regimes visited by more than one task",
    "shared_step_fraction": "mean over tasks of the fraction of its steps spent in shared regimes",
    "n_regimes": "regimes visited (analysed steps)",
    "mean_regimes_per_task": "mean over tasks of the number of regimes the task visits",
    "mean_covariance_similarity": "mean over task pairs of the cosine similarity of unit covariances (all analysed steps)",
    "mean_subspace_overlap": "mean over task pairs of mean cos² of principal angles",
    "n_unit_clusters": "clusters of units by normalised task variance (silhouette-chosen)",
    "active_unit_fraction": "fraction of units above the task-variance threshold",
    "mean_abs_ftv": "mean over task pairs and active units of |FTV|",
}


def validate_sharing_trials(trials: xr.Dataset, *, epoch_coord: str = "epoch_canonical") -> xr.Dataset:
    """Check that ``trials`` holds what :func:`sharing_analysis` reads; raise ``ValueError`` listing what is missing.

    Needed: dims ``trial``, ``time``, ``unit``; ``latents`` (trial, time, unit);
    ``mask`` (trial, time); ``task`` (trial,); ``epoch_coord`` (trial, time).
    ``regime`` (trial, time) or (trial, time, regime_byte) is optional (absent
    for tanh/GRU/LSTM networks: the regime level is then skipped).
    """
    if not isinstance(trials, xr.Dataset):
        raise TypeError(f"expected an xarray.Dataset in the trials.nc layout, got {type(trials).__name__}")
    wanted = {
        "latents": (("trial", "time", "unit"), "the network's states z_t"),
        "mask": (("trial", "time"), "which steps are valid (not padding)"),
        "task": (("trial",), "each trial's task name (a multi-task simulation sets it)"),
        epoch_coord: (("trial", "time"), "each step's canonical epoch (fixation/context/stimulus/delay/decision/"
                                         "other); pass epoch_coord='epoch' to use the tasks' own epoch names"),
    }
    problems = [f"dimension {name!r}" for name in ("trial", "time", "unit") if name not in trials.dims]
    for name, (dims, purpose) in wanted.items():
        if name not in trials.variables:
            problems.append(f"{name!r} {dims}: {purpose}")
        elif set(trials[name].dims) != set(dims):
            problems.append(f"{name!r} with dims {dims} (it has {trials[name].dims})")
    if "regime" in trials.data_vars and set(trials["regime"].dims) not in (
        {"trial", "time"}, {"trial", "time", "regime_byte"}
    ):
        problems.append(f"'regime' with dims (trial, time) or (trial, time, regime_byte) (it has "
                        f"{trials['regime'].dims})")
    if problems:
        raise ValueError("trials Dataset lacks what the sharing analysis needs: " + "; ".join(problems))
    declared = formats.declared_parts("trials")
    wanted_parts = ["latents", "mask", "task", epoch_coord, *(["regime"] if "regime" in trials.data_vars else [])]
    formats.validate("trials", trials, parts=[name for name in wanted_parts if name in declared])
    return trials


def sharing_analysis(
    trials: xr.Dataset,
    *,
    include_fixation: bool = False,
    epoch_coord: str = "epoch_canonical",
    min_occupancy: float = 0.0,
    tv_threshold: float = 1e-3,
    min_trials: int = 2,
    cluster_range: tuple[int, int] = (2, 29),
    clustering: str = "kmeans",
    random_state: int = 0,
    ftv_pairs: Sequence[tuple[str, str]] | None = None,
    ftv_bins: int = 20,
    variance_explained: float = 0.9,
    max_components: int = 10,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    unit_activity: str = "rate",
) -> xr.Dataset:
    r"""How much the tasks in ``trials`` share regimes, units and state subspaces.

    Only *analysed* steps count (valid, with an epoch label, not canonical
    fixation unless ``include_fixation``). Tasks are ordered as in
    ``trials.attrs["task_names"]`` (JSON list) when present, the rest by
    name; canonical epochs as in :data:`~neuroalrnn.envs.epochs.CANONICAL_EPOCHS`. Pairwise
    matrices have dims (``task``, ``task_other``) and are symmetric; "mean
    over task pairs" is over unordered pairs A ≠ B, each pair weighted
    equally, ignoring NaN.

    **Regimes** (skipped when ``trials`` has no ``regime``; int64 codes or
    packed bytes, see :func:`~neuroalrnn.analyses.core.regime_labels`).
    With n_A(Ω) the analysed steps of task A in regime Ω:

    - ``occupancy`` (task, regime): p_A(Ω) = n_A(Ω) / Σ_Ω n_A(Ω);
      ``occupancy_by_epoch`` (epoch, task, regime): the same within one
      canonical epoch (NaN when the task has no steps there);
      ``regime_count`` (task, regime): n_A(Ω). Regimes are ordered by analysed
      steps over all tasks, descending, ties by code.
    - visited set R_A = {Ω : p_A(Ω) > ``min_occupancy``} (default: visited at
      all); ``regimes_used`` (task) = |R_A|; ``n_tasks_using`` (regime).
    - ``jaccard`` (task, task_other) = |R_A ∩ R_B| / |R_A ∪ R_B|.
    - ``js_similarity`` (task, task_other) = 1 − D_JS(p_A, p_B) with the
      Jensen–Shannon *distance* in base 2,
      D_JS = sqrt(½ KL(p_A ‖ m) + ½ KL(p_B ‖ m)), m = (p_A + p_B) / 2, KL in
      bits, as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; it lies
      in [0, 1]: 0 when the tasks visit no common regime, 1 when their
      occupancies are equal. ``jaccard_by_epoch`` and
      ``js_similarity_by_epoch`` (epoch, task, task_other) use one epoch's steps.
    - ``shared_regime`` (regime): visited by more than one task;
      ``shared_regime_fraction`` = shared regimes / regimes visited;
      ``shared_step_fraction_by_task`` (task) = Σ_{Ω shared} p_A(Ω);
      ``shared_step_fraction`` = its mean over tasks (each task weighted
      equally, whatever its number of trials); ``n_regimes`` = regimes
      visited by any task.
    - ``sharing_index`` = mean over task pairs of ``js_similarity``, in
      [0, 1]: 0 = no two tasks ever share a regime, 1 = every task spends the
      same fraction of time in the same regimes. Chosen over Jaccard because
      it weighs each regime by the time spent in it: regimes entered for a
      step or two at transitions — whose number grows with P and with the
      number of simulated trials — barely move it, whereas Jaccard counts
      them like a task's main regimes. JS (unlike KL) is finite for disjoint
      supports, symmetric and a bounded metric. Being estimated from finite
      samples, it is biased below 1 when tasks spread their steps over many
      regimes: compare networks at equal numbers of trials.

    **Units** (Yang et al. 2019), checked against Yang's code
    (github.com/gyyang/multitask, ``analysis/variance.py`` and
    ``analysis/clustering.py``); departures are named. They are computed on
    the units' activity x (float64, :func:`unit_activity`): with
    ``unit_activity="rate"`` (the default) x = Φ*(z), the state z on the
    linear units and φ(z) = max(z, α z) on the nonlinear ones, i.e. what
    each unit passes on through W and, for P = M, Yang's ReLU rates (he
    measured rates); ``"state"`` uses z on every unit. A nonlinear unit that
    is off (z ≤ 0) varies in z but is silent in rate. Tanh, GRU and LSTM
    latents are their hidden states, already rates, and are used as they
    are, as are latents of an unknown model.

    - ``task_variance`` (unit, task): TV_{u,A} = mean over time steps t of
      Var_{trials i of A valid at t}(x_{i,t,u}), the variance (ddof = 0, as
      ``np.var``) across the task's trials whose step t is analysed, averaged
      over the steps t with at least ``min_trials`` such trials — Yang's
      ``h.var(axis=1).mean(axis=0)`` over the steps after fixation. Departure:
      his test batches of one rule share one timing, ours vary, so trials are
      aligned at their start and steps with fewer than ``min_trials`` trials
      are skipped. Compute it on noiseless trials (``simulate(...,
      noise=False)``, the default; Yang: ``sigma_rec=0``, ``noise_on=False``)
      so it measures stimulus- and condition-driven variance, not noise.
    - ``active_unit`` (unit): Σ_A TV_{u,A} ≥ ``tv_threshold`` · max_v Σ_A
      TV_{v,A}. Departure: relative, so the threshold does not depend on the
      scale of the latents, which are unbounded for an AL-RNN; Yang used an
      absolute Σ_A TV > 1e-3 on bounded firing rates.
    - ``task_variance_normalised`` (unit, task): TV_{u,A} / max_B TV_{u,B} for
      active units, NaN otherwise — Yang's ``normalization_method='max'``,
      the default of his clustering (each active unit's row peaks at 1).
    - ``unit_cluster`` (unit): cluster of each active unit (−1 inactive), from
      ``clustering`` ("kmeans": scikit-learn KMeans, n_init = 20,
      ``random_state`` — Yang's settings; "ward": AgglomerativeClustering with Ward linkage) of
      the normalised TV rows, for each k in ``cluster_range`` (inclusive,
      capped at the number of distinct rows and at active units − 1; the
      default 2–29 is Yang's ``range(2, 30)``);
      ``silhouette`` (k): mean silhouette coefficient (NaN where not fitted);
      the k with the highest silhouette is kept (ties: the smaller k) as
      ``n_unit_clusters`` (1 when fewer than 3 distinct rows). Clusters are
      numbered by their preferred task (the argmax of the cluster's mean
      normalised TV, ``cluster_preferred_task``), ties larger first;
      ``cluster_centroid`` (cluster, task), ``cluster_size`` (cluster).
    - ``ftv`` (pair, unit): FTV_u(A, B) = (TV_{u,A} − TV_{u,B}) / (TV_{u,A} +
      TV_{u,B}) ∈ [−1, 1] for the units active *in the pair*, TV_{u,A} +
      TV_{u,B} ≥ the ``active_unit`` threshold (NaN otherwise; Yang thresholds
      each pair's own summed variance, so a unit that varies only in a third
      task does not add a 0/0 FTV): +1 = the unit varies only in A, −1 only in
      B, 0 equally. Pairs are ``ftv_pairs`` (default: the pairs of
      :data:`YANG_FTV_PAIRS` whose tasks are present, else all unordered pairs
      in task order), labelled "A|B" with coordinates ``task_a``/``task_b``;
      ``ftv_histogram`` (pair, ftv_bin): unit counts in ``ftv_bins`` equal
      bins over [−1, 1] (coordinate = bin centres; Yang: 20 bins over
      (−1, 1)). ``mean_abs_ftv``: mean of |FTV| over all task pairs and the
      units active in each, whatever ``ftv_pairs`` (0 = units engaged equally
      by all tasks, 1 = every unit serves a single task).
    - ``tv_profile_similarity`` (unit_kind) with ``unit_kind`` = linear,
      nonlinear (for an AL-RNN: its last P units, P = the trials' attribute
      ``n_nonlinear``; every unit counts as nonlinear when the attribute is
      absent): the mean cosine similarity over pairs of distinct active units
      of that kind of their normalised TV rows (NaN with fewer than two), and
      ``task_variance_share`` (unit_kind): that kind's share of Σ_{u,A}
      TV_{u,A}. A linear unit cannot be switched off by a rule input (a
      constant input shifts its state and adds no variance), so its TV profile
      follows the shared stimulus statistics; profiles alike (near 1) among
      the linear units mean task-selective clusters can only form among, or
      through, the nonlinear units.

    **Subspaces**, per task and per canonical epoch e (and pooled over all
    analysed steps), always on the states z whatever ``unit_activity``
    (the readout and the regimes are functions of z). X_A is the (n × M)
    matrix of task A's analysed states,
    X_c = X_A − its mean state (centred over steps), K_A = X_cᵀ X_c / n the
    (M × M) unit covariance:

    - ``covariance_similarity`` (task, task_other) and
      ``covariance_similarity_by_epoch`` (epoch, task, task_other): the cosine
      similarity of the two tasks' unit covariance matrices,
      ⟨K_A, K_B⟩_F / (‖K_A‖_F ‖K_B‖_F) ∈ [0, 1]. Trials of two tasks are not
      matched, but units are, so the comparison is over units
      (⟨K_A, K_B⟩_F = ‖X_A X_Bᵀ‖²_F for centred X, up to the factors 1/n).
      It equals 1 when the tasks' covariances are proportional, 0 when they
      live on orthogonal sets of directions; it is invariant to an orthogonal
      transformation of state space applied to both tasks and to isotropic
      scaling of either. It is not Kornblith et al.'s linear CKA with units
      as examples: that centres each step over units, whereas here each unit
      is centred over steps (a task's mean state, its baseline, is not
      variance).
    - principal subspace U_A: the top k_A eigenvectors of K_A (principal
      components), k_A = the fewest explaining ≥ ``variance_explained`` of the
      variance, at most ``max_components`` (``n_components`` (task),
      ``n_components_by_epoch`` (epoch, task)); ``principal_angles`` (task,
      task_other, component): the min(k_A, k_B) principal angles θ_i between
      U_A and U_B (``scipy.linalg.subspace_angles``), in radians, ascending,
      NaN-padded; ``subspace_overlap`` (task, task_other) and
      ``subspace_overlap_by_epoch`` (epoch, task, task_other):
      mean_i cos² θ_i ∈ [0, 1] (1 when the smaller subspace lies inside the
      larger).
    - ``mean_covariance_similarity``, ``mean_subspace_overlap``: mean over task pairs (pooled).

    **Null** (``n_permutations`` > 0; :mod:`.sharing_null`): every measure of
    :data:`~.sharing_null.NULL_MEASURES` (``sharing_index``, which is the mean
    1 − JS similarity, ``mean_jaccard``, ``shared_regime_fraction``,
    ``shared_step_fraction`` — without regimes, none of these — and the
    regime-free ``mean_covariance_similarity``) is recomputed with the
    ``task`` labels shuffled across trials ``n_permutations`` times (seeded
    by ``random_state``). On dim ``measure``: ``null_observed``, ``null_mean``,
    ``null_std``, ``null_q05``, ``null_q95``, ``null_normalised`` = observed /
    null mean (1 = as shared as with shuffled labels), ``null_p_value`` =
    (1 + #{shuffles with a value ≤ the observed one}) / (n + 1), one-sided
    for "tasks share less than chance", ``null_higher_is_shared``; and
    ``null_distribution`` (measure, permutation). 0 switches the null off.

    Also ``n_steps`` (task), ``n_steps_by_epoch`` (epoch, task) and
    ``n_trials`` (task). Tasks or epochs without analysed steps give NaN.
    ``attrs`` record every parameter. Raises ``ValueError`` when a variable is
    missing (see :func:`validate_sharing_trials`), when there is only one
    task, or when a task has no time step with ``min_trials`` analysed trials.
    """
    from threadpoolctl import threadpool_limits

    _check_parameters(min_occupancy, tv_threshold, min_trials, cluster_range, clustering, ftv_bins,
                      variance_explained, max_components, n_permutations)
    if unit_activity not in UNIT_ACTIVITIES:
        raise ValueError(f"unit_activity must be one of {', '.join(UNIT_ACTIVITIES)}, got {unit_activity!r}")
    steps = _analysed_steps(trials, epoch_coord, include_fixation)
    latents = np.asarray(trials["latents"].transpose("trial", "time", "unit").values, dtype=np.float64)
    activity = _activity(trials, latents, unit_activity)
    tasks, epochs = steps.tasks, steps.epochs
    pairs = _ftv_pairs(ftv_pairs, tasks)

    # The linear algebra here is small (M × M eigendecompositions, KMeans on M points), where BLAS/OpenMP
    # threads cost more than they save and collapse when the cores are shared. Restored on exit.
    with threadpool_limits(1):
        regime_part = _regime_sharing(trials, steps, min_occupancy) if "regime" in trials.data_vars else None
        variance = _task_variance(activity, steps, min_trials)
        unit_part = _unit_sharing(variance, tasks, tv_threshold, cluster_range, clustering, random_state, pairs,
                                  ftv_bins)
        n_units = latents.shape[-1]
        n_nonlinear = int(trials.attrs.get("n_nonlinear", n_units))
        unit_part = unit_part.merge(_unit_kinds(unit_part, np.arange(n_units) >= n_units - n_nonlinear))
        subspace_part = _subspace_sharing(latents, steps, variance_explained, max_components)
    null_part = None
    if n_permutations:  # large matrix products: BLAS threads pay off here
        regime = regime_labels(trials).transpose("trial", "time").values if regime_part is not None else None
        null_part = sharing_null(latents, steps, regime, n_permutations=n_permutations, random_state=random_state,
                                 min_occupancy=min_occupancy)

    task_by_epoch = np.zeros((len(epochs), len(tasks)), dtype=np.int64)
    np.add.at(task_by_epoch, (steps.epoch_index[steps.analysed], steps.step_task), 1)
    coords = {
        "task": ("task", tasks),
        "task_other": ("task_other", tasks),
        "epoch": ("epoch", epochs),
        "unit": ("unit", trials["unit"].values if "unit" in trials.coords else np.arange(latents.shape[-1])),
    }
    data_vars = {
        "n_trials": ("task", np.bincount(steps.task_index, minlength=len(tasks)),
                     {"description": "trials of the task"}),
        "n_steps": ("task", task_by_epoch.sum(axis=0), {"description": "analysed steps of the task"}),
        "n_steps_by_epoch": (("epoch", "task"), task_by_epoch, {"description": "analysed steps per epoch"}),
    }
    for part in (regime_part, unit_part, subspace_part, null_part):
        if part is not None:
            coords.update(part.coords)
            data_vars.update(part.data_vars)
    if regime_part is None:
        for name in ("sharing_index", "mean_jaccard", "shared_regime_fraction", "shared_step_fraction",
                     "n_regimes"):
            data_vars[name] = ((), np.nan, {"description": "no regime variable (not an AL-RNN)"})
    attrs = {
        "analysis": "sharing across tasks (regimes, units, subspaces)",
        "include_fixation": int(include_fixation),
        "epoch_coord": epoch_coord,
        "min_occupancy": float(min_occupancy),
        "tv_threshold": float(tv_threshold),
        "tv_threshold_kind": "relative to the largest summed task variance",
        "min_trials": int(min_trials),
        "cluster_range": [int(k) for k in cluster_range],
        "clustering": clustering,
        "random_state": int(random_state),
        "ftv_bins": int(ftv_bins),
        "variance_explained": float(variance_explained),
        "max_components": int(max_components),
        "n_permutations": int(n_permutations),
        "unit_activity": unit_activity,
        "unit_activity_definition": (UNIT_ACTIVITIES[unit_activity] if unit_activity == "state"
                                     or _has_states(trials)
                                     else "the latents as given (not an AL-RNN: hidden states are rates)"),
        "regimes": "analysed" if regime_part is not None else "absent (no regime variable)",
        "n_trials": int(trials.sizes["trial"]),
        "sharing_index_definition": "mean over unordered task pairs of 1 - Jensen-Shannon distance (base 2) "
                                    "of regime occupancy",
        "covariance_similarity_definition": "<K_A, K_B>_F / (|K_A|_F |K_B|_F), K = unit covariance of the task's "
                                            "states centred over steps (units are the matched examples)",
    }
    for name in ("model", "n_units", "n_nonlinear", "slope", "dt", "seed"):
        if name in trials.attrs:
            attrs[name] = trials.attrs[name]
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def unit_activity(trials: xr.Dataset, kind: str = "rate") -> xr.DataArray:
    r"""The units' activity on which :func:`sharing_analysis` computes Yang's unit measures.

    ``kind="rate"``: Φ*(z) (:func:`~neuroalrnn.models.alrnn.phi_star`) of
    ``latents`` for an AL-RNN (attribute ``model`` alrnn, linear or plrnn),
    with P = the attribute ``n_nonlinear`` and α = the attribute ``slope``
    (files written before it existed: the ``slope`` of the run's ``config``,
    else 0, the ReLU); the latents as they are for any other model.
    ``kind="state"``: the latents z. Returns float64 (trial, time, unit).
    """
    if kind not in UNIT_ACTIVITIES:
        raise ValueError(f"kind must be one of {', '.join(UNIT_ACTIVITIES)}, got {kind!r}")
    latents = trials["latents"].transpose("trial", "time", "unit")
    return latents.copy(data=_activity(trials, np.asarray(latents.values, dtype=np.float64), kind))


def _has_states(trials: xr.Dataset) -> bool:
    """The latents are AL-RNN states z, whose rates are Φ*(z); other models' latents are rates already."""
    return trials.attrs.get("model") in AL_RNN_KINDS


def _activity(trials: xr.Dataset, latents: np.ndarray, kind: str) -> np.ndarray:
    if kind == "state" or not _has_states(trials):
        return latents
    return phi_star(latents, int(trials.attrs["n_nonlinear"]), _slope(trials))


def _slope(trials: xr.Dataset) -> float:
    if "slope" in trials.attrs:
        return float(trials.attrs["slope"])
    config = trials.attrs.get("config")
    try:
        return float(json.loads(config).get("slope", 0.0)) if isinstance(config, str) else 0.0
    except (ValueError, AttributeError):
        return 0.0


def unit_covariance_similarity(states_a: np.ndarray, states_b: np.ndarray) -> float:
    r"""Cosine similarity of the unit covariances of two sets of states (n_a × M) and (n_b × M) of the same M units.

    ⟨K_a, K_b⟩_F / (‖K_a‖_F ‖K_b‖_F), K = X_cᵀ X_c with X_c the states
    centred over their rows. NaN when either set has no variance.
    """
    gram_a, gram_b = (_covariance(np.asarray(states, dtype=np.float64)) for states in (states_a, states_b))
    if gram_a is None or gram_b is None:
        return float("nan")
    norm = np.linalg.norm(gram_a) * np.linalg.norm(gram_b)
    return float(np.sum(gram_a * gram_b) / norm) if norm > 0 else float("nan")


def principal_subspace(states: np.ndarray, variance_explained: float = 0.9, max_components: int = 10) -> np.ndarray:
    """(M, k) orthonormal basis of the top principal components of states (n × M), centred over rows.

    k = the fewest components explaining ≥ ``variance_explained`` of the
    variance, at most ``max_components`` and at most the rank; (M, 0) when the
    states do not vary.
    """
    covariance = _covariance(np.asarray(states, dtype=np.float64))
    if covariance is None:
        return np.zeros((np.shape(states)[-1], 0))
    return _basis(covariance, variance_explained, max_components)


def compare_sharing(results: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """One table (dim ``run``, labels = the mapping's keys in order) of summary metrics of sharing results.

    Variables (see :data:`SUMMARY_METRICS` and :func:`sharing_analysis`):
    ``sharing_index``, ``mean_jaccard``, ``shared_regime_fraction``,
    ``shared_step_fraction``, ``n_regimes``, ``mean_regimes_per_task``,
    ``mean_covariance_similarity``, ``mean_subspace_overlap``, ``n_unit_clusters``,
    ``active_unit_fraction``, ``mean_abs_ftv``, plus ``n_tasks``,
    ``n_units`` and ``n_nonlinear`` (P; −1 when the result does not record
    it). Regime metrics are NaN for a network without regimes.

    When a result holds the null of shuffled task labels, the table also
    holds ``null_observed``, ``null_mean``, ``null_std``, ``null_q05``,
    ``null_q95``, ``null_normalised`` and ``null_p_value`` on (``run``,
    ``measure``) and ``null_higher_is_shared`` on ``measure``; rows of a
    result without it (an older ``sharing.nc``, or ``n_permutations=0``) are
    NaN, as are measures a result lacks (regime measures without regimes).
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping {label: sharing_analysis result}, e.g. {'P=2': ...}")
    rows = {}
    for label, result in results.items():
        if not isinstance(result, xr.Dataset):
            raise ValueError(f"results[{label!r}] is not a sharing_analysis result (got {type(result).__name__})")
        missing = [name for name in ("sharing_index", "task_variance", "covariance_similarity", "silhouette") if name not in result]
        if missing:
            raise ValueError(f"results[{label!r}] is not a sharing_analysis result (lacks {missing})")
        regimes_used = result["regimes_used"].values if "regimes_used" in result else np.array([np.nan])
        active = result["active_unit"].values
        rows[str(label)] = {
            "sharing_index": float(result["sharing_index"]),
            "mean_jaccard": float(result["mean_jaccard"]),
            "shared_regime_fraction": float(result["shared_regime_fraction"]),
            "shared_step_fraction": float(result["shared_step_fraction"]),
            "n_regimes": float(result["n_regimes"]),
            "mean_regimes_per_task": float(np.mean(regimes_used)),
            "mean_covariance_similarity": float(result["mean_covariance_similarity"]),
            "mean_subspace_overlap": float(result["mean_subspace_overlap"]),
            "n_unit_clusters": float(result["n_unit_clusters"]),
            "active_unit_fraction": float(np.mean(active)) if active.size else float("nan"),
            "mean_abs_ftv": float(result["mean_abs_ftv"]),
            "n_tasks": result.sizes["task"],
            "n_units": result.sizes["unit"],
            "n_nonlinear": int(result.attrs.get("n_nonlinear", -1)),
        }
    labels = list(rows)
    data_vars = {}
    for name in next(iter(rows.values())):
        values = np.asarray([rows[label][name] for label in labels])
        data_vars[name] = ("run", values, {"description": SUMMARY_METRICS.get(name, name.replace("_", " "))})
    coords = {"run": ("run", np.asarray(labels, dtype=str))}
    present = {str(m) for result in results.values() if "measure" in result.dims for m in result["measure"].values}
    if present:
        measures = [name for name in NULL_MEASURES if name in present]
        for variable in NULL_VARIABLES:
            table = np.full((len(labels), len(measures)), np.nan)
            for row, result in enumerate(results.values()):
                if variable in result:
                    held = [str(m) for m in result["measure"].values]
                    for column, measure in enumerate(measures):
                        if measure in held:
                            table[row, column] = float(result[variable].values[held.index(measure)])
            description = next((r[variable].attrs.get("description", "") for r in results.values() if variable in r),
                               "")
            data_vars[variable] = (("run", "measure"), table, {"description": description})
        data_vars["null_higher_is_shared"] = ("measure", np.asarray([NULL_MEASURES[m][0] for m in measures]),
                                              {"description": "a higher value means more sharing"})
        data_vars["n_permutations"] = ("run", np.asarray([int(r.attrs.get("n_permutations", 0)) if "measure" in r.dims
                                                          else 0 for r in results.values()]),
                                       {"description": "task-label shuffles of the null (0: none)"})
        coords["measure"] = ("measure", np.asarray(measures, dtype=str))
    return xr.Dataset(data_vars, coords=coords,
                      attrs={"description": "summary metrics of sharing_analysis results, one row per run"})


def sharing_report_lines(result: xr.Dataset, figures: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines of a "Sharing across tasks" report section for a :func:`sharing_analysis` result.

    ``figures`` maps captions to relative image paths to embed (e.g. from
    :func:`~neuroalrnn.analyses.sharing_figures.sharing_figures`).
    """
    r = result
    tasks = [str(t) for t in r["task"].values]
    fixation = "included" if r.attrs.get("include_fixation", 0) else "excluded"
    lines = [
        "## Sharing across tasks",
        "",
        f"{len(tasks)} tasks, {int(r['n_steps'].sum())} analysed steps (valid steps; the fixation epoch "
        f"{fixation}).",
        "",
        "### Regimes",
        "",
    ]
    if "occupancy" in r:
        lines += [
            f"**Sharing index {float(r['sharing_index']):.2f}** (mean over task pairs of 1 − Jensen–Shannon "
            "distance between the tasks' regime occupancies: 0 = no two tasks share a regime, 1 = all tasks spend "
            "the same fraction of time in the same regimes). "
            f"The network visited {int(r['n_regimes'])} regimes, {float(r['regimes_used'].mean()):.1f} per task on "
            f"average; {100 * float(r['shared_regime_fraction']):.0f} % of them are used by more than one task, and "
            f"tasks spend on average {100 * float(r['shared_step_fraction']):.0f} % of their steps in such shared "
            f"regimes. Mean Jaccard overlap of visited regime sets: {float(r['mean_jaccard']):.2f} (sensitive to "
            "rarely visited regimes, and so to the number of trials).",
        ]
        lines += _pair_lines(r["js_similarity"], r["js_similarity_by_epoch"], "Most similar occupancy",
                             "least similar", "Mean 1 − JS")
    else:
        lines.append("No regime variable (not an AL-RNN): regime sharing is not defined.")
    active = r["active_unit"].values
    n_clusters = int(r["n_unit_clusters"])
    silhouette = r["silhouette"].sel(k=n_clusters).values if n_clusters in r["k"].values else np.nan
    lines += [
        "",
        "### Units (Yang et al. 2019)",
        "",
        f"Computed on the units' {_ACTIVITY_WORDS.get(r.attrs.get('unit_activity', 'state'), 'states')}. "
        f"{int(active.sum())} of {active.size} units vary across trials (task variance above "
        f"{r.attrs['tv_threshold']:g} × the largest). Clustered by normalised task variance they form "
        f"**{n_clusters} clusters**" + (f" (silhouette {float(silhouette):.2f})" if np.isfinite(silhouette) else "")
        + f". Mean |FTV| over task pairs: {float(r['mean_abs_ftv']):.2f} (0 = every unit engaged equally by "
        "both tasks of a pair, 1 = each unit serves one task).",
    ]
    if "cluster_preferred_task" in r and r.sizes.get("cluster", 0):
        lines.append("Clusters (size, preferred task): " + ", ".join(
            f"{int(c)} ({int(s)}, {t})" for c, s, t in zip(r["cluster"].values, r["cluster_size"].values,
                                                             r["cluster_preferred_task"].values, strict=True)) + ".")
    if "tv_profile_similarity" in r:
        similarity = dict(zip(r["unit_kind"].values, r["tv_profile_similarity"].values, strict=True))
        share = dict(zip(r["unit_kind"].values, r["task_variance_share"].values, strict=True))
        if np.isfinite(similarity["linear"]):
            lines.append(
                f"Task-variance profiles of the active linear units are alike: mean cosine similarity "
                f"{similarity['linear']:.2f} between their normalised rows ("
                + (f"{similarity['nonlinear']:.2f} among the nonlinear units; " if np.isfinite(similarity["nonlinear"])
                   else "")
                + f"the nonlinear units carry {100 * share['nonlinear']:.0f} % of the task variance). A rule input "
                "cannot switch a linear unit off, so task-selective clusters form only among, or through, the "
                "nonlinear units."
            )
    lines += [
        "",
        "### Subspaces",
        "",
        f"Mean unit covariance similarity {float(r['mean_covariance_similarity']):.2f} (cosine similarity of the "
        "tasks' unit covariance matrices; 1 = same covariance up to scale); mean cos² of principal angles between "
        "the tasks' principal "
        f"subspaces ({100 * r.attrs['variance_explained']:.0f} % of variance, at most {r.attrs['max_components']} "
        f"components) {float(r['mean_subspace_overlap']):.2f}.",
    ]
    lines += _pair_lines(r["covariance_similarity"], r["covariance_similarity_by_epoch"],
                         "Most similar unit covariances", "least", "Mean covariance similarity")
    lines += _null_lines(r)
    lines.append("")
    for caption, path in (figures or {}).items():
        lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Analysed steps


@dataclass(frozen=True)
class _Steps:
    tasks: np.ndarray  # (T,) task names in order
    task_index: np.ndarray  # (trial,) position of each trial's task
    epochs: np.ndarray  # (E,) canonical epochs present on analysed steps
    epoch_index: np.ndarray  # (trial, time) position of each step's epoch; -1 where not analysed
    analysed: np.ndarray  # (trial, time) bool

    @property
    def step_task(self) -> np.ndarray:
        """Task position of each analysed step, in (trial, time) order."""
        return np.broadcast_to(self.task_index[:, None], self.analysed.shape)[self.analysed]


def _analysed_steps(trials: xr.Dataset, epoch_coord: str, include_fixation: bool) -> _Steps:
    validate_sharing_trials(trials, epoch_coord=epoch_coord)
    mask = trials["mask"].transpose("trial", "time").values.astype(bool)
    epoch_labels = trials[epoch_coord].transpose("trial", "time").values.astype(str)
    analysed = mask & (epoch_labels != "")
    if not include_fixation:
        analysed &= epoch_labels != FIXATION
    task = trials["task"].values.astype(str)
    tasks = _task_order(trials, task)
    if len(tasks) < 2:
        raise ValueError(
            f"sharing across tasks needs at least two tasks; trials has only {tasks!r} "
            "(simulate a multi-task env such as envs.make('yang19'), or concatenate trials of several tasks "
            "along 'trial')"
        )
    task_index = label_positions(task, tasks)
    present = set(np.unique(epoch_labels[analysed]).tolist())
    epochs = [e for e in CANONICAL_EPOCHS if e in present] + sorted(present - set(CANONICAL_EPOCHS))
    epoch_index = np.full(mask.shape, -1, dtype=np.int64)
    epoch_index[analysed] = label_positions(epoch_labels[analysed], epochs)
    empty = [t for i, t in enumerate(tasks) if not analysed[task_index == i].any()]
    if empty:
        raise ValueError(f"tasks {empty} have no analysed steps (valid, with an epoch, "
                         f"{'' if include_fixation else 'outside fixation'}); drop their trials or pass "
                         "include_fixation=True")
    return _Steps(tasks=np.asarray(tasks, dtype=str), task_index=task_index,
                  epochs=np.asarray(epochs, dtype=str), epoch_index=epoch_index, analysed=analysed)


def _task_order(trials: xr.Dataset, task: np.ndarray) -> list[str]:
    present = [str(t) for t in np.unique(task)]
    declared = trials.attrs.get("task_names", [])
    if isinstance(declared, str):
        try:
            declared = json.loads(declared)
        except json.JSONDecodeError:
            declared = []
    declared = [str(t) for t in np.atleast_1d(declared)]
    return [t for t in declared if t in present] + [t for t in present if t not in declared]


def _check_parameters(min_occupancy, tv_threshold, min_trials, cluster_range, clustering, ftv_bins,
                      variance_explained, max_components, n_permutations) -> None:
    if not 0.0 <= min_occupancy < 1.0:
        raise ValueError(f"min_occupancy must lie in [0, 1), got {min_occupancy!r}")
    if not 0.0 <= tv_threshold < 1.0:
        raise ValueError(f"tv_threshold must lie in [0, 1) (a fraction of the largest summed task variance), "
                         f"got {tv_threshold!r}")
    if int(min_trials) < 2:
        raise ValueError(f"min_trials must be at least 2 (a variance across trials), got {min_trials!r}")
    if len(cluster_range) != 2 or not 2 <= int(cluster_range[0]) <= int(cluster_range[1]):
        raise ValueError(f"cluster_range must be (k_min, k_max) with 2 <= k_min <= k_max, got {cluster_range!r}")
    if clustering not in CLUSTERING_METHODS:
        raise ValueError(f"clustering must be one of {CLUSTERING_METHODS}, got {clustering!r}")
    if int(ftv_bins) < 1:
        raise ValueError(f"ftv_bins must be a positive number of bins, got {ftv_bins!r}")
    if not 0.0 < variance_explained <= 1.0:
        raise ValueError(f"variance_explained must lie in (0, 1], got {variance_explained!r}")
    if int(max_components) < 1:
        raise ValueError(f"max_components must be at least 1, got {max_components!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer) or n_permutations < 0:
        raise ValueError(f"n_permutations must be a whole number >= 0 (0 switches the null off), got "
                         f"{n_permutations!r}")


def _ftv_pairs(requested, tasks: np.ndarray) -> list[tuple[str, str]]:
    names = [str(t) for t in tasks]
    if requested is None:
        yang = [(a, b) for a, b in YANG_FTV_PAIRS if a in names and b in names]
        return yang or [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    pairs = []
    for pair in requested:
        if len(pair) != 2 or pair[0] == pair[1] or any(str(t) not in names for t in pair):
            raise ValueError(f"ftv_pairs must hold pairs of two different tasks among {names}; got {pair!r}")
        pairs.append((str(pair[0]), str(pair[1])))
    return pairs


# ----------------------------------------------------------------------------------------------------------------
# Regimes


def _regime_sharing(trials: xr.Dataset, steps: _Steps, min_occupancy: float) -> xr.Dataset:
    labels = regime_labels(trials).transpose("trial", "time").values[steps.analysed]
    unique, inverse, totals = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(-totals, kind="stable")  # np.unique sorts codes: ties stay code-ascending
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    regime = rank[inverse.ravel()]
    codes = unique[order]
    n_tasks, n_epochs, n_regimes = len(steps.tasks), len(steps.epochs), codes.size
    task = steps.step_task
    epoch = steps.epoch_index[steps.analysed]

    counts = np.zeros((n_tasks, n_regimes), dtype=np.int64)
    np.add.at(counts, (task, regime), 1)
    counts_by_epoch = np.zeros((n_epochs, n_tasks, n_regimes), dtype=np.int64)
    np.add.at(counts_by_epoch, (epoch, task, regime), 1)
    occupancy = _normalise_rows(counts)
    occupancy_by_epoch = _normalise_rows(counts_by_epoch)

    visited = occupancy > min_occupancy  # False where NaN
    n_tasks_using = visited.sum(axis=0)
    shared = n_tasks_using > 1
    shared_steps = np.where(shared, occupancy, 0.0).sum(axis=1)
    n_visited = int((n_tasks_using > 0).sum())

    jaccard = _jaccard(visited)
    js_similarity = _js_similarity(occupancy)
    jaccard_by_epoch = np.stack([_jaccard(p > min_occupancy, p) for p in occupancy_by_epoch])
    js_by_epoch = np.stack([_js_similarity(p) for p in occupancy_by_epoch])

    pair = ("task", "task_other")
    epoch_pair = ("epoch", "task", "task_other")
    data_vars = {
        "regime_count": (("task", "regime"), counts, {"description": "analysed steps of the task in the regime"}),
        "occupancy": (("task", "regime"), occupancy, {"description": "p_A(regime) = count / the task's steps"}),
        "occupancy_by_epoch": (("epoch", "task", "regime"), occupancy_by_epoch,
                               {"description": "occupancy within one canonical epoch (NaN: no steps)"}),
        "regimes_used": ("task", visited.sum(axis=1), {"description": "|R_A|: regimes with p_A > min_occupancy"}),
        "n_tasks_using": ("regime", n_tasks_using, {"description": "tasks whose visited set holds the regime"}),
        "shared_regime": ("regime", shared, {"description": "visited by more than one task"}),
        "shared_step_fraction_by_task": ("task", shared_steps,
                                         {"description": "fraction of the task's steps in shared regimes"}),
        "jaccard": (pair, jaccard, {"description": "|R_A ∩ R_B| / |R_A ∪ R_B|"}),
        "jaccard_by_epoch": (epoch_pair, jaccard_by_epoch, {"description": "jaccard within one epoch"}),
        "js_similarity": (pair, js_similarity,
                          {"description": "1 - Jensen-Shannon distance (base 2) of occupancies"}),
        "js_similarity_by_epoch": (epoch_pair, js_by_epoch, {"description": "js_similarity within one epoch"}),
        "n_regimes": ((), n_visited, {"description": "regimes visited by any task"}),
        "shared_regime_fraction": ((), shared.sum() / n_visited if n_visited else np.nan,
                                   {"description": "shared regimes / regimes visited"}),
        "shared_step_fraction": ((), float(np.mean(shared_steps)),
                                 {"description": "mean over tasks of shared_step_fraction_by_task"}),
        "mean_jaccard": ((), pair_mean(jaccard), {"description": "mean of jaccard over unordered task pairs"}),
        "sharing_index": ((), pair_mean(js_similarity),
                          {"description": "mean over unordered task pairs of js_similarity (1 - JS distance of "
                                          "regime occupancy, base 2)"}),
    }
    return xr.Dataset(data_vars, coords={"regime": ("regime", codes)})


def _normalise_rows(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, totals, out=np.full(counts.shape, np.nan), where=totals > 0)


def _jaccard(visited: np.ndarray, occupancy: np.ndarray | None = None) -> np.ndarray:
    """|R_A ∩ R_B| / |R_A ∪ R_B| for boolean visited sets (task, regime); NaN for tasks without steps."""
    sets = visited.astype(np.int64)
    intersection = sets @ sets.T
    sizes = sets.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    result = np.divide(intersection, union, out=np.full(union.shape, np.nan), where=union > 0)
    if occupancy is not None:
        missing = ~np.isfinite(occupancy).all(axis=1)
        result[missing, :] = np.nan
        result[:, missing] = np.nan
    return result


def _js_similarity(occupancy: np.ndarray) -> np.ndarray:
    """1 − Jensen–Shannon distance (base 2) between every pair of rows; NaN for a NaN row."""
    n = occupancy.shape[0]
    result = np.full((n, n), np.nan)
    has = np.isfinite(occupancy).all(axis=1)
    for a in np.flatnonzero(has):
        others = occupancy[has]
        middle = (occupancy[a] + others) / 2
        divergence = (rel_entr(occupancy[a], middle).sum(axis=1) + rel_entr(others, middle).sum(axis=1)) / 2
        # In bits; clipped because rounding can leave −1e-17 for equal distributions.
        distance = np.sqrt(np.clip(divergence / np.log(2), 0.0, 1.0))
        result[a, has] = 1.0 - distance
    return result


def pair_mean(matrix: np.ndarray) -> float:
    """Mean of a (task, task) matrix over unordered pairs A ≠ B (its upper triangle), ignoring NaN; NaN if none."""
    upper = matrix[np.triu_indices(matrix.shape[0], k=1)]
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if upper.size else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# Units


def _task_variance(latents: np.ndarray, steps: _Steps, min_trials: int) -> np.ndarray:
    """(unit, task) TV: variance across analysed trials at each step, averaged over steps with ≥ min_trials."""
    variance = np.empty((latents.shape[-1], len(steps.tasks)))
    for position, task in enumerate(steps.tasks):
        trials = steps.task_index == position
        valid = steps.analysed[trials]  # (n, time)
        states = np.where(valid[..., None], latents[trials], 0.0)  # NaN-safe on padding
        n = valid.sum(axis=0)  # (time,)
        used = n >= min_trials
        if not used.any():
            raise ValueError(
                f"task {str(task)!r} has no time step with min_trials={min_trials} analysed trials "
                f"({int(trials.sum())} trials); simulate more trials of it"
            )
        mean = states[:, used].sum(axis=0) / n[used, None]
        deviation = np.where(valid[:, used, None], states[:, used] - mean, 0.0)
        variance[:, position] = ((deviation ** 2).sum(axis=0) / n[used, None]).mean(axis=0)
    return variance


def _unit_sharing(variance, tasks, tv_threshold, cluster_range, clustering, random_state, pairs, ftv_bins):
    n_units, n_tasks = variance.shape
    total = variance.sum(axis=1)
    active = (total > 0) & (total >= tv_threshold * total.max())
    normalised = np.full(variance.shape, np.nan)
    normalised[active] = variance[active] / variance[active].max(axis=1, keepdims=True)

    candidates = np.arange(int(cluster_range[0]), int(cluster_range[1]) + 1)
    labels, silhouette = _cluster(normalised[active], candidates, clustering, random_state)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    centroid = np.stack([normalised[active][labels == c].mean(axis=0) for c in range(n_clusters)]) \
        if n_clusters else np.zeros((0, n_tasks))
    size = np.bincount(labels, minlength=n_clusters)
    preferred = centroid.argmax(axis=1) if n_clusters else np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(n_clusters), -size, preferred))  # by preferred task, then larger first
    relabel = np.empty(n_clusters, dtype=np.int64)
    relabel[order] = np.arange(n_clusters)
    unit_cluster = np.full(n_units, -1, dtype=np.int64)
    unit_cluster[active] = relabel[labels]

    task_position = {str(t): i for i, t in enumerate(tasks)}
    level = tv_threshold * total.max()  # the activity threshold, applied to the pair's summed variance
    ftv = np.array([_ftv(variance[:, task_position[a]], variance[:, task_position[b]], level) for a, b in pairs])
    ftv = ftv.reshape(len(pairs), n_units)
    edges = np.linspace(-1.0, 1.0, int(ftv_bins) + 1)
    histogram = np.array([np.histogram(row[np.isfinite(row)], bins=edges)[0] for row in ftv], dtype=np.int64)
    histogram = histogram.reshape(len(pairs), int(ftv_bins))
    all_pairs = [_ftv(variance[:, a], variance[:, b], level) for a in range(n_tasks) for b in range(a + 1, n_tasks)]
    absolute = np.abs(np.concatenate(all_pairs)) if all_pairs else np.zeros(0)
    absolute = absolute[np.isfinite(absolute)]

    data_vars = {
        "task_variance": (("unit", "task"), variance,
                          {"description": "mean over steps of the variance across the task's trials"}),
        "task_variance_normalised": (("unit", "task"), normalised,
                                     {"description": "task_variance / its max over tasks (NaN: inactive unit)"}),
        "active_unit": ("unit", active, {"description": "summed task variance >= tv_threshold * the largest"}),
        "unit_cluster": ("unit", unit_cluster, {"description": "cluster of normalised TV profiles (-1: inactive)"}),
        "silhouette": ("k", silhouette, {"description": "mean silhouette coefficient with k clusters (NaN: not "
                                                        "fitted)"}),
        "n_unit_clusters": ((), n_clusters, {"description": "k with the highest silhouette"}),
        "cluster_centroid": (("cluster", "task"), centroid[order],
                             {"description": "mean normalised task variance of the cluster's units"}),
        "cluster_size": ("cluster", size[order], {"description": "units in the cluster"}),
        "cluster_preferred_task": ("cluster", np.asarray([str(tasks[p]) for p in preferred[order]], dtype=str),
                                   {"description": "task with the highest centroid value"}),
        "ftv": (("pair", "unit"), ftv, {"description": "(TV_A - TV_B) / (TV_A + TV_B), A = task_a, B = task_b; NaN "
                                                      "where TV_A + TV_B is below the activity threshold"}),
        "ftv_histogram": (("pair", "ftv_bin"), histogram, {"description": "active units per FTV bin"}),
        "mean_abs_ftv": ((), float(absolute.mean()) if absolute.size else np.nan,
                         {"description": "mean |FTV| over all unordered task pairs and the units active in the "
                                         "pair"}),
    }
    coords = {
        "k": ("k", candidates),
        "cluster": ("cluster", np.arange(n_clusters)),
        "pair": ("pair", np.asarray([f"{a}|{b}" for a, b in pairs], dtype=str)),
        "task_a": ("pair", np.asarray([a for a, _ in pairs], dtype=str)),
        "task_b": ("pair", np.asarray([b for _, b in pairs], dtype=str)),
        "ftv_bin": ("ftv_bin", (edges[:-1] + edges[1:]) / 2, {"description": "bin centre", "bin_width":
                                                               float(edges[1] - edges[0])}),
    }
    return xr.Dataset(data_vars, coords=coords)


def _unit_kinds(unit_part: xr.Dataset, nonlinear: np.ndarray) -> xr.Dataset:
    """``tv_profile_similarity`` and ``task_variance_share`` of the linear and the nonlinear units."""
    variance = unit_part["task_variance"].values
    active = unit_part["active_unit"].values
    similarity, share = [], []
    for members in (~nonlinear, nonlinear):
        rows = unit_part["task_variance_normalised"].values[members & active]
        if len(rows) >= 2:
            unit_rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
            cosine = unit_rows @ unit_rows.T
            similarity.append(float((cosine.sum() - np.trace(cosine)) / (len(rows) * (len(rows) - 1))))
        else:
            similarity.append(np.nan)
        share.append(float(variance[members].sum() / variance.sum()) if variance.sum() > 0 else np.nan)
    return xr.Dataset(
        {
            "tv_profile_similarity": ("unit_kind", similarity, {"description": "mean cosine similarity of the "
                                      "normalised task-variance rows of distinct active units of the kind"}),
            "task_variance_share": ("unit_kind", share, {"description": "the kind's share of the summed task "
                                                                       "variance"}),
        },
        coords={"unit_kind": ("unit_kind", ["linear", "nonlinear"])},
    )


def _ftv(variance_a: np.ndarray, variance_b: np.ndarray, level: float) -> np.ndarray:
    """FTV of every unit whose variance summed over the two tasks reaches ``level`` (NaN otherwise), as in Yang et al.'s
    ``_compute_hist_varprop``, which thresholds each pair's own summed variance."""
    total = variance_a + variance_b
    keep = (total > 0) & (total >= level)
    return np.divide(variance_a - variance_b, total, out=np.full(total.shape, np.nan), where=keep)


def _cluster(features: np.ndarray, candidates: np.ndarray, method: str, random_state: int):
    """Labels with the silhouette-best k among ``candidates``, and the silhouette of every candidate (NaN: skipped)."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import silhouette_score

    silhouette = np.full(candidates.size, np.nan)
    n = features.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), silhouette
    # More clusters than distinct rows makes KMeans warn and silhouette undefined.
    n_distinct = np.unique(np.round(features, 12), axis=0).shape[0]
    largest = min(n - 1, n_distinct)
    best_labels, best_score = np.zeros(n, dtype=np.int64), -np.inf
    for position, k in enumerate(candidates):
        if k > largest:
            continue
        if method == "kmeans":
            model = KMeans(n_clusters=int(k), n_init=KMEANS_INITIALISATIONS, random_state=random_state)
        else:
            model = AgglomerativeClustering(n_clusters=int(k), linkage="ward")
        labels = model.fit_predict(features).astype(np.int64)
        score = float(silhouette_score(features, labels))
        silhouette[position] = score
        if score > best_score:
            best_labels, best_score = labels, score
    return best_labels, silhouette


# ----------------------------------------------------------------------------------------------------------------
# Subspaces


def _subspace_sharing(latents: np.ndarray, steps: _Steps, variance_explained: float, max_components: int):
    n_tasks, n_epochs = len(steps.tasks), len(steps.epochs)
    scopes = [steps.analysed] + [steps.epoch_index == e for e in range(n_epochs)]
    similarity = np.full((n_epochs + 1, n_tasks, n_tasks), np.nan)
    overlap = np.full((n_epochs + 1, n_tasks, n_tasks), np.nan)
    angles = np.full((n_tasks, n_tasks, max_components), np.nan)
    n_components = np.zeros((n_epochs + 1, n_tasks), dtype=np.int64)
    for scope, in_scope in enumerate(scopes):
        covariances, bases = [], []
        for position in range(n_tasks):
            chosen = in_scope & (steps.task_index == position)[:, None]
            covariance = _covariance(latents[chosen])
            covariances.append(covariance)
            bases.append(None if covariance is None else _basis(covariance, variance_explained, max_components))
            n_components[scope, position] = 0 if bases[-1] is None else bases[-1].shape[1]
        similarity[scope] = _covariance_similarity_matrix(covariances)
        for a in range(n_tasks):
            for b in range(a, n_tasks):
                if bases[a] is None or bases[b] is None or not bases[a].shape[1] or not bases[b].shape[1]:
                    continue
                theta = np.sort(subspace_angles(bases[a], bases[b]))
                overlap[scope, a, b] = overlap[scope, b, a] = float(np.mean(np.cos(theta) ** 2))
                if scope == 0:
                    angles[a, b, : theta.size] = angles[b, a, : theta.size] = theta
    pair = ("task", "task_other")
    epoch_pair = ("epoch", "task", "task_other")
    data_vars = {
        "covariance_similarity": (pair, similarity[0],
                                  {"description": "<K_A, K_B>_F / (|K_A|_F |K_B|_F), K = unit covariance of centred "
                                                  "states (all analysed steps)"}),
        "covariance_similarity_by_epoch": (epoch_pair, similarity[1:],
                                           {"description": "covariance_similarity within one canonical epoch"}),
        "principal_angles": (("task", "task_other", "component"), angles,
                             {"description": "principal angles between principal subspaces, ascending", "units":
                              "rad"}),
        "subspace_overlap": (pair, overlap[0], {"description": "mean cos^2 of the principal angles"}),
        "subspace_overlap_by_epoch": (epoch_pair, overlap[1:],
                                      {"description": "subspace_overlap within one canonical epoch"}),
        "n_components": ("task", n_components[0], {"description": "principal components kept"}),
        "n_components_by_epoch": (("epoch", "task"), n_components[1:],
                                  {"description": "principal components kept within one epoch"}),
        "mean_covariance_similarity": ((), pair_mean(similarity[0]),
                                       {"description": "mean of covariance_similarity over unordered task pairs"}),
        "mean_subspace_overlap": ((), pair_mean(overlap[0]),
                                  {"description": "mean of subspace_overlap over unordered task pairs"}),
    }
    return xr.Dataset(data_vars, coords={"component": ("component", np.arange(1, max_components + 1))})


def _covariance(states: np.ndarray) -> np.ndarray | None:
    """Unit covariance K = X_cᵀ X_c / n of states (n × M) centred over rows; None with < 2 rows or no variance."""
    if states.shape[0] < 2:
        return None
    centred = states - states.mean(axis=0)
    covariance = centred.T @ centred / states.shape[0]
    return covariance if np.any(covariance) else None


def _basis(covariance: np.ndarray, variance_explained: float, max_components: int) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    rank = int(np.sum(eigenvalues > eigenvalues[0] * 1e-12)) if eigenvalues[0] > 0 else 0
    if rank == 0:
        return eigenvectors[:, :0]
    share = np.cumsum(eigenvalues[:rank]) / eigenvalues[:rank].sum()
    k = int(np.searchsorted(share, variance_explained - 1e-12)) + 1
    return eigenvectors[:, : min(k, max_components, rank)]


def _covariance_similarity_matrix(covariances: list[np.ndarray | None]) -> np.ndarray:
    n = len(covariances)
    result = np.full((n, n), np.nan)
    present = [i for i, c in enumerate(covariances) if c is not None]
    if not present:
        return result
    flat = np.stack([covariances[i].ravel() for i in present])
    flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    result[np.ix_(present, present)] = np.clip(flat @ flat.T, 0.0, 1.0)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Report helpers

_NULL_WORDS = {
    "sharing_index": "Regime sharing index (mean 1 − JS distance of regime occupancy)",
    "mean_jaccard": "Mean Jaccard overlap of visited regimes",
    "shared_regime_fraction": "Fraction of regimes used by several tasks",
    "shared_step_fraction": "Fraction of steps in shared regimes",
    "mean_covariance_similarity": "Unit covariance similarity (regime-free)",
}


def _null_lines(result: xr.Dataset, significance: float = 0.05) -> list[str]:
    """Report lines stating each measure against its null of shuffled task labels."""
    if "null_p_value" not in result:
        return []
    n = int(result.attrs.get("n_permutations", result.sizes.get("permutation", 0)))
    lines = [
        "",
        "### Against shuffled task labels",
        "",
        f"Each measure recomputed with the task labels shuffled across trials ({n} shuffles; trials keep their "
        "regimes and states). *Normalised* = observed / shuffled mean (1 = as shared as if the network ignored "
        f"which task it did); p = one-sided permutation p-value that tasks share *less* than chance, at least "
        f"{1 / (n + 1):.3g} with {n} shuffles.",
        "",
    ]
    for position, measure in enumerate(str(m) for m in result["measure"].values):
        observed, mean, spread, normalised, p = (
            float(result[name].values[position])
            for name in ("null_observed", "null_mean", "null_std", "null_normalised", "null_p_value"))
        if not np.isfinite(observed):
            continue
        higher = bool(result["null_higher_is_shared"].values[position])
        if p <= significance:
            verdict = "tasks share less than chance"
        elif higher and observed >= mean:
            verdict = "as shared as, or more than, with shuffled labels"
        else:
            verdict = "not distinguishable from shuffled labels"
        lines.append(f"- {_NULL_WORDS.get(measure, measure)}: {observed:.2f} vs {mean:.2f} ± {spread:.2f} under "
                     f"shuffled task labels (normalised {normalised:.2f}, p = {p:.3g}): {verdict}.")
    return lines


def _pair_lines(matrix: xr.DataArray, by_epoch: xr.DataArray, most: str, least: str, mean: str) -> list[str]:
    """Report lines: the most and least similar task pairs of ``matrix``, and its mean per epoch."""
    lines = []
    best, worst = _extreme_pairs(matrix)
    if best is not None:
        lines.append(f"{most}: {best[0]} / {best[1]} ({best[2]:.2f}); "
                     f"{least}: {worst[0]} / {worst[1]} ({worst[2]:.2f}).")
    means = _epoch_means(by_epoch)
    if means:
        lines.append(f"{mean} per epoch: " + ", ".join(f"{e} {v:.2f}" for e, v in means) + ".")
    return lines


def _extreme_pairs(matrix: xr.DataArray):
    values = matrix.values
    upper = np.triu_indices(values.shape[0], k=1)
    finite = np.isfinite(values[upper])
    if not finite.any():
        return None, None
    rows, columns = upper[0][finite], upper[1][finite]
    scores = values[rows, columns]
    tasks = matrix["task"].values
    hi, lo = int(np.argmax(scores)), int(np.argmin(scores))
    return ((str(tasks[rows[hi]]), str(tasks[columns[hi]]), float(scores[hi])),
            (str(tasks[rows[lo]]), str(tasks[columns[lo]]), float(scores[lo])))


def _epoch_means(matrix: xr.DataArray) -> list[tuple[str, float]]:
    means = []
    for epoch in matrix["epoch"].values:
        value = pair_mean(matrix.sel(epoch=epoch).values)
        if np.isfinite(value):
            means.append((str(epoch), value))
    return means
