"""The ``neuroalrnn`` command line: a thin layer over the library.

Commands: ``tasks``, ``train``, ``fit``, ``align``, ``evaluate``, ``analyze``, ``sharing``,
``compare``, ``sweep``, ``bench``. The ``train`` options are generated from
:class:`~neuroalrnn.training.config.TrainConfig`'s fields (defaults, accepted values and
help come from there).

Errors: every failure ends in one readable line on stderr and a non-zero exit
status, never a traceback: 2 for a malformed command line, 1 for anything
else, 130 for Ctrl-C. :func:`main` is the one place that turns exceptions into
that line; ``--traceback`` shows the traceback instead (for bug reports).

(Longer than most modules: one parser for all ten commands and their thin
handlers, kept together so that every option, its help and its check are in
one place; the work itself is in the library.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

from ..evaluation import DEFAULT_TEST_TRIALS
from ..system import DEVICES
from ..training.config import (
    CONSTRAINTS,
    NON_NEGATIVE_INTEGER,
    POSITIVE_INTEGER,
    Constraint,
    TrainConfig,
)

NAME = "neuroalrnn"

# Command-line names of TrainConfig fields whose flag is not the field name with dashes.
_TRAIN_FLAGS = {"n_units": "--units", "n_nonlinear": "--nonlinear", "noise_std": "--noise",
                "task_kwargs": "--task-option"}
# Flag fields whose option turns the default off: field -> (option, help).
_TRAIN_SWITCHES_OFF = {"fast_step": ("--plain-step", "train the AL-RNN with plain autograd instead of the fast step")}
_TRAIN_NOTES = {"steps": "with --resume: the new total"}
_METAVARS = {"integer": "N", "number": "X", "text": "TEXT", "mapping": "KEY=VALUE"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _argument(constraint: Constraint):
    """An argparse type: the text parsed and checked by ``constraint``, else a one-line error."""

    def parse(text: str):
        try:
            return constraint.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = constraint.describe()
    return parse


_positive_int = _argument(POSITIVE_INTEGER)
_non_negative_int = _argument(NON_NEGATIVE_INTEGER)


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value parsed as JSON when it is JSON, else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _flag(field_name: str) -> str:
    """The ``train`` option of a TrainConfig field."""
    if field_name in _TRAIN_SWITCHES_OFF:
        return _TRAIN_SWITCHES_OFF[field_name][0]
    return _TRAIN_FLAGS.get(field_name, "--" + field_name.replace("_", "-"))


def _add_config_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One option per TrainConfig field (those in ``only``); each defaults to None, meaning "the field's default"."""
    for item in dataclasses.fields(TrainConfig):
        if only is not None and item.name not in only:
            continue
        constraint = item.metadata["constraint"]
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        flag = _flag(item.name)
        if item.name in _TRAIN_SWITCHES_OFF:
            parser.add_argument(flag, dest=item.name, action="store_const", const=not default, default=None,
                                help=_TRAIN_SWITCHES_OFF[item.name][1])
            continue
        shown = "none" if default in (None, {}) else default
        notes = "; ".join(filter(None, [_TRAIN_NOTES.get(item.name), f"default: {shown}"]))
        help_text = f"{item.metadata['help']} ({notes})".replace("%", "%%")
        if constraint.kind == "flag":
            parser.add_argument(flag, dest=item.name, action="store_const", const=not default, default=None,
                                help=help_text)
        elif constraint.kind == "mapping":
            parser.add_argument(flag, dest=item.name, type=_key_value, action="append", default=None,
                                metavar="KEY=VALUE", help=help_text)
        else:
            metavar = "{" + ",".join(constraint.choices) + "}" if constraint.kind == "choice" else (
                "DIR" if item.name == "bank_cache" else _METAVARS[constraint.kind])
            parser.add_argument(flag, dest=item.name, type=_argument(constraint), default=None, metavar=metavar,
                                help=help_text)


