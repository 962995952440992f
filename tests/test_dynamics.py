"""Tests of neuroalrnn.analyses.dynamics against independent answers.

Regime matrices are rebuilt by hand with explicit loops; spectra, fixed
points and gains are recomputed with SciPy/NumPy in the test; hand-built
networks have fixed points and cycles solved on paper; the torch model's own
``step`` and brute-force iteration of the map from many initial states check
that nothing found is spurious and nothing attracting is missed.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import xarray as xr
from scipy.optimize import linear_sum_assignment

from neuroalrnn.models import ALRNN, ALRNNParams
from neuroalrnn.analyses.dynamics import amplification, find_cycles, find_fixed_points, regime_dynamics

# ---------------------------------------------------------------- helpers


def random_params(
    n_units: int, n_nonlinear: int, seed: int, *, coupling: float = 1.5, slope: float = 0.0,
    n_inputs: int = 2, n_outputs: int = 2,
) -> ALRNNParams:
    """Random O(1) parameters, strong enough that the ReLU units create several regimes' worth of structure."""
    rng = np.random.default_rng(seed)
    M = n_units
    return ALRNNParams(
        A=rng.uniform(-0.5, 0.5, M),
        W=rng.normal(0.0, coupling / np.sqrt(M), (M, M)),
        h=rng.normal(0.0, 1.0, M),
        C=rng.normal(0.0, 1.0, (M, n_inputs)),
        B=rng.normal(0.0, 1.0, (n_outputs, M)),
        b=rng.normal(0.0, 0.3, n_outputs),
        n_nonlinear=n_nonlinear,
        slope=slope,
    )


def hand_params(A, W, h, C=None, B=None, n_nonlinear: int = 0, slope: float = 0.0) -> ALRNNParams:
    A = np.atleast_1d(np.asarray(A, dtype=float))
    M = A.shape[0]
    return ALRNNParams(
        A=A,
        W=np.asarray(W, dtype=float).reshape(M, M),
        h=np.atleast_1d(np.asarray(h, dtype=float)),
        C=np.zeros((M, 1)) if C is None else np.asarray(C, dtype=float).reshape(M, -1),
        B=np.eye(1, M) if B is None else np.asarray(B, dtype=float),
        b=np.zeros(1 if B is None else np.shape(B)[0]),
        n_nonlinear=n_nonlinear,
        slope=slope,
    )


def hand_regime_matrix(params: ALRNNParams, code: int) -> np.ndarray:
    """diag(A) + W D_Ω written out unit by unit."""
    M, P = params.n_units, params.n_nonlinear
    gains = np.ones(M)
    for i in range(P):
        bit = (code >> i) & 1
        gains[M - P + i] = 1.0 if bit else params.slope
    matrix = np.zeros((M, M))
    for row in range(M):
        for column in range(M):
            matrix[row, column] = params.W[row, column] * gains[column] + (params.A[row] if row == column else 0.0)
    return matrix


def hand_bits(code: int, n_units: int, n_nonlinear: int, z: np.ndarray) -> bool:
    """Do the nonlinear units of z reproduce the bits of code?"""
    return all((z[n_units - n_nonlinear + i] > 0) == bool((code >> i) & 1) for i in range(n_nonlinear))


def torch_model(params: ALRNNParams) -> ALRNN:
    return ALRNN.from_params(params, dtype=torch.float64)


