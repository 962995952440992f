"""The ``neuroalrnn`` command line: a thin layer over the library.

Commands: ``tasks``, ``train``, ``evaluate``, ``analyze``, ``sharing``, ``compare``, ``sweep``, ``bench``. Bad input exits non-zero with
one readable line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "neuroalrnn"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integer_at_least(minimum: int, expected: str):
    """An argparse type: an integer >= ``minimum``, else a one-line error saying ``expected``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


_positive_int = _integer_at_least(1, "a positive integer")
_non_negative_int = _integer_at_least(0, "an integer >= 0")


def _task_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=NAME, description="Train and evaluate almost-linear RNNs on cognitive tasks.")
    parser.add_argument("--threads", type=_positive_int, default=1,
                        help="torch threads (default 1: fastest for small RNNs on few cores)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("tasks", help="list the available tasks")

    train = commands.add_parser("train", help="train a model on a task (or resume a run)")
    train.add_argument("--out", type=Path, help="new run directory")
    train.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR from its checkpoint")
    train.add_argument("--task", default="stimulus-selection", help="task name (see `neuroalrnn tasks`)")
    train.add_argument("--task-option", type=_task_option, action="append", default=[], metavar="KEY=VALUE",
                       help="task constructor option, e.g. sigma=0.3 (value parsed as JSON if it can be)")
    train.add_argument("--model", default="alrnn", help="alrnn, linear, plrnn, tanh, gru or lstm")
    train.add_argument("--units", type=_positive_int, default=64, help="M, the number of units")
    train.add_argument("--nonlinear", type=_non_negative_int, default=4, help="P, the number of ReLU units (alrnn)")
    train.add_argument("--init", default="stable", help="stable (default) or reference (see ALRNN)")
    train.add_argument("--noise", type=float, default=0.0, help="recurrent noise std σ_rec while training")
    train.add_argument("--slope", type=float, default=0.0, help="leaky slope α of the P units (0 = ReLU)")
    train.add_argument("--steps", type=_positive_int, help="training steps (default 2000; with --resume: new total)")
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--optimizer", default="adam", help="adam or radam")
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--schedule", default="cosine", help="constant, cosine or step")
    train.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0 = off)")
    train.add_argument("--weighting", default="epoch", help="loss weights: epoch (each epoch equal) or uniform")
    train.add_argument("--decision-weight", type=float, default=1.0, help="extra factor on decision steps")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--checkpoint-every", type=_positive_int, default=250)
    train.add_argument("--eval-every", type=_positive_int, default=100)
    train.add_argument("--eval-trials", type=_positive_int, default=500)
    train.add_argument("--target-accuracy", type=float, default=0.0,
                       help="stop once held-out decision accuracy reaches this (0 = train all steps)")
    train.add_argument("--plain-step", action="store_true",
                       help="train the AL-RNN with plain autograd instead of the fast step")
    train.add_argument("--bank-size", type=_non_negative_int, default=2048,
                       help="trials per pre-sampled bank (default 2048; 0 = fresh trials every step)")
    train.add_argument("--bank-reuse", type=_positive_int, default=4,
                       help="times each bank trial is used on average before a new bank (default 4)")
    train.add_argument("--train-trials", type=_positive_int, default=None,
                       help="train on one fixed set of N trials (low-data regime); evaluation stays held out")
    train.add_argument("--bank-cache", type=str, default=None, metavar="DIR",
                       help="cache sampled trial banks in DIR, keyed by the task's full configuration")
    train.add_argument("--data-workers", type=_non_negative_int, default=1,
                       help="processes sampling trials while the model trains (default 1; 0 = none)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser("evaluate", help="simulate fresh trials; write trials.nc, accuracy and figures")
    evaluate.add_argument("run_dir", type=Path, metavar="DIR")
    evaluate.add_argument("--trials", type=_positive_int, default=1000)
    evaluate.add_argument("--seed", type=_non_negative_int, default=None,
                          help="trial seed (default: a seed distinct from training and held-out trials)")
    evaluate.add_argument("--noise", action="store_true", help="keep the recurrent noise on while simulating")
    analyze = commands.add_parser("analyze", help="regime analysis: analysis.nc, figures and report.md")
    analyze.add_argument("run_dir", type=Path, metavar="DIR")
    analyze.add_argument("--trials", type=_positive_int, default=500,
                         help="trials to simulate when DIR has no trials.nc (default 500)")
    analyze.add_argument("--max-regimes", type=_non_negative_int, default=32,
                         help="analyse the dynamics of this many most occupied regimes (default 32; "
                              "0 = every visited regime, about 10 ms each at M = 256)")
    compare = commands.add_parser("compare", help="compare a run's latents with neural recordings (CKA, Procrustes, RSA)")
    compare.add_argument("run_dir", type=Path, metavar="DIR")
    compare.add_argument("recordings", type=Path, metavar="RECORDINGS.nc",
                         help="NetCDF: (trial, time, neuron), per-trial conditions, time in ms")
    compare.add_argument("--align", choices=("epoch", "time"), default="epoch",
                         help="compare per epoch (resampled to --bins points) or on the model's time grid")
    compare.add_argument("--bins", type=_positive_int, default=5, help="points per epoch with --align epoch")
    compare.add_argument("--shuffles", type=_non_negative_int, default=1000, help="condition shuffles for the null")
    compare.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the shuffles")
    compare.add_argument("--conditions", nargs="+", default=None, metavar="NAME",
                         help="conditions to match (default: every condition both sides have)")
    compare.add_argument("--variable", default=None, help="which variable of a recordings Dataset")
    compare.add_argument("--nan-policy", choices=("raise", "drop_neurons", "omit"), default="raise")
    compare.add_argument("--trials", type=_positive_int, default=1000,
                         help="trials to simulate when DIR has no trials.nc (default 1000)")
    sharing = commands.add_parser("sharing", help="compare task sharing across analysed multi-task runs")
    sharing.add_argument("run_dirs", type=Path, nargs="+", metavar="DIR",
                         help="runs analysed with `neuroalrnn analyze` (each holds sharing.nc)")
    sharing.add_argument("--figure", type=Path, default=None, help="write the comparison figure here (PNG)")
    sweep = commands.add_parser("sweep", help="train and evaluate every point of an experiment grid (TOML)")
    sweep.add_argument("experiment", type=Path, metavar="FILE", help="experiment file, e.g. experiments/*.toml")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local process pool (default) or a Ray cluster")
    sweep.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    sweep.add_argument("--workers", type=_non_negative_int, default=None,
                       help="parallel runs (default: min(cores, runs); 0 = in this process)")
    sweep.add_argument("--out", type=Path, default=None, help="output folder (default: the file's `out`)")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed points again")
    sweep.add_argument("--plot", action="store_true", help="draw the sweep's figures when it is done")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench = commands.add_parser("bench", help="training speed: status quo vs our loop vs single steps")
    bench.add_argument("--rounds", type=_positive_int, default=5, help="interleaved rounds (default 5)")
    bench.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    return parser


def _compare(args) -> int:
    from .analyses.compare import compare, load_recordings, plot_comparison
    from .analyze import run_trials
    from .storage import write_netcdf

    recordings = load_recordings(args.recordings, variable=args.variable)
    trials = run_trials(args.run_dir, args.trials)
    result = compare(trials, recordings, conditions=args.conditions, align=args.align, n_bins=args.bins,
                     n_shuffles=args.shuffles, seed=args.seed, nan_policy=args.nan_policy)
    matched = json.loads(result.attrs.get("conditions", "[]"))
    print(f"matched on {', '.join(matched)}: {int(result['n_conditions'].max())} condition averages, "
          f"{args.shuffles} shuffles")
    observed, p_value = result["observed"], result["p_value"]
    epochs = [str(epoch) for epoch in result["epoch"].values]
    print(f"{'metric':<11}" + "".join(f"{epoch:>16}" for epoch in epochs))
    for metric in result["metric"].values:
        cells = [f"{float(observed.sel(metric=metric, epoch=e)):.3f} (p={float(p_value.sel(metric=metric, epoch=e)):.3f})"
                 for e in epochs]
        print(f"{metric!s:<11}" + "".join(f"{cell:>16}" for cell in cells))
    path = write_netcdf(result, args.run_dir / "comparison.nc")
    figure = plot_comparison(result, args.run_dir / "figures" / "comparison.png")
    print(f"wrote {path} and {figure}")
    return 0


def _sharing(args) -> int:
    from .analyze import compare_runs_sharing
    from .rundir import read_config

    labels = {}
    for run_dir in args.run_dirs:
        config = read_config(run_dir)
        label = f"{config.model} M={config.n_units}" + (f" P={config.n_nonlinear}" if config.model == "alrnn" else "")
        labels[label if label not in labels else f"{label} ({run_dir.name})"] = run_dir
    table = compare_runs_sharing(labels, figure=args.figure)
    columns = [name for name in ("sharing_index", "shared_regime_fraction", "shared_step_fraction", "n_regimes",
                                 "mean_jaccard", "mean_cka", "mean_subspace_overlap", "n_unit_clusters")
               if name in table]
    width = max(map(len, labels))
    print(f"{'run':<{width}}  " + "  ".join(columns))
    for label in table["run"].values:
        row = table.sel(run=label)
        print(f"{label:<{width}}  " + "  ".join(f"{float(row[name]):>{len(name)}.3f}" for name in columns))
    if args.figure is not None:
        print(f"wrote {args.figure}")
    return 0


def _sweep(args) -> int:
    from .sweep import plot_sweep, run_sweep

    results = run_sweep(args.experiment, backend=args.backend, workers=args.workers, address=args.address,
                        progress=not args.no_progress, out=args.out, retry_failed=args.retry_failed)
    status = results["status"].values.ravel()
    failed = int((status == "failed").sum())
    print(f"{int((status == 'finished').sum())} runs finished, {failed} failed; "
          f"results: {results.attrs.get('out', args.out)}/results.nc")
    for path in plot_sweep(results) if args.plot else []:
        print(f"wrote {path}")
    return 1 if failed else 0


def _bench(args) -> int:
    from .bench import run_benchmark

    run_benchmark(rounds=args.rounds, memory=not args.no_memory)
    return 0


def _analyze(args) -> int:
    from .analyze import analyze_run

    paths = analyze_run(args.run_dir, n_trials=args.trials, max_regimes=args.max_regimes or None)
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _train(args) -> int:
    from .config import TrainConfig
    from .training import Trainer

    if (args.out is None) == (args.resume is None):
        raise ValueError("give exactly one of --out DIR (a new run) or --resume DIR")
    if args.resume is not None:
        trainer = Trainer.resume(args.resume, steps=args.steps, progress=not args.no_progress)
    else:
        config = TrainConfig(
            task=args.task, task_kwargs=dict(args.task_option), model=args.model, n_units=args.units,
            n_nonlinear=args.nonlinear if args.model == "alrnn" else None, noise_std=args.noise,
            slope=args.slope, init=args.init, weighting=args.weighting, decision_weight=args.decision_weight,
            steps=args.steps or TrainConfig.steps, batch_size=args.batch_size, optimizer=args.optimizer,
            lr=args.lr, schedule=args.schedule, grad_clip=args.grad_clip, seed=args.seed,
            checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, eval_trials=args.eval_trials,
            target_accuracy=args.target_accuracy, data_workers=args.data_workers, fast_step=not args.plain_step,
            bank_size=args.bank_size, bank_reuse=args.bank_reuse, train_trials=args.train_trials,
            bank_cache=args.bank_cache,
        )
        trainer = Trainer(config, args.out, progress=not args.no_progress)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        print(f"\n{NAME}: interrupted at step {trainer.step}; continue with `{NAME} train --resume "
              f"{trainer.run_dir}` (resumes from the checkpoint at step {trainer.saved_step})", file=sys.stderr)
        return 130
    how = "reached the accuracy criterion" if trainer.stopped_early else "finished"
    print(f"{how} at step {trainer.step} in {trainer.elapsed:.1f} s; "
          f"held-out decision accuracy {trainer.final_accuracy:.3f} ({trainer.config.eval_trials} trials)")
    if len(trainer.eval_by_task) > 1:
        _print_task_table(trainer.eval_by_task)
    print(f"run directory: {trainer.run_dir}")
    return 0


def _print_task_table(by_task: dict[str, float]) -> None:
    values = list(by_task.values())
    width = max(map(len, by_task))
    print(f"  {'task':<{width}}  accuracy")
    for name, accuracy in by_task.items():
        print(f"  {name:<{width}}  {accuracy:.3f}")
    print(f"  {'mean':<{width}}  {sum(values) / len(values):.3f}   (min {min(values):.3f})")


def _evaluate(args) -> int:
    from .evaluation import accuracy_by, decision_mse, plot_psychometric, psychometric
    from .storage import atomic_write
    from .simulate import simulate, write_trials
    from .training import TEST_SEED_OFFSET, load_model

    config, model, env = load_model(args.run_dir)
    seed = args.seed if args.seed is not None else config.seed + TEST_SEED_OFFSET
    trials = simulate(model, env, args.trials, seed=seed, noise=args.noise, task_name=config.task,
                      config=config.to_dict())
    path = write_trials(trials, args.run_dir / "trials.nc")
    overall = float(accuracy_by(trials))
    print(f"decision accuracy: {overall:.3f} ({args.trials} trials, seed {seed}, scoring {trials.attrs['scoring']})")
    per_task = accuracy_by(trials, "task").to_series()
    order = [name for name in json.loads(trials.attrs.get("task_names", "[]")) if name in per_task.index]
    by_task = {str(name): float(per_task[name]) for name in order or per_task.index}
    if len(by_task) > 1:
        _print_task_table(by_task)
    extra = {}
    if trials.attrs["target_kind"] == "regression":
        extra["decision_mse"] = decision_mse(trials)
        print(f"decision-epoch MSE: {extra['decision_mse']:.4f} (tolerance {trials.attrs['tolerance']:g})")
    summary = {
        "accuracy": overall, "by_task": by_task,
        "mean_over_tasks": sum(by_task.values()) / len(by_task), "min_over_tasks": min(by_task.values()),
        "n_trials": args.trials, "seed": seed, "scoring": trials.attrs["scoring"], "noise": args.noise, **extra,
    }
    atomic_write(args.run_dir / "evaluation.json", json.dumps(summary, indent=2) + "\n")
    categorical = [name for name, coord in trials.coords.items()
                   if coord.dims == ("trial",) and coord.dtype.kind in "OU" and name != "task"]
    for name in categorical:
        for value, accuracy in accuracy_by(trials, name).to_series().items():
            print(f"  {name} = {value}: {accuracy:.3f}")
    if "coh_relevant" in trials.coords:
        strength = abs(trials["coh_relevant"])
        for value, accuracy in accuracy_by(trials.assign_coords({"|relevant coherence|": strength}),
                                           "|relevant coherence|").to_series().items():
            print(f"  |relevant coherence| = {value:g}: {accuracy:.3f}")
    print(f"wrote {path} and {args.run_dir / 'evaluation.json'}")
    if {"coh_motion", "coh_colour", "context"} <= set(trials.coords):
        curve = psychometric(trials)
        title = f"{config.model} M={config.n_units} P={model.n_nonlinear} · {config.task}"
        figure = plot_psychometric(curve, args.run_dir / "figures" / "psychometric.png", title=title)
        print(f"wrote {figure}")
    return 0


def _tasks(_args) -> int:
    from .envs import list_tasks

    tasks = list_tasks()
    width = max(map(len, tasks))
    for name, description in tasks.items():
        print(f"{name:<{width}}  {description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from .rundir import RunDirectoryError
    from .training import TrainingDiverged

    handlers = {"tasks": _tasks, "train": _train, "evaluate": _evaluate, "analyze": _analyze, "bench": _bench,
                "sweep": _sweep, "sharing": _sharing, "compare": _compare}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # e.g. `neuroalrnn evaluate DIR | head -1`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, ImportError, RunDirectoryError, TrainingDiverged) as error:
        print(f"{NAME}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{NAME}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
