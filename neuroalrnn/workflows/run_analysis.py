"""`neuroalrnn analyze DIR`: regime analysis of a trained run -> analysis.nc, figures, report.md.

Trials that are stale (another checkpoint step), noisy or of another number than asked are simulated
again (:func:`neuroalrnn.evaluation.current_trials`); results derived from trials (``sharing.nc``, read by
``neuroalrnn sharing``) are refused when stale, naming the command that refreshes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..analyses import figures as figs
from ..analyses.pipeline import analyze, default_condition
from ..analyses.report import render_report
from ..evaluation import current_trials
from ..formats import (
    FORMAT_VERSION,
    PROVENANCE_ATTRIBUTES,
    StaleTrialsError,
    check_trials_match,
)
from ..formats import read as read_file
from ..formats import validate
from ..models import ALRNN
from ..storage import atomic_write, file_group, recover_file_groups, write_netcdf
from ..training import load_model
from ..training.rundir import load_checkpoint

__all__ = ["align_runs", "analyze_run", "compare_runs_sharing"]


def model_step(model: ALRNN):
    """The model's update as a NumPy function (z, s) -> z_next in float64 (its params' step), for confirming orbits."""
    return model.params().step


def analyze_run(
    run_dir: str | Path, *, n_trials: int | None = None, max_regimes: int | None = 32, unit_activity: str = "rate",
    log=print,
) -> dict[str, Path]:
    """Analyse the run in ``run_dir`` on its current test trials; returns the paths written.

    The trials are :func:`neuroalrnn.evaluation.current_trials`: the stored
    ``trials.nc`` when it holds noiseless trials of the run's present
    checkpoint (and ``n_trials`` of them, when given), else freshly simulated
    ones (``n_trials``, default ``DEFAULT_TEST_TRIALS``), saved as the run's
    evaluation. Writes ``analysis.nc``, ``figures/*.png`` and ``report.md``;
    ``max_regimes`` most occupied regimes get their dynamics analysed (None:
    all visited). A run whose trials hold several tasks also gets the sharing
    analysis: ``sharing.nc``, its figures and a report section, with Yang's
    unit measures on ``unit_activity`` (see
    :func:`~neuroalrnn.analyses.sharing.sharing_analysis`).

    Everything is computed before anything is written, so an analysis that
    fails writes nothing. ``analysis.nc`` and ``sharing.nc`` carry the trials'
    provenance (``n_trials``, ``seed``, ``simulated_with_noise``,
    ``checkpoint_step``).
    """
    run_dir = Path(run_dir)
    config, model, _ = load_model(run_dir)
    if not isinstance(model, ALRNN):
        raise ValueError(f"regime analyses need an AL-RNN; {run_dir} holds a {config.model} model")
    trials = current_trials(run_dir, n_trials, progress=log)
    analysis = analyze(trials, model.params(), max_regimes=max_regimes, step=model_step(model))
    analysis.attrs["format_version"] = FORMAT_VERSION

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
    title = f"Regime analysis: {config.model} M={config.n_units} P={model.n_nonlinear} · {config.task}"
    report = render_report(analysis, {caption: f"figures/{name}" for caption, (name, _) in figures.items()},
                           title=title)
    sharing = None
    if np.unique(trials["task"].values).size >= 2:
        sharing, sharing_figures, sharing_lines = _sharing_section(trials, unit_activity)
        figures.update(sharing_figures)
        report += "\n" + "\n".join(sharing_lines) + "\n"

    # One group: a kill leaves either the previous analysis or this one, never a mix (storage.file_group).
    relative = {"analysis": Path("analysis.nc"), "report": Path("report.md")}
    with file_group(run_dir) as staging:
        write_netcdf(analysis, staging / relative["analysis"])
        if sharing is not None:
            relative["sharing"] = Path("sharing.nc")
            write_netcdf(sharing, staging / relative["sharing"])
        for name, figure in figures.values():
            relative[name] = Path("figures") / name
            figs.save_figure(figure, staging / relative[name])
        atomic_write(staging / relative["report"], report)
    return {key: run_dir / path for key, path in relative.items()}


def _epoch_table_to_draw(analysis) -> xr.DataArray:
    """The regime × epoch counts to draw: per task, or for several tasks all of them pooled by canonical epoch."""
    from ..analyses.pipeline import POOLED_TASK
    from ..envs.epochs import CANONICAL_EPOCHS

    counts = analysis["epoch_count"]
    if POOLED_TASK not in counts["task"].values:
        return counts
    pooled = counts.sel(task=[POOLED_TASK])
    epochs = [e for e in CANONICAL_EPOCHS if e in pooled["epoch"].values and float(pooled.sel(epoch=e).sum()) > 0]
    return pooled.sel(epoch=epochs).fillna(0)


def _sharing_section(trials, unit_activity: str) -> tuple["xr.Dataset", dict, list[str]]:
    """The sharing analysis of a multi-task run (with its trials' provenance), its figures and report lines."""
    from ..analyses.sharing import sharing_analysis, sharing_report_lines
    from ..analyses.sharing_figures import sharing_figures

    sharing = sharing_analysis(trials, unit_activity=unit_activity)
    sharing.attrs.update({name: trials.attrs[name] for name in PROVENANCE_ATTRIBUTES if name in trials.attrs})
    sharing.attrs["format_version"] = FORMAT_VERSION
    figures = sharing_figures(sharing)
    written = {caption: f"figures/{name}" for caption, (name, _) in figures.items()}
    lines = sharing_report_lines(sharing, figures=written)
    return sharing, figures, lines


def compare_runs_sharing(run_dirs: dict[str, str | Path], figure: str | Path | None = None):
    """One table (xarray Dataset, dim ``run``) of sharing metrics for several analysed multi-task runs.

    Each run directory must hold ``sharing.nc`` (written by ``neuroalrnn analyze``) computed from
    noiseless trials of the run's present checkpoint; a stale one is refused (StaleTrialsError) with
    the command that brings it up to date. ``run_dirs`` maps a label (e.g. "P=2") to the directory;
    ``figure`` optionally writes the comparison figure.
    """
    from ..analyses.sharing import compare_sharing
    from ..analyses.sharing_figures import plot_sharing_comparison

    results = {}
    for label, run_dir in run_dirs.items():
        recover_file_groups(run_dir)
        path = Path(run_dir) / "sharing.nc"
        if not path.is_file():
            raise FileNotFoundError(
                f"no sharing.nc in {run_dir}; run `neuroalrnn analyze {run_dir}` on a multi-task run first"
            )
        results[label] = read_file("sharing", path)
        _check_current(results[label], path, run_dir)
    table = compare_sharing(results)
    if figure is not None:
        plot_sharing_comparison(table, figure)
    return table


def _check_current(result, path: Path, run_dir: str | Path) -> None:
    """Refuse an analysis result that was not computed from noiseless trials of the run's present checkpoint."""
    step = int(load_checkpoint(run_dir)["step"])
    try:
        check_trials_match(result, noise=False, checkpoint_step=step)
    except StaleTrialsError:
        attrs = result.attrs
        stored = ("trials of unknown provenance" if "checkpoint_step" not in attrs else
                  f"{'noisy' if int(attrs.get('simulated_with_noise', 1)) else 'noiseless'} trials of checkpoint "
                  f"step {int(attrs['checkpoint_step'])}")
        raise StaleTrialsError(
            f"{path} was computed from {stored}, but the run is at step {step} and the sharing analysis needs "
            f"noiseless trials of it; run `neuroalrnn analyze {run_dir}` to bring it up to date"
        ) from None


def align_runs(run_dir: str | Path, reference: str | Path, *, max_regimes: int = 16,
               match_by: str = "steps") -> tuple[dict[str, Path], list[str]]:
    """Align the regimes of the AL-RNN in ``run_dir`` (a = e.g. a fit to recordings) with ``reference``'s (b).

    Both models run on ``run_dir``'s current trials (for a fit: its held-out recorded trials with their inputs),
    so their steps pair up; :func:`neuroalrnn.analyses.alignment.align_regimes` matches the regimes. Writes
    ``alignment.nc`` and ``alignment.md`` (the report section) into ``run_dir``; returns their paths and the
    report lines.
    """
    from ..analyses.alignment import align_regimes, alignment_report_lines
    from ..evaluation.simulate import simulate_on_trials

    run_dir = Path(run_dir)
    _, model, _ = load_model(run_dir)
    _, reference_model, _ = load_model(reference)
    for name, candidate in ((run_dir, model), (reference, reference_model)):
        if not isinstance(candidate, ALRNN):
            raise ValueError(f"regime alignment needs AL-RNNs; {name} holds a {type(candidate).__name__}")
    trials = current_trials(run_dir)
    paired = simulate_on_trials(reference_model, trials)
    alignment = align_regimes(trials, model.params(), paired, reference_model.params(), max_regimes=max_regimes,
                              match_by=match_by)
    alignment.attrs.update({"run": str(run_dir), "reference": str(reference), "format_version": FORMAT_VERSION})
    validate("alignment", alignment)
    lines = alignment_report_lines(alignment)
    lines += ["", "![regimes on the same steps](figures/alignment.png)"]
    with file_group(run_dir) as staging:
        write_netcdf(alignment, staging / "alignment.nc")
        atomic_write(staging / "alignment.md", "\n".join(lines) + "\n")
        figs.save_figure(figs.alignment_map(alignment), staging / "figures" / "alignment.png")
    return {"alignment": run_dir / "alignment.nc", "report": run_dir / "alignment.md",
            "figure": run_dir / "figures" / "alignment.png"}, lines