# TrainConfig fields that mean something for a fit (the task only supplies epochs and, if asked, inputs).
_FIT_TRAIN_FIELDS = ("task", "task_kwargs", "n_units", "n_nonlinear", "noise_std", "slope", "init", "steps",
                     "batch_size", "lr", "schedule", "grad_clip", "seed", "checkpoint_every", "eval_every", "device")
_FIT_FLAGS = {"mapping": "--map"}
_FIT_METAVARS = {"truth": "FILE", "psth_by": "NAMES", "bin_ms": "MS"}


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    """One option per FitConfig field but ``recordings`` (the positional argument)."""
    from ..fitting.config import FitConfig

    for item in dataclasses.fields(FitConfig):
        if item.name == "recordings":
            continue
        constraint = item.metadata["constraint"]
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        flag = _FIT_FLAGS.get(item.name, "--" + item.name.replace("_", "-"))
        shown = "none" if default in (None, {}, "") else default
        help_text = f"{item.metadata['help']} (default: {shown})".replace("%", "%%")
        if constraint.kind == "mapping":
            parser.add_argument(flag, dest=f"fit_{item.name}", type=_key_value, action="append", default=None,
                                metavar="FILE=TASK", help=help_text)
        else:
            metavar = "{" + ",".join(constraint.choices) + "}" if constraint.kind == "choice" else (
                _FIT_METAVARS.get(item.name, _METAVARS[constraint.kind]))
            parser.add_argument(flag, dest=f"fit_{item.name}", type=_argument(constraint), default=None,
                                metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=NAME, description="Train and evaluate almost-linear RNNs on cognitive tasks.")
    parser.add_argument("--threads", type=_positive_int, default=1,
                        help="torch threads (default 1: fastest for small RNNs on few cores)")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of an error (for bug reports)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tasks = commands.add_parser("tasks", help="list the available tasks, or a suite's sub-tasks")
    tasks.add_argument("name", nargs="?", default=None, metavar="SUITE", help="list this suite's sub-tasks")

    train = commands.add_parser("train", help="train a model on a task (or resume a run)")
    train.add_argument("--out", type=Path, help="new run directory")
    train.add_argument("--resume", type=Path, metavar="DIR",
                       help="continue the run in DIR from its checkpoint (only --steps may change)")
    _add_config_options(train)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    fit = commands.add_parser("fit", help="fit an AL-RNN to recordings (NWB or NetCDF); a run directory")
    fit.add_argument("recordings", type=Path, nargs="?", metavar="RECORDINGS",
                     help="NetCDF (.nc) or NWB (.nwb) recordings; with their stimulus inputs, or rebuilt from --task")
    fit.add_argument("--out", type=Path, help="new run directory")
    fit.add_argument("--resume", type=Path, metavar="DIR", help="continue the fit in DIR (only --steps may change)")
    _add_config_options(fit, _FIT_TRAIN_FIELDS)
    _add_fit_options(fit)
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    align = commands.add_parser("align", help="match the regimes of a fit to recordings with a task-trained run's")
    align.add_argument("run_dir", type=Path, metavar="FIT", help="a fit (neuroalrnn fit) or any AL-RNN run")
    align.add_argument("reference", type=Path, metavar="RUN", help="the AL-RNN run to align with, e.g. task-trained")
    align.add_argument("--max-regimes", type=_positive_int, default=16, help="regimes per model (default 16)")
    align.add_argument("--match-by", choices=("steps", "profile"), default="steps",
                       help="match regimes used on the same steps (default) or at the same epochs and conditions")

    evaluate = commands.add_parser("evaluate", help="simulate fresh trials; write trials.nc, accuracy and figures")
    evaluate.add_argument("run_dir", type=Path, metavar="DIR")
    evaluate.add_argument("--trials", type=_positive_int, default=DEFAULT_TEST_TRIALS,
                          help=f"test trials to simulate (default {DEFAULT_TEST_TRIALS})")
    evaluate.add_argument("--seed", type=_non_negative_int, default=None,
                          help="trial seed (default: a seed distinct from training and held-out trials)")
    evaluate.add_argument("--noise", action="store_true", help="keep the recurrent noise on while simulating")
    evaluate.add_argument("--device", choices=DEVICES, default="cpu",
                          help="where the model runs: cpu (default), cuda, or auto (cuda when available)")

    current = (f"default: DIR's trials.nc when it holds noiseless trials of the present checkpoint, "
               f"else {DEFAULT_TEST_TRIALS} new ones")
    analyze = commands.add_parser("analyze", help="regime analysis: analysis.nc, figures and report.md")
    analyze.add_argument("run_dir", type=Path, metavar="DIR")
    analyze.add_argument("--trials", type=_positive_int, default=None,
                         help=f"noiseless test trials to analyse, simulated unless DIR's trials.nc holds them "
                              f"({current})")
    analyze.add_argument("--max-regimes", type=_non_negative_int, default=32,
                         help="analyse the dynamics of this many most occupied regimes (default 32; "
                              "0 = every visited regime, about 10 ms each at M = 256)")
    analyze.add_argument("--unit-activity", choices=("rate", "state"), default="rate",
                         help="multi-task runs: compute Yang's task variance, clusters and FTV on the units' rates "
                              "Φ*(z) (default, as Yang did) or on their states z")

    compare = commands.add_parser("compare", help="compare a run's latents with neural recordings (CKA, Procrustes, RSA)")
    compare.add_argument("run_dir", type=Path, metavar="DIR")
    compare.add_argument("recordings", type=Path, metavar="RECORDINGS",
                         help="NetCDF (.nc: (trial, time, neuron), per-trial conditions, time in ms) or NWB (.nwb: "
                              "spike times of the Units table binned on the trials table's trials)")
    compare.add_argument("--align", choices=("epoch", "time"), default="epoch",
                         help="compare per epoch (resampled to --bins points) or on the model's time grid")
    compare.add_argument("--bins", type=_positive_int, default=5, help="points per epoch with --align epoch")
    compare.add_argument("--shuffles", type=_non_negative_int, default=1000, help="condition shuffles for the null")
    compare.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the shuffles")
    compare.add_argument("--conditions", nargs="+", default=None, metavar="NAME",
                         help="conditions to match (default: every condition both sides have)")
    compare.add_argument("--map", "--condition-map", dest="condition_map", type=_key_value, action="append",
                         default=[], metavar="RECORDED=MODEL",
                         help="match the recordings' condition RECORDED to the model's MODEL, e.g. "
                              "coh_motion=motion_coherence; a JSON value maps values too: 'context={\"M\": "
                              "\"motion\"}' or 'ctx=[\"context\", {\"M\": \"motion\"}]'; the key epoch maps epoch "
                              "names: 'epoch={\"stim\": \"stimulus\"}' (repeatable; --condition-map is the old name)")
    compare.add_argument("--bin-ms", type=_positive_number, default=None, metavar="MS",
                         help="NWB: bin width of the rates in ms (default: the run's dt)")
    compare.add_argument("--drop-empty-units", action="store_true",
                         help="NWB: leave out units with no spikes (default: refuse the file)")
    compare.add_argument("--outside-trials", choices=("raise", "drop"), default="raise",
                         help="NWB: spike times outside every trial refuse the file (raise, default) or are left "
                              "out (drop: for recordings that run between trials)")
    compare.add_argument("--variable", default=None, help="which variable of a recordings Dataset")
    compare.add_argument("--nan-policy", choices=("raise", "drop_neurons", "omit"), default="raise")
    compare.add_argument("--trials", type=_positive_int, default=None,
                         help=f"noiseless test trials to compare ({current})")

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
    sweep.add_argument("--pack", type=_positive_int, default=None,
                       help="train up to N compatible AL-RNN runs as one batched model (1: each alone; default: "
                            "near-equal packs of at most 16 runs of M <= 64, split by seed)")
    sweep.add_argument("--device", choices=DEVICES, default=None,
                       help="train and evaluate every run on this device (default: the file's, else cpu)")
    bench = commands.add_parser("bench", help="training speed: status quo vs our loop vs single steps")
    bench.add_argument("--rounds", type=_positive_int, default=5, help="interleaved rounds (default 5)")
    bench.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    bench.add_argument("--no-sweep", action="store_true", help="skip (e), the packed sweep against the process pool")
    bench.add_argument("--device", choices=DEVICES, default="cpu",
                       help="run every side on this device: cpu (default), cuda, or auto")
    return parser


