"""align_regimes: two AL-RNNs on the same trials, checked on models whose alignment is known.

A copy of a model must match itself; a model whose units are permuted (linear
among linear, nonlinear among nonlinear) has the same dynamics with
bit-permuted regime codes and latents permuted exactly; an unrelated model
(other seed, other sizes and readout) must not look identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from neuroalrnn.analyses.alignment import align_regimes, alignment_report_lines
from neuroalrnn.envs import make, sample_trials

from neuroalrnn import ALRNN
from neuroalrnn.evaluation.simulate import simulate_batch
from neuroalrnn.models import bits_to_codes, codes_to_bits, regime_codes

N_INPUTS, N_OUTPUTS, N_UNITS, N_NONLINEAR = 5, 3, 10, 3
NONLINEAR_ORDER = np.array([2, 0, 1])  # bit i of the permuted model is bit NONLINEAR_ORDER[i] of the original


def regime_rich_model(seed: int, n_units: int, n_nonlinear: int, n_outputs: int = N_OUTPUTS) -> ALRNN:
    """A random AL-RNN whose nonlinear units are driven hard by context and evidence, so it visits many regimes."""
    model = ALRNN(N_INPUTS, n_outputs, n_units, n_nonlinear, generator=torch.Generator().manual_seed(seed)).double()
    # Inputs: fixation, context_motion, context_colour, motion, colour.
    drive = torch.tensor([[0.0, 1, -1, 3, 0], [0, -1, 1, 0, 3], [-1, 0, 0, 1, 1]], dtype=torch.float64)
    with torch.no_grad():
        model.C[n_units - n_nonlinear :] = drive[:n_nonlinear]
        model.h[n_units - n_nonlinear :] = torch.tensor([-0.1, -0.1, 0.5], dtype=torch.float64)[:n_nonlinear]
    return model.eval()


def permuted(model: ALRNN, permutation: np.ndarray) -> ALRNN:
    """The same network with unit i of the copy = unit permutation[i] of ``model``."""
    params = model.params()
    index = torch.from_numpy(permutation)
    copy = ALRNN.from_params(params, dtype=torch.float64)
    with torch.no_grad():
        copy.A.copy_(model.A[index])
        copy.h.copy_(model.h[index])
        copy.W.copy_(model.W[index][:, index])
        copy.C.copy_(model.C[index])
        copy.B.copy_(model.B[:, index])
    return copy.eval()


def unit_permutation() -> np.ndarray:
    n_linear = N_UNITS - N_NONLINEAR
    linear = np.random.default_rng(0).permutation(n_linear)
    return np.concatenate([linear, n_linear + NONLINEAR_ORDER])


def permute_codes(codes: np.ndarray) -> np.ndarray:
    return bits_to_codes(codes_to_bits(codes, N_NONLINEAR)[..., NONLINEAR_ORDER])


def responses_on(model: ALRNN, trials: xr.Dataset) -> xr.Dataset:
    """``trials`` with ``model``'s latents, outputs and regimes on the same inputs (any M, P and O)."""
    with torch.no_grad():
        outputs, latents = model(torch.from_numpy(trials["inputs"].values).double())
    latents = latents.numpy()
    others = trials.drop_vars(["outputs", "latents", "regime", "unit", "output"])
    return others.assign(
        outputs=(("trial", "time", "output"), outputs.numpy().astype(np.float32)),
        latents=(("trial", "time", "unit"), latents.astype(np.float32)),
        regime=(("trial", "time"), regime_codes(latents, model.n_nonlinear)),
    ).assign_attrs(n_units=model.n_units, n_nonlinear=model.n_nonlinear)


@pytest.fixture(scope="module")
def batch():
    return sample_trials(make("stimulus-selection"), 64, seed=0, task_name="stimulus-selection")


@pytest.fixture(scope="module")
def model_a() -> ALRNN:
    return regime_rich_model(seed=1, n_units=N_UNITS, n_nonlinear=N_NONLINEAR)