def torch_step(model: ALRNN, params: ALRNNParams):
    """z, s -> next z through the torch model's own step (drive = C s + h)."""

    def step(z: np.ndarray, s: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            drive = torch.from_numpy(params.C @ s + params.h)
            return model.step(torch.from_numpy(np.asarray(z, dtype=float)), drive).numpy()

    return step


def conditions(params: ALRNNParams, n_conditions: int = 3, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.normal(0.0, 1.0, (n_conditions, params.n_inputs)),
        dims=("condition", "input"),
        coords={"condition": [f"epoch{i}" for i in range(n_conditions)]},
    )


def iterate_map(params: ALRNNParams, s: np.ndarray, z: np.ndarray, n_steps: int) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(n_steps):
            z = params.step(z, s)
    return z


NETWORKS = [(4, 0, 0.0), (5, 2, 0.0), (4, 4, 0.0), (6, 3, 0.2), (3, 1, 0.5)]

# ---------------------------------------------------------------- regime_dynamics: maps and spectra


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), NETWORKS)
def test_regime_matrix_and_bits_match_hand_construction(n_units, n_nonlinear, slope):
    params = random_params(n_units, n_nonlinear, seed=1, slope=slope)
    codes = list(range(2**n_nonlinear))
    ds = regime_dynamics(params, codes, conditions(params))
    for code in codes:
        np.testing.assert_allclose(ds["W_regime"].sel(regime=code).values, hand_regime_matrix(params, code),
                                   rtol=0, atol=1e-15)
        assert ds["bits"].sel(regime=code).values.tolist() == [bool((code >> i) & 1) for i in range(n_nonlinear)]


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), NETWORKS)
def test_eigenvalues_match_as_multisets_and_are_canonically_sorted(n_units, n_nonlinear, slope):
    params = random_params(n_units, n_nonlinear, seed=2, slope=slope)
    ds = regime_dynamics(params, range(2**n_nonlinear), conditions(params))
    for code in ds["regime"].values:
        ours = ds["eigenvalue_real"].sel(regime=code).values + 1j * ds["eigenvalue_imag"].sel(regime=code).values
        theirs = np.linalg.eigvals(hand_regime_matrix(params, int(code)))
        distance = np.abs(ours[:, None] - theirs[None, :])
        rows, columns = linear_sum_assignment(distance)
        assert distance[rows, columns].max() < 1e-10
        modulus = np.abs(ours)
        assert np.all(np.diff(modulus) <= 1e-12)
        ties = np.abs(np.diff(modulus)) <= 1e-12
        assert np.all(np.diff(np.angle(ours))[ties] > 0)
        assert ds["spectral_radius"].sel(regime=code) == pytest.approx(np.abs(theirs).max(), rel=1e-12)
        assert bool(ds["stable"].sel(regime=code)) == (np.abs(theirs).max() < 1)
        assert ds["operator_norm"].sel(regime=code) == pytest.approx(
            np.linalg.norm(hand_regime_matrix(params, int(code)), 2), rel=1e-12)


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), [(48, 4, 0.0), (40, 3, 0.3), (128, 2, 0.0)])
def test_threaded_blocks_match_dense_answers_regime_by_regime(n_units, n_nonlinear, slope):
    """From M = 32 on, regimes are analysed in blocks on worker threads, eigenvalues through torch's LAPACK;
    every regime still matches NumPy/SciPy run here on one matrix at a time."""
    params = random_params(n_units, n_nonlinear, seed=6, slope=slope)
    inputs = conditions(params, 3)
    codes = list(range(2**n_nonlinear))[::-1]
    ds = regime_dynamics(params, codes, inputs)
    assert ds["regime"].values.tolist() == sorted(codes)
    for code in codes:
        matrix = hand_regime_matrix(params, code)
        np.testing.assert_array_equal(ds["W_regime"].sel(regime=code).values, matrix)
        ours = ds["eigenvalue_real"].sel(regime=code).values + 1j * ds["eigenvalue_imag"].sel(regime=code).values
        values, vectors = np.linalg.eig(matrix)
        distance = np.abs(ours[:, None] - values[None, :])
        rows, columns = linear_sum_assignment(distance)
        assert distance[rows, columns].max() < 1e-10
        assert np.all(np.diff(np.abs(ours)) <= 1e-12)
        assert ds["spectral_radius"].sel(regime=code) == pytest.approx(np.abs(values).max(), rel=1e-12)
        assert ds["operator_norm"].sel(regime=code) == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-12)
        leading = vectors[:, np.argmax(np.abs(values))]
        v = ds["slow_mode"].sel(regime=code).values
        basis = np.stack([leading.real, leading.imag], axis=1)
        np.testing.assert_allclose(basis @ np.linalg.lstsq(basis, v, rcond=None)[0], v, atol=1e-9)
        I_minus_W = np.eye(n_units) - matrix
        for condition, s in zip(inputs["condition"].values, inputs.values, strict=True):
            expected = scipy.linalg.solve(I_minus_W, params.C @ s + params.h)
            np.testing.assert_allclose(ds["fixed_point"].sel(regime=code, condition=condition).values, expected,
                                       rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ds["gain"].sel(regime=code).values,
                                   params.B @ scipy.linalg.solve(I_minus_W, params.C), rtol=1e-10, atol=1e-12)


def test_library_threads_are_restored_after_the_parallel_section():
    from threadpoolctl import threadpool_info

    params = random_params(40, 3, seed=0)
    torch.set_num_threads(2)  # the autouse fixture restores its own setting afterwards
    before = [(library["filepath"], library["num_threads"]) for library in threadpool_info()]
    regime_dynamics(params, range(8), conditions(params))
    assert torch.get_num_threads() == 2
    assert [(library["filepath"], library["num_threads"]) for library in threadpool_info()] == before


