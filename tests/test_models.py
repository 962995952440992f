"""Tests of neuroalrnn.models against independent answers.

The AL-RNN is checked against a NumPy re-statement of its update equation,
against regime-wise affine rollouts built from W_Ω = diag(A) + W D_Ω, and
against hand-computed regime codes; the baselines are checked through the
common interface (shapes and one short optimisation on a fixed batch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from neuroalrnn.models import (
    ALRNN,
    MAX_INTEGER_CODE_BITS,
    MODEL_KINDS,
    PARAMETER_NAMES,
    STABLE_COUPLING_NORM,
    STABLE_SELF_COUPLING,
    ALRNNParams,
    bits_to_codes,
    build_model,
    codes_to_bits,
    phi_star,
    regime_codes,
)

N_INPUTS, N_OUTPUTS = 3, 2


# ---------------------------------------------------------------- helpers


def numpy_alrnn(params: dict[str, np.ndarray], n_nonlinear: int, slope: float, inputs: np.ndarray):
    """The AL-RNN equation restated in NumPy: returns (outputs, latents).

    z_t = A ⊙ z_{t-1} + W Φ*(z_{t-1}) + C s_t + h,  z_0 = 0,
    Φ* identity on the first M−P units and max(x,0) + α min(x,0) on the last P,
    y_t = B z_t + b.
    """
    A, W, h, C, B, b = (params[k] for k in ("A", "W", "h", "C", "B", "b"))
    n_trials, n_steps, _ = inputs.shape
    M = A.shape[0]
    first_nonlinear = M - n_nonlinear  # never `-n_nonlinear`: -0 would select every unit
    z = np.zeros((n_trials, M))
    latents = np.zeros((n_trials, n_steps, M))
    for t in range(n_steps):
        phi = z.copy()
        tail = phi[:, first_nonlinear:]
        phi[:, first_nonlinear:] = np.where(tail > 0, tail, slope * tail)
        z = A * z + phi @ W.T + inputs[:, t] @ C.T + h
        latents[:, t] = z
    return latents @ B.T + b, latents


def set_random_parameters(model: ALRNN, seed: int, *, coupling: float = 0.5) -> dict[str, np.ndarray]:
    """Overwrite the model's weights with O(1) random values (strong enough
    that the ReLU units matter) and return them as float64 NumPy arrays."""
    rng = np.random.default_rng(seed)
    M, K, O = model.n_units, model.n_inputs, model.n_outputs
    params = {
        "A": rng.uniform(0.2, 0.7, M),
        "W": rng.normal(0.0, coupling / np.sqrt(M), (M, M)),
        "h": rng.normal(0.0, 0.3, M),
        "C": rng.normal(0.0, 1.0, (M, K)),
        "B": rng.normal(0.0, 1.0, (O, M)),
        "b": rng.normal(0.0, 0.3, O),
    }
    with torch.no_grad():
        for name, value in params.items():
            getattr(model, name).copy_(torch.from_numpy(value))
    return params


def make_model(n_units: int, n_nonlinear: int, *, slope: float = 0.0, seed: int = 0):
    model = ALRNN(N_INPUTS, N_OUTPUTS, n_units, n_nonlinear, slope=slope).double()
    params = set_random_parameters(model, seed)
    return model, params


def random_inputs(n_trials: int, n_steps: int, seed: int, n_inputs: int = N_INPUTS) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n_trials, n_steps, n_inputs))


def regime_bits(z: np.ndarray, n_nonlinear: int) -> np.ndarray:
    """D_Ω's diagonal for each state: ones on the linear units, [z_i > 0] on the nonlinear."""
    M = z.shape[-1]
    d = np.ones_like(z)
    d[..., M - n_nonlinear :] = z[..., M - n_nonlinear :] > 0
    return d


# ------------------------------------------------------ forward vs NumPy