@pytest.fixture(scope="module")
def trials_a(model_a, batch) -> xr.Dataset:
    return simulate_batch(model_a, batch, seed=0)


@pytest.fixture(scope="module")
def identical(model_a, trials_a, batch) -> xr.Dataset:
    copy = ALRNN.from_params(model_a.params(), dtype=torch.float64).eval()
    return align_regimes(trials_a, model_a.params(), simulate_batch(copy, batch, seed=0), copy.params())


@pytest.fixture(scope="module")
def permuted_run(model_a, batch):
    model_b = permuted(model_a, unit_permutation())
    return model_b, simulate_batch(model_b, batch, seed=0)


@pytest.fixture(scope="module")
def other_run(trials_a):
    model_b = regime_rich_model(seed=2, n_units=12, n_nonlinear=2, n_outputs=7)
    return model_b, responses_on(model_b, trials_a)


@pytest.fixture(scope="module")
def other(model_a, trials_a, other_run) -> xr.Dataset:
    model_b, trials_b = other_run
    return align_regimes(trials_a, model_a.params(), trials_b, model_b.params())


def test_test_model_visits_many_regimes_in_both_contexts(trials_a, identical):
    assert identical.sizes["regime_a"] >= 5
    assert identical.attrs["condition"] == "context"
    assert set(identical["cell"].values) >= {"stimulus|motion", "stimulus|colour"}


def test_a_copy_of_a_model_matches_itself(identical):
    np.testing.assert_array_equal(identical["match"].values, identical["regime_a"].values)
    np.testing.assert_allclose(identical["match_similarity"].values, 1.0, atol=1e-12)
    np.testing.assert_allclose(identical["match_agreement"].values, 1.0, atol=1e-12)
    assert identical.attrs["latent_r2"] == pytest.approx(1.0, abs=1e-6)
    assert identical.attrs["nmi"] == pytest.approx(1.0, abs=1e-9)
    assert identical.attrs["n_matched"] == identical.sizes["regime_a"]
    distance = identical["fixed_point_distance"].values
    assert np.isfinite(distance).all()
    np.testing.assert_allclose(distance, 0.0, atol=1e-6)
    np.testing.assert_allclose(identical["spectral_radius_b"].values, identical["spectral_radius_a"].values)
    np.testing.assert_array_equal(identical["gating_index_a"].values, identical["gating_index_b"].values)
    assert identical["gating_agrees"].values.all()
    assert identical["gating_compared"].values.any()  # else the agreement would hold vacuously


def test_a_unit_permuted_model_matches_the_bit_permuted_regimes(model_a, trials_a, permuted_run):
    model_b, trials_b = permuted_run
    expected_codes = permute_codes(trials_a["regime"].values)
    # The construction: same dynamics, latents permuted exactly, regime codes bit-permuted.
    np.testing.assert_array_equal(trials_b["regime"].values, expected_codes)
    np.testing.assert_array_equal(trials_b["latents"].values, trials_a["latents"].values[..., unit_permutation()])

    alignment = align_regimes(trials_a, model_a.params(), trials_b, model_b.params())
    codes = alignment["regime_a"].values
    assert (permute_codes(codes) != codes).any()  # the test could see a wrong match
    np.testing.assert_array_equal(alignment["match"].values, permute_codes(codes))
    np.testing.assert_allclose(alignment["match_similarity"].values, 1.0, atol=1e-12)
    assert alignment.attrs["latent_r2"] == pytest.approx(1.0, abs=1e-6)
    # z_b[i] = z_a[π(i)], so z_a[j] = z_b[π⁻¹(j)]: the map from b's latents to a's selects π⁻¹.
    expected_map = np.eye(N_UNITS)[np.argsort(unit_permutation())]
    np.testing.assert_allclose(alignment["latent_map"].values, expected_map, atol=1e-6)
    np.testing.assert_allclose(alignment["fixed_point_distance"].values, 0.0, atol=1e-6)
    np.testing.assert_allclose(alignment["spectral_radius_b"].values, alignment["spectral_radius_a"].values,
                               rtol=1e-10)
    assert alignment["gating_agrees"].values.all()