def _condition_mapping(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """--map (--condition-map) pairs as ``analyses.compare.compare``'s ``mapping`` (a [name, values] list -> a pair)."""
    mapping: dict[str, object] = {}
    for recorded, target in pairs:
        if recorded in mapping:
            raise ValueError(f"--map/--condition-map names the recordings' condition {recorded!r} twice")
        if isinstance(target, list) and len(target) == 2 and isinstance(target[0], str) and isinstance(target[1], dict):
            target = tuple(target)
        elif not isinstance(target, str | dict):
            raise ValueError(f"--map/--condition-map {recorded}={json.dumps(target)}: the value must be the model's "
                             "condition name, a JSON object of values {\"recorded\": \"model\"}, or a JSON pair "
                             "[name, {values}]")
        mapping[recorded] = target
    return mapping


def _compare(args) -> int:
    from ..analyses.compare import compare, plot_comparison
    from ..analyses.recordings import NWB_SUFFIXES, read_recordings
    from ..evaluation import current_trials
    from ..storage import write_netcdf

    mapping = _condition_mapping(args.condition_map)
    if not args.recordings.is_file():
        raise FileNotFoundError(f"no recordings file at {args.recordings}")
    nwb = args.recordings.suffix.lower() in NWB_SUFFIXES
    options: dict[str, object] = {"variable": args.variable}
    if nwb:  # binned on the run's dt unless --bin-ms says otherwise, so the trials come first
        trials = current_trials(args.run_dir, args.trials, progress=print)
        options.update(bin_ms=args.bin_ms or float(trials.attrs["dt"]), drop_empty_units=args.drop_empty_units,
                       outside_trials=args.outside_trials)
    elif args.bin_ms is not None or args.drop_empty_units or args.outside_trials != "raise":
        raise ValueError("--bin-ms, --drop-empty-units and --outside-trials apply to NWB recordings (.nwb); "
                         f"{args.recordings} is NetCDF")
    recordings = read_recordings(args.recordings, **options)
    if not nwb:  # a bad NetCDF file is refused before any simulation
        trials = current_trials(args.run_dir, args.trials, progress=print)
    result = compare(trials, recordings, conditions=args.conditions, mapping=mapping or None, align=args.align,
                     n_bins=args.bins, n_shuffles=args.shuffles, seed=args.seed, nan_policy=args.nan_policy)
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
    figure = plot_comparison(result, args.run_dir / "figures" / "comparison.png")
    path = write_netcdf(result, args.run_dir / "comparison.nc")
    print(f"wrote {path} and {figure}")
    return 0


def _sharing(args) -> int:
    from ..training.rundir import read_config
    from .run_analysis import compare_runs_sharing

    labels = {}
    for run_dir in args.run_dirs:
        config = read_config(run_dir)
        label = f"{config.model} M={config.n_units}" + (f" P={config.n_nonlinear}" if config.model == "alrnn" else "")
        labels[label if label not in labels else f"{label} ({run_dir.name})"] = run_dir
    table = compare_runs_sharing(labels, figure=args.figure)
    columns = [name for name in ("sharing_index", "shared_regime_fraction", "shared_step_fraction", "n_regimes",
                                 "mean_jaccard", "mean_covariance_similarity", "mean_subspace_overlap", "n_unit_clusters")
               if name in table]
    width = max(map(len, labels))
    print(f"{'run':<{width}}  " + "  ".join(columns))
    for label in table["run"].values:
        row = table.sel(run=label)
        print(f"{label:<{width}}  " + "  ".join(f"{float(row[name]):>{len(name)}.3f}" for name in columns))
    if "null_normalised" in table:
        print("\nagainst shuffled task labels (observed / shuffled mean; p: less shared than chance):")
        measures = [str(name) for name in table["measure"].values]
        print(f"{'run':<{width}}  " + "  ".join(f"{name:>26}" for name in measures))
        for label in table["run"].values:
            row = table.sel(run=label)
            cells = [f"{float(row['null_normalised'].sel(measure=m)):.3f} "
                     f"(p={float(row['null_p_value'].sel(measure=m)):.3f})" for m in measures]
            print(f"{label:<{width}}  " + "  ".join(f"{cell:>26}" for cell in cells))
    if args.figure is not None:
        print(f"wrote {args.figure}")
    return 0


def _sweep(args) -> int:
    from .sweeps import plot_sweep, run_sweep

    results = run_sweep(args.experiment, backend=args.backend, workers=args.workers, address=args.address,
                        progress=not args.no_progress, out=args.out, retry_failed=args.retry_failed,
                        device=args.device, pack=args.pack)
    status = results["status"].values.ravel()
    failed = int((status == "failed").sum())
    print(f"{int((status == 'finished').sum())} runs finished, {failed} failed; "
          f"results: {results.attrs.get('out', args.out)}/results.nc")
    for path in plot_sweep(results) if args.plot else []:
        print(f"wrote {path}")
    return 1 if failed else 0


def _bench(args) -> int:
    from .bench import run_benchmark

    run_benchmark(rounds=args.rounds, memory=not args.no_memory, device=args.device, sweep=not args.no_sweep)
    return 0


def _analyze(args) -> int:
    from .run_analysis import analyze_run

    paths = analyze_run(args.run_dir, n_trials=args.trials, max_regimes=args.max_regimes or None,
                        unit_activity=args.unit_activity)
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _task_options(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """The --task-option KEY=VALUE pairs as a mapping; a key given twice is an error."""
    repeated = sorted({key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1})
    if repeated:
        raise ValueError(f"--task-option gives {', '.join(repeated)} more than once; give each option once")
    return dict(pairs)


def _train_config(given: dict[str, object]) -> TrainConfig:
    """The TrainConfig of the options given on the command line (the others at their defaults)."""
    values = dict(given)
    if "task_kwargs" in values:
        values["task_kwargs"] = _task_options(values["task_kwargs"])
    model = values.get("model", TrainConfig.model)
    if model != "alrnn":
        if "n_nonlinear" in values:
            raise ValueError(f"--nonlinear applies to --model alrnn only; model {model!r} has its P fixed "
                             "(linear: 0, plrnn: M) or none (tanh, gru, lstm)")
        values["n_nonlinear"] = None
    return TrainConfig.for_task(**values)


def _run_to_end(trainer, command: str) -> int | None:
    """``trainer.fit()``; after Ctrl-C or SIGTERM (checkpoint written) the line that says how to go on and the
    exit status 128 + the signal, else None."""
    try:
        trainer.fit()
    except KeyboardInterrupt as stop:
        print(f"\n{NAME}: interrupted at step {trainer.step}; continue with `{NAME} {command} --resume "
              f"{trainer.run_dir}` (resumes from the checkpoint at step {trainer.saved_step})", file=sys.stderr)
        return 128 + getattr(stop, "signal_number", signal.SIGINT)
    return None


def _fit(args) -> int:
    from ..fitting import FitConfig, FitTrainer, evaluate_fit

    given = {name: getattr(args, name) for name in _FIT_TRAIN_FIELDS if getattr(args, name) is not None}
    fit_given = {name[4:]: value for name, value in vars(args).items()
                 if name.startswith("fit_") and value is not None}
    if (args.out is None) == (args.resume is None):
        raise ValueError("give exactly one of --out DIR (a new fit) or --resume DIR")
    if args.resume is not None:
        fixed = [name for name in given if name != "steps"] + list(fit_given)
        if fixed or args.recordings is not None:
            raise ValueError("--resume continues the fit with the settings of its config.json; only --steps may "
                             "change")
        trainer = FitTrainer.resume(args.resume, steps=given.get("steps"), progress=not args.no_progress)
    else:
        if args.recordings is None:
            raise ValueError("name the recordings file: neuroalrnn fit RECORDINGS --out DIR ...")
        if not args.recordings.is_file():
            raise FileNotFoundError(f"no recordings file at {args.recordings}")
        if "mapping" in fit_given:
            fit_given["mapping"] = _condition_mapping(fit_given["mapping"])
        if "task_kwargs" in given:
            given["task_kwargs"] = _task_options(given["task_kwargs"])
        trainer = FitTrainer(TrainConfig(**{"data_workers": 0, **given}),
                             FitConfig(recordings=str(args.recordings), **fit_given),
                             args.out, progress=not args.no_progress)
    stopped = _run_to_end(trainer, "fit")
    if stopped is not None:
        return stopped
    print(f"fitted {trainer.step} steps in {trainer.elapsed:.1f} s")
    _, summary = evaluate_fit(trainer.run_dir)
    _print_fit_summary(summary)
    print(f"run directory: {trainer.run_dir}")
    return 0


def _print_fit_summary(summary: dict) -> None:
    """The scores of a fit, a line each (see neuroalrnn.fitting.evaluate)."""
    print(f"held-out: {summary['n_trials']} trials ({summary['n_train_trials']} trained on), "
          f"{summary['n_heldout_neurons']} of {summary['n_neurons']} neurons")
    if summary.get("co_bps") is not None:
        print(f"co-smoothing bits/spike (held-out neurons): {summary['co_bps']:.4f}"
              + (f"; free-running {summary['co_bps_free']:.4f}" if summary["forcing_interval"] else ""))
    if summary.get("bps_all_free") is not None:
        print(f"bits/spike, every neuron, free-running: {summary['bps_all_free']:.4f}")
    if summary.get("heldout_r2") is not None:
        print(f"held-out neurons' R²: {summary['heldout_r2']:.4f}")
    print(f"PSTH R² (by {', '.join(summary['psth_by']) or 'no condition'}): {summary['psth_r2']:.4f}")
    if summary.get("latent_r2") is not None:
        print(f"latent R² (true from fitted): {summary['latent_r2']:.4f}; (fitted from true): "
              f"{summary['latent_r2_reverse']:.4f}")
    print(f"regimes used: {summary['regimes_used']}")


def _align(args) -> int:
    from .run_analysis import align_runs

    paths, lines = align_runs(args.run_dir, args.reference, max_regimes=args.max_regimes, match_by=args.match_by)
    print("\n".join(lines))
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _train(args) -> int:
    from ..training import Trainer

    given = {name: getattr(args, name) for name in CONSTRAINTS if getattr(args, name) is not None}
    if (args.out is None) == (args.resume is None):
        raise ValueError("give exactly one of --out DIR (a new run) or --resume DIR")
    if args.resume is not None:
        fixed = [name for name in given if name not in ("steps", "bank_cache", "device")]
        if fixed:
            raise ValueError(f"--resume continues the run with the settings of its config.json; only --steps, "
                             f"--bank-cache and --device may change, but {', '.join(map(_flag, fixed))} was given")
        trainer = Trainer.resume(args.resume, steps=given.get("steps"), bank_cache=given.get("bank_cache"),
                                 device=given.get("device"), progress=not args.no_progress)
    else:
        trainer = Trainer(_train_config(given), args.out, progress=not args.no_progress)
    stopped = _run_to_end(trainer, "train")
    if stopped is not None:
        return stopped
    how = "reached the accuracy criterion" if trainer.stopped_early else "finished"
    print(f"{how} at step {trainer.step} in {trainer.elapsed:.1f} s; "
          f"held-out decision accuracy {trainer.final_accuracy:.3f} ({trainer.config.eval_trials} trials)")
    if len(trainer.eval_by_task) > 1:
        _print_task_table(trainer.eval_by_task)
    print(f"run directory: {trainer.run_dir}")
    return 0


def _print_rows(title: str, rows: dict[str, str], header: str | None = None) -> None:
    """An indented table under ``title``: one row per name (names padded to one width), nothing if no rows."""
    if not rows:
        return
    width = max(map(len, [*rows, "task"] if header else rows))
    print(f"  {title}:")
    if header:
        print(f"  {'task':<{width}}  {header}")
    for name, cells in rows.items():
        print(f"  {name:<{width}}  {cells}")


def _print_strength_table(by_strength: dict[str, dict[str, float]]) -> None:
    """Accuracy per |coherence| for the tasks with graded evidence (a row per task)."""
    _print_rows("accuracy by |coherence|", {
        task: "  ".join(f"{level}: {accuracy:.2f}" for level, accuracy in levels.items())
        for task, levels in by_strength.items()})


def _print_outcome_table(by_task: dict[str, dict[str, float]], order: list[str]) -> None:
    """The error kinds of ring-scored tasks (fractions of each task's trials), for the tasks with errors."""
    from ..envs.yang.ring import RING_OUTCOMES

    kinds = [kind for kind in RING_OUTCOMES if kind != "correct"]
    failing = [name for name in order if by_task.get(name, {}).get("correct", 1.0) < 1.0]
    _print_rows("errors by kind (fraction of the task's trials)",
                {name: "  ".join(f"{by_task[name][kind]:10.3f}" for kind in kinds) for name in failing},
                header="  ".join(f"{kind:>10}" for kind in kinds))


def _print_congruence_table(by_task: dict[str, dict[str, float]]) -> None:
    """Accuracy on congruent and conflict trials of the tasks that attend one of two modalities."""
    _print_rows("accuracy when the unattended modality agrees / conflicts", {
        name: f"congruent {row['congruent']:.3f}  conflict {row['conflict']:.3f} ({row['n_conflict']} trials)"
        for name, row in by_task.items()})


def _print_task_table(by_task: dict[str, float], ceilings: dict[str, float] | None = None) -> None:
    """Accuracy per task, with the ideal observer's beside it (and the fraction of it reached) where known."""
    ceilings = ceilings or {}
    values = list(by_task.values())
    width = max(map(len, by_task))
    print(f"  {'task':<{width}}  accuracy" + ("  ideal observer  of ideal" if ceilings else ""))
    for name, accuracy in by_task.items():
        ceiling = ceilings.get(name)
        extra = f"  {ceiling:14.3f}  {accuracy / ceiling:7.0%}" if ceiling else ""
        print(f"  {name:<{width}}  {accuracy:8.3f}{extra}")
    print(f"  {'mean':<{width}}  {sum(values) / len(values):8.3f}   (min {min(values):.3f})")


def _evaluate(args) -> int:
    from ..evaluation import (
        EVALUATION_FILE,
        accuracy_by,
        evaluate_run,
        plot_psychometric,
        psychometric,
    )

    trials, summary = evaluate_run(args.run_dir, args.trials, noise=args.noise, seed=args.seed, device=args.device)
    if summary.get("kind") == "fit":  # a fit is scored on its own held-out recorded trials
        _print_fit_summary(summary)
        print(f"wrote {args.run_dir / 'trials.nc'}, {args.run_dir / EVALUATION_FILE} and "
              f"{args.run_dir / 'figures' / 'psth.png'}")
        return 0
    print(f"decision accuracy: {summary['accuracy']:.3f} ({summary['n_trials']} trials, seed {summary['seed']}, "
          f"scoring {summary['scoring']})")
    ceilings = summary.get("ceiling_by_task") or {}
    by_task = summary["accuracy_by_task"]  # evaluation.json sorts its keys: print in the task's own order
    order = [name for name in json.loads(trials.attrs.get("task_names", "[]")) if name in by_task]
    by_task = {name: by_task[name] for name in order + sorted(set(by_task) - set(order))}
    if len(by_task) > 1:
        _print_task_table(by_task, ceilings)
        _print_strength_table(summary.get("accuracy_by_coherence") or {})
        _print_outcome_table(summary.get("outcomes_by_task") or {}, list(by_task))
        _print_congruence_table(summary.get("accuracy_by_congruence") or {})
    elif summary.get("ceiling") is not None:
        print(f"ideal observer: {summary['ceiling']:.3f} on the same trials "
              f"(the network reaches {summary['accuracy'] / summary['ceiling']:.0%} of it)")
    if summary["decision_mse"] is not None:
        print(f"decision-epoch MSE: {summary['decision_mse']:.4f} (tolerance {trials.attrs['tolerance']:g})")
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
    print(f"wrote {args.run_dir / 'trials.nc'} and {args.run_dir / EVALUATION_FILE}")
    if {"coh_motion", "coh_colour", "context"} <= set(trials.coords):
        config = json.loads(trials.attrs["config"])
        title = (f"{config['model']} M={trials.attrs['n_units']} P={trials.attrs['n_nonlinear']} · "
                 f"{config['task']}")
        figure = plot_psychometric(psychometric(trials), args.run_dir / "figures" / "psychometric.png", title=title)
        print(f"wrote {figure}")
    return 0


def _tasks(args) -> int:
    from ..envs import list_tasks
    from ..envs.registry import NEUROGYM_PREFIX, describe_subtasks

    if args.name is not None:
        subtasks = describe_subtasks(args.name)
        if subtasks:
            _print_table(subtasks)
        else:
            print(f"{args.name} is a single task, not a suite: it has no sub-tasks")
        return 0
    tasks = list_tasks()
    _print_table(tasks)
    suites = [name for name in tasks if not name.startswith(NEUROGYM_PREFIX) and describe_subtasks(name)]
    if suites:
        print(f"\nSuites ({', '.join(suites)}) hold several tasks; `{NAME} tasks SUITE` lists them, a line each "
              f"(e.g. `{NAME} tasks {suites[0]}`).")
    return 0


def _print_table(rows: dict[str, str]) -> None:
    width = max(map(len, rows))
    for name, description in rows.items():
        print(f"{name:<{width}}  {description}")


def _one_line(error: BaseException) -> str:
    """The error as one line: its message, a multi-line one joined (a nested traceback reduced to its last line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        lines = lines[-1:]
    message = " ".join(lines) or type(error).__name__
    from ..training import TrainingDiverged

    if isinstance(error, ValueError | OSError | ImportError | TrainingDiverged):
        return message
    return f"{type(error).__name__}: {message} (unexpected; rerun with `{NAME} --traceback ...` to see where)"


_COMMANDS = {"tasks": _tasks, "train": _train, "fit": _fit, "align": _align, "evaluate": _evaluate, "analyze": _analyze, "bench": _bench,
             "sweep": _sweep, "sharing": _sharing, "compare": _compare}


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status is 0 on success, 1 on an error (one line on stderr), 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `neuroalrnn evaluate DIR | head -1`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"\n{NAME}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the one place errors become a line; --traceback shows the full story
        if args.traceback:
            raise
        print(f"{NAME}: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
