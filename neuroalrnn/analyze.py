"""`neuroalrnn analyze DIR`: regime analysis of a trained run -> analysis.nc, figures, report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analyses import ALRNNParams
from .analyses import figures as figs
from .analyses.pipeline import analyze, default_condition
from .analyses.report import render_report
from .models import ALRNN
from .storage import atomic_write, write_netcdf
from .simulate import read_trials, simulate, write_trials
from .training import TEST_SEED_OFFSET, load_model

__all__ = ["analyze_run", "compare_runs_sharing", "run_trials"]


def model_step(model: ALRNN):
    """The model's own update as a NumPy function (z, s) -> z_next, in float64, for confirming orbits."""
    import copy

    import torch

    exact = copy.deepcopy(model).double().eval()

    def step(z: np.ndarray, s: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z_t = torch.as_tensor(np.asarray(z, dtype=np.float64))
            drive = torch.as_tensor(np.asarray(s, dtype=np.float64)) @ exact.C.T + exact.h
            return exact.step(z_t, drive).numpy()

    return step


def run_trials(run_dir: str | Path, n_trials: int, *, log=print, loaded=None):
    """The run's ``trials.nc``, or ``n_trials`` held-out test trials simulated and written there if it has none.

    ``loaded``: the run's (config, model, env) if already loaded (see ``load_model``).
    """
    trials_path = Path(run_dir) / "trials.nc"
    if trials_path.is_file():
        trials = read_trials(trials_path)
        log(f"read {trials_path} ({trials.sizes['trial']} trials)")
        return trials
    config, model, env = loaded if loaded is not None else load_model(run_dir)
    trials = simulate(model, env, n_trials, seed=config.seed + TEST_SEED_OFFSET, task_name=config.task,
                      config=config.to_dict())
    write_trials(trials, trials_path)
    log(f"simulated {n_trials} trials -> {trials_path}")
    return trials


def analyze_run(
    run_dir: str | Path, *, n_trials: int = 500, max_regimes: int | None = 32, log=print
) -> dict[str, Path]:
    """Analyse the run in ``run_dir``; simulate ``n_trials`` trials first if it has no trials.nc.

    Writes ``analysis.nc``, ``figures/*.png`` and ``report.md``; returns their paths.
    ``max_regimes`` most occupied regimes get their dynamics analysed (None: all visited). A run whose
    trials hold several tasks also gets the sharing analysis: ``sharing.nc``, its figures and a
    report section.
    """
    run_dir = Path(run_dir)
    config, model, env = load_model(run_dir)
    if not isinstance(model, ALRNN):
        raise ValueError(f"regime analyses need an AL-RNN; {run_dir} holds a {config.model} model")
    trials = run_trials(run_dir, n_trials, log=log, loaded=(config, model, env))
    params = ALRNNParams.from_model(model)
    analysis = analyze(trials, params, max_regimes=max_regimes, step=model_step(model))
    paths = {"analysis": run_dir / "analysis.nc", "report": run_dir / "report.md"}
    write_netcdf(analysis, paths["analysis"])

    order = list(analysis["regime"].values)
    condition = default_condition(trials)
    sort_by = [name for name in (condition, "coh_relevant") if name]
    dynamics_regimes = [r for r in order if "spectral_radius" in analysis
                        and bool(analysis["spectral_radius"].sel(regime=r).notnull())]
    figures = {
        "Regime raster": ("regime_raster.png", figs.regime_raster(trials, order, sort_by=sort_by)),
        "Regime–epoch map": ("regime_epoch.png", figs.regime_epoch_heatmap(_epoch_table_to_draw(analysis))),
    }
    if "transition_probability" in analysis:
        figures["Transition graph"] = ("transitions.png", figs.transition_graph(analysis["transition_probability"],
                                                                                analysis["occupancy"]))
    if dynamics_regimes:
        figures["Eigenvalue spectra"] = ("spectra.png", figs.eigenvalue_spectra(
            analysis["eigenvalue_real"], analysis["eigenvalue_imag"], dynamics_regimes[:8], figs.regime_colours(order)))
        fixed = analysis["fixed_point"].sel(regime=dynamics_regimes[:8])
        real = analysis["fixed_point_real"].sel(regime=dynamics_regimes[:8])
        figures["Latent trajectories"] = ("trajectories.png", figs.latent_trajectories(trials, order, fixed, real))
    written = {}
    for caption, (name, figure) in figures.items():
        path = figs.save_figure(figure, run_dir / "figures" / name)
        written[caption] = f"figures/{name}"
        paths[name] = path
    title = f"Regime analysis: {config.model} M={config.n_units} P={model.n_nonlinear} · {config.task}"
    report = render_report(analysis, written, title=title)
    if np.unique(trials["task"].values).size >= 2:
        report += "\n" + "\n".join(_sharing_section(trials, run_dir, paths)) + "\n"
    atomic_write(paths["report"], report)
    return paths


def _epoch_table_to_draw(analysis) -> "xr.DataArray":
    """The regime × epoch counts to draw: per task, or for several tasks all of them pooled by canonical epoch."""
    from .analyses.pipeline import POOLED_TASK
    from .envs.epochs import CANONICAL_EPOCHS

    counts = analysis["epoch_count"]
    if POOLED_TASK not in counts["task"].values:
        return counts
    pooled = counts.sel(task=[POOLED_TASK])
    epochs = [e for e in CANONICAL_EPOCHS if e in pooled["epoch"].values and float(pooled.sel(epoch=e).sum()) > 0]
    return pooled.sel(epoch=epochs).fillna(0)


def _sharing_section(trials, run_dir: Path, paths: dict[str, Path]) -> list[str]:
    """Write sharing.nc and its figures for a multi-task run; return the report's Markdown lines."""
    from .analyses.sharing import sharing_analysis, sharing_report_lines
    from .analyses.sharing_figures import sharing_figures

    sharing = sharing_analysis(trials)
    paths["sharing"] = run_dir / "sharing.nc"
    write_netcdf(sharing, paths["sharing"])
    written = {}
    for caption, (name, figure) in sharing_figures(sharing).items():
        paths[name] = run_dir / "figures" / name
        figs.save_figure(figure, paths[name])
        written[caption] = f"figures/{name}"
    return sharing_report_lines(sharing, figures=written)


def compare_runs_sharing(run_dirs: dict[str, str | Path], figure: str | Path | None = None):
    """One table (xarray Dataset, dim ``run``) of sharing metrics for several analysed multi-task runs.

    Each run directory must hold ``sharing.nc`` (written by ``neuroalrnn analyze``). ``run_dirs``
    maps a label (e.g. "P=2") to the directory; ``figure`` optionally writes the comparison figure.
    """
    import xarray as xr

    from .analyses.sharing import compare_sharing
    from .analyses.sharing_figures import plot_sharing_comparison

    results = {}
    for label, run_dir in run_dirs.items():
        path = Path(run_dir) / "sharing.nc"
        if not path.is_file():
            raise FileNotFoundError(
                f"no sharing.nc in {run_dir}; run `neuroalrnn analyze {run_dir}` on a multi-task run first"
            )
        results[label] = xr.load_dataset(path, engine="h5netcdf")
    table = compare_sharing(results)
    if figure is not None:
        plot_sharing_comparison(table, figure)
    return table