def test_operator_norms_and_eigenvalues_of_stacks_match_numpy():
    from neuroalrnn.analyses.dynamics import eigenvalues_parallel, operator_norms

    rng = np.random.default_rng(7)
    for shape in ((9, 40, 40), (5, 3, 3), (0, 40, 40)):
        stack = rng.normal(size=shape)
        np.testing.assert_allclose(operator_norms(stack), np.linalg.norm(stack, 2, axis=(1, 2)), rtol=1e-12)
        theirs = np.linalg.eigvals(stack)
        ours = eigenvalues_parallel(stack)
        assert ours.shape == theirs.shape
        for a, b in zip(ours, theirs, strict=True):
            distance = np.abs(a[:, None] - b[None, :])
            rows, columns = linear_sum_assignment(distance)
            assert distance[rows, columns].max() < 1e-10
    broken = rng.normal(size=(3, 40, 40))
    broken[1, 2, 3] = np.nan  # torch's LAPACK would return numbers for it; refused, as NumPy does
    with pytest.raises(np.linalg.LinAlgError, match="NaN or inf"):
        eigenvalues_parallel(broken)


def test_eigenvalue_ties_are_ordered_by_angle():
    # Block-diagonal linear network: 0.9, then six eigenvalues of modulus 0.5.
    blocks = [np.array([[0.9]]), np.array([[0.0, -0.5], [0.5, 0.0]]), np.array([[0.3, -0.4], [0.4, 0.3]]),
              np.array([[-0.5]]), np.array([[0.5]])]
    params = hand_params(np.zeros(7), scipy.linalg.block_diag(*blocks), np.zeros(7))
    ds = regime_dynamics(params, [0], conditions(params, 1))
    ours = ds["eigenvalue_real"].values[0] + 1j * ds["eigenvalue_imag"].values[0]
    expected = [0.9, -0.5j, 0.3 - 0.4j, 0.5, 0.3 + 0.4j, 0.5j, -0.5]
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    assert not np.signbit(ds["eigenvalue_imag"].values[0][[0, 3, 6]]).any()


@pytest.mark.parametrize("seed", range(6))
def test_slow_mode_is_the_leading_eigenvector_with_canonical_sign(seed):
    params = random_params(5, 2, seed=seed)
    ds = regime_dynamics(params, range(4), conditions(params))
    for code in range(4):
        matrix = hand_regime_matrix(params, code)
        values, vectors = np.linalg.eig(matrix)
        leading = np.argmax(np.abs(values))
        u = vectors[:, leading]
        v = ds["slow_mode"].sel(regime=code).values
        assert np.linalg.norm(v) == pytest.approx(1.0, rel=1e-12)
        assert v[np.argmax(np.abs(v))] > 0
        if values[leading].imag == 0:
            np.testing.assert_allclose(matrix @ v, values[leading].real * v, atol=1e-10)
        else:
            # The real part of the eigenvector whose largest entry is rotated onto the positive real axis.
            basis = np.stack([u.real, u.imag], axis=1)
            coefficients = np.linalg.lstsq(basis, v, rcond=None)[0]
            np.testing.assert_allclose(basis @ coefficients, v, atol=1e-10)
            expected = (u * np.exp(-1j * np.angle(u[np.argmax(np.abs(u))]))).real
            np.testing.assert_allclose(v, expected / np.linalg.norm(expected), atol=1e-8)


def test_complex_leading_pair_gives_a_real_slow_mode():
    angle = 0.3
    rotation = 0.95 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    params = hand_params(np.zeros(3), scipy.linalg.block_diag(rotation, [[0.2]]), np.zeros(3))
    ds = regime_dynamics(params, [0], conditions(params, 1))
    assert ds["eigenvalue_imag"].values[0, 0] == pytest.approx(-0.95 * np.sin(angle))
    v = ds["slow_mode"].values[0]
    assert abs(v[2]) < 1e-12 and np.linalg.norm(v) == pytest.approx(1.0)