def test_an_unrelated_model_is_not_identical(other, trials_a):
    assert other.sizes["unit_a"] == N_UNITS and other.sizes["unit_b"] == 12
    assert (other["profile_similarity"].values < 1 - 1e-3).any()
    assert other.attrs["latent_r2"] < 1 - 1e-3
    assert other.attrs["nmi"] < 1 - 1e-3
    assert other.sizes["regime_b"] < other.sizes["regime_a"]  # P = 2: at most 4 regimes
    assert other.attrs["n_matched"] == other.sizes["regime_b"]
    unmatched = other["match"].values == -1
    assert unmatched.sum() == other.sizes["regime_a"] - other.sizes["regime_b"]
    assert np.isnan(other["spectral_radius_b"].values[unmatched]).all()
    assert np.isnan(other["fixed_point_distance"].values[unmatched]).all()
    assert sorted(other["match"].values[~unmatched]) == sorted(other["regime_b"].values)
    # The default assignment puts the two models in matched regimes on as many of the same steps as possible ...
    co_occupancy = other["co_occupancy"].values
    columns = list(other["regime_b"].values)
    matched_steps = sum(co_occupancy[i, columns.index(code)] for i, code in enumerate(other["match"].values)
                        if code != -1)
    assert matched_steps == pytest.approx(_best_assignment_total(co_occupancy))


def test_matching_by_profile_maximises_the_profile_similarity(model_a, trials_a, other_run, other):
    model_b, trials_b = other_run
    by_profile = align_regimes(trials_a, model_a.params(), trials_b, model_b.params(), match_by="profile")
    unmatched = by_profile["match"].values == -1
    assert by_profile["match_similarity"].values[~unmatched].sum() == pytest.approx(
        _best_assignment_total(by_profile["profile_similarity"].values))
    # ... and by profile, here, another assignment (so the option changes something)
    assert not np.array_equal(by_profile["match"].values, other["match"].values)


def _best_assignment_total(similarity: np.ndarray) -> float:
    """The largest total similarity over all injective assignments of b's regimes to a's, by brute force."""
    from itertools import permutations

    n_a, n_b = similarity.shape
    return max(sum(similarity[rows[j], j] for j in range(n_b)) for rows in permutations(range(n_a), n_b))


def test_profiles_and_co_occupancy_against_direct_counts(other, trials_a, other_run):
    _, trials_b = other_run
    valid = trials_a["mask"].values
    regime_a, regime_b = trials_a["regime"].values[valid], trials_b["regime"].values[valid]
    epoch = trials_a["epoch"].values[valid]
    context = np.broadcast_to(trials_a["context"].values[:, None], valid.shape)[valid]
    cells = other["cell"].values
    for code in other["regime_a"].values:
        in_regime = regime_a == code
        counts = np.array([np.sum(in_regime & (epoch == c.split("|")[0]) & (context == c.split("|")[1]))
                           for c in cells])
        np.testing.assert_allclose(other["profile_a"].sel(regime_a=code).values, counts / counts.sum())
        for code_b in other["regime_b"].values:
            share = np.mean(in_regime & (regime_b == code_b))
            assert other["co_occupancy"].sel(regime_a=code, regime_b=code_b).item() == pytest.approx(share)
    p = other["profile_a"].isel(regime_a=0).values
    q = other["profile_b"].isel(regime_b=0).values
    m = (p + q) / 2

    def kl_bits(x: np.ndarray) -> float:
        terms = x[x > 0] * np.log2(x[x > 0] / m[x > 0])
        return float(terms.sum())

    expected = 1 - np.sqrt((kl_bits(p) + kl_bits(q)) / 2)
    assert other["profile_similarity"].isel(regime_a=0, regime_b=0).item() == pytest.approx(expected, abs=1e-9)