SIZES = [
    pytest.param(6, 0, 0.0, id="P=0-linear"),
    pytest.param(6, 1, 0.0, id="P=1"),
    pytest.param(6, 2, 0.0, id="P=2"),
    pytest.param(6, 6, 0.0, id="P=M-plrnn"),
    pytest.param(6, 3, 0.3, id="P=3-slope0.3"),
]


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), SIZES)
def test_forward_matches_numpy_equation(n_units, n_nonlinear, slope):
    model, params = make_model(n_units, n_nonlinear, slope=slope)
    inputs = random_inputs(16, 25, seed=1)
    outputs, latents = model(torch.from_numpy(inputs))
    expected_outputs, expected_latents = numpy_alrnn(params, n_nonlinear, slope, inputs)

    np.testing.assert_allclose(latents.detach().numpy(), expected_latents, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(outputs.detach().numpy(), expected_outputs, rtol=1e-10, atol=1e-12)
    if n_nonlinear > 0:
        # The comparison only has power if the nonlinearity was actually engaged.
        tail = expected_latents[..., n_units - n_nonlinear :]
        assert (tail < 0).mean() > 0.1
        assert (tail > 0).mean() > 0.1


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), SIZES)
def test_phi_is_identity_then_leaky_relu(n_units, n_nonlinear, slope):
    model, _ = make_model(n_units, n_nonlinear, slope=slope)
    z = torch.from_numpy(random_inputs(50, 1, seed=2, n_inputs=n_units)[:, 0])
    phi = model.phi(z)
    linear = n_units - n_nonlinear
    torch.testing.assert_close(phi[:, :linear], z[:, :linear], rtol=0, atol=0)
    tail = z[:, linear:]
    torch.testing.assert_close(phi[:, linear:], torch.where(tail > 0, tail, slope * tail), rtol=0, atol=0)


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), SIZES)
def test_numpy_phi_star_is_the_torch_phi(n_units, n_nonlinear, slope):
    model, _ = make_model(n_units, n_nonlinear, slope=slope)
    z = random_inputs(50, 1, seed=4, n_inputs=n_units)[:, 0]
    expected = model.phi(torch.from_numpy(z)).numpy()
    np.testing.assert_array_equal(phi_star(z, n_nonlinear, slope), expected)
    np.testing.assert_array_equal(model.params().phi(z), expected)
    assert phi_star(z.astype(np.float32), n_nonlinear, slope).dtype == np.float32
    if n_nonlinear:
        assert not np.array_equal(expected, z)  # the test has power: some nonlinear unit was below zero


def test_plrnn_applies_relu_to_every_unit():
    model, _ = make_model(5, 5)
    z = torch.from_numpy(random_inputs(40, 1, seed=3, n_inputs=5)[:, 0])
    torch.testing.assert_close(model.phi(z), torch.relu(z), rtol=0, atol=0)
    assert bool(model.nonlinear_mask.all())


def test_linear_model_has_no_nonlinear_units():
    model, _ = make_model(5, 0)
    z = torch.from_numpy(random_inputs(40, 1, seed=3, n_inputs=5)[:, 0])
    torch.testing.assert_close(model.phi(z), z, rtol=0, atol=0)
    assert not bool(model.nonlinear_mask.any())


# ------------------------------------------------------------- linearity


def _response(model, inputs: np.ndarray):
    outputs, latents = model(torch.from_numpy(inputs))
    return outputs.detach().numpy(), latents.detach().numpy()


