"""Sweeps: train and evaluate one run per point of a grid (model, M, P, seed, ...) and gather the results.

One job per module:

- :mod:`~neuroalrnn.workflows.sweeps.experiment`: the experiment file (TOML), its
  validation and the grid's expansion into runs (the file's schema is there);
- :mod:`~neuroalrnn.workflows.sweeps.runner`: skip what is done, run the rest, one
  process per run directory (locks, resuming, failures, stopping);
- :mod:`~neuroalrnn.workflows.sweeps.backends`: local process pool (workers die with
  the sweep), in-process, Ray;
- :mod:`~neuroalrnn.workflows.sweeps.results`: ``result.json`` per run, ``results.nc``;
- :mod:`~neuroalrnn.workflows.sweeps.metrics`: the numbers of each run and the
  registry of extra metrics (``METRICS``);
- :mod:`~neuroalrnn.workflows.sweeps.plots`: the figures.

**Layout of ``out``**::

    experiment.toml      a copy of the experiment file
    results.nc           the gathered results (see results_dataset)
    figures/*.png        after plot_sweep
    runs/<run name>/     one ordinary run directory per grid point:
                         config.json, checkpoint.pt, metrics.csv, trials.nc,
                         result.json (written last, atomically)

**Backends.** ``local`` runs the grid points in a pool of ``workers`` spawned
processes (default: min(cores, runs)), each with one torch thread;
``workers=0`` runs them one after another in this process (for debugging).
``ray`` sends each run to Ray as a task of one CPU: ``address=None`` starts a
local Ray instance with ``workers`` CPUs, an address joins a running cluster
(whose workers must have neuroalrnn installed and see ``out`` on a shared file
system). Ray is optional: ``pip install 'neuroalrnn[ray]'``. A run's result
does not depend on the backend.

**Extra metrics.** ``METRICS`` maps a name to a function ``(trials, model,
config) -> float``; ``[evaluate] metrics = ["name"]`` computes it for every
run and stores it in ``result.json`` (``extra``) and as a variable of
``results.nc``.
"""

from .experiment import (
    Evaluation,
    Experiment,
    ExperimentError,
    GridPoint,
    effective_n_nonlinear,
    load_experiment,
    parse_experiment,
)
from .metrics import METRICS, RESULT_VARIABLES, sharing_index
from .plots import plot_sweep
from .results import (
    RESULT_FILE,
    RESULTS_FILE,
    read_result,
    read_results,
    results_dataset,
    write_result,
)
from .runner import (
    LOCK_WAIT,
    SweepError,
    SweepInterrupted,
    collect_results,
    evaluate_point,
    run_point,
    run_sweep,
)

__all__ = [
    "LOCK_WAIT",
    "METRICS",
    "RESULTS_FILE",
    "RESULT_FILE",
    "RESULT_VARIABLES",
    "Evaluation",
    "Experiment",
    "ExperimentError",
    "GridPoint",
    "SweepError",
    "SweepInterrupted",
    "collect_results",
    "effective_n_nonlinear",
    "evaluate_point",
    "load_experiment",
    "parse_experiment",
    "plot_sweep",
    "read_result",
    "read_results",
    "results_dataset",
    "run_point",
    "run_sweep",
    "sharing_index",
    "write_result",
]
