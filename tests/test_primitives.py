"""Primitives on hand-built AL-RNNs whose answers are known: integrator, context gate, transients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from neuroalrnn.analyses.primitives import (
    accumulated_response,
    boundary_transients,
    gating,
    integration_modes,
    transient_amplification,
)
from neuroalrnn.models import ALRNN, ALRNNParams, regime_codes


def _params(A, W, C, h, B, n_nonlinear, b=None) -> ALRNNParams:
    B = np.atleast_2d(np.asarray(B, float))
    return ALRNNParams(A=np.asarray(A, float), W=np.asarray(W, float), h=np.asarray(h, float),
                       C=np.atleast_2d(np.asarray(C, float)), B=B,
                       b=np.zeros(B.shape[0]) if b is None else np.asarray(b, float), n_nonlinear=n_nonlinear)


def _trials_from(params: ALRNNParams, inputs: np.ndarray, epochs: np.ndarray, **conditions) -> xr.Dataset:
    """Run the torch ALRNN with ``params`` and label the result as a trials Dataset."""
    model = ALRNN.from_params(params, dtype=torch.float64)
    with torch.no_grad():
        outputs, latents = model(torch.from_numpy(inputs))
    n_trials, n_steps = epochs.shape
    coords = {"epoch": (("trial", "time"), epochs), "time": np.arange(n_steps) * 10.0}
    coords.update({name: ("trial", np.asarray(values)) for name, values in conditions.items()})
    return xr.Dataset(
        {
            "inputs": (("trial", "time", "input"), inputs),
            "latents": (("trial", "time", "unit"), latents.numpy()),
            "outputs": (("trial", "time", "output"), outputs.numpy()),
            "regime": (("trial", "time"), regime_codes(latents, params.n_nonlinear)),
            "mask": (("trial", "time"), np.ones((n_trials, n_steps), bool)),
        },
        coords=coords,
        attrs={"dt": 10.0},
    )


# ---------------------------------------------------------------- integration
def test_perfect_integrator_is_found_and_its_effect_is_exact():
    params = _params(A=[1.0], W=[[0.0]], C=[[1.0]], h=[0.0], B=[[1.0]], n_nonlinear=0)
    result = integration_modes(params, [0], horizon=15)
    assert float(result["eigenvalue"].sel(regime=0)) == pytest.approx(1.0)
    assert float(result["effect"].sel(regime=0, input=0)) == pytest.approx(15.0)  # ‖B v‖·|uᵀC|·T
    assert bool(result["integrates"].sel(regime=0, input=0))


def test_leaky_unit_is_not_an_integrator():
    params = _params(A=[0.5], W=[[0.0]], C=[[1.0]], h=[0.0], B=[[1.0]], n_nonlinear=0)
    result = integration_modes(params, [0], horizon=15)
    assert np.isnan(float(result["eigenvalue"].sel(regime=0)))
    assert not result["integrates"].any()


def test_integrator_that_the_input_does_not_drive_is_not_flagged():
    # Unit 0 integrates (A = 1) but only unit 1 receives the input.
    params = _params(A=[1.0, 0.2], W=np.zeros((2, 2)), C=[[0.0], [1.0]], h=[0, 0], B=[[1.0, 1.0]], n_nonlinear=0)
    result = integration_modes(params, [0], horizon=15)
    assert float(result["eigenvalue"].sel(regime=0)) == pytest.approx(1.0)
    assert float(result["effect"].sel(regime=0, input=0)) == pytest.approx(0.0, abs=1e-12)
    assert not result["integrates"].any()


def test_integration_depends_on_the_regime():
    """A ReLU copy of unit 0 feeds back onto it: W_Ω = [[0.5, 0.5 d], [1, 0]].

    With the ReLU unit on (code 1) the eigenvalues are 1 and −0.5 (λ² − 0.5λ − 0.5 = 0):
    a line attractor with v ∝ (1, 1), u ∝ (1, 0.5), so the effect over T steps is
    ‖B v‖ |uᵀC| T = (1/√2)(√2/1.5) T = T/1.5. With it off (code 0): eigenvalues 0.5, 0.
    """
    params = ALRNNParams(A=np.array([0.5, 0.0]), W=np.array([[0.0, 0.5], [1.0, 0.0]]), h=np.zeros(2),
                         C=np.array([[1.0], [0.0]]), B=np.array([[1.0, 0.0]]), b=np.zeros(1), n_nonlinear=1)
    result = integration_modes(params, [0, 1], horizon=15)
    assert float(result["eigenvalue"].sel(regime=1)) == pytest.approx(1.0)
    assert float(result["effect"].sel(regime=1, input=0)) == pytest.approx(15 / 1.5)
    assert bool(result["integrates"].sel(regime=1, input=0))
    assert np.isnan(float(result["eigenvalue"].sel(regime=0)))
    assert not bool(result["integrates"].sel(regime=0, input=0))
    np.testing.assert_allclose(np.abs(result["mode"].sel(regime=1)), [2**-0.5, 2**-0.5])


# ---------------------------------------------------------------- gating
def _context_gate() -> ALRNNParams:
    """Inputs (x1, x2, c). ReLU unit 1 carries x1 only when c = 1, unit 2 carries x2 only when c = 0;
    the linear unit 0 reads both next step, and the output reads unit 0."""
    C = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0], [0.0, 1.0, -2.0]])
    W = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    return ALRNNParams(A=np.zeros(3), W=W, h=np.array([0.0, -1.0, 1.0]), C=C, B=np.array([[1.0, 0.0, 0.0]]),
                       b=np.zeros(1), n_nonlinear=2)


def _gate_trials(params: ALRNNParams, n_trials: int = 40, n_steps: int = 8) -> xr.Dataset:
    rng = np.random.default_rng(0)
    context = np.repeat([1.0, 0.0], n_trials // 2)
    inputs = np.zeros((n_trials, n_steps, 3))
    inputs[:, :, :2] = rng.uniform(-0.5, 0.5, size=(n_trials, n_steps, 2))
    inputs[:, :, 2] = context[:, None]
    epochs = np.full((n_trials, n_steps), "stimulus", dtype=object).astype(str)
    return _trials_from(params, inputs, epochs, context=np.where(context == 1, "A", "B"))


def test_accumulated_response_matches_matrix_powers():
    params = _context_gate()
    response = accumulated_response(params, [1, 2], horizon=4)
    for code, bits in ((1, [True, False]), (2, [False, True])):
        W = params.regime_matrix(np.array(bits))
        expected = sum(params.B @ np.linalg.matrix_power(W, t) @ params.C for t in range(1, 5))
        np.testing.assert_allclose(response.sel(regime=code), expected)


def test_context_gate_is_found():
    params = _context_gate()
    trials = _gate_trials(params)
    # Context A keeps unit 1 on and unit 2 off (code 1); context B the reverse (code 2).
    np.testing.assert_array_equal(np.unique(trials["regime"].values[trials["context"].values == "A"]), [1])
    np.testing.assert_array_equal(np.unique(trials["regime"].values[trials["context"].values == "B"]), [2])
    result = gating(params, trials, "context", horizon=3)
    gain = result["gain"]
    assert float(gain.sel(condition_value="A", input=0)) == pytest.approx(1.0)  # x1 reaches the output in A
    assert float(gain.sel(condition_value="A", input=1)) == pytest.approx(0.0)  # x2 is blocked in A
    assert float(gain.sel(condition_value="B", input=1)) == pytest.approx(1.0)
    assert float(result["index"].sel(condition_value="A", condition_value_other="B", input=0)) == pytest.approx(1.0)
    assert float(result["index"].sel(condition_value="A", condition_value_other="B", input=1)) == pytest.approx(-1.0)
    assert result["gated"].sel(input=0) and result["gated"].sel(input=1)
    assert float(result["index"].sel(condition_value="A", condition_value_other="B", input=2)) == pytest.approx(0.0)
    assert not result["gated"].sel(input=2)  # the context input reaches the output the same way in both


def test_linear_network_gates_nothing():
    params = _params(A=[0.5, 0.5], W=[[0.0, 0.3], [0.2, 0.0]], C=[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]],
                     h=[0, 0], B=[[1.0, 1.0]], n_nonlinear=0)
    trials = _gate_trials(params)
    result = gating(params, trials, "context")
    np.testing.assert_allclose(result["index"], 0.0)
    assert not result["gated"].any()


def test_gating_errors():
    params = _context_gate()
    trials = _gate_trials(params)
    with pytest.raises(ValueError, match="coordinates \\['colour'\\]"):
        gating(params, trials, "colour")
    with pytest.raises(ValueError, match="no valid steps in epoch 'decision'"):
        gating(params, trials, "context", epoch="decision")


# ---------------------------------------------------------------- transients
def test_non_normal_regime_amplifies_transiently():
    params = _params(A=[0.5, 0.5], W=[[0.0, 2.0], [0.0, 0.0]], C=np.eye(2), h=[0, 0], B=np.eye(2), n_nonlinear=0)
    result = transient_amplification(params, [0], max_power=10)
    assert float(result["spectral_radius"].sel(regime=0)) == pytest.approx(0.5)
    W = np.array([[0.5, 2.0], [0.0, 0.5]])
    norms = [np.linalg.norm(np.linalg.matrix_power(W, k), 2) for k in range(1, 11)]
    assert float(result["peak_norm"].sel(regime=0)) == pytest.approx(max(norms))
    assert int(result["peak_step"].sel(regime=0)) == int(np.argmax(norms)) + 1
    assert bool(result["amplifies"].sel(regime=0))


def test_normal_contracting_regime_does_not_amplify():
    params = _params(A=[0.5, 0.3], W=np.zeros((2, 2)), C=np.eye(2), h=[0, 0], B=np.eye(2), n_nonlinear=0)
    result = transient_amplification(params, [0])
    assert not bool(result["amplifies"].sel(regime=0))
    assert float(result["peak_norm"].sel(regime=0)) == pytest.approx(0.5)


def test_regimes_visited_briefly_at_epoch_boundaries():
    # Regime 7 appears for one step at each epoch change; 0 and 1 hold the epochs.
    regime = np.array([[0, 0, 0, 7, 1, 1, 1, 7, 0, 0]] * 3)
    epochs = np.array([["a"] * 3 + ["b"] * 4 + ["c"] * 3] * 3)
    trials = xr.Dataset(
        {"regime": (("trial", "time"), regime), "mask": (("trial", "time"), np.ones_like(regime, bool))},
        coords={"epoch": (("trial", "time"), epochs)},
    )
    result = boundary_transients(trials)
    assert bool(result["transient"].sel(regime=7))
    assert float(result["mean_dwell"].sel(regime=7)) == 1.0
    assert float(result["boundary_fraction"].sel(regime=7)) == 1.0
    assert not bool(result["transient"].sel(regime=0)) and not bool(result["transient"].sel(regime=1))
    assert int(result["n_visits"].sel(regime=0)) == 6


def test_boundary_transients_restated_on_many_regimes_with_padding():
    # About one regime per step (as at P = M), ragged trials: every count re-derived by walking the steps.
    rng = np.random.default_rng(5)
    n_trials, n_time = 30, 40
    regime = rng.integers(0, 60, size=(n_trials, n_time))
    regime[:, 10:14] = 3  # some long visits too
    lengths = rng.integers(20, n_time + 1, size=n_trials)
    mask = np.arange(n_time)[None, :] < lengths[:, None]
    epochs = np.where(np.arange(n_time)[None, :] < rng.integers(5, 30, size=(n_trials, 1)), "a", "b")
    trials = xr.Dataset({"regime": (("trial", "time"), regime), "mask": (("trial", "time"), mask)},
                        coords={"epoch": (("trial", "time"), epochs)})
    result = boundary_transients(trials, window=1)
    visits, boundary, steps = {}, {}, {}
    for i in range(n_trials):
        change = {t for t in range(1, lengths[i]) if epochs[i, t] != epochs[i, t - 1]}
        for t in range(lengths[i]):
            code = int(regime[i, t])
            steps[code] = steps.get(code, 0) + 1
            if t == 0 or regime[i, t - 1] != code:
                visits[code] = visits.get(code, 0) + 1
                boundary[code] = boundary.get(code, 0) + int(bool({t - 1, t, t + 1} & change))
    codes = sorted(visits)
    assert result["regime"].values.tolist() == codes
    assert result["n_visits"].values.tolist() == [visits[c] for c in codes]
    np.testing.assert_allclose(result["mean_dwell"].values, [steps[c] / visits[c] for c in codes])
    np.testing.assert_allclose(result["boundary_fraction"].values, [boundary[c] / visits[c] for c in codes])
    assert 0 < sum(boundary.values()) < sum(visits.values())  # the test has power


def test_peaks_only_for_the_first_regimes_but_flags_for_all():
    params = _params(A=[0.5, 0.5], W=[[0.0, 2.0], [0.0, 0.0]], C=np.eye(2), h=[0, 0], B=np.eye(2), n_nonlinear=1)
    result = transient_amplification(params, [1, 0], max_power=5, peak_regimes=1)
    assert np.isfinite(float(result["peak_norm"].sel(regime=1))) and int(result["peak_step"].sel(regime=1)) >= 1
    assert np.isnan(float(result["peak_norm"].sel(regime=0))) and int(result["peak_step"].sel(regime=0)) == 0
    W0 = params.regime_matrix(np.array([False]))
    assert bool(result["amplifies"].sel(regime=0)) == bool(np.linalg.norm(W0, 2) > 1)