def test_linear_model_superposition_without_bias():
    model, _ = make_model(6, 0)
    with torch.no_grad():
        model.h.zero_()
        model.b.zero_()
    s1, s2 = random_inputs(3, 20, seed=4), random_inputs(3, 20, seed=5)
    a, c = 0.7, -1.3
    combined = _response(model, a * s1 + c * s2)
    separate = [a * r1 + c * r2 for r1, r2 in zip(_response(model, s1), _response(model, s2), strict=True)]
    for got, want in zip(combined, separate, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("n_nonlinear", "is_affine"),
    [pytest.param(0, True, id="P=0-affine"), pytest.param(6, False, id="P=M-not-affine")],
)
def test_affine_combination_of_inputs(n_nonlinear, is_affine):
    """With h, b ≠ 0 the P = 0 model is affine: f(λ s1 + (1−λ) s2) = λ f(s1) + (1−λ) f(s2).

    The P = M case is the control showing the check can detect a nonlinearity.
    """
    model, _ = make_model(6, n_nonlinear)
    s1, s2 = random_inputs(3, 20, seed=6), random_inputs(3, 20, seed=7)
    lam = -0.6
    combined_outputs, combined_latents = _response(model, lam * s1 + (1 - lam) * s2)
    (o1, z1), (o2, z2) = _response(model, s1), _response(model, s2)
    expected_latents = lam * z1 + (1 - lam) * z2
    if is_affine:
        np.testing.assert_allclose(combined_latents, expected_latents, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(combined_outputs, lam * o1 + (1 - lam) * o2, rtol=1e-10, atol=1e-12)
    else:
        assert np.abs(combined_latents - expected_latents).max() > 1e-3


# ---------------------------------------------------------- regime codes


@pytest.mark.parametrize(
    ("state", "n_nonlinear", "code"),
    [
        # M = 5; the nonlinear units are the last P; bit i = 0 is unit M − P.
        ([9.0, -9.0, 1.0, -1.0, 1.0], 3, 0b101),
        ([9.0, -9.0, -1.0, 1.0, 1.0], 3, 0b110),
        ([9.0, -9.0, 1.0, 1.0, -1.0], 3, 0b011),
        ([9.0, -9.0, -1.0, -1.0, -1.0], 3, 0),
        ([9.0, 9.0, 1.0, 1.0, 1.0], 3, 7),
        ([9.0, 9.0, 0.0, 1.0, 0.0], 3, 0b010),  # exactly 0 is "off"
        ([-1.0, 1.0, -1.0, -1.0, 1.0], 1, 1),
        ([-1.0, 1.0, -1.0, 1.0, -1.0], 1, 0),
        ([1.0, -1.0, 1.0, 1.0, -1.0], 5, 0b01101),
        ([1.0, 1.0, 1.0, 1.0, 1.0], 0, 0),
    ],
)
def test_regime_codes_hand_computed(state, n_nonlinear, code):
    codes = regime_codes(np.array([state]), n_nonlinear)
    assert codes.dtype == np.int64
    assert codes.tolist() == [code]


@pytest.mark.parametrize("n_nonlinear", [1, 3, 7])
def test_regime_codes_match_bitwise_loop(n_nonlinear):
    M = 8
    z = np.random.default_rng(8).normal(size=(4, 6, M))
    expected = np.zeros((4, 6), dtype=np.int64)
    for index in np.ndindex(4, 6):
        for i in range(n_nonlinear):
            if z[index][M - n_nonlinear + i] > 0:
                expected[index] += 1 << i
    np.testing.assert_array_equal(regime_codes(z, n_nonlinear), expected)
    # torch tensors (with grad) are accepted and give the same codes
    model = ALRNN(N_INPUTS, N_OUTPUTS, M, n_nonlinear)
    np.testing.assert_array_equal(model.regimes(torch.tensor(z, requires_grad=True)), expected)


def test_regime_codes_without_nonlinear_units_are_zero():
    z = np.random.default_rng(9).normal(size=(3, 7, 5))
    codes = regime_codes(z, 0)
    assert codes.shape == (3, 7)
    assert not codes.any()


def test_regime_codes_at_62_units_stay_integers():
    z = np.ones((2, 62))
    z[1, 61] = -1.0
    codes = regime_codes(z, 62)
    assert codes.dtype == np.int64
    assert codes.tolist() == [2**62 - 1, 2**61 - 1]


@pytest.mark.parametrize("n_nonlinear", [63, 70])
def test_regime_codes_above_62_units_are_packed_bytes(n_nonlinear):
    M = n_nonlinear + 2
    z = np.random.default_rng(10).normal(size=(3, 4, M))
    packed = regime_codes(z, n_nonlinear)
    assert packed.dtype == np.uint8
    assert packed.shape == (3, 4, -(-n_nonlinear // 8))
    bits = np.unpackbits(packed, axis=-1, count=n_nonlinear, bitorder="little")
    np.testing.assert_array_equal(bits.astype(bool), z[..., M - n_nonlinear :] > 0)


def test_regime_codes_reject_too_many_nonlinear_units():
    with pytest.raises(ValueError, match="n_nonlinear"):
        regime_codes(np.zeros((2, 4)), 5)


# ----------------------------------------------- affine map within a regime


@pytest.mark.parametrize("n_nonlinear", [0, 2, 6], ids=lambda p: f"P={p}")
def test_one_step_is_affine_map_of_its_regime(n_nonlinear):
    model, params = make_model(6, n_nonlinear)
    rng = np.random.default_rng(11)
    z0 = rng.normal(size=(64, 6))
    s = rng.normal(size=(64, 1, N_INPUTS))
    _, latents = model(torch.from_numpy(s), z0=torch.from_numpy(z0))

    d = regime_bits(z0, n_nonlinear)
    # W_Ω = diag(A) + W D_Ω, one per state
    W_omega = np.einsum("ij,bj->bij", params["W"], d) + np.diag(params["A"])
    expected = np.einsum("bij,bj->bi", W_omega, z0) + s[:, 0] @ params["C"].T + params["h"]
    np.testing.assert_allclose(latents[:, 0].detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    if n_nonlinear:
        assert len(np.unique(regime_codes(z0, n_nonlinear))) > 1


@pytest.mark.parametrize("n_nonlinear", [1, 3, 6], ids=lambda p: f"P={p}")
def test_regime_wise_affine_rollout_matches_forward(n_nonlinear):
    model, params = make_model(6, n_nonlinear)
    inputs = random_inputs(3, 30, seed=12)
    _, latents = model(torch.from_numpy(inputs))
    z = np.zeros((3, 6))
    rollout = []
    for t in range(inputs.shape[1]):
        d = regime_bits(z, n_nonlinear)
        W_omega = np.einsum("ij,bj->bij", params["W"], d) + np.diag(params["A"])
        z = np.einsum("bij,bj->bi", W_omega, z) + inputs[:, t] @ params["C"].T + params["h"]
        rollout.append(z)
    np.testing.assert_allclose(latents.detach().numpy(), np.stack(rollout, axis=1), rtol=1e-10, atol=1e-12)
    assert len(np.unique(model.regimes(latents))) > 1


# -------------------------------------------------------------- gradients


@pytest.mark.parametrize("n_nonlinear", [0, 2, 4], ids=lambda p: f"P={p}")
def test_gradcheck_inputs_and_parameters(n_nonlinear):
    model, _ = make_model(4, n_nonlinear, seed=13)
    inputs = torch.from_numpy(random_inputs(2, 5, seed=14)).requires_grad_(True)
    names = [name for name, _ in model.named_parameters()]
    assert set(names) == {"A", "W", "h", "C", "B", "b"}
    params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]

    _, latents = model(inputs)
    tail = latents[..., 4 - n_nonlinear :]
    if n_nonlinear:
        # finite differences must not straddle a ReLU kink
        assert tail.abs().min() > 1e-3

    def run(inputs, *values):
        return functional_call(model, dict(zip(names, values, strict=True)), (inputs,))

    assert torch.autograd.gradcheck(run, (inputs, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("n_nonlinear", [-1, 5])
def test_n_nonlinear_out_of_range(n_nonlinear):
    with pytest.raises(ValueError, match="n_nonlinear"):
        ALRNN(N_INPUTS, N_OUTPUTS, 4, n_nonlinear)


@pytest.mark.parametrize("kind", ["alrnn", "linear", "plrnn", "tanh", "gru", "lstm"])
@pytest.mark.parametrize(
    ("argument", "sizes"),
    [
        ("n_inputs", {"n_inputs": 0, "n_outputs": 2, "n_units": 4}),
        ("n_outputs", {"n_inputs": 3, "n_outputs": -1, "n_units": 4}),
        ("n_units", {"n_inputs": 3, "n_outputs": 2, "n_units": 0}),
    ],
)
def test_non_positive_sizes_name_the_argument(kind, argument, sizes):
    with pytest.raises(ValueError, match=argument):
        build_model(kind, **sizes, n_nonlinear=0)


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
@pytest.mark.parametrize("shape", [(2, 5, N_INPUTS + 1), (5, N_INPUTS)], ids=["wrong-K", "2-D"])
def test_wrong_input_shape_names_n_inputs(kind, shape):
    model = build_model(kind, N_INPUTS, N_OUTPUTS, 4, n_nonlinear=2)
    with pytest.raises(ValueError, match="n_inputs"):
        model(torch.zeros(shape))


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="nope") as error:
        build_model("nope", N_INPUTS, N_OUTPUTS, 4)
    for kind in ("alrnn", "linear", "plrnn", "tanh", "gru", "lstm"):
        assert kind in str(error.value)


def test_alrnn_kind_needs_n_nonlinear():
    with pytest.raises(ValueError, match="n_nonlinear"):
        build_model("alrnn", N_INPUTS, N_OUTPUTS, 4)


# ------------------------------------------------- every kind, one interface


def test_model_kinds_are_the_documented_ones():
    assert set(MODEL_KINDS) == {"alrnn", "linear", "plrnn", "tanh", "gru", "lstm"}


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_every_kind_shapes_and_training_step(kind):
    n_units, n_classes = 8, 3
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(kind, N_INPUTS, n_classes, n_units, n_nonlinear=3)
        inputs = torch.randn(6, 12, N_INPUTS)
    targets = (inputs[..., 0] > 0).long() + (inputs[..., 1] > 0).long()

    outputs, latents = model(inputs)
    assert outputs.shape == (6, 12, n_classes)
    assert latents.shape == (6, 12, n_units)
    expected_P = {"linear": 0, "plrnn": n_units, "alrnn": 3}.get(kind)
    if expected_P is not None:
        assert model.n_nonlinear == expected_P

    def loss_fn():
        out, _ = model(inputs)
        return torch.nn.functional.cross_entropy(out.reshape(-1, n_classes), targets.reshape(-1))

    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    initial = loss_fn()
    optimiser.zero_grad()
    initial.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name
    optimiser.step()
    for name, p in model.named_parameters():
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"

    for _ in range(29):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
    assert loss_fn().item() < initial.item() - 0.05


# -------------------------------------------------------- initialisation


def test_reference_initialisation_properties():
    M, K = 64, 5
    model = ALRNN(K, N_OUTPUTS, M, 4, init="reference", generator=torch.Generator().manual_seed(0))
    A = model.A.detach().double().numpy()
    # A = diag(RᵀR/M + I)/λ_max: positive (diag ≥ 1/λ_max) and ≤ 1 (a PSD
    # diagonal never exceeds λ_max). Marchenko–Pastur: diag ≈ 2, λ_max ≈ 5.
    assert A.min() > 0
    assert A.max() <= 1 + 1e-6
    assert 0.3 < A.mean() < 0.5
    W = model.W.detach().double().numpy()
    assert abs(W.std() - 0.01) < 0.001
    assert abs(W.mean()) < 0.001
    assert not model.h.detach().any()
    assert not model.b.detach().any()
    assert model.C.detach().abs().max() <= 1 / np.sqrt(K)
    assert model.B.detach().abs().max() <= 1 / np.sqrt(M)


def test_reference_initialisation_of_one_unit_is_exactly_one():
    """For M = 1 the scheme is explicit: K = r²/1 + 1, λ_max = K, so A = 1."""
    model = ALRNN(N_INPUTS, N_OUTPUTS, 1, 1, init="reference", generator=torch.Generator().manual_seed(3))
    assert model.A.item() == pytest.approx(1.0)


def test_stable_initialisation():
    M = 64
    model = ALRNN(N_INPUTS, N_OUTPUTS, M, 4, init="stable", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.A.detach(), torch.full((M,), 0.7))
    W = model.W.detach().double().numpy()
    assert np.linalg.norm(W, 2) == pytest.approx(0.25, rel=1e-6)
    # A scaled Gaussian: zero mean, equal spread in every row.
    assert abs(W.mean()) < 0.1 * W.std()
    assert not model.h.detach().any()


@pytest.mark.parametrize("n_units", [1, 8, 32, 128])
def test_default_initialisation_contracts_in_every_regime(n_units):
    """‖W_Ω‖₂ ≤ a + c < 1 for every regime (so ρ(W_Ω) < 1), whatever M: checked on the all-on and all-off regimes
    and on random ones."""
    model = ALRNN(N_INPUTS, N_OUTPUTS, n_units, n_units // 2 + 1 if n_units > 1 else 1,
                  generator=torch.Generator().manual_seed(n_units))
    params = model.params()
    P = params.n_nonlinear
    bits = np.concatenate([np.ones((1, P), bool), np.zeros((1, P), bool),
                           np.random.default_rng(0).random((20, P)) < 0.5])
    matrices = params.regime_matrix(bits)
    bound = STABLE_SELF_COUPLING + STABLE_COUPLING_NORM
    assert bound <= 0.95
    assert np.abs(np.linalg.eigvals(matrices[0])).max() < 1  # the all-on regime
    assert (np.linalg.norm(matrices, 2, axis=(1, 2)) <= bound + 1e-6).all()


@pytest.mark.parametrize("n_units", [1, 8, 32, 128])
def test_default_initialisation_stays_bounded_on_long_trials(n_units):
    """5,000 steps of unit-scale inputs: ‖z_t‖₂ ≤ max_t ‖C s_t + h‖₂ / (1 − a − c), the bound the docstring states."""
    model = ALRNN(N_INPUTS, N_OUTPUTS, n_units, max(1, n_units // 4),
                  generator=torch.Generator().manual_seed(n_units)).eval()
    inputs = torch.from_numpy(np.random.default_rng(n_units).uniform(-1.0, 1.0, (2, 5000, N_INPUTS))).float()
    with torch.no_grad():
        _, latents = model(inputs)
        drive = torch.linalg.vector_norm(inputs @ model.C.T + model.h, dim=-1).max().item()
    norms = torch.linalg.vector_norm(latents, dim=-1)
    assert torch.isfinite(latents).all()
    assert norms.max().item() <= drive / (1 - STABLE_SELF_COUPLING - STABLE_COUPLING_NORM) * (1 + 1e-4)
    assert latents.abs().max().item() < 100.0


# --------------------------------------------------------- parameter container


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), SIZES)
def test_from_params_of_params_round_trips_exactly(n_units, n_nonlinear, slope):
    model, _ = make_model(n_units, n_nonlinear, slope=slope)
    params = model.params()
    assert (params.n_units, params.n_inputs, params.n_outputs) == (n_units, N_INPUTS, N_OUTPUTS)
    assert (params.n_nonlinear, params.slope) == (n_nonlinear, slope)
    rebuilt = ALRNN.from_params(params, dtype=torch.float64)
    assert (rebuilt.n_inputs, rebuilt.n_outputs, rebuilt.n_units, rebuilt.n_nonlinear, rebuilt.slope) == (
        N_INPUTS, N_OUTPUTS, n_units, n_nonlinear, slope)
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(rebuilt, name), getattr(model, name)), name
    again = rebuilt.params()
    for name in PARAMETER_NAMES:
        np.testing.assert_array_equal(getattr(again, name), getattr(params, name))
    # float32 models round-trip exactly through the float64 container too
    single = ALRNN(N_INPUTS, N_OUTPUTS, n_units, n_nonlinear, slope=slope, generator=torch.Generator().manual_seed(1))
    copy = ALRNN.from_params(single.params())
    for name in PARAMETER_NAMES:
        assert getattr(copy, name).dtype == torch.float32
        assert torch.equal(getattr(copy, name), getattr(single, name)), name


def test_params_are_copies_and_from_params_leaves_the_global_random_stream_alone():
    model, _ = make_model(4, 2)
    params = model.params()
    with torch.no_grad():
        model.W.add_(1.0)
    assert not np.array_equal(params.W, model.W.detach().numpy())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ALRNN.from_params(params)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("n_units", "n_nonlinear", "slope"), SIZES)
def test_numpy_step_matches_torch_forward(n_units, n_nonlinear, slope):
    model, _ = make_model(n_units, n_nonlinear, slope=slope, seed=21)
    params = model.params()
    inputs = random_inputs(8, 30, seed=22)
    outputs, latents = model(torch.from_numpy(inputs))
    z = np.zeros((8, n_units))
    for t in range(inputs.shape[1]):
        z = params.step(z, inputs[:, t])
        np.testing.assert_allclose(z, latents[:, t].detach().numpy(), rtol=1e-12, atol=1e-12)
    if n_nonlinear:
        tail = latents.detach().numpy()[..., n_units - n_nonlinear :]
        assert (tail < 0).mean() > 0.1 and (tail > 0).mean() > 0.1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"W": np.zeros((3, 4))}, r"W must have shape \(4, 4\)"),
        ({"C": np.zeros((3, 2))}, r"C must have shape \(M=4, K\)"),
        ({"b": np.zeros(3)}, r"b must have shape \(2,\)"),
        ({"n_nonlinear": 5}, r"n_nonlinear must lie in \[0, 4\], got 5"),
        ({"n_nonlinear": 1.5}, r"n_nonlinear must be an integer"),
        ({"slope": 2.0}, r"slope \(alpha\) must lie in \[0, 1\]"),
        ({"A": np.array([0.5, np.nan, 0.5, 0.5])}, r"A has NaN or infinite entries"),
    ],
)
def test_params_reject_inconsistent_values(change, message):
    values = {"A": np.full(4, 0.5), "W": np.zeros((4, 4)), "h": np.zeros(4), "C": np.zeros((4, 3)),
              "B": np.zeros((2, 4)), "b": np.zeros(2), "n_nonlinear": 2, **change}
    with pytest.raises(ValueError, match=message):
        ALRNNParams(**values)