def test_regimes_are_deduplicated_sorted_and_capped():
    params = random_params(4, 3, seed=0)
    ds = regime_dynamics(params, [5, 1, 3, 1], conditions(params))
    assert ds["regime"].values.tolist() == [1, 3, 5]
    assert ds.attrs["n_regimes_requested"] == 3
    capped = regime_dynamics(params, [5, 1, 3, 1], conditions(params), max_regimes=2)
    assert capped["regime"].values.tolist() == [1, 5]
    assert capped.attrs["n_regimes_requested"] == 3
    xr.testing.assert_identical(capped, ds.sel(regime=[1, 5]).assign_attrs(capped.attrs))


# ---------------------------------------------------------------- regime_dynamics: fixed points and gains


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), NETWORKS)
def test_fixed_points_match_an_independent_solve(n_units, n_nonlinear, slope):
    params = random_params(n_units, n_nonlinear, seed=3, slope=slope)
    inputs = conditions(params, 4)
    ds = regime_dynamics(params, range(2**n_nonlinear), inputs)
    for code in range(2**n_nonlinear):
        I_minus_W = np.eye(n_units) - hand_regime_matrix(params, code)
        for condition, s in zip(inputs["condition"].values, inputs.values, strict=True):
            expected = scipy.linalg.solve(I_minus_W, params.C @ s + params.h)
            point = ds["fixed_point"].sel(regime=code, condition=condition).values
            np.testing.assert_allclose(point, expected, rtol=1e-10, atol=1e-12)
            real = hand_bits(code, n_units, n_nonlinear, expected)
            assert bool(ds["fixed_point_real"].sel(regime=code, condition=condition)) == real
            assert bool(ds["fixed_point_stable"].sel(regime=code, condition=condition)) == bool(
                ds["stable"].sel(regime=code))
        gain = params.B @ np.linalg.inv(I_minus_W) @ params.C
        np.testing.assert_allclose(ds["gain"].sel(regime=code).values, gain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("n_units", "n_nonlinear", "seed"), [(4, 0, 0), (5, 2, 2), (4, 4, 2), (6, 3, 3), (8, 2, 4)])
