"""Regime statistics and the regime–epoch map, checked against hand counts, scikit-learn and a loop re-statement;
the whole analysis, its report and figures at edge sizes (M = 1, P ∈ {0, M})."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.metrics import normalized_mutual_info_score

from neuroalrnn.analyses import analyze, figures
from neuroalrnn.analyses.core import regime_labels
from neuroalrnn.analyses.compare import compare
from neuroalrnn.analyses.regimes import dwell_times, occupancy_by, regime_epoch_table, regime_statistics
from neuroalrnn.analyses.report import render_report
from neuroalrnn.analyses.sharing import sharing_analysis, sharing_report_lines
from neuroalrnn.analyses.sharing_figures import sharing_figures
from neuroalrnn.models import ALRNN, ALRNNParams
from neuroalrnn.evaluation.simulate import simulate

N_BYTES = 9  # packed codes for P = 70 nonlinear units


def make_trials(regimes, mask, epochs, *, task=None, context=None, dt=10.0, packed=False, **attrs) -> xr.Dataset:
    """A trials.nc-shaped Dataset from nested lists (trial, time)."""
    regimes = np.asarray(regimes, dtype=np.int64)
    if packed:
        codes = regimes.astype("<u8").view(np.uint8).reshape(*regimes.shape, 8)
        padding = np.zeros((*regimes.shape, N_BYTES - 8), np.uint8)
        regime = (("trial", "time", "regime_byte"), np.concatenate([codes, padding], axis=-1))
    else:
        regime = (("trial", "time"), regimes)
    coords = {"time": ("time", np.arange(regimes.shape[1]) * dt), "epoch": (("trial", "time"), np.asarray(epochs, str))}
    if task is not None:
        coords["task"] = ("trial", np.asarray(task, str))
    if context is not None:
        coords["context"] = ("trial", np.asarray(context, str))
    return xr.Dataset({"regime": regime, "mask": (("trial", "time"), np.asarray(mask, bool))}, coords=coords,
                      attrs={"dt": dt, **attrs})


def hex_label(code: int) -> str:
    return int(code).to_bytes(N_BYTES, "little").hex()


# Three trials; padded steps hold regimes (7, 9) that must never count.
#   trial 0: 1 1 2 2 2 3      epochs f f s s d d   task A, context m
#   trial 1: 2 2 1 1 | 7 7    epochs f f s s       task A, context c
#   trial 2: 1 3 3 2 2 | 9    epochs f f s s d     task B, context m
HAND = dict(
    regimes=[[1, 1, 2, 2, 2, 3], [2, 2, 1, 1, 7, 7], [1, 3, 3, 2, 2, 9]],
    mask=[[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]],
    epochs=[list("ffssdd"), list("ffss") + ["", ""], list("ffssd") + [""]],
    task=["A", "A", "B"],
    context=["m", "c", "m"],
)
# Counts 2: 7, 1: 5, 3: 3 -> canonical order 2, 1, 3.
ORDER = [2, 1, 3]


@pytest.fixture
def hand() -> xr.Dataset:
    return make_trials(**HAND)


def relabel(codes, mapping):
    return [[mapping.get(code, code) for code in row] for row in codes]


def test_statistics_of_hand_built_trials(hand):
    # Runs: trial 0 (1×2)(2×3)(3×1); trial 1 (2×2)(1×2); trial 2 (1×1)(3×2)(2×2).
    # Pairs: 0: 1→1 1→2 2→2 2→2 2→3; 1: 2→2 2→1 1→1; 2: 1→3 3→3 3→2 2→2 (12, 5 switches).
    transitions = np.array([[4, 1, 1],   # from 2
                            [1, 2, 1],   # from 1
                            [1, 0, 1]])  # from 3
    expected = xr.Dataset(
        {
            "count": ("regime", [7, 5, 3]),
            "occupancy": ("regime", np.array([7, 5, 3]) / 15),
            "n_visits": ("regime", [3, 3, 2]),
            "mean_dwell": ("regime", [7 / 3, 5 / 3, 3 / 2]),
            "mean_dwell_ms": ("regime", np.array([7 / 3, 5 / 3, 3 / 2]) * 10.0),
            "median_dwell": ("regime", [2.0, 2.0, 1.5]),
            "n_steps": 15,
            "n_pairs": 12,
            "n_regimes": 3,
            "switch_fraction": 5 / 12,
            "transition_count": (("regime_from", "regime_to"), transitions),
            "transition_probability": (("regime_from", "regime_to"), transitions / np.array([[6], [4], [2]])),
        },
        coords={"regime": ORDER, "regime_from": ORDER, "regime_to": ORDER},
    )
    xr.testing.assert_allclose(regime_statistics(hand), expected)
    assert regime_statistics(hand)["count"].dtype == np.int64


def test_dwell_times_of_hand_built_trials(hand):
    expected = xr.DataArray(
        [2, 3, 1, 2, 2, 1, 2, 2],
        dims="run",
        coords={
            "regime": ("run", [1, 2, 3, 2, 1, 1, 3, 2]),
            "trial_index": ("run", [0, 0, 0, 1, 1, 2, 2, 2]),
            "start_step": ("run", [0, 2, 5, 0, 2, 0, 1, 3]),
        },
        name="dwell",
    )
    xr.testing.assert_equal(dwell_times(hand), expected)
    assert dwell_times(hand).attrs["dt"] == 10.0


@pytest.mark.parametrize(
    ("by", "groups", "rows", "sizes"),
    [
        ("epoch", ["f", "s", "d"], [[2, 3, 1], [3, 2, 1], [2, 0, 1]], [6, 6, 3]),
        ("task", ["A", "B"], [[5, 4, 1], [2, 1, 2]], [10, 5]),
        ("context", ["c", "m"], [[2, 2, 0], [5, 3, 3]], [4, 11]),
    ],
)
def test_occupancy_by_matches_hand_counts_and_sums_to_one(hand, by, groups, rows, sizes):
    occupancy = occupancy_by(hand, by)
    expected = xr.DataArray(
        np.array(rows) / np.array(sizes)[:, None],
        dims=(by, "regime"),
        coords={by: groups, "regime": ORDER, "n_steps": (by, sizes)},
        name="occupancy",
    )
    xr.testing.assert_allclose(occupancy, expected)
    np.testing.assert_allclose(occupancy.sum("regime"), 1.0)


def test_regime_epoch_table_of_hand_built_trials(hand):
    table = regime_epoch_table(hand)
    counts = [
        [[2, 2, 1], [2, 2, 0], [0, 0, 1]],  # task A: regimes 2, 1, 3 × epochs f, s, d
        [[0, 1, 1], [1, 0, 0], [1, 1, 0]],  # task B
    ]
    expected_count = xr.DataArray(counts, dims=("task", "regime", "epoch"),
                                  coords={"task": ["A", "B"], "regime": ORDER, "epoch": ["f", "s", "d"]}, name="count")
    xr.testing.assert_equal(table["count"], expected_count)
    np.testing.assert_allclose(table["epoch_specificity"], [[2 / 5, 2 / 4, 1.0], [1 / 2, 1.0, 1 / 2]])
    assert table["main_epoch"].values.tolist() == [["f", "f", "d"], ["s", "f", "f"]]  # ties: earlier epoch
    assert table["specific"].values.tolist() == [[False, False, True], [False, True, False]]
    assert table["n_epochs_spanned"].values.tolist() == [[3, 2, 1], [2, 1, 2]]
    assert table["n_steps"].values.tolist() == [10, 5]
    for task, trials in (("A", [0, 1]), ("B", [2])):
        valid = hand["mask"].values[trials]
        epochs, regimes = hand["epoch"].values[trials][valid], hand["regime"].values[trials][valid]
        reference = normalized_mutual_info_score(epochs, regimes)
        assert table["nmi"].sel(task=task).item() == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize(
    ("threshold", "min_fraction", "specific", "spanned"),
    [  # task A fractions: regime 2 (.4, .4, .2), regime 1 (.5, .5, 0), regime 3 (0, 0, 1); bounds are inclusive
        (0.5, 0.2, [[False, True, True], [True, True, True]], [[3, 2, 1], [2, 1, 2]]),
        (0.4, 0.45, [[True, True, True], [True, True, True]], [[0, 2, 1], [2, 1, 2]]),
        (1.0, 0.5, [[False, False, True], [False, True, False]], [[0, 2, 1], [2, 1, 2]]),
    ],
)
def test_threshold_and_min_fraction(hand, threshold, min_fraction, specific, spanned):
    table = regime_epoch_table(hand, threshold=threshold, min_fraction=min_fraction)
    assert table["specific"].values.tolist() == specific
    assert table["n_epochs_spanned"].values.tolist() == spanned
    fractions = table["count"] / table["count"].sum("epoch")
    np.testing.assert_array_equal(table["specific"], table["epoch_specificity"] >= threshold)
    np.testing.assert_array_equal(table["n_epochs_spanned"], (fractions >= min_fraction).sum("epoch"))


def test_regime_epoch_table_split_by_context(hand):
    table = regime_epoch_table(hand, condition="context")
    assert table["count"].dims == ("context", "task", "regime", "epoch")
    assert table["context"].values.tolist() == ["c", "m"]
    # context c is trial 1 only (task A): regime 2 in f twice, regime 1 in s twice.
    assert table["count"].sel(context="c", task="A").values.tolist() == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]
    assert table["count"].sel(context="m", task="A").values.tolist() == [[0, 2, 1], [2, 0, 0], [0, 0, 1]]
    xr.testing.assert_equal(table["count"].sum("context"), regime_epoch_table(hand)["count"])
    empty = table.sel(context="c", task="B")  # no trial of task B in context c
    assert np.isnan(empty["nmi"].item()) and empty["main_epoch"].values.tolist() == ["", "", ""]
    assert np.isnan(empty["epoch_specificity"]).all() and not empty["specific"].any()
    assert table["main_epoch"].sel(context="c", task="A").values.tolist() == ["f", "s", ""]


def test_epoch_order_follows_epoch_names_then_first_appearance(hand):
    assert regime_epoch_table(hand)["epoch"].values.tolist() == ["f", "s", "d"]
    named = hand.assign_attrs(epoch_names=json.dumps(["d", "x", "f"]))
    assert regime_epoch_table(named)["epoch"].values.tolist() == ["d", "f", "s"]
    assert occupancy_by(named, "epoch")["epoch"].values.tolist() == ["d", "f", "s"]


def test_without_task_coordinate_there_is_one_task_all(hand):
    table = regime_epoch_table(hand.drop_vars("task"))
    assert table["task"].values.tolist() == ["all"]
    np.testing.assert_array_equal(table["count"].sel(task="all"), regime_epoch_table(hand)["count"].sum("task"))


def test_ties_in_occupancy_are_ordered_by_code():
    trials = make_trials([[5, 3, 3, 5, 9, 9, 0]], [[1] * 7], [list("aaaaaaa")])
    assert regime_statistics(trials)["regime"].values.tolist() == [3, 5, 9, 0]
    assert regime_statistics(trials)["n_regimes"].item() == 4


@pytest.mark.parametrize(
    ("regimes", "mask", "n_visits", "n_pairs", "self_pairs"),
    [
        # trial 0 ends and trial 1 starts in regime 4: two runs, and no pair across the boundary.
        ([[1, 4, 4], [4, 4, 1]], [[1, 1, 1], [1, 1, 1]], 2, 4, 2),
        # a padded step holding the same code neither lengthens the run nor makes pairs.
        ([[1, 4, 4], [4, 4, 4]], [[1, 1, 1], [1, 0, 0]], 2, 2, 1),
        # a masked step inside a trial breaks the run.
        ([[4, 4, 4, 4]], [[1, 1, 0, 1]], 2, 1, 1),
    ],
)
def test_padding_and_trial_boundaries_never_count(regimes, mask, n_visits, n_pairs, self_pairs):
    epochs = np.where(np.asarray(mask, bool), "e", "")
    statistics = regime_statistics(make_trials(regimes, mask, epochs))
    assert statistics["n_visits"].sel(regime=4).item() == n_visits
    assert statistics["n_pairs"].item() == n_pairs == statistics["transition_count"].sum().item()
    assert statistics["transition_count"].sel(regime_from=4, regime_to=4).item() == self_pairs
    assert statistics["count"].sum().item() == np.sum(mask)


@pytest.mark.parametrize("n_epochs", [2, 3, 5])
def test_nmi_is_one_for_a_one_to_one_map(n_epochs):
    rng = np.random.default_rng(n_epochs)
    epochs = rng.integers(0, n_epochs, size=(4, 12))
    codes = np.array([8, 1, 6, 3, 2])[epochs]  # a bijection epoch -> regime
    table = regime_epoch_table(make_trials(codes, np.ones_like(codes), np.array(list("abcde"))[epochs]))
    assert table["nmi"].item() == pytest.approx(1.0, abs=1e-12)
    assert table["specific"].all() and (table["epoch_specificity"] == 1.0).all()


@pytest.mark.parametrize("table", [[[1, 3], [2, 6]], [[2, 2, 4], [1, 1, 2], [3, 3, 6]]])
def test_nmi_is_zero_for_exactly_independent_labels(table):
    table = np.asarray(table)
    assert np.linalg.matrix_rank(table) == 1  # joint = product of the marginals
    regimes, epochs = np.nonzero(table)
    repeats = table[regimes, epochs]
    codes, epoch_names = np.repeat(regimes, repeats), np.array(list("xyz"))[np.repeat(epochs, repeats)]
    trials = make_trials(codes[None], np.ones((1, codes.size)), epoch_names[None])
    assert regime_epoch_table(trials)["nmi"].item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("regimes", "epochs"),
    [([[1, 1, 1, 1]], [list("abab")]), ([[1, 2, 1, 2]], [list("aaaa")]), ([[3, 3, 3]], [list("aaa")])],
)
def test_nmi_is_zero_when_one_label_set_has_a_single_value(regimes, epochs):
    trials = make_trials(regimes, np.ones_like(regimes), epochs)
    assert regime_epoch_table(trials)["nmi"].item() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_matches_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    regimes = rng.integers(0, 6, size=(8, 15))
    epochs = np.array(list("abcd"))[rng.integers(0, 4, size=(8, 15))]
    mask = np.arange(15) < rng.integers(5, 16, size=8)[:, None]
    epochs[~mask] = ""
    task = rng.choice(["p", "q"], size=8)
    table = regime_epoch_table(make_trials(regimes, mask, epochs, task=task))
    for name in ("p", "q"):
        rows = task == name
        valid = mask[rows]
        reference = normalized_mutual_info_score(regimes[rows][valid], epochs[rows][valid], average_method="arithmetic")
        assert table["nmi"].sel(task=name).item() == pytest.approx(reference, abs=1e-12)


CODES = {1: 1, 2: 256, 3: 257, 7: 2**40, 9: 5}  # several bytes; hex order differs from numeric order


@pytest.mark.parametrize(
    "analysis",
    [
        regime_statistics,
        dwell_times,
        lambda trials: occupancy_by(trials, "epoch"),
        lambda trials: occupancy_by(trials, "task"),
        lambda trials: regime_epoch_table(trials, condition="context"),
    ],
    ids=["statistics", "dwell", "occupancy-epoch", "occupancy-task", "epoch-table"],
)
def test_packed_codes_give_the_same_results_as_int_codes(analysis):
    hand = {**HAND, "regimes": relabel(HAND["regimes"], CODES)}
    with_ints = analysis(make_trials(**hand))
    packed = analysis(make_trials(**hand, packed=True))
    hexed = {name: [hex_label(code) for code in with_ints[name].values]
             for name in ("regime", "regime_from", "regime_to") if name in with_ints.coords}
    with_hex = with_ints.assign_coords({name: (with_ints[name].dims, labels) for name, labels in hexed.items()})
    if "run" not in with_hex.dims:
        with_hex = with_hex.sel({name: packed[name].values for name in hexed})
    xr.testing.assert_allclose(with_hex, packed)


def test_packed_labels_are_hex_strings():
    statistics = regime_statistics(make_trials(**{**HAND, "regimes": relabel(HAND["regimes"], CODES)}, packed=True))
    assert statistics["regime"].values.tolist() == [hex_label(256), hex_label(1), hex_label(257)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda trials: trials.drop_vars("regime"), "regime"),
        (lambda trials: trials.drop_vars("mask"), "mask"),
        (lambda trials: trials.rename_dims(trial="dim_0"), "trial"),
        (lambda trials: trials.assign(regime=trials["regime"].expand_dims(unit=2, axis=-1)), "regime_byte"),
        (lambda trials: trials.assign(mask=trials["mask"].isel(time=0)), "mask"),
    ],
    ids=["no-regime", "no-mask", "dim_0", "regime-dims", "mask-dims"],
)
@pytest.mark.parametrize(
    "analysis",
    [regime_statistics, dwell_times, lambda trials: occupancy_by(trials, "epoch"), regime_epoch_table],
    ids=["statistics", "dwell", "occupancy", "epoch-table"],
)
def test_malformed_trials_raise_naming_what_is_missing(hand, change, message, analysis):
    with pytest.raises(ValueError, match=message):
        analysis(change(hand))


def test_unknown_group_lists_the_valid_names(hand):
    with pytest.raises(ValueError, match=r"valid names: .*'context'.*'epoch'.*'task'"):
        occupancy_by(hand, "stimulus")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"condition": "coherence"}, "coherence"),
        ({"condition": "epoch"}, "condition"),
        ({"threshold": 1.5}, "threshold"),
        ({"min_fraction": 0.0}, "min_fraction"),
    ],
)
def test_regime_epoch_table_rejects_bad_arguments(hand, kwargs, message):
    with pytest.raises(ValueError, match=message):
        regime_epoch_table(hand, **kwargs)


def test_regime_epoch_table_needs_epochs(hand):
    with pytest.raises(ValueError, match="epoch"):
        regime_epoch_table(hand.drop_vars("epoch"))


@pytest.fixture(scope="module")
def simulated() -> xr.Dataset:
    torch.manual_seed(0)
    return simulate(ALRNN(5, 3, 16, 4), "stimulus-selection", 50, seed=0)


def loop_reference(trials: xr.Dataset):
    """Runs and pairs by walking every trial step by step (the slow, obvious way)."""
    runs, pairs = [], []
    for codes, valid in zip(trials["regime"].values, trials["mask"].values):
        previous = None
        for code, ok in zip(codes.tolist(), valid.tolist()):
            if not ok:
                previous = None
                continue
            if previous is not None:
                pairs.append((previous, code))
            if previous == code:
                runs[-1][1] += 1
            else:
                runs.append([code, 1])
            previous = code
    return runs, pairs


def test_simulated_trials_match_a_loop_reference(simulated):
    statistics = regime_statistics(simulated)
    runs, pairs = loop_reference(simulated)
    mask = simulated["mask"].values
    assert statistics["n_steps"].item() == mask.sum() == statistics["count"].sum().item()
    assert statistics["transition_count"].sum().item() == len(pairs) == (mask[:, 1:] & mask[:, :-1]).sum()
    assert statistics["occupancy"].sum().item() == pytest.approx(1.0)
    assert statistics["switch_fraction"].item() == pytest.approx(np.mean([a != b for a, b in pairs]))
    for code in statistics["regime"].values.tolist():
        lengths = [length for regime, length in runs if regime == code]
        assert statistics["n_visits"].sel(regime=code).item() == len(lengths)
        assert statistics["median_dwell"].sel(regime=code).item() == np.median(lengths)
        outgoing = [b for a, b in pairs if a == code]
        for target in set(outgoing):
            counted = statistics["transition_count"].sel(regime_from=code, regime_to=target).item()
            assert counted == outgoing.count(target)
    dwell = dwell_times(simulated)
    assert dwell.values.tolist() == [length for _, length in runs]
    assert dwell["regime"].values.tolist() == [regime for regime, _ in runs]
    occupancy = statistics["occupancy"].values
    assert list(occupancy) == sorted(occupancy, reverse=True)


@pytest.mark.parametrize("by", ["epoch", "task", "context", "ground_truth"])
def test_simulated_occupancy_by_sums_to_one(simulated, by):
    occupancy = occupancy_by(simulated, by)
    np.testing.assert_allclose(occupancy.sum("regime"), 1.0)
    assert occupancy["n_steps"].sum().item() == simulated["mask"].sum().item()


@pytest.mark.parametrize("condition", [None, "context"])
def test_simulated_regime_epoch_table(simulated, condition):
    table = regime_epoch_table(simulated, condition=condition)
    assert table["epoch"].values.tolist() == json.loads(simulated.attrs["epoch_names"])
    assert table["count"].sum().item() == simulated["mask"].sum().item()
    assert ((table["nmi"] >= 0) & (table["nmi"] <= 1)).all()
    if condition is not None:
        assert table["count"].dims[0] == "context"
        assert sorted(table["context"].values.tolist()) == sorted(set(simulated["context"].values.tolist()))


# ------------------------------------------------ edge sizes: the whole analysis, its report and figures

EDGE_SIZES = [pytest.param((1, 0), id="M=1,P=0"), pytest.param((1, 1), id="M=1,P=1"),
              pytest.param((3, 0), id="M=3,P=0"), pytest.param((3, 3), id="M=3,P=3")]


def edge_params(n_units: int, n_nonlinear: int, n_inputs: int = 5, n_outputs: int = 3) -> ALRNNParams:
    """A small hand-made AL-RNN: A = 0.5, W with entries ±0.2 (so ‖W_Ω‖ < 1 in every regime), h with both signs."""
    rng = np.random.default_rng(10 * n_units + n_nonlinear)
    return ALRNNParams(A=np.full(n_units, 0.5), W=0.2 * np.sign(rng.normal(size=(n_units, n_units))) / n_units,
                       h=np.linspace(-0.3, 0.3, n_units), C=rng.normal(0.0, 1.0, (n_units, n_inputs)),
                       B=rng.normal(0.0, 1.0, (n_outputs, n_units)), b=np.zeros(n_outputs), n_nonlinear=n_nonlinear)


@pytest.fixture(scope="module", params=EDGE_SIZES)
def edge(request):
    params = edge_params(*request.param)
    trials = simulate(ALRNN.from_params(params, dtype=torch.float64), "stimulus-selection", 24, seed=4)
    return params, trials, analyze(trials, params)


def test_edge_sizes_analysis(edge):
    params, trials, analysis = edge
    M, P = params.n_units, params.n_nonlinear
    visited = np.unique(trials["regime"].values[trials["mask"].values])
    assert analysis["regime"].size == visited.size <= 2**P
    assert analysis.sizes["unit"] == M
    # Each analysed regime's fixed point under each input condition is (I − W_Ω)⁻¹ (C s̄ + h), written out.
    for code in analysis["regime"].values:
        bits = [(int(code) >> i) & 1 for i in range(P)]
        W_regime = np.diag(params.A) + params.W * np.array([1.0] * (M - P) + bits)
        for condition in analysis["input_condition"].values:
            s = analysis["typical_input"].sel(input_condition=condition).values
            expected = np.linalg.solve(np.eye(M) - W_regime, params.C @ s + params.h)
            np.testing.assert_allclose(analysis["fixed_point"].sel(regime=code, input_condition=condition).values,
                                       expected, rtol=1e-10, atol=1e-12)
        assert float(analysis["spectral_radius"].sel(regime=code)) == pytest.approx(
            np.abs(np.linalg.eigvals(W_regime)).max())


@pytest.mark.parametrize("packed", [False, True])
def test_regime_raster_colours_the_most_occupied_regimes_and_greys_the_rest(packed):
    # About one regime per step, as at P = M: the first len(_PALETTE) of `order` get colours 0.., the rest
    # "other"; padding is blank; rows are the trials sorted by context, thinned to max_trials.
    n_palette = len(figures._PALETTE)
    rng = np.random.default_rng(3)
    regime = rng.permutation(40 * 12).reshape(40, 12) + 1
    mask = np.ones(regime.shape, bool)
    mask[::3, 9:] = False
    trials = make_trials(regime, mask, np.where(np.arange(12) < 6, "stimulus", "decision")[None].repeat(40, 0),
                         context=rng.integers(0, 2, 40), packed=packed)
    labels = regime_labels(trials).values
    order = list(np.unique(labels[mask]))[::-1]
    image = figures.regime_raster(trials, order, sort_by=["context"], max_trials=20).axes[0].images[0].get_array()
    rows = np.lexsort([trials["context"].values])
    rows = rows[np.linspace(0, 39, 20).astype(int)]
    position = {code: i for i, code in enumerate(order)}
    expected = np.array([[min(position[label], n_palette) if ok else np.nan for label, ok in zip(r, m)]
                         for r, m in zip(labels[rows], mask[rows])])
    np.testing.assert_array_equal(np.ma.filled(image.astype(float), np.nan), expected)
    assert (expected == n_palette).any() and (expected < n_palette).any()  # both kinds drawn


def test_edge_sizes_report_and_figures(edge, tmp_path):
    params, trials, analysis = edge
    order = list(analysis["regime"].values)
    analysed = [code for code in order if bool(analysis["spectral_radius"].sel(regime=code).notnull())]
    drawn = {
        "raster": figures.regime_raster(trials, order, sort_by=["context"]),
        "epoch": figures.regime_epoch_heatmap(analysis["epoch_count"]),
        "transitions": figures.transition_graph(analysis["transition_probability"], analysis["occupancy"]),
        "spectra": figures.eigenvalue_spectra(analysis["eigenvalue_real"], analysis["eigenvalue_imag"], analysed),
        "trajectories": figures.latent_trajectories(trials, order, analysis["fixed_point"].sel(regime=analysed),
                                                    analysis["fixed_point_real"].sel(regime=analysed)),
    }
    for name, figure in drawn.items():
        assert figures.save_figure(figure, tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    report = render_report(analysis, {name: f"{name}.png" for name in drawn})
    assert f"P = {params.n_nonlinear} nonlinear units" in report
    assert f"It used **{len(order)} regimes**" in report and "## Fixed points and slow modes" in report
    assert "nan" not in report.lower()


def test_edge_sizes_sharing_and_comparison(edge):
    _, trials, _ = edge
    two_tasks = trials.assign_coords(task=("trial", np.where(np.arange(trials.sizes["trial"]) % 2, "A", "B")))
    sharing = sharing_analysis(two_tasks)
    assert sharing.sizes["unit"] == trials.sizes["unit"]
    assert set(sharing_figures(sharing)) >= {"Sharing between tasks"}
    assert "## Sharing across tasks" in sharing_report_lines(sharing)
    itself = trials["latents"].rename(unit="neuron").assign_coords(mask=trials["mask"])
    result = compare(trials, itself, conditions=["context", "coh_relevant"], n_shuffles=3)
    np.testing.assert_allclose(result["observed"].sel(metric="cka", epoch="all"), 1.0, atol=1e-9)


def markdown_cells(row: str) -> list[str]:
    """The cells of a Markdown table row: split at every ``|`` not escaped as ``\\|``."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_edge_sizes_report_tables_escape_bars_in_cells(edge):
    params, _, analysis = edge
    report = render_report(analysis, {})
    tables, current = [], []
    for line in report.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) == 2  # regimes used; fixed points and slow modes
    for table in tables:
        widths = {len(markdown_cells(row)) for row in table}
        assert widths == {len(markdown_cells(table[0]))}, table
    if params.n_nonlinear == 0:  # one linear regime: its fixed point is real under every input condition
        assert "fixation\\|colour" in report and "fixation|colour" not in report.replace("\\|", "")
