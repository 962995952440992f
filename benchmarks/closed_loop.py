"""Closed-loop check of ``neuroalrnn fit``: recover a known AL-RNN from synthetic spikes of its latents.

One command (about 4 minutes on 2 cores)::

    .venv/bin/python benchmarks/closed_loop.py --out runs/closed-loop

1. Ground truth: an AL-RNN (M = 32, P = 4) trained on stimulus selection by ``neuroalrnn train``.
2. Recordings: ``benchmarks/make_recordings.py`` — 1,000 trials, 100 Poisson neurons reading its latents
   (rate = 10 · softplus(L ẑ + β) spikes/s), written as NWB with the trials table, the Units table and the
   stimulus inputs; the simulated trials are kept as the truth.
3. Fits: ``neuroalrnn fit`` with M = 32 and P ∈ {0, 1, 2, 4, 8, 16, 32} (linear ... the true P ... fully
   piecewise linear), and
   a one-step "untrained" fit at the true P as the floor of the latent R² (in an input-driven system any
   model driven by the same inputs explains much of the true latents).
4. Scores on the 200 held-out trials (``neuroalrnn evaluate``): co-bps on the 20 held-out neurons, PSTH R² by
   context × relevant coherence (Gaussian smoothing σ = 2 bins), latent R² both ways; the ceilings are the
   same scores of the true rates on the same trials and spikes.
5. Mechanism: ``neuroalrnn analyze`` on the truth and on each fit (context gating of motion and colour), and
   ``neuroalrnn align`` of each fit with the truth (NMI of the step-by-step regime labels; the share of steps
   on which the truth is in the regime matched to the fit's, weighted by the fit's occupancy).

Writes ``closed_loop.json`` (every number), ``closed_loop.md`` (the table) and ``closed_loop.png`` into
``--out``; reruns reuse what is already there (delete the directory to start over).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIT_PS = (0, 1, 2, 4, 8, 16, 32)
TRUE_P = 4
UNITS = 32
PSTH_BY = "context,coh_relevant"


def _cli(*args: str) -> None:
    from neuroalrnn.workflows.cli import main

    print("$ neuroalrnn " + " ".join(args), flush=True)
    status = main(list(args))
    if status != 0:
        raise SystemExit(f"neuroalrnn {args[0]} failed with status {status}")


def _ceilings(recordings: Path, truth: Path, fit_dir: Path, seed: int) -> tuple[float, float]:
    """PSTH R² and co-bps of the true expected counts against the recorded spikes on the fit's held-out trials."""
    sys.path.insert(0, str(HERE))
    import make_recordings
    from neuroalrnn.analyses.fit_scores import bits_per_spike, psth_r2
    from neuroalrnn.analyses.recordings import read_recordings

    from neuroalrnn.evaluation.simulate import read_trials

    trials = read_trials(truth)
    rates, mask, dt = make_recordings.neuron_rates(trials, 100, rate_scale=10.0, rng=np.random.default_rng(seed))
    recorded = read_recordings(recordings, bin_ms=dt)
    counts = np.nan_to_num(recorded["rates"].transpose("trial", "time", "neuron").values) * dt / 1000.0
    n = counts.shape[1]
    record = json.loads((fit_dir / "config.json").read_text())
    test = np.asarray(record["fit"]["data"]["test_trials"])
    names = PSTH_BY.split(",")
    groups = np.asarray(["|".join(str(trials[name].values[i]) for name in names) for i in test])
    expected = rates[test, :n] * dt / 1000.0
    heldout = np.asarray(record["fit"]["data"]["heldout_neurons"])
    return (psth_r2(expected, counts[test], mask[test, :n], groups, smooth_bins=2.0),
            bits_per_spike(expected[..., heldout], counts[test][..., heldout], mask[test, :n]))


def _gating(run: Path) -> dict[str, float]:
    """Gating index (colour vs motion context) of the motion and colour inputs in the run's analysis."""
    import xarray as xr

    with xr.open_dataset(run / "analysis.nc", engine="h5netcdf") as analysis:
        index = analysis["gating_index"].load()
    values = [str(v) for v in index["condition_value"].values]
    first, second = ("colour", "motion") if {"colour", "motion"} <= set(values) else (values[0], values[1])
    pair = index.sel(condition_value=first, condition_value_other=second)
    return {name: float(pair.sel(input=name)) for name in ("motion", "colour")}


