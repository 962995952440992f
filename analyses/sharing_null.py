r"""A null for the sharing measures: the same measure with the task labels shuffled across trials.

Is a network's regime sharing index of 0.4 low? It falls with P partly by
construction (more regimes, fewer shared, and a finite-sample Jensen–Shannon
distance that grows with the number of regimes), so its value alone does not
say whether the *tasks* are less shared than they would be if the network
ignored which task it performed. The null answers that: shuffle the ``task``
label over trials (a uniform random permutation of the trials' task labels)
and recompute the measure. A shuffle keeps every trial's regime sequence and
states, the regimes visited, the number of tasks and each task's number of
trials; only the grouping of trials into tasks becomes random.

For each measure m (see :data:`NULL_MEASURES`) with observed value m_obs and
values m_1 … m_n under n shuffles:

- ``null_mean`` / ``null_std``: mean and standard deviation (ddof = 1) of
  m_1 … m_n; ``null_q05`` / ``null_q95``: their 5th and 95th percentiles.
- ``null_normalised`` = m_obs / mean(m_k): 1 = as shared as if tasks were
  unlabelled. For the similarity measures (``null_higher_is_shared``), below 1
  means the tasks share less than chance.
- ``null_p_value``: one-sided, in the direction "tasks are *less* shared than
  under shuffled labels": p = (1 + #{k : m_k ≤ m_obs}) / (n + 1) for a
  similarity (≥ for a dissimilarity); ties count against significance, and
  the +1 makes p ≥ 1/(n + 1) (Phipson & Smyth 2010). Shuffles that leave a
  measure undefined (NaN) are dropped from its n.

Measures and why they were chosen. The regime measures are the ones
:func:`~neuroalrnn.analyses.sharing.sharing_analysis` summarises
(``sharing_index`` *is* the mean 1 − JS similarity of regime occupancy;
``mean_jaccard``, ``shared_regime_fraction``, ``shared_step_fraction``). The
regime-free measure is ``mean_covariance_similarity`` (the mean over task
pairs of the cosine similarity of the tasks' unit covariances): it pools the
same analysed steps per task as the regime occupancy does, and describes the
same state distribution to second order instead of through the sign pattern
of the P units, so "regimes less shared than chance, covariances not" points
at the partition, while both points at the tasks. Principal-angle overlap and
unit clusters are left out of the null: each shuffle would need 2T
eigendecompositions or a k-means fit, and the top-k cut (subspaces) and the
silhouette choice of k (clusters) make them jump under small changes.

Each shuffle is cheap because everything that does not depend on the labels
is computed once: per-trial regime visit counts (a sparse trial × regime
matrix), per-trial analysed-step counts and state sums, the Gram matrix
G_ij = ⟨Q_i, Q_j⟩_F of the trials' second-moment matrices Q_i = Σ_t z_t z_tᵀ
(states centred by their pooled mean, which changes no covariance). With
w_A = 1/n_A on A's trials, μ_A = Σ_{i∈A} w_A s_i and K_A = Σ_{i∈A} w_A Q_i −
μ_A μ_Aᵀ, every ⟨K_A, K_B⟩_F = w_Aᵀ G w_B − μ_Bᵀ Q̄_A μ_B − μ_Aᵀ Q̄_B μ_A +
(μ_Aᵀ μ_B)², where μ_Bᵀ Q̄_A μ_B = Σ_{i∈A} w_A Σ_{t∈i} (z_t · μ_B)².
:func:`sharing_null` equals :func:`~neuroalrnn.analyses.sharing.sharing_analysis`
recomputed on a relabelled Dataset (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from scipy import sparse
from scipy.special import xlogy

from .. import formats

if TYPE_CHECKING:
    from .sharing import _Steps

__all__ = ["NULL_MEASURES", "shuffled_task_labels", "sharing_null"]

DEFAULT_PERMUTATIONS = 200

# measure -> (higher value = more shared, level, what it is)
NULL_MEASURES: dict[str, tuple[bool, str, str]] = {
    "sharing_index": (True, "regimes", "mean over task pairs of 1 − JS distance of regime occupancy"),
    "mean_jaccard": (True, "regimes", "mean over task pairs of the Jaccard overlap of visited regime sets"),
    "shared_regime_fraction": (True, "regimes", "fraction of visited regimes visited by more than one task"),
    "shared_step_fraction": (True, "regimes", "mean over tasks of the fraction of steps in shared regimes"),
    "mean_covariance_similarity": (True, "states", "mean over task pairs of the cosine similarity of the "
                                                   "tasks' unit covariances (regime-free)"),
}
"""The measures given a null: name -> (higher is more shared, level ("regimes" or "states"), meaning)."""

NULL_VARIABLES = ("null_observed", "null_mean", "null_std", "null_q05", "null_q95", "null_normalised",
                  "null_p_value")
"""The per-measure summaries of the null, in the order :func:`~neuroalrnn.analyses.sharing.compare_sharing` keeps."""

_TIE_TOLERANCE = 1e-12  # relative: a null value this close to the observed one counts as a tie
_BLOCK_BYTES = 64 * 2**20  # working-memory cap of one block of per-trial second moments


def shuffled_task_labels(task_index: np.ndarray, n_permutations: int, random_state: int = 0) -> np.ndarray:
    """(n_permutations, trial) task positions: shuffle k gives trial i the label of trial ``order_k[i]``.

    Each row is ``task_index[rng.permutation(n_trials)]`` with
    ``rng = numpy.random.default_rng(random_state)``, drawn in row order, so
    the same ``random_state`` gives the same shuffles.
    """
    task_index = np.asarray(task_index)
    rng = np.random.default_rng(random_state)
    return np.stack([task_index[rng.permutation(task_index.size)] for _ in range(int(n_permutations))]) \
        if n_permutations else np.zeros((0, task_index.size), dtype=task_index.dtype)


def sharing_null(
    latents: np.ndarray,
    steps: _Steps,
    regime: np.ndarray | None,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    random_state: int = 0,
    min_occupancy: float = 0.0,
) -> xr.Dataset:
    """The null of every measure in :data:`NULL_MEASURES`; called by :func:`~.sharing.sharing_analysis`.

    ``latents`` (trial, time, unit) float64; ``steps`` the analysed steps
    (``sharing._analysed_steps``); ``regime`` (trial, time) labels (codes or
    hex strings) or None (no regimes: only the regime-free measures). Returns
    a Dataset on dims ``measure`` and ``permutation`` (see the module
    docstring): ``null_observed``, ``null_mean``, ``null_std``, ``null_q05``,
    ``null_q95``, ``null_normalised``, ``null_p_value``,
    ``null_higher_is_shared`` and ``null_distribution`` (measure, permutation).
    """
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be a positive number of shuffles here, got {n_permutations!r}")
    n_tasks = len(steps.tasks)
    labels = np.concatenate([steps.task_index[None, :],
                             shuffled_task_labels(steps.task_index, n_permutations, random_state)])
    values: dict[str, np.ndarray] = {}
    if regime is not None:
        regime_null = _RegimeNull(regime, steps, min_occupancy)
        rows = [regime_null.measures(row, n_tasks) for row in labels]
        for name in ("sharing_index", "mean_jaccard", "shared_regime_fraction", "shared_step_fraction"):
            values[name] = np.asarray([row[name] for row in rows])
    values["mean_covariance_similarity"] = _CovarianceNull(latents, steps).mean_similarity(labels, n_tasks)
    return _summarise(values, int(n_permutations))


def _summarise(values: dict[str, np.ndarray], n_permutations: int) -> xr.Dataset:
    names = list(values)
    distribution = np.stack([values[name][1:] for name in names])
    observed = np.asarray([values[name][0] for name in names])
    higher = np.asarray([NULL_MEASURES[name][0] for name in names])
    summary = {key: np.full(len(names), np.nan) for key in NULL_VARIABLES}
    for position, (name, sample) in enumerate(zip(names, distribution, strict=True)):
        sample = sample[np.isfinite(sample)]
        value = observed[position]
        summary["null_observed"][position] = value
        if not sample.size:
            continue
        mean = float(sample.mean())
        summary["null_mean"][position] = mean
        summary["null_std"][position] = float(sample.std(ddof=1)) if sample.size > 1 else np.nan
        summary["null_q05"][position], summary["null_q95"][position] = np.percentile(sample, [5, 95])
        if np.isfinite(value):
            if mean != 0:
                summary["null_normalised"][position] = value / mean
            slack = _TIE_TOLERANCE * max(abs(value), 1.0)
            extreme = sample <= value + slack if higher[position] else sample >= value - slack
            summary["null_p_value"][position] = (1 + int(extreme.sum())) / (sample.size + 1)
    data_vars = {key: ("measure", summary[key], {"description": formats.description("sharing", key)})
                 for key in NULL_VARIABLES}
    data_vars["null_higher_is_shared"] = ("measure", higher,
                                          {"description": "a higher value means more sharing (a similarity)"})
    data_vars["null_distribution"] = (("measure", "permutation"), distribution,
                                      {"description": "the measure under each task-label shuffle"})
    coords = {
        "measure": ("measure", np.asarray(names, dtype=str),
                    {"description": "sharing measure given a null (level: " + ", ".join(
                        f"{name} {NULL_MEASURES[name][1]}" for name in names) + ")"}),
        "permutation": ("permutation", np.arange(n_permutations)),
    }
    return xr.Dataset(data_vars, coords=coords)


# ----------------------------------------------------------------------------------------------------------------
# Regimes: sparse trial × regime counts, aggregated per shuffle


class _RegimeNull:
    """Label-free parts of the regime measures; :meth:`measures` evaluates them for one labelling of the trials."""

    def __init__(self, regime: np.ndarray, steps: _Steps, min_occupancy: float):
        analysed = steps.analysed
        _, step_regime = np.unique(regime[analysed], return_inverse=True)
        step_trial = np.broadcast_to(np.arange(analysed.shape[0])[:, None], analysed.shape)[analysed]
        self.n_trials = analysed.shape[0]
        self.n_regimes = int(step_regime.max()) + 1 if step_regime.size else 0
        counts = sparse.coo_matrix((np.ones(step_regime.size), (step_trial, step_regime.ravel())),
                                   shape=(self.n_trials, self.n_regimes))
        self.counts = counts.tocsr()  # (trial, regime) analysed steps; duplicates summed
        self.steps_per_trial = analysed.sum(axis=1).astype(np.float64)
        self.min_occupancy = float(min_occupancy)

    def measures(self, labels: np.ndarray, n_tasks: int) -> dict[str, float]:
        onehot = sparse.csr_matrix((np.ones(self.n_trials), (labels, np.arange(self.n_trials))),
                                   shape=(n_tasks, self.n_trials))
        counts = (onehot @ self.counts).tocsr()  # (task, regime)
        counts.sum_duplicates()
        counts.eliminate_zeros()
        totals = np.bincount(labels, weights=self.steps_per_trial, minlength=n_tasks)
        has_steps = totals > 0
        row = np.repeat(np.arange(n_tasks), np.diff(counts.indptr))
        occupancy = counts.data / totals[row]
        visited_entry = occupancy > self.min_occupancy
        visited = counts.copy()  # own index arrays: eliminate_zeros below must not prune counts
        visited.data = visited_entry.astype(np.float64)
        visited.eliminate_zeros()

        sizes = np.asarray(visited.sum(axis=1)).ravel()
        intersection = (visited @ visited.T).toarray()
        union = sizes[:, None] + sizes[None, :] - intersection
        jaccard = np.divide(intersection, union, out=np.full(union.shape, np.nan), where=union > 0)
        jaccard[~has_steps, :] = np.nan
        jaccard[:, ~has_steps] = np.nan

        n_tasks_using = np.asarray(visited.sum(axis=0)).ravel()
        shared = n_tasks_using > 1
        n_visited = int((n_tasks_using > 0).sum())
        shared_steps = np.bincount(row, weights=np.where(shared[counts.indices], occupancy, 0.0),
                                   minlength=n_tasks)
        shared_steps[~has_steps] = np.nan

        return {
            "sharing_index": _pair_mean(self._js_similarity(counts, totals, has_steps, n_tasks)),
            "mean_jaccard": _pair_mean(jaccard),
            "shared_regime_fraction": shared.sum() / n_visited if n_visited else np.nan,
            "shared_step_fraction": float(np.mean(shared_steps)),
        }

    @staticmethod
    def _js_similarity(counts: sparse.csr_matrix, totals: np.ndarray, has_steps: np.ndarray, n_tasks: int):
        """1 − JS distance (base 2) for every task pair, from the regimes at least two tasks visit.

        JSD(p, q) = ln 2 − ½ Σ_Ω [f(p_Ω + q_Ω) − f(p_Ω) − f(q_Ω)] nats with
        f(x) = x ln x; the sum is 0 over a regime only one of the two visits,
        so only regimes visited by several tasks are needed.
        """
        result = np.full((n_tasks, n_tasks), np.nan)
        columns = np.flatnonzero(np.bincount(counts.indices, minlength=counts.shape[1]) > 1)
        dense = counts[:, columns].toarray()
        occupancy = np.divide(dense, totals[:, None], out=np.zeros_like(dense), where=totals[:, None] > 0)
        own = xlogy(occupancy, occupancy).sum(axis=1)
        for a in range(n_tasks - 1):
            others = occupancy[a + 1:]
            gain = xlogy(occupancy[a] + others, occupancy[a] + others).sum(axis=1) - own[a] - own[a + 1:]
            divergence = np.log(2.0) - 0.5 * gain
            distance = np.sqrt(np.clip(divergence / np.log(2.0), 0.0, 1.0))
            result[a, a + 1:] = result[a + 1:, a] = 1.0 - distance
        result[~has_steps, :] = np.nan
        result[:, ~has_steps] = np.nan
        return result


# ----------------------------------------------------------------------------------------------------------------
# States: unit covariances from per-trial moments


class _CovarianceNull:
    """Label-free parts of the unit covariance similarity: per-trial step counts, state sums and the Gram matrix
    of the per-trial second-moment matrices (see the module docstring)."""

    def __init__(self, latents: np.ndarray, steps: _Steps):
        analysed = steps.analysed
        states = latents[analysed]  # (step, unit), trial-major
        if states.shape[0]:
            states = states - states.mean(axis=0)
        self.states = states
        self.counts = analysed.sum(axis=1)
        self.bounds = np.concatenate([[0], np.cumsum(self.counts)])
        n_trials = analysed.shape[0]
        # (trial, step) indicator: sums a per-step quantity over each trial's steps
        self.trial_of_step = sparse.csr_matrix(
            (np.ones(states.shape[0]), (np.repeat(np.arange(n_trials), self.counts), np.arange(states.shape[0]))),
            shape=(n_trials, states.shape[0]))
        self.sums = self.trial_of_step @ states  # (trial, unit)
        self.gram = self._second_moment_gram()
        # Only Σ_t (z_t · μ_B)², the one product that grows with steps × shuffles, is taken in float32 (half the
        # time; relative error of the similarities ~1e-8, measured); the Gram matrix stays float64.
        self.states32 = states.astype(np.float32)
        self.trial_of_step32 = self.trial_of_step.astype(np.float32)

    def _second_moment_gram(self) -> np.ndarray:
        """G_ij = ⟨Q_i, Q_j⟩_F, Q_i = Σ_t z_t z_tᵀ, from the upper triangle of Q (off-diagonal terms × 2)."""
        n_trials, n_units = self.counts.size, self.states.shape[1]
        gram = np.zeros((n_trials, n_trials))
        rows = max(1, min(n_units, _BLOCK_BYTES // max(1, 8 * n_trials * n_units)))
        for start in range(0, n_units, rows):
            stop = min(n_units, start + rows)
            row_units, column_units = np.arange(start, stop)[:, None], np.arange(start, n_units)[None, :]
            scale = np.sqrt(np.where(column_units > row_units, 2.0, np.where(column_units == row_units, 1.0, 0.0)))
            block = np.empty((n_trials, stop - start, n_units - start), dtype=self.states.dtype)
            for trial in range(n_trials):
                states = self.states[self.bounds[trial]:self.bounds[trial + 1]]
                np.matmul(states[:, start:stop].T, states[:, start:], out=block[trial])
            flat = (block * scale.astype(block.dtype)).reshape(n_trials, -1)
            gram += flat @ flat.T
        return gram

    def mean_similarity(self, labels: np.ndarray, n_tasks: int) -> np.ndarray:
        """Mean over task pairs of the covariance cosine similarity, for each row of ``labels`` (labelling, trial)."""
        n_labellings, n_trials = labels.shape
        n_steps_total, n_units = self.states.shape
        result = np.empty(n_labellings)
        chunk = max(1, _BLOCK_BYTES // max(1, 4 * n_steps_total * n_tasks))
        for start in range(0, n_labellings, chunk):
            rows = labels[start:start + chunk]
            k = rows.shape[0]
            onehot = np.zeros((k, n_tasks, n_trials))
            onehot[np.arange(k)[:, None], rows, np.arange(n_trials)[None, :]] = 1.0
            n_steps = onehot @ self.counts  # (k, task)
            weights = np.divide(onehot, n_steps[..., None], out=np.zeros_like(onehot),
                                where=n_steps[..., None] > 0).reshape(k * n_tasks, n_trials)
            means = weights @ self.sums  # (k·task, unit); 2-D products: stacked ones miss BLAS here
            first = np.einsum("kan,kbn->kab", (weights @ self.gram).reshape(k, n_tasks, n_trials),
                              weights.reshape(k, n_tasks, n_trials))  # w_Aᵀ G w_B
            # projected[i, (j, B)] = Σ_{t∈i} (z_t · μ_B)² under labelling j
            projection = self.states32 @ means.T.astype(np.float32)
            projected = (self.trial_of_step32 @ np.square(projection, out=projection)).astype(np.float64)
            cross = np.einsum("kan,nkb->kab", weights.reshape(k, n_tasks, n_trials),
                              projected.reshape(n_trials, k, n_tasks))  # μ_Bᵀ Q̄_A μ_B
            means = means.reshape(k, n_tasks, n_units)
            inner = first - cross - cross.transpose(0, 2, 1) + (means @ means.transpose(0, 2, 1)) ** 2
            for offset in range(k):
                result[start + offset] = _pair_mean(_cosine(inner[offset], first[offset], n_steps[offset]))
        return result


def _cosine(inner: np.ndarray, scale: np.ndarray, n_steps: np.ndarray) -> np.ndarray:
    """⟨K_A, K_B⟩ / (‖K_A‖ ‖K_B‖) from the inner products; NaN for a task with < 2 steps or no variance."""
    norms = np.diag(inner).copy()
    # ‖K_A‖² is a difference of terms of size ‖Q̄_A‖²: below rounding of those it is a task without variance.
    flat = (n_steps < 2) | (norms <= 1e-20 * np.abs(np.diag(scale)))
    norms[flat] = np.nan
    with np.errstate(invalid="ignore"):
        similarity = np.clip(inner / np.sqrt(np.outer(np.clip(norms, 0, None), np.clip(norms, 0, None))), 0.0, 1.0)
    similarity[flat, :] = np.nan
    similarity[:, flat] = np.nan
    return similarity


def _pair_mean(matrix: np.ndarray) -> float:
    upper = matrix[np.triu_indices(matrix.shape[0], k=1)]
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if upper.size else float("nan")