def test_from_model_refuses_a_baseline():
    with pytest.raises(TypeError, match="not an AL-RNN"):
        ALRNNParams.from_model(build_model("gru", N_INPUTS, N_OUTPUTS, 4))


@pytest.mark.parametrize("n_nonlinear", [0, 1, 5, 62, 63, 70])
def test_codes_to_bits_inverts_bits_to_codes(n_nonlinear):
    bits = np.random.default_rng(n_nonlinear).random((4, 3, n_nonlinear)) < 0.5
    codes = bits_to_codes(bits)
    if n_nonlinear <= MAX_INTEGER_CODE_BITS:
        assert codes.dtype == np.int64 and codes.shape == (4, 3)
    else:
        assert codes.dtype == np.uint8 and codes.shape == (4, 3, -(-n_nonlinear // 8))
    np.testing.assert_array_equal(codes_to_bits(codes, n_nonlinear), bits)


def test_regime_codes_are_bits_to_codes_of_the_nonlinear_units():
    z = np.random.default_rng(23).normal(size=(5, 9))
    np.testing.assert_array_equal(regime_codes(z, 4), bits_to_codes(z[:, 5:] > 0))
    assert codes_to_bits([0, 5, 15], 4).tolist() == [[False] * 4, [True, False, True, False], [True] * 4]


@pytest.mark.parametrize(("codes", "n_nonlinear", "message"), [
    ([4], 2, r"must lie in \[0, 2\^P = 4\) for P=2, got \[4\]"),
    ([-1], 2, r"got \[-1\]"),
    ([0.5], 2, r"must be integers"),
    (np.zeros((2, 3), dtype=np.int64), 70, r"packed uint8 bytes with a last axis of 9"),
])
def test_codes_to_bits_rejects_codes_outside_the_regimes(codes, n_nonlinear, message):
    with pytest.raises(ValueError, match=message):
        codes_to_bits(codes, n_nonlinear)


@pytest.mark.parametrize("init", ["reference", "stable"])
def test_seeded_generator_makes_initialisation_reproducible(init):
    def state(seed):
        model = build_model(
            "alrnn", N_INPUTS, N_OUTPUTS, 16, n_nonlinear=4, init=init,
            generator=torch.Generator().manual_seed(seed),
        )
        return model.state_dict()

    first, again, other = state(1), state(1), state(2)
    for name in first:
        torch.testing.assert_close(first[name], again[name], rtol=0, atol=0)
    assert not torch.equal(first["W"], other["W"])
    assert not torch.equal(first["C"], other["C"])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("noise_std", -0.1),
        # NaN passes a `< 0` check and would make every training step NaN
        ("noise_std", float("nan")),
        ("slope", -0.5),
        ("slope", 1.5),
        ("slope", float("nan")),
    ],
)
def test_bad_noise_or_slope_is_rejected(option, value):
    with pytest.raises(ValueError, match=option):
        ALRNN(N_INPUTS, N_OUTPUTS, 4, 2, **{option: value})


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match="init"):
        ALRNN(N_INPUTS, N_OUTPUTS, 4, 2, init="xavier")


