"""Held-out accuracy against trials seen, for one or more runs, from their metrics.csv: one figure.

    python benchmarks/learning_curves.py RUN_DIR [RUN_DIR ...] --out curves.png [--label P=16 ...]

Each run's ``eval_accuracy`` rows (the held-out evaluations made while training)
are drawn against step × batch size, the number of training trials seen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from neuroalrnn.storage import save_figure
from neuroalrnn.training.rundir import read_config, read_metrics


def learning_curves(run_dirs: list[Path], labels: list[str] | None = None, title: str = "") -> Figure:
    """The figure: one line per run, held-out accuracy vs training trials (log scale)."""
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.subplots()
    for index, run_dir in enumerate(run_dirs):
        config = read_config(run_dir)
        rows = [row for row in read_metrics(run_dir) if row["eval_accuracy"] != ""]
        label = labels[index] if labels else run_dir.name
        ax.plot([row["step"] * config.batch_size for row in rows], [row["eval_accuracy"] for row in rows],
                marker="o", markersize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training trials")
    ax.set_ylabel("held-out accuracy (task's scoring)")
    ax.set_ylim(0, 1.02)
    ax.axhline(0.9, color="0.8", lw=0.8, zorder=0)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", action="append", default=None, help="one per run, in order")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    if args.label is not None and len(args.label) != len(args.run_dirs):
        parser.error(f"give one --label per run: {len(args.run_dirs)} runs, {len(args.label)} labels")
    save_figure(learning_curves(args.run_dirs, args.label, args.title), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
