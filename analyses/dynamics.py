"""Per-regime linear dynamics of an AL-RNN: linear maps, spectra, fixed points, gains and cycles.

(Longer than most modules: regime maps, fixed points and cycles share the regime-code
handling, the drive c = C s + h and the batched linear-algebra helpers below, which
the three would otherwise import from one another.)

Within regime Ω (bits d_i = [z_{M-P+i} > 0], integer code Σ_i d_i 2^i, a bit
of a state exactly 0 counts as off) the AL-RNN is affine under a constant
input s::

    z_t = W_Ω z_{t-1} + c,    W_Ω = diag(A) + W D_Ω,    c = C s + h.

Everything here is a pure function of the parameters (:class:`ALRNNParams`)
and returns an xarray object stacked on a ``regime`` (or ``fixed_point``,
``cycle``) dimension whose labels are regime codes, with canonical orders and
signs so that results are reproducible and NetCDF-safe (no complex dtype).

It is longer than most modules because fixed points, cycles, gains and spectra
share the regime-block machinery (reduced eigenproblems, threaded blocks, the
canonical ordering) that keeps them consistent with each other.
Integer codes limit this module to P ≤ 62.

* :func:`regime_dynamics` — W_Ω, eigenvalues, spectral radius, slowest mode,
  fixed point and its reality, steady-state gain and operator norm of each
  visited regime under each analysed input.
* :func:`amplification` — ||W_Ω^k||_2 for k = 1..n_steps (transient
  amplification: > 1 while the spectral radius is < 1).
* :func:`find_fixed_points` — every real fixed point, exhaustively over the
  2^P regimes or over given regimes.
* :func:`find_cycles` — k-cycles, by exhaustive enumeration of regime
  sequences or the SCYFI heuristic (Eisenmann et al., NeurIPS 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import numpy as np
import xarray as xr
from scipy.linalg import lapack

from ..models import MAX_INTEGER_CODE_BITS, ALRNNParams, bits_to_codes, codes_to_bits
from ..system import available_cores

__all__ = ["amplification", "find_cycles", "find_fixed_points", "regime_dynamics"]

SINGULAR_CONDITION = 1e12
"""I − W_Ω counts as singular when its (1-norm) condition number exceeds this."""
MAX_EXHAUSTIVE_REGIMES_BITS = 20
"""find_fixed_points enumerates all 2^P regimes only up to this P."""
MAX_EXHAUSTIVE_SEQUENCES = 1_000_000
"""find_cycles(method="exhaustive") refuses more regime sequences (2^P)^k than this."""
AUTO_EXHAUSTIVE_FLOPS = 2e10
"""find_cycles(method="auto") enumerates when (2^P)^k · 2 M^3 stays below this."""
CYCLE_METHODS = ("auto", "exhaustive", "scyfi")
_CHUNK_FLOATS = 2**23  # about 64 MB of float64 per batch of stacked matrices


# ---------------------------------------------------------------- per-regime dynamics


def operator_norms(matrices: np.ndarray) -> np.ndarray:
    """‖X‖₂ (largest singular value) of each matrix in a stack (n, M, M), split over threads.

    σ_max² is the largest eigenvalue of XᵀX, found alone by LAPACK dsyevr
    (see :func:`_operator_norm`).
    """
    return _split_over_threads(lambda stack: np.array([_operator_norm(matrix) for matrix in stack]), matrices)


def eigenvalues_parallel(matrices: np.ndarray) -> np.ndarray:
    """Eigenvalues (unsorted) of each matrix in a stack (n, M, M), split over threads (see :func:`_eigenvalues`)."""
    return _split_over_threads(_eigenvalues, matrices)


def _eigenvalues(matrices: np.ndarray) -> np.ndarray:
    """Eigenvalues of a stack (n, M, M): LAPACK dgeev through torch (Intel MKL) on the same memory.

    Same algorithm as ``np.linalg.eigvals`` (balancing, Hessenberg reduction,
    Francis QR), but torch releases the GIL for any call, while NumPy holds it
    for a single matrix (and SciPy's ``lapack.dgeev`` always), so only torch
    lets threads work on one matrix each at the same time. Results agree with
    ``np.linalg.eigvals`` to rounding. Like NumPy it refuses NaN and inf, on
    which torch returns numbers.
    """
    import torch

    matrices = np.ascontiguousarray(matrices, dtype=float)
    _check_finite(matrices)
    return torch.linalg.eigvals(torch.from_numpy(matrices)).numpy()


def _regime_eigenvalues(params: ALRNNParams, bits: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Eigenvalues (unsorted) of the W_Ω (n, M, M) of regimes with bits (n, P).

    With ReLU units (α = 0) an off unit j has column A_j e_j in W_Ω. Listing
    the off units last makes W_Ω block lower triangular, [[W_SS, 0], [·,
    diag(A_off)]], so its eigenvalues are the A_j of the off units and those of
    W_SS, W_Ω restricted to the linear and on units S; only W_SS goes to
    LAPACK.
    """
    if params.slope != 0:
        return _eigenvalues(matrices)
    _check_finite(matrices)
    M, P = params.n_units, params.n_nonlinear
    eigenvalues = np.empty(matrices.shape[:2], dtype=complex)
    for i, (regime_bits, matrix) in enumerate(zip(bits, matrices, strict=True)):
        kept = np.concatenate([np.ones(M - P, dtype=bool), regime_bits])
        n_kept = int(kept.sum())
        if n_kept:
            eigenvalues[i, :n_kept] = _eigenvalues(matrix[np.ix_(kept, kept)][None])[0]
        eigenvalues[i, n_kept:] = params.A[~kept]
    return eigenvalues


def _check_finite(matrices: np.ndarray) -> None:
    if not np.isfinite(matrices).all():
        raise np.linalg.LinAlgError("eigenvalues of a matrix with NaN or inf entries; are the parameters finite?")


def _split_over_threads(function, stack: np.ndarray) -> np.ndarray:
    """``function`` applied to blocks of ``stack`` (split along axis 0), concatenated in order."""
    if len(stack) == 0:
        return function(stack)
    blocks = _blocks(len(stack), stack.shape[-1])
    return np.concatenate(_map_over_threads(lambda block: function(stack[block]), blocks))


def _map_over_threads(function, items: list) -> list:
    """[function(item) for item in items], on one thread per core, each with one BLAS/LAPACK thread.

    Dense LAPACK routines on these small matrices gain little from threaded
    BLAS and lose badly when another job shares the cores, so the library
    threads are limited to one for the duration (OpenBLAS through threadpoolctl, torch's
    MKL through ``torch.set_num_threads``; both restored afterwards) and one
    Python thread per core runs the items, handed out one at a time so that a
    core slowed by another job does less. Only calls that release the GIL run
    in parallel: LU factorisations and solves, matrix products, and the
    eigenvalues from :func:`_eigenvalues`.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(items), available_cores())
    with _one_library_thread():
        if workers <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(function, items))


@contextmanager
def _one_library_thread():
    """OpenBLAS (threadpoolctl) and torch (MKL, OpenMP) on one thread each, restored on exit."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


def _blocks(n_items: int, size: int) -> list[slice]:
    """Consecutive slices of range(n_items) for :func:`_map_over_threads`.

    Matrices smaller than 32 × 32 go in one block (threads cost more than they
    save); larger ones in blocks of at most 4, enough for the threads to share
    the work evenly.
    """
    if size < 32:
        return [slice(0, n_items)]
    step = max(1, min(4, -(-n_items // (4 * available_cores()))))
    return [slice(start, min(start + step, n_items)) for start in range(0, n_items, step)]


def regime_dynamics(
    params: ALRNNParams,
    codes: Iterable[int],
    inputs: xr.DataArray,
    *,
    max_regimes: int | None = None,
) -> xr.Dataset:
    r"""Linear map, spectrum, fixed points and gains of each regime in ``codes``.

    For regime Ω with bits d (unit M−P+i has bit i) and each constant input s
    (a row of ``inputs``), with c = C s + h::

        W_Ω            = diag(A) + W D_Ω,  D_Ω = diag(1 … 1, g(d_1) … g(d_P)),
                         g(d) = d + α (1 − d)          (α = params.slope)
        eigenvalues    λ_1 … λ_M of W_Ω, ordered by |λ| descending, ties by
                       arg λ ∈ (−π, π] ascending (a conjugate pair: the one
                       with negative imaginary part first)
        spectral_radius = |λ_1|;  stable = |λ_1| < 1
        slow_mode      = eigenvector of λ_1 (W_Ω v = λ_1 v); for complex λ_1 the
                         eigenvector is first rotated so that its largest-modulus
                         entry is real and positive and its real part is kept;
                         then normalised to unit length with its largest-|entry|
                         positive
        fixed_point    z*_Ω(s) = (I − W_Ω)^{-1} c   (NaN when I − W_Ω is singular:
                       1-norm condition number, LAPACK gecon, > 1e12)
        fixed_point_real = [z*_{M-P+i} > 0] == d_i for every i (a "real" fixed
                       point lies in Ω; else it is "virtual"); False when NaN
        fixed_point_stable = stable (the same for every s)
        gain           = B (I − W_Ω)^{-1} C, steady-state input→output gain in Ω
                       (NaN when I − W_Ω is singular)
        operator_norm  = ||W_Ω||_2, the largest singular value

    Parameters
    ----------
    params : the AL-RNN's parameters; P ≤ 62.
    codes : the regime codes to analyse (e.g. the visited ones, most occupied
        first). Duplicates are dropped; the output is sorted by code.
    inputs : DataArray with dims ("condition", "input"): the constant inputs s
        to analyse (e.g. each epoch's mean input), K = params.n_inputs columns.
    max_regimes : keep only the first ``max_regimes`` distinct codes in the
        given order (pass codes sorted by occupancy). The number of distinct
        codes asked for is recorded in attr ``n_regimes_requested``.

    Returns
    -------
    Dataset with dims ``regime`` (coordinate: the codes), ``unit``, ``unit_from``,
    ``mode``, ``condition``, ``output``, ``input``, ``bit`` and variables
    ``bits``, ``W_regime``, ``eigenvalue_real``, ``eigenvalue_imag``,
    ``spectral_radius``, ``stable``, ``slow_mode``, ``fixed_point``,
    ``fixed_point_real``, ``fixed_point_stable``, ``gain``, ``operator_norm``.
    """
    _check_integer_codes(params)
    requested = _normalise_codes(codes, params.n_nonlinear)
    if max_regimes is not None:
        if isinstance(max_regimes, bool) or not isinstance(max_regimes, int | np.integer) or max_regimes < 1:
            raise ValueError(f"max_regimes must be a positive integer or None, got {max_regimes!r}")
        kept = requested[:max_regimes]
    else:
        kept = requested
    regimes = np.sort(kept)
    s, condition_coord, input_coord = _check_inputs(inputs, params.n_inputs)

    M, P, K, O = params.n_units, params.n_nonlinear, params.n_inputs, params.B.shape[0]
    bits = codes_to_bits(regimes, P)
    n, n_conditions = len(regimes), len(s)
    drive = s @ params.C.T + params.h  # (condition, M)
    rhs = np.concatenate([drive.T, params.C], axis=1)  # (M, conditions + K)
    identity = np.eye(M)
    matrices = np.empty((n, M, M))
    eigenvalues = np.empty((n, M), dtype=complex)
    slow_mode = np.empty((n, M))
    operator_norm = np.empty(n)
    fixed_point = np.full((n, n_conditions, M), np.nan)
    gain = np.full((n, O, K), np.nan)

    def analyse(block: slice) -> None:
        # One block of regimes from start to end; it writes only its own rows.
        matrices[block] = params.regime_matrix(bits[block])
        eigenvalues[block] = _canonical_eigenvalues(_regime_eigenvalues(params, bits[block], matrices[block]))
        for r in range(block.start, block.stop):
            slow_mode[r] = _slow_mode(matrices[r], eigenvalues[r, 0])
            operator_norm[r] = _operator_norm(matrices[r])
            solution = _solve_well_conditioned(identity - matrices[r], rhs)
            if solution is not None:
                fixed_point[r] = solution[:, :n_conditions].T
                gain[r] = params.B @ solution[:, n_conditions:]

    _map_over_threads(analyse, _blocks(n, M))
    spectral_radius = np.abs(eigenvalues[:, 0])
    fixed_bits = fixed_point[..., M - P :] > 0
    fixed_point_real = np.isfinite(fixed_point).all(axis=-1) & (fixed_bits == bits[:, None, :]).all(axis=-1)
    stable = spectral_radius < 1

    return xr.Dataset(
        {
            "bits": (("regime", "bit"), bits),
            "W_regime": (("regime", "unit", "unit_from"), matrices),
            "eigenvalue_real": (("regime", "mode"), eigenvalues.real),
            "eigenvalue_imag": (("regime", "mode"), eigenvalues.imag),
            "spectral_radius": ("regime", spectral_radius),
            "stable": ("regime", stable),
            "slow_mode": (("regime", "unit"), slow_mode),
            "fixed_point": (("regime", "condition", "unit"), fixed_point),
            "fixed_point_real": (("regime", "condition"), fixed_point_real),
            "fixed_point_stable": (("regime", "condition"), np.repeat(stable[:, None], n_conditions, axis=1)),
            "gain": (("regime", "output", "input"), gain),
            "operator_norm": ("regime", operator_norm),
        },
        coords={
            "regime": regimes,
            "unit": np.arange(M),
            "unit_from": np.arange(M),
            "mode": np.arange(M),
            "condition": condition_coord,
            "input": input_coord,
            "output": np.arange(O),
            "bit": np.arange(P),
        },
        attrs={
            "n_regimes_requested": len(requested),
            "n_units": M,
            "n_nonlinear": P,
            "slope": float(params.slope),
            "singular_condition": SINGULAR_CONDITION,
            "description": "per-regime linear dynamics z_t = W_Ω z_{t-1} + C s + h, W_Ω = diag(A) + W D_Ω",
        },
    )


def amplification(params: ALRNNParams, codes: Iterable[int], n_steps: int = 20) -> xr.DataArray:
    r"""||W_Ω^k||_2 (largest singular value of the k-th power) for k = 1..n_steps.

    Transient amplification shows as ||W_Ω^k||_2 > 1 in a regime whose spectral
    radius is < 1 (a non-normal W_Ω): perturbations grow for a while before they
    decay. Costs one SVD per regime and step. Returns a DataArray with dims
    ("regime", "k"), regimes sorted by code and duplicates dropped.
    """
    _check_integer_codes(params)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    regimes = np.sort(_normalise_codes(codes, params.n_nonlinear))
    matrices = params.regime_matrix(codes_to_bits(regimes, params.n_nonlinear))
    norms = np.empty((len(regimes), n_steps))
    power = matrices
    scale = np.ones(len(regimes))
    # Keep the power normalised and carry its norm as a factor, so unstable
    # regimes overflow only in the returned number, never inside the product.
    with np.errstate(over="ignore"):
        for k in range(n_steps):
            top = np.linalg.svd(power, compute_uv=False)[:, 0]
            norms[:, k] = scale * top
            safe = np.where(top > 0, top, 1.0)
            power = matrices @ (power / safe[:, None, None])
            scale = scale * safe
    return xr.DataArray(
        norms,
        dims=("regime", "k"),
        coords={"regime": regimes, "k": np.arange(1, n_steps + 1)},
        name="amplification",
        attrs={"description": "largest singular value ||W_Ω^k||_2 of the k-th power of the regime's linear map"},
    )


# ---------------------------------------------------------------- fixed points


def find_fixed_points(params: ALRNNParams, s, *, codes: Iterable[int] | None = None) -> xr.Dataset:
    r"""All real fixed points under the constant input s.

    For each regime Ω (all 2^P when ``codes`` is None, else the given ones)
    the candidate is z*_Ω = (I − W_Ω)^{-1} (C s + h); it is kept when it is real
    (its bits reproduce Ω: z*_{M-P+i} > 0 iff d_i) and one step of
    ``params.step`` returns it: max_i |F(z*)_i − z*_i| ≤ 1e-8 · max(1, max_i |z*_i|).
    A regime whose I − W_Ω is exactly singular has no isolated fixed point and
    is skipped. ``stable`` = spectral radius of W_Ω < 1.

    Exhaustive search is limited to P ≤ 20; for larger P pass ``codes`` (e.g.
    the regimes visited on the task).

    Returns a Dataset with dims ``fixed_point`` and ``unit`` and variables
    ``point`` (fixed_point, unit), ``regime`` (int code), ``stable``,
    ``spectral_radius``; fixed points ordered by regime code.
    """
    _check_integer_codes(params)
    P = params.n_nonlinear
    drive = _drive(params, s)
    s = np.asarray(s, dtype=float)
    if codes is None:
        if P > MAX_EXHAUSTIVE_REGIMES_BITS:
            raise ValueError(
                f"find_fixed_points enumerates all 2^P regimes only for P ≤ {MAX_EXHAUSTIVE_REGIMES_BITS}; "
                f"this network has P={P}. Pass codes=... (e.g. the regimes visited on the task)"
            )
        regimes = np.arange(2**P, dtype=np.int64)
    else:
        regimes = np.sort(_normalise_codes(codes, P))

    M = params.n_units
    points, found, radii = [], [], []
    chunk = max(1, _CHUNK_FLOATS // (M * M))
    for start in range(0, len(regimes), chunk):
        block = regimes[start : start + chunk]
        bits = codes_to_bits(block, P)
        matrices = params.regime_matrix(bits)
        z = _solve_batched(np.eye(M) - matrices, np.broadcast_to(drive, (len(block), M)))
        finite = np.isfinite(z).all(axis=1)
        real = finite & ((z[:, M - P :] > 0) == bits).all(axis=1)
        z_real = z[real]
        error = np.abs(params.step(z_real, s) - z_real).max(axis=1, initial=0.0)
        confirmed = error <= 1e-8 * np.maximum(1.0, np.abs(z_real).max(axis=1, initial=0.0))
        points.append(z_real[confirmed])
        found.append(block[real][confirmed])
        if confirmed.any():
            radii.append(np.abs(np.linalg.eigvals(matrices[real][confirmed])).max(axis=1))
    point = np.concatenate(points) if points else np.empty((0, M))
    regime = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
    spectral_radius = np.concatenate(radii) if radii else np.empty(0)
    return xr.Dataset(
        {
            "point": (("fixed_point", "unit"), point.reshape(-1, M)),
            "regime": ("fixed_point", regime.astype(np.int64)),
            "stable": ("fixed_point", spectral_radius < 1),
            "spectral_radius": ("fixed_point", spectral_radius),
        },
        coords={"fixed_point": np.arange(len(regime)), "unit": np.arange(M)},
        attrs={"n_regimes_searched": len(regimes), "input": s.tolist() if s.size else []},
    )


# ---------------------------------------------------------------- cycles


def find_cycles(
    params: ALRNNParams,
    s,
    period: int,
    *,
    method: str = "auto",
    n_restarts: int = 200,
    max_iterations: int = 100,
    seed: int = 0,
    step: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    tolerance: float = 1e-8,
) -> xr.Dataset:
    r"""k-cycles (k = ``period`` ≥ 2) of the map under the constant input s.

    The map is F(z) = W_{Ω(z)} z + c with c = C s + h, where Ω(z) is the regime
    of the current state. A k-cycle z_1 → z_2 → … → z_k → z_1 with z_j in
    regime Ω_j (W_j = W_{Ω_j}) satisfies z_{j+1} = W_j z_j + c and
    z_1 = W_k z_k + c; unrolling::

        z_1 = W_k⋯W_1 z_1 + Σ_{j=1..k} W_k⋯W_{j+1} c        (j = k term: I c)
        z_1 = (I − W_k⋯W_1)^{-1} Σ_{j=1..k} W_k⋯W_{j+1} c
        z_{j+1} = W_j z_j + c,   j = 1 … k−1

    A regime sequence gives a cycle when the points' own regimes reproduce it
    (Ω(z_j) = Ω_j for every j). Stability: the k-step Jacobian at z_1 is
    W_k⋯W_1; ``stable`` = its spectral radius < 1.

    Methods:

    * ``"exhaustive"``: every sequence of k regimes, (2^P)^k of them (refused
      above 1e6). Only one rotation of each is solved — aperiodic sequences
      smaller than all their rotations (Lyndon words) — because a rotated
      sequence gives the same cycle rotated, and a sequence with a shorter
      period can only give a fixed point, a shorter cycle, or a non-isolated
      cycle (I − W_k⋯W_1 singular).
    * ``"scyfi"``: SCYFI (Eisenmann et al., NeurIPS 2023). Each of
      ``n_restarts`` restarts draws a random regime sequence (seeded by
      ``seed``), solves for the candidate cycle, and replaces the sequence by
      the regimes its points actually lie in, until the sequence is
      self-consistent or ``max_iterations`` is reached. A restart also ends
      when I − W_k⋯W_1 is singular or when it returns to a sequence it has
      already tried (the update is deterministic, so it would loop). Cost per
      restart and iteration: k products and one solve of size M.
    * ``"auto"``: exhaustive when (2^P)^k ≤ 1e6 and (2^P)^k · 2 M³ ≤ 2e10
      floating-point operations, else SCYFI.

    Every candidate is confirmed by iterating ``step`` (default ``params.step``;
    any function z (M,), s (K,) -> next z, e.g. a wrapper of the torch model's
    step) k times from z_1: each iterate must match the next cycle point and
    the k-th return to z_1 within ``tolerance`` · max(1, max |z|). Only cycles of
    minimal period k are kept (no fixed points, no shorter cycles repeated),
    deduplicated up to cyclic rotation, each starting at its lexicographically
    smallest point (compared after rounding to 1e-9 · max(1, max |z|)); cycles
    are ordered by that first point.

    Returns a Dataset with dims ``cycle``, ``phase`` (0..k−1) and ``unit`` and
    variables ``points`` (cycle, phase, unit), ``regimes`` (cycle, phase) int
    codes, ``stable`` (cycle) and ``spectral_radius`` (cycle); attrs record the
    period and the method used.
    """
    _check_integer_codes(params)
    if isinstance(period, bool) or not isinstance(period, int | np.integer) or period < 2:
        raise ValueError(f"period must be an integer ≥ 2 (fixed points: find_fixed_points), got {period!r}")
    if method not in CYCLE_METHODS:
        raise ValueError(f"method must be one of {CYCLE_METHODS}, got {method!r}")
    for name, value in (("n_restarts", n_restarts), ("max_iterations", max_iterations)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    k, M, P = int(period), params.n_units, params.n_nonlinear
    drive = _drive(params, s)
    s = np.asarray(s, dtype=float)
    step = params.step if step is None else step

    n_sequences = 2 ** (P * k)
    if method == "auto":
        feasible = n_sequences <= MAX_EXHAUSTIVE_SEQUENCES and n_sequences * 2 * M**3 <= AUTO_EXHAUSTIVE_FLOPS
        method = "exhaustive" if feasible else "scyfi"
    if method == "exhaustive":
        if n_sequences > MAX_EXHAUSTIVE_SEQUENCES:
            raise ValueError(
                f"exhaustive search over (2^P)^k = 2^{P * k} regime sequences (P={P}, period={k}) exceeds "
                f"{MAX_EXHAUSTIVE_SEQUENCES:.0e}; use method='scyfi'"
            )
        candidates = _exhaustive_cycle_candidates(params, drive, k)
    else:
        candidates = _scyfi_cycle_candidates(params, drive, k, n_restarts, max_iterations, seed)

    cycles: list[np.ndarray] = []
    for points in candidates:
        if not _is_minimal_cycle(points, tolerance) or not _confirm_cycle(points, s, step, tolerance):
            continue
        points = _canonical_rotation(points)
        if not any(_same_cycle(points, kept) for kept in cycles):
            cycles.append(points)
    cycles.sort(key=lambda points: tuple(_rounded(points)[0]))

    points = np.stack(cycles) if cycles else np.empty((0, k, M))
    regimes = bits_to_codes(points[..., M - P :] > 0)
    products = np.broadcast_to(np.eye(M), (len(cycles), M, M)).copy()
    for j in range(k):
        products = params.regime_matrix(codes_to_bits(regimes[:, j], P)) @ products
    spectral_radius = np.abs(np.linalg.eigvals(products)).max(axis=-1, initial=0.0)
    return xr.Dataset(
        {
            "points": (("cycle", "phase", "unit"), points),
            "regimes": (("cycle", "phase"), regimes.astype(np.int64)),
            "stable": ("cycle", spectral_radius < 1),
            "spectral_radius": ("cycle", spectral_radius),
        },
        coords={"cycle": np.arange(len(cycles)), "phase": np.arange(k), "unit": np.arange(M)},
        attrs={
            "period": k,
            "method": method,
            "n_candidates": len(candidates),
            "tolerance": float(tolerance),
            "input": s.tolist(),
            **({"n_restarts": int(n_restarts), "max_iterations": int(max_iterations), "seed": int(seed)}
               if method == "scyfi" else {}),
        },
    )


def _cycle_points(params: ALRNNParams, sequences: np.ndarray, drive: np.ndarray) -> np.ndarray:
    """(n, k, M) candidate cycle points for regime sequences (n, k); NaN where I − W_k⋯W_1 is singular."""
    M, P = params.n_units, params.n_nonlinear
    n, k = sequences.shape
    points = np.empty((n, k, M))
    chunk = max(1, _CHUNK_FLOATS // (k * M * M))
    for start in range(0, n, chunk):
        block = sequences[start : start + chunk]
        matrices = params.regime_matrix(codes_to_bits(block.ravel(), P)).reshape(len(block), k, M, M)
        product = np.broadcast_to(np.eye(M), (len(block), M, M))
        offset = np.zeros((len(block), M))
        for j in range(k):
            product = matrices[:, j] @ product
            offset = np.einsum("nij,nj->ni", matrices[:, j], offset) + drive
        z = _solve_batched(np.eye(M) - product, offset)
        points[start : start + len(block), 0] = z
        for j in range(1, k):
            z = np.einsum("nij,nj->ni", matrices[:, j - 1], z) + drive
            points[start : start + len(block), j] = z
    return points


def _self_consistent(
    points: np.ndarray, sequences: np.ndarray, n_nonlinear: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (finite, self-consistent) of candidate cycles (n, k, M) and the points' own regimes (n, k)."""
    M = points.shape[-1]
    finite = np.isfinite(points).all(axis=(1, 2))
    actual = bits_to_codes(np.nan_to_num(points[..., M - n_nonlinear :], nan=0.0) > 0)
    return finite, finite & (actual == sequences).all(axis=1), actual


def _exhaustive_cycle_candidates(params: ALRNNParams, drive: np.ndarray, k: int) -> list[np.ndarray]:
    P = params.n_nonlinear
    n_sequences = 2 ** (P * k)
    candidates: list[np.ndarray] = []
    block = 1 << 16  # sequences enumerated at a time; _cycle_points batches them by memory
    for start in range(0, n_sequences, block):
        index = np.arange(start, min(start + block, n_sequences), dtype=np.int64)
        sequences = (index[:, None] >> (P * np.arange(k, dtype=np.int64))) & ((1 << P) - 1)
        sequences = sequences[_lyndon(sequences)]
        if len(sequences) == 0:
            continue
        points = _cycle_points(params, sequences, drive)
        _, consistent, _ = _self_consistent(points, sequences, P)
        candidates.extend(points[consistent])
    return candidates


def _scyfi_cycle_candidates(
    params: ALRNNParams, drive: np.ndarray, k: int, n_restarts: int, max_iterations: int, seed: int
) -> list[np.ndarray]:
    P = params.n_nonlinear
    rng = np.random.default_rng(seed)
    sequences = rng.integers(0, 2**P, size=(n_restarts, k), dtype=np.int64)
    visited = [{tuple(sequence)} for sequence in sequences.tolist()]
    candidates: list[np.ndarray] = []
    for _ in range(max_iterations):
        if len(sequences) == 0:
            break
        points = _cycle_points(params, sequences, drive)
        finite, consistent, actual = _self_consistent(points, sequences, P)
        candidates.extend(points[consistent])
        # A singular sequence has no isolated cycle, and a restart that comes back
        # to a sequence it has tried is caught in a loop: both end there.
        moving = finite & ~consistent
        for i in np.flatnonzero(moving):
            sequence = tuple(actual[i].tolist())
            moving[i] = sequence not in visited[i]
            visited[i].add(sequence)
        sequences = actual[moving]
        visited = [history for history, keep in zip(visited, moving, strict=True) if keep]
    return candidates


def _lyndon(sequences: np.ndarray) -> np.ndarray:
    """Mask of rows strictly smaller (lexicographically) than each of their nontrivial rotations."""
    keep = np.ones(len(sequences), dtype=bool)
    for shift in range(1, sequences.shape[1]):
        rotated = np.roll(sequences, -shift, axis=1)
        differs = sequences != rotated
        first = differs.argmax(axis=1)
        rows = np.arange(len(sequences))
        keep &= differs.any(axis=1) & (sequences[rows, first] < rotated[rows, first])
    return keep


def _scale(points: np.ndarray) -> float:
    return max(1.0, float(np.abs(points).max(initial=0.0)))


def _is_minimal_cycle(points: np.ndarray, tolerance: float) -> bool:
    k = len(points)
    scale = _scale(points)
    return not any(
        np.abs(points[d] - points[0]).max(initial=0.0) <= tolerance * scale for d in range(1, k) if k % d == 0
    )


def _confirm_cycle(points: np.ndarray, s: np.ndarray, step, tolerance: float) -> bool:
    k = len(points)
    limit = tolerance * _scale(points)
    z = points[0]
    for j in range(1, k + 1):
        z = np.asarray(step(z, s), dtype=float).reshape(points.shape[1])
        if not np.abs(z - points[j % k]).max(initial=0.0) <= limit:
            return False
    return True


def _rounded(points: np.ndarray) -> np.ndarray:
    resolution = 1e-9 * _scale(points)
    return np.round(points / resolution) * resolution


def _canonical_rotation(points: np.ndarray) -> np.ndarray:
    rounded = _rounded(points)
    start = min(range(len(points)), key=lambda j: tuple(rounded[j]))
    return np.roll(points, -start, axis=0)


def _same_cycle(points: np.ndarray, other: np.ndarray) -> bool:
    atol = 1e-6 * max(_scale(points), _scale(other))
    return any(np.allclose(np.roll(points, shift, axis=0), other, rtol=0.0, atol=atol) for shift in range(len(points)))


# ---------------------------------------------------------------- helpers


def _check_integer_codes(params: ALRNNParams) -> None:
    if not isinstance(params, ALRNNParams):
        raise TypeError(
            f"params must be ALRNNParams (use ALRNNParams.from_model(model)), got {type(params).__name__}"
        )
    if params.n_nonlinear > MAX_INTEGER_CODE_BITS:
        raise ValueError(
            f"per-regime dynamics use integer regime codes, which hold at most {MAX_INTEGER_CODE_BITS} bits; this "
            f"network has P={params.n_nonlinear} nonlinear units. Use a network with P ≤ {MAX_INTEGER_CODE_BITS}"
        )


def _normalise_codes(codes: Iterable[int], n_nonlinear: int) -> np.ndarray:
    """Distinct int64 codes in order of first occurrence, each in [0, 2^P)."""
    if isinstance(codes, xr.DataArray):
        codes = codes.values
    array = np.asarray(codes if isinstance(codes, np.ndarray) else list(codes)).ravel()
    if array.size == 0:
        raise ValueError("codes must name at least one regime, got none")
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or (np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)))
    ):
        raise ValueError(f"codes must be integer regime codes, got dtype {array.dtype}: {array[:5].tolist()}")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= 2**n_nonlinear)]
    if bad.size:
        raise ValueError(
            f"regime codes must lie in [0, 2^P = {2**n_nonlinear}) for P={n_nonlinear}, got {bad[:5].tolist()}"
        )
    _, first = np.unique(array, return_index=True)
    return array[np.sort(first)]


def _check_inputs(inputs: xr.DataArray, n_inputs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(inputs, xr.DataArray):
        raise TypeError(
            "inputs must be an xarray.DataArray with dims ('condition', 'input'), "
            f"got {type(inputs).__name__}"
        )
    if set(inputs.dims) != {"condition", "input"}:
        raise ValueError(
            f"inputs must have dims ('condition', 'input'), got {inputs.dims}; for one input vector use "
            "inputs.expand_dims(condition=['all'])"
        )
    inputs = inputs.transpose("condition", "input")
    if inputs.sizes["input"] != n_inputs:
        raise ValueError(
            f"inputs has {inputs.sizes['input']} entries along 'input' but the network has K={n_inputs} inputs"
        )
    s = np.asarray(inputs.values, dtype=float)
    if not np.isfinite(s).all():
        raise ValueError("inputs must be finite; got NaN or inf")
    condition = inputs["condition"].values if "condition" in inputs.coords else np.arange(inputs.sizes["condition"])
    input_coord = inputs["input"].values if "input" in inputs.coords else np.arange(n_inputs)
    return s, condition, input_coord


def _drive(params: ALRNNParams, s) -> np.ndarray:
    """c = C s + h for a constant input s of shape (K,)."""
    s = np.asarray(s, dtype=float)
    if s.shape != (params.n_inputs,):
        raise ValueError(f"s must be one input vector of shape (K={params.n_inputs},), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("s must be finite; got NaN or inf")
    return params.C @ s + params.h


def _canonical_eigenvalues(eigenvalues: np.ndarray) -> np.ndarray:
    """Sort each row by modulus descending (rounded to 1e-12), ties by angle ascending; −0.0 imag → +0.0."""
    eigenvalues = np.asarray(eigenvalues, dtype=complex)
    eigenvalues = eigenvalues.real + 1j * np.where(eigenvalues.imag == 0, 0.0, eigenvalues.imag)
    modulus = np.round(np.abs(eigenvalues), 12)
    order = np.lexsort((np.angle(eigenvalues), -modulus), axis=-1)
    return np.take_along_axis(eigenvalues, order, axis=-1)


def _operator_norm(matrix: np.ndarray) -> float:
    """‖X‖₂ = sqrt(λ_max(XᵀX)), the one eigenvalue found by LAPACK dsyevr (bisection), as accurate as an SVD."""
    M = matrix.shape[0]
    top, _, _, _, info = lapack.dsyevr(matrix.T @ matrix, compute_v=0, range="I", il=M, iu=M)
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK dsyevr failed (info={info}) on a {M} × {M} Gram matrix")
    return float(np.sqrt(max(top[0], 0.0)))


def _slow_mode(matrix: np.ndarray, eigenvalue: complex) -> np.ndarray:
    """Real unit vector of the eigenvector of ``eigenvalue`` (see regime_dynamics), canonical sign."""
    vector = _inverse_iteration(matrix, eigenvalue)
    residual = np.inf if vector is None else np.linalg.norm(matrix @ vector - eigenvalue * vector)
    if not residual <= 1e-8 * max(1.0, np.abs(matrix).sum(axis=0).max()):
        values, vectors = np.linalg.eig(matrix)
        vector = vectors[:, np.argmin(np.abs(values - eigenvalue))]
    vector = np.asarray(vector, dtype=complex)
    top = np.argmax(np.abs(vector))
    vector = (vector * np.exp(-1j * np.angle(vector[top]))).real
    vector = vector / np.linalg.norm(vector)
    top = np.argmax(np.abs(vector))
    return vector if vector[top] > 0 else -vector


def _inverse_iteration(matrix: np.ndarray, eigenvalue: complex) -> np.ndarray | None:
    """Two steps of inverse iteration at a slightly shifted eigenvalue; None if the LU breaks down."""
    M = matrix.shape[0]
    real = eigenvalue.imag == 0
    shift = eigenvalue + 1e-10 * max(1.0, abs(eigenvalue))
    shifted = (matrix - shift.real * np.eye(M)) if real else (matrix.astype(complex) - shift * np.eye(M))
    getrf, getrs = (lapack.dgetrf, lapack.dgetrs) if real else (lapack.zgetrf, lapack.zgetrs)
    lu, pivots, info = getrf(shifted)
    if info != 0:
        return None
    # A fixed, seeded start vector keeps the result reproducible.
    vector = np.random.default_rng(0).standard_normal(M).astype(float if real else complex)
    for _ in range(2):
        vector, info = getrs(lu, pivots, vector)
        norm = np.linalg.norm(vector)
        if info != 0 or not np.isfinite(norm) or norm == 0:
            return None
        vector = vector / norm
    return vector


def _solve_well_conditioned(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """matrix^{-1} rhs, or None when the 1-norm condition number exceeds SINGULAR_CONDITION."""
    lu, pivots, info = lapack.dgetrf(matrix)
    if info != 0:
        return None
    rcond, info = lapack.dgecon(lu, np.abs(matrix).sum(axis=0).max(), norm="1")
    if info != 0 or not rcond * SINGULAR_CONDITION >= 1:
        return None
    solution, info = lapack.dgetrs(lu, pivots, rhs)
    return solution if info == 0 else None


def _solve_batched(matrices: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve stacked systems (n, M, M) x = (n, M); NaN rows where a matrix is exactly singular."""
    if matrices.shape[-1] == 0:
        return np.empty(rhs.shape)
    try:
        return np.linalg.solve(matrices, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        solution = np.full(rhs.shape, np.nan)
        for i in range(len(matrices)):
            try:
                solution[i] = np.linalg.solve(matrices[i], rhs[i])
            except np.linalg.LinAlgError:
                pass
        return solution