def test_stable_real_fixed_points_attract_the_torch_model(n_units, n_nonlinear, seed):
    model = ALRNN(3, 2, n_units, n_nonlinear, generator=torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():
        model.A.fill_(0.6)  # a fixed A, so that the test does not depend on the default initialisation
        model.h.copy_(torch.linspace(-0.5, 0.5, n_units, dtype=torch.float64))
    params = model.params()
    inputs = conditions(params, 3, seed=seed)
    ds = regime_dynamics(params, range(2**n_nonlinear), inputs)
    attracting = (ds["fixed_point_real"] & ds["fixed_point_stable"]).values
    assert attracting.any(), "the test network should have a stable real fixed point"
    rng = np.random.default_rng(seed)
    for r, c in zip(*np.nonzero(attracting), strict=True):
        point = ds["fixed_point"].values[r, c]
        drive = torch.from_numpy(params.C @ inputs.values[c] + params.h)
        with torch.no_grad():
            stays = model.step(torch.from_numpy(point), drive).numpy()
            np.testing.assert_allclose(stays, point, rtol=1e-10, atol=1e-12)
            margin = np.abs(point[n_units - n_nonlinear :]).min(initial=1.0)
            z = torch.from_numpy(point + 0.1 * min(margin, 1.0) * rng.uniform(-1, 1, n_units))
            for _ in range(3000):
                z = model.step(z, drive)
        np.testing.assert_allclose(z.numpy(), point, rtol=1e-8, atol=1e-9)


def test_singular_regime_gives_nan_fixed_point_and_gain():
    # Unit 0 is a perfect integrator (A = 1, no coupling): I − W_Ω is singular.
    for A0 in (1.0, 1.0 - 1e-14):
        params = hand_params([A0, 0.5], np.zeros((2, 2)), [0.1, 0.2], C=np.ones((2, 1)))
        ds = regime_dynamics(params, [0], conditions(params, 2))
        assert np.isnan(ds["fixed_point"].values).all()
        assert np.isnan(ds["gain"].values).all()
        assert not ds["fixed_point_real"].values.any()
        assert ds["eigenvalue_real"].values[0].tolist() == pytest.approx([A0, 0.5])
    assert find_fixed_points(hand_params([1.0, 0.5], np.zeros((2, 2)), [0.1, 0.2]), [0.0]).sizes["fixed_point"] == 0


@pytest.mark.parametrize("n_nonlinear", [0, 2])
def test_dataset_round_trips_through_netcdf(tmp_path, n_nonlinear):
    base = random_params(4, n_nonlinear, seed=5)
    A, W = base.A.copy(), base.W.copy()
    A[0], W[0, :], W[:, 0] = 1.0, 0.0, 0.0  # unit 0 is a decoupled integrator: NaN fixed points and gains
    params = hand_params(A, W, base.h, base.C, base.B, n_nonlinear)
    ds = regime_dynamics(params, range(2**n_nonlinear), conditions(params, 2))
    assert np.isnan(ds["fixed_point"].values).any()
    assert not any(np.iscomplexobj(variable.values) for variable in ds.variables.values())
    path = tmp_path / "dynamics.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        xr.testing.assert_allclose(back.load(), ds)
        assert back["stable"].dtype == bool and back["regime"].dtype == np.int64


# ---------------------------------------------------------------- hand-built networks


def test_linear_network_has_its_one_fixed_point():
    rng = np.random.default_rng(0)
    W = rng.normal(0.0, 0.2, (4, 4))
    C, h, s = rng.normal(size=(4, 2)), rng.normal(size=4), np.array([0.3, -1.0])
    params = hand_params(np.full(4, 0.5), W, h, C=C)
    expected = np.linalg.solve(np.eye(4) - np.diag(np.full(4, 0.5)) - W, C @ s + h)
    found = find_fixed_points(params, s)
    assert found.sizes["fixed_point"] == 1
    np.testing.assert_allclose(found["point"].values[0], expected, rtol=1e-12)
    assert found["regime"].values.tolist() == [0]
    inputs = xr.DataArray(s[None], dims=("condition", "input"), coords={"condition": ["only"]})
    assert bool(regime_dynamics(params, [0], inputs)["fixed_point_real"].values.all())


@pytest.mark.parametrize(
    ("drive", "real_point", "virtual_point", "real_code"), [(1.0, 5.0, 2.0, 1), (-1.0, -2.0, -5.0, 0)]
)
def test_one_relu_unit_has_one_real_and_one_virtual_fixed_point(drive, real_point, virtual_point, real_code):
    # z' = 0.5 z + 0.3 relu(z) + c: off, z* = c / 0.5; on, z* = c / 0.2.
    params = hand_params([0.5], [[0.3]], [drive], n_nonlinear=1)
    inputs = xr.DataArray([[0.0]], dims=("condition", "input"), coords={"condition": ["rest"]})
    ds = regime_dynamics(params, [0, 1], inputs)
    points = ds["fixed_point"].sel(condition="rest").values[:, 0]
    assert points[real_code] == pytest.approx(real_point)
    assert points[1 - real_code] == pytest.approx(virtual_point)
    assert ds["fixed_point_real"].sel(condition="rest").values.tolist() == [real_code == 0, real_code == 1]
    found = find_fixed_points(params, [0.0])
    assert found["point"].values.ravel().tolist() == pytest.approx([real_point])
    assert found["regime"].values.tolist() == [real_code]
    assert found["stable"].values.tolist() == [True]


def test_a_fixed_point_exactly_on_the_boundary_belongs_to_the_off_regime():
    # z' = 0.5 z + 0.3 relu(z): z* = 0 in both regimes; a bit of exactly 0 is off.
    params = hand_params([0.5], [[0.3]], [0.0], n_nonlinear=1)
    inputs = xr.DataArray([[0.0]], dims=("condition", "input"), coords={"condition": ["rest"]})
    ds = regime_dynamics(params, [0, 1], inputs)
    assert ds["fixed_point"].values.ravel().tolist() == [0.0, 0.0]
    assert ds["fixed_point_real"].values.ravel().tolist() == [True, False]
    found = find_fixed_points(params, [0.0])
    assert found["regime"].values.tolist() == [0] and found["point"].values.tolist() == [[0.0]]


def test_flip_flop_network_has_two_stable_real_fixed_points():
    # Leak 0.5, mutual inhibition 1, bias 1: (2, −2) and (−2, 2) are stable
    # (eigenvalues 0.5, 0.5); (2/3, 2/3) is a saddle (eigenvalues 1.5, −0.5);
    # the all-off candidate (2, 2) is virtual. (Without the leak, A = 0, the
    # all-off regime maps everything to h and a stable 2-cycle appears.)
    params = hand_params([0.5, 0.5], [[0.0, -1.0], [-1.0, 0.0]], [1.0, 1.0], n_nonlinear=2)
    found = find_fixed_points(params, [0.0])
    assert found["regime"].values.tolist() == [1, 2, 3]
    np.testing.assert_allclose(found["point"].values, [[2.0, -2.0], [-2.0, 2.0], [2 / 3, 2 / 3]], atol=1e-12)
    assert found["stable"].values.tolist() == [True, True, False]
    assert found["spectral_radius"].values == pytest.approx([0.5, 0.5, 1.5])
    assert find_cycles(params, [0.0], 2).sizes["cycle"] == 0
    # Iterating the torch model from random states ends in one of the two stable states.
    model = torch_model(params)
    z = torch.from_numpy(np.random.default_rng(0).uniform(-5, 5, (500, 2)))
    drive = torch.from_numpy(params.h)
    with torch.no_grad():
        for _ in range(200):
            z = model.step(z, drive)
    ends = {tuple(np.round(row, 6)) for row in z.numpy()}
    assert ends == {(2.0, -2.0), (-2.0, 2.0)}


ONE_D_TWO_CYCLE = dict(A=[0.25], W=[[-2.25]], h=[0.0], C=[[1.0]], n_nonlinear=1)
# z' = 0.25 z − 2.25 relu(z) + s: slope 0.25 below zero, −2 above. With s = 1 the
# 2-cycle solves z2 = −2 z1 + 1, z1 = 0.25 z2 + 1: z1 = 5/6, z2 = −2/3 (stable,
# multiplier −0.5); the fixed point 1/3 (on) is real and unstable.


@pytest.mark.parametrize("method", ["exhaustive", "scyfi", "auto"])
def test_one_dimensional_two_cycle_is_found(method):
    params = hand_params(**ONE_D_TWO_CYCLE)
    ds = find_cycles(params, [1.0], 2, method=method)
    assert ds.sizes["cycle"] == 1
    np.testing.assert_allclose(ds["points"].values[0, :, 0], [-2 / 3, 5 / 6], rtol=1e-12)
    assert ds["regimes"].values.tolist() == [[0, 1]]
    assert ds["stable"].values.tolist() == [True]
    assert ds["spectral_radius"].values == pytest.approx([0.5])
    assert ds.attrs["method"] == ("exhaustive" if method == "auto" else method)
    # Confirmed independently: iterating the map from far away lands on it.
    z = iterate_map(params, np.array([1.0]), np.array([[7.0]]), 400)
    assert {round(float(z[0, 0]), 9), round(float(params.step(z, np.array([1.0]))[0, 0]), 9)} == {
        round(-2 / 3, 9), round(5 / 6, 9)}
    assert find_fixed_points(params, [1.0])["point"].values.ravel() == pytest.approx([1 / 3])


def test_scyfi_removes_rotations_and_fixed_points():
    params = hand_params(**ONE_D_TWO_CYCLE)
    ds = find_cycles(params, [1.0], 2, method="scyfi", n_restarts=50)
    # Restarts converge to both rotations (0, 1) and (1, 0) and to the fixed point (1, 1).
    assert ds.attrs["n_candidates"] >= 3
    assert ds.sizes["cycle"] == 1
    assert ds["points"].values[0, 0, 0] < ds["points"].values[0, 1, 0]


@pytest.mark.parametrize("method", ["exhaustive", "scyfi"])
def test_a_fixed_point_is_not_a_cycle(method):
    params = hand_params([0.5], [[0.0]], [1.0], n_nonlinear=1)  # z' = 0.5 z + 1: only z* = 2
    ds = find_cycles(params, [0.0], 2, method=method)
    assert ds.sizes["cycle"] == 0
    if method == "scyfi":
        assert ds.attrs["n_candidates"] > 0  # the fixed point was proposed, and refused


@pytest.mark.parametrize("method", ["exhaustive", "scyfi"])
def test_a_repeated_two_cycle_is_not_a_four_cycle(method):
    params = hand_params(**ONE_D_TWO_CYCLE)
    ds = find_cycles(params, [1.0], 4, method=method)
    for points in ds["points"].values:
        distinct = {round(float(x), 9) for x in points[:, 0]}
        assert len(distinct) == 4


def test_cycles_are_confirmed_by_the_given_step():
    params = hand_params(**ONE_D_TWO_CYCLE)
    model = torch_model(params)
    through_torch = find_cycles(params, [1.0], 2, step=torch_step(model, params))
    xr.testing.assert_allclose(through_torch, find_cycles(params, [1.0], 2))

    def wrong_step(z, s):
        return params.step(z, s) + 1e-3

    assert find_cycles(params, [1.0], 2, step=wrong_step).sizes["cycle"] == 0


# ---------------------------------------------------------------- random networks


RANDOM_FIXED_POINT_NETWORKS = [
    (3, 0, 0, 0.5), (4, 0, 1, 0.8), (2, 2, 4, 1.5), (3, 2, 6, 1.5), (3, 3, 4, 1.5), (3, 3, 7, 1.5), (4, 4, 1, 1.5),
]


@pytest.mark.parametrize(("n_units", "n_nonlinear", "seed", "coupling"), RANDOM_FIXED_POINT_NETWORKS)
def test_random_network_fixed_points_are_complete_and_genuine(n_units, n_nonlinear, seed, coupling):
    params = random_params(n_units, n_nonlinear, seed, coupling=coupling)
    s = np.zeros(params.n_inputs)
    found = find_fixed_points(params, s)
    model = torch_model(params)
    step = torch_step(model, params)
    for point, code in zip(found["point"].values, found["regime"].values, strict=True):
        np.testing.assert_allclose(step(point, s), point, rtol=1e-10, atol=1e-12)
        assert hand_bits(int(code), n_units, n_nonlinear, point)
    # Brute force: states that settle anywhere must settle on a stable fixed point that was found.
    starts = np.random.default_rng(seed).uniform(-4, 4, (400, n_units))
    ends = iterate_map(params, s, starts, 600)
    with np.errstate(over="ignore", invalid="ignore"):
        settled = np.isfinite(ends).all(axis=1) & (np.abs(params.step(ends, s) - ends).max(axis=1) < 1e-10)
    assert settled.any(), "the test network should have an attracting fixed point"
    stable = found["point"].values[found["stable"].values]
    for end in ends[settled]:
        assert np.abs(stable - end).max(axis=1).min() < 1e-7


RANDOM_CYCLE_NETWORKS = [  # (M, P, seed, coupling, period): exhaustive search finds ≥ 1 cycle
    (3, 3, 2, 1.5, 2), (3, 2, 1, 1.5, 2), (3, 2, 3, 1.5, 2), (4, 4, 0, 1.5, 2), (4, 4, 7, 1.5, 2),
    (4, 4, 0, 2.0, 3), (4, 4, 17, 2.0, 3),
]


@pytest.mark.parametrize(("n_units", "n_nonlinear", "seed", "coupling", "period"), RANDOM_CYCLE_NETWORKS)
def test_exhaustive_and_scyfi_agree_on_random_networks(n_units, n_nonlinear, seed, coupling, period):
    params = random_params(n_units, n_nonlinear, seed, coupling=coupling)
    s = np.zeros(params.n_inputs)
    exhaustive = find_cycles(params, s, period, method="exhaustive")
    scyfi = find_cycles(params, s, period, method="scyfi")
    assert exhaustive.sizes["cycle"] >= 1
    xr.testing.assert_allclose(exhaustive.drop_attrs(), scyfi.drop_attrs())
    step = torch_step(torch_model(params), params)
    for cycle in range(exhaustive.sizes["cycle"]):
        points, regimes = exhaustive["points"].values[cycle], exhaustive["regimes"].values[cycle]
        z = points[0]
        for j in range(1, period + 1):
            z = step(z, s)
            np.testing.assert_allclose(z, points[j % period], rtol=1e-9, atol=1e-10)
        for code, point in zip(regimes, points, strict=True):
            assert hand_bits(int(code), n_units, n_nonlinear, point)
        rounded = [tuple(np.round(point, 9)) for point in points]
        assert rounded[0] == min(rounded) and len(set(rounded)) == period
        product = np.eye(n_units)
        for code in regimes:
            product = hand_regime_matrix(params, int(code)) @ product
        radius = np.abs(np.linalg.eigvals(product)).max()
        assert exhaustive["spectral_radius"].values[cycle] == pytest.approx(radius)
        assert bool(exhaustive["stable"].values[cycle]) == (radius < 1)


@pytest.mark.parametrize(("n_units", "n_nonlinear", "seed"), [(3, 3, 2), (3, 2, 1), (4, 4, 0), (4, 4, 7)])
def test_brute_force_finds_no_stable_two_cycle_that_was_missed(n_units, n_nonlinear, seed):
    params = random_params(n_units, n_nonlinear, seed, coupling=1.5)
    s = np.zeros(params.n_inputs)
    cycles = find_cycles(params, s, 2)
    ends = iterate_map(params, s, np.random.default_rng(seed).uniform(-4, 4, (400, n_units)), 600)
    with np.errstate(over="ignore", invalid="ignore"):
        following = params.step(ends, s)
        on_cycle = (np.isfinite(ends).all(axis=1) & (np.abs(params.step(following, s) - ends).max(axis=1) < 1e-10)
                    & (np.abs(following - ends).max(axis=1) > 1e-6))
    assert on_cycle.any(), "the test network should have an attracting 2-cycle"
    known = cycles["points"].values[cycles["stable"].values].reshape(-1, n_units)
    for end in ends[on_cycle]:
        assert np.abs(known - end).max(axis=1).min() < 1e-7


# ---------------------------------------------------------------- amplification


def test_non_normal_regime_amplifies_transiently():
    params = hand_params([0.5, 0.5], [[0.0, 3.0], [0.0, 0.0]], [0.0, 0.0])
    amp = amplification(params, [0], n_steps=40)
    assert amp.dims == ("regime", "k") and amp["k"].values.tolist() == list(range(1, 41))
    assert regime_dynamics(params, [0], conditions(params, 1))["spectral_radius"].item() == pytest.approx(0.5)
    values = amp.sel(regime=0).values
    assert values[0] > 1 and values.max() > 1
    assert values[-1] < 1e-3 and np.all(np.diff(values[10:]) < 0)


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), NETWORKS)
def test_amplification_equals_norms_of_matrix_powers(n_units, n_nonlinear, slope):
    params = random_params(n_units, n_nonlinear, seed=4, slope=slope)
    amp = amplification(params, range(2**n_nonlinear), n_steps=6)
    for code in range(2**n_nonlinear):
        matrix = hand_regime_matrix(params, code)
        expected = [np.linalg.norm(np.linalg.matrix_power(matrix, k), 2) for k in range(1, 7)]
        np.testing.assert_allclose(amp.sel(regime=code).values, expected, rtol=1e-10)