def test_the_latent_map_is_the_least_squares_map(other, trials_a, other_run):
    _, trials_b = other_run
    valid = trials_a["mask"].values
    z_a = trials_a["latents"].values[valid].astype(float)
    z_b = trials_b["latents"].values[valid].astype(float)
    design = np.hstack([z_b, np.ones((len(z_b), 1))])
    coefficients, *_ = np.linalg.lstsq(design, z_a, rcond=None)
    np.testing.assert_allclose(other["latent_map"].values, coefficients[:-1].T, atol=1e-8)
    np.testing.assert_allclose(other["latent_offset"].values, coefficients[-1], atol=1e-8)
    residual = z_a - design @ coefficients
    expected_r2 = 1 - np.sum(residual**2) / np.sum((z_a - z_a.mean(axis=0)) ** 2)
    assert other.attrs["latent_r2"] == pytest.approx(expected_r2, abs=1e-10)


def test_without_a_condition_cells_are_epochs_and_gating_is_left_out(model_a, trials_a, other_run):
    model_b, trials_b = other_run
    alignment = align_regimes(trials_a, model_a.params(), trials_b, model_b.params(), condition=None, max_regimes=3)
    assert alignment.attrs["condition"] == ""
    assert "|" not in "".join(alignment["cell"].values)
    assert alignment.sizes["regime_a"] == 3
    assert "gating_agrees" not in alignment


def _changed_mask(trials: xr.Dataset) -> xr.Dataset:
    changed = trials.copy(deep=True)
    changed["mask"][0, -1] = ~changed["mask"][0, -1]
    return changed


def _changed_epoch(trials: xr.Dataset) -> xr.Dataset:
    epoch = trials["epoch"].values.copy()
    epoch[1, 0] = "context"
    return trials.assign_coords(epoch=(("trial", "time"), epoch))


def _changed_condition(trials: xr.Dataset) -> xr.Dataset:
    return trials.assign_coords(context=("trial", np.roll(trials["context"].values, 1)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_changed_mask, "mask"),
        (_changed_epoch, "epoch"),
        (_changed_condition, "condition 'context'"),
        (lambda trials: trials.isel(trial=slice(1, None)), "number of trials"),
    ],
)
def test_trials_that_are_not_paired_are_refused(model_a, trials_a, change, message):
    with pytest.raises(ValueError, match=f"not the same trials.*{message}"):
        align_regimes(trials_a, model_a.params(), change(trials_a), model_a.params())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_regimes": 0}, "max_regimes"),
        ({"min_occupancy": 1.5}, "min_occupancy"),
        ({"min_occupancy": 1.0}, "lower min_occupancy"),
        ({"condition": "colour_of_the_sky"}, "shared conditions"),
    ],
)
def test_bad_options_are_refused_by_name(model_a, trials_a, options, message):
    with pytest.raises(ValueError, match=message):
        align_regimes(trials_a, model_a.params(), trials_a, model_a.params(), **options)


def test_parameters_of_another_model_are_refused(model_a, trials_a, other_run):
    model_b, _ = other_run
    with pytest.raises(ValueError, match="units but params_b has M=12"):
        align_regimes(trials_a, model_a.params(), trials_a, model_b.params())


def test_report_section_lists_every_regime_with_its_match(other):
    lines = alignment_report_lines(other)
    assert lines[0] == "## Regimes aligned across models"
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| regime a")]
    assert len(rows) == other.sizes["regime_a"]
    for row, code, match in zip(rows, other["regime_a"].values, other["match"].values, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == str(code)
        assert cells[2] == (str(match) if match >= 0 else "—")
    assert any("Gating index" in line or "Neither model gates" in line for line in lines)
    with pytest.raises(ValueError, match="align_regimes"):
        alignment_report_lines(xr.Dataset())