def _alignment(fit_dir: Path) -> dict[str, float]:
    import xarray as xr

    with xr.open_dataset(fit_dir / "alignment.nc", engine="h5netcdf") as alignment:
        occupancy = alignment["occupancy_a"].values
        similarity = np.nan_to_num(alignment["match_similarity"].values)
        agreement = np.nan_to_num(alignment["match_agreement"].values)
        return {
            "nmi": float(alignment.attrs["nmi"]),
            "match_similarity": float((occupancy * similarity).sum() / occupancy.sum()),
            "match_agreement": float((occupancy * agreement).sum() / occupancy.sum()),
            "ground_truth_from_fit_r2": float(alignment.attrs["latent_r2"]),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/closed-loop"))
    parser.add_argument("--steps", type=int, default=2000, help="fit steps per model (default 2000)")
    parser.add_argument("--truth-steps", type=int, default=1500, help="ground-truth training steps")
    parser.add_argument("--seed", type=int, default=1, help="seed of the recordings")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    truth_run, recordings, truth = out / "ground-truth", out / "recordings.nwb", out / "truth.nc"
    if not (truth_run / "checkpoint.pt").is_file():
        _cli("train", "--task", "stimulus-selection", "--units", str(UNITS), "--nonlinear", str(TRUE_P),
             "--steps", str(args.truth_steps), "--out", str(truth_run), "--no-progress")
    if not recordings.is_file():
        command = [sys.executable, str(HERE / "make_recordings.py"), str(truth_run), "--out", str(recordings),
                   "--trials", "1000", "--neurons", "100", "--seed", str(args.seed), "--truth", str(truth)]
        print("$ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    if not (truth_run / "analysis.nc").is_file():
        _cli("analyze", str(truth_run))
    results: dict[str, dict] = {"ground_truth": {"gating": _gating(truth_run)}}
    fits = [(f"P={p}", p, args.steps) for p in FIT_PS] + [("untrained", TRUE_P, 1)]
    for label, p, steps in fits:
        fit_dir = out / f"fit-{label.replace('=', '')}"
        if not (fit_dir / "checkpoint.pt").is_file():
            _cli("fit", str(recordings), "--task", "stimulus-selection", "--units", str(UNITS), "--nonlinear", str(p),
                 "--steps", str(steps), "--psth-by", PSTH_BY, "--psth-smooth-bins", "2", "--truth", str(truth),
                 "--out", str(fit_dir), "--no-progress")
        summary = json.loads((fit_dir / "evaluation.json").read_text()) if (fit_dir / "evaluation.json").is_file() \
            else None
        if summary is None or summary.get("checkpoint_step") != steps:
            _cli("evaluate", str(fit_dir))
            summary = json.loads((fit_dir / "evaluation.json").read_text())
        row = {key: summary[key] for key in ("co_bps", "bps_all_free", "psth_r2", "latent_r2", "latent_r2_reverse",
                                             "regimes_used")}
        if label != "untrained":
            if not (fit_dir / "analysis.nc").is_file():
                _cli("analyze", str(fit_dir))
            _cli("align", str(fit_dir), str(truth_run))
            row["gating"] = _gating(fit_dir)
            row.update(_alignment(fit_dir))
        results[label] = row
    results["psth_r2_noise_ceiling"], results["co_bps_true_rates"] = _ceilings(recordings, truth, out / "fit-P4",
                                                                               args.seed)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    (out / "closed_loop.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    lines = _table(results)
    (out / "closed_loop.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _figure(results, out / "closed_loop.png")
    print(f"wrote {out / 'closed_loop.json'}, {out / 'closed_loop.md'} and {out / 'closed_loop.png'}")
    return 0


def _table(results: dict) -> list[str]:
    truth = results["ground_truth"]["gating"]
    lines = [
        "| fit | co-bps (held-out neurons) | PSTH R² | latent R² (true ← fit) | latent R² (fit ← true) | regimes used "
        "| gating motion / colour | regime NMI with truth | steps in the matched regime |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| ground truth (P = {TRUE_P}) | {results['co_bps_true_rates']:.3f} (true rates) "
        f"| {results['psth_r2_noise_ceiling']:.3f} (noise ceiling) | | | "
        f"| {truth['motion']:+.2f} / {truth['colour']:+.2f} | | |",
    ]
    for label in [f"P={p}" for p in FIT_PS] + ["untrained"]:
        row = results[label]
        gating = row.get("gating")
        cells = [
            label if label == "untrained" else label.replace("=", " = "),
            f"{row['co_bps']:.3f}", f"{row['psth_r2']:.3f}", f"{row['latent_r2']:.3f}", f"{row['latent_r2_reverse']:.3f}",
            str(row["regimes_used"]),
            f"{gating['motion']:+.2f} / {gating['colour']:+.2f}" if gating else "",
            f"{row['nmi']:.2f}" if "nmi" in row else "", f"{row['match_agreement']:.0%}" if "nmi" in row else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nwall time: {results['wall_seconds']:.0f} s")
    return lines


def _figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"P={p}" for p in FIT_PS] + ["untrained"]
    metrics = [("co_bps", "co-bps (held-out neurons)"), ("psth_r2", "PSTH R²"), ("latent_r2", "latent R² (true ← fit)")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, (key, title) in zip(axes, metrics, strict=True):
        colours = ["C1" if label == f"P={TRUE_P}" else ("0.85" if label == "untrained" else "C0") for label in labels]
        ax.bar(labels, [results[label][key] for label in labels], color=colours)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        if key == "psth_r2":
            ax.axhline(results["psth_r2_noise_ceiling"], color="k", ls="--", lw=1, label="noise ceiling")
            ax.legend(frameon=False, fontsize=8)
        if key == "co_bps":
            ax.axhline(results["co_bps_true_rates"], color="k", ls="--", lw=1, label="true rates")
            ax.legend(frameon=False, fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"AL-RNNs fitted to spikes of a stimulus-selection AL-RNN (M = {UNITS}, P = {TRUE_P})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