def test_amplification_of_an_exploding_regime_overflows_quietly():
    amp = amplification(hand_params([50.0], [[0.0]], [0.0]), [0], n_steps=200)
    assert amp.values[0, 0] == pytest.approx(50.0) and np.isinf(amp.values[0, -1])


# ---------------------------------------------------------------- errors


def test_more_than_62_nonlinear_units_is_refused():
    params = hand_params(np.zeros(63), np.zeros((63, 63)), np.zeros(63), n_nonlinear=63)
    inputs = xr.DataArray(np.zeros((1, 1)), dims=("condition", "input"))
    for call in (lambda: regime_dynamics(params, [0], inputs), lambda: amplification(params, [0]),
                 lambda: find_fixed_points(params, [0.0], codes=[0]), lambda: find_cycles(params, [0.0], 2)):
        with pytest.raises(ValueError, match="62"):
            call()


def test_bad_inputs_are_named():
    params = random_params(3, 1, seed=0)
    with pytest.raises(ValueError, match=r"dims \('condition', 'input'\)"):
        regime_dynamics(params, [0], xr.DataArray(np.zeros((2, 2)), dims=("trial", "input")))
    with pytest.raises(ValueError, match="K=2"):
        regime_dynamics(params, [0], xr.DataArray(np.zeros((2, 3)), dims=("condition", "input")))
    with pytest.raises(TypeError, match="DataArray"):
        regime_dynamics(params, [0], np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 2\^P = 2\)"):
        regime_dynamics(params, [0, 2], conditions(params))
    with pytest.raises(ValueError, match="max_regimes"):
        regime_dynamics(params, [0], conditions(params), max_regimes=0)
    with pytest.raises(ValueError, match=r"shape \(K=2,\)"):
        find_fixed_points(params, [0.0])
    with pytest.raises(ValueError, match="n_steps"):
        amplification(params, [0], n_steps=0)


def test_search_size_limits_are_explained():
    params = random_params(21, 21, seed=0, coupling=0.5)
    with pytest.raises(ValueError, match="codes="):
        find_fixed_points(params, np.zeros(2))
    assert find_fixed_points(params, np.zeros(2), codes=[0, 5]).attrs["n_regimes_searched"] == 2
    with pytest.raises(ValueError, match="method='scyfi'"):
        find_cycles(params, np.zeros(2), 2, method="exhaustive")
    small = random_params(2, 2, seed=0)
    with pytest.raises(ValueError, match="period"):
        find_cycles(small, np.zeros(2), 1)
    with pytest.raises(ValueError, match="'auto', 'exhaustive', 'scyfi'"):
        find_cycles(small, np.zeros(2), 2, method="newton")