# ------------------------------------------------------------------ noise


def test_noise_only_while_training():
    noisy = ALRNN(N_INPUTS, N_OUTPUTS, 6, 2, noise_std=0.3).double()
    set_random_parameters(noisy, seed=15)
    clean = ALRNN(N_INPUTS, N_OUTPUTS, 6, 2, noise_std=0.0).double()
    clean.load_state_dict(noisy.state_dict())
    inputs = torch.from_numpy(random_inputs(4, 10, seed=16))

    noisy.train()
    first, _ = noisy(inputs)
    second, _ = noisy(inputs)
    assert not torch.allclose(first, second)

    noisy.eval()
    third, latents_eval = noisy(inputs)
    fourth, _ = noisy(inputs)
    torch.testing.assert_close(third, fourth, rtol=0, atol=0)
    expected, expected_latents = clean(inputs)
    torch.testing.assert_close(third, expected, rtol=0, atol=0)
    torch.testing.assert_close(latents_eval, expected_latents, rtol=0, atol=0)


def test_noise_has_the_requested_standard_deviation():
    """z_1 = C s_1 + h + σ ξ_1 from z_0 = 0, so the noisy − clean z_1 has std σ."""
    sigma = 0.3
    model = ALRNN(N_INPUTS, N_OUTPUTS, 8, 0, noise_std=sigma).double()
    set_random_parameters(model, seed=17)
    inputs = torch.from_numpy(random_inputs(2000, 1, seed=18))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        _, noisy = model.train()(inputs)
    _, clean = model.eval()(inputs)
    residual = (noisy - clean)[:, 0].detach().numpy()
    assert abs(residual.std() - sigma) < 0.05 * sigma
    assert abs(residual.mean()) < 0.05 * sigma
