"""Score a fit on its held-out trials and write them as the run's ``trials.nc`` (``neuroalrnn evaluate``).

The test trials are simulated by the fitted AL-RNN twice: free-running from z_0 = 0 on the trials' inputs
(the generative model; these latents, regimes and outputs are what ``trials.nc`` holds and what ``analyze``
and ``compare`` read), and, when the fit uses teacher forcing, forced by the held-in neurons as in training
(how NLB's co-smoothing infers the held-out neurons). Scores (:mod:`neuroalrnn.analyses.fit_scores`):

* ``co_bps``: bits per spike of the held-out neurons on the test trials (forced when the fit forces, else free);
  ``co_bps_free``: the same, free-running; ``bps_all_free``: every neuron, free-running (Poisson fits);
  ``heldout_r2``: R² of the held-out neurons' rates instead, for Gaussian fits;
* ``psth_r2``: PSTH R² of every neuron on the test trials (free-running), trials grouped by ``psth_by``;
* ``latent_r2``: with a ``truth`` file, the variance-weighted R² of the true latents from the free-running
  fitted latents by a linear map fitted on the training trials, scored on the test trials (CtD's state R²);
  ``latent_r2_reverse``: the fitted latents from the true ones (high only when the fit has no dimensions the
  truth lacks). In an input-driven system both are high for any model driven by the same inputs (an
  untrained one too): read them against such a baseline.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..analyses.fit_scores import bits_per_spike, latent_r2, psth_r2
from ..formats import FORMAT_VERSION
from ..training.rundir import RunDirectoryError, read_metrics, resolve_in_run
from .trainer import FittedRun, expected_activity, heldout_score, load_fit, recorded_trials, rollout

__all__ = ["evaluate_fit", "fit_scores"]


def _simulate(run: FittedRun, trials, indices: np.ndarray, *, forced: bool) -> tuple[np.ndarray, np.ndarray]:
    batch = trials.batch
    inputs = torch.from_numpy(np.ascontiguousarray(batch.inputs[indices]))
    teacher = None
    if forced and run.fit.forcing_interval > 0:
        with torch.no_grad():
            teacher = run.encoder(torch.from_numpy(np.ascontiguousarray(trials.teacher[indices])))
    with torch.no_grad():
        outputs, latents = rollout(run.model, inputs, teacher, interval=run.fit.forcing_interval,
                                   alpha=run.fit.forcing_alpha)
    return outputs.numpy().astype(np.float64), latents.numpy().astype(np.float64)


def _groups(batch, indices: np.ndarray, names: list[str]) -> np.ndarray:
    if not names:
        return np.zeros(len(indices), dtype=np.int64)
    missing = [name for name in names if name not in batch.conditions]
    if missing:
        raise ValueError(f"psth_by names conditions {missing} the recordings lack; they have "
                         f"{sorted(batch.conditions)}")
    columns = [np.asarray(batch.conditions[name])[indices].astype(str) for name in names]
    return np.asarray(["|".join(values) for values in zip(*columns, strict=True)])


def fit_scores(run: FittedRun, run_dir: str | Path | None = None) -> tuple[dict[str, Any], Any, np.ndarray, np.ndarray]:
    """The scores of the fit (module docstring), the recorded trials, and the free outputs and latents of all trials."""
    trials, _ = recorded_trials(run.config, run.fit, run.data, run_dir)
    batch, test, heldout = trials.batch, trials.test, trials.heldout
    everything = np.arange(batch.n_trials)
    outputs_free, latents_free = _simulate(run, trials, everything, forced=False)
    observation = run.fit.observation
    mask = batch.mask[test]
    observed = trials.targets[test].astype(np.float64)
    free = expected_activity(outputs_free[test], observation)
    # Without teacher forcing the forced rollout is the free one: it is not run twice.
    forced = expected_activity(_simulate(run, trials, test, forced=True)[0], observation) \
        if run.fit.forcing_interval > 0 else free
    held = len(heldout) > 0
    scores: dict[str, Any] = {}
    if observation == "poisson":
        scores["co_bps"] = heldout_score(forced, observed, mask, heldout, observation) if held else None
        scores["co_bps_free"] = heldout_score(free, observed, mask, heldout, observation) if held else None
        scores["bps_all_free"] = bits_per_spike(free, observed, mask)
    else:
        scores["heldout_r2"] = heldout_score(forced, observed, mask, heldout, observation) if held else None
    names = [name.strip() for name in (run.fit.psth_by or "").split(",") if name.strip()]
    if not names:
        from ..analyses.pipeline import default_condition

        condition = default_condition(xr.Dataset(coords={key: ("trial", value)
                                                         for key, value in batch.conditions.items()}))
        names = [condition] if condition else []
    scores["psth_by"] = names
    scores["psth_r2"] = psth_r2(free, observed, mask, _groups(batch, test, names),
                                smooth_bins=run.fit.psth_smooth_bins)
    scores["latent_r2"] = scores["latent_r2_reverse"] = None
    if run.fit.truth is not None:
        truth_path = resolve_in_run(run_dir, run.fit.truth) if run_dir is not None else Path(run.fit.truth)
        true_latents = _true_latents(truth_path, batch.mask)
        train = np.setdiff1d(everything, test)
        scores["latent_r2"] = latent_r2(latents_free, true_latents, batch.mask, train, test)
        scores["latent_r2_reverse"] = latent_r2(true_latents, latents_free, batch.mask, train, test)
    return scores, trials, outputs_free, latents_free


def _true_latents(path: Path, mask: np.ndarray) -> np.ndarray:
    from ..evaluation.simulate import read_trials

    if not path.is_file():
        raise RunDirectoryError(f"the fit's truth file {path} is gone; latent R² needs it")
    truth = read_trials(path)
    true_mask = truth["mask"].transpose("trial", "time").values.astype(bool)
    n = min(true_mask.shape[1], mask.shape[1])
    if true_mask.shape[0] != mask.shape[0] or not np.array_equal(true_mask[:, :n], mask[:, :n]) \
            or true_mask[:, n:].any() or mask[:, n:].any():
        raise ValueError(f"the truth file {path} does not hold the recordings' trials (their valid steps differ)")
    latents = truth["latents"].transpose("trial", "time", "unit").values.astype(np.float64)
    out = np.zeros((*mask.shape, latents.shape[-1]))
    out[:, :n] = latents[:, :n]
    return out


def evaluate_fit(run_dir: str | Path, *, save: bool = True, progress=None) -> tuple[xr.Dataset, dict[str, Any]]:
    """Score the fit in ``run_dir`` and (``save``) write its test trials and scores as trials.nc / evaluation.json.

    Returns ``(trials, summary)`` like :func:`neuroalrnn.evaluation.evaluate_run`; the summary holds the scores
    (module docstring), ``kind: "fit"``, the sizes of the split and the checkpoint step.
    """
    from ..evaluation.evaluate import SUMMARY_ATTRIBUTE, _summary_json, write_evaluation
    from ..evaluation.simulate import trials_dataset

    run_dir = Path(run_dir)
    run = load_fit(run_dir)
    scores, trials, outputs_free, latents_free = fit_scores(run, run_dir)
    test = trials.test
    batch = trials.batch
    test_batch = dataclasses.replace(
        batch, inputs=batch.inputs[test], targets=batch.targets[test], mask=batch.mask[test],
        weight=batch.weight[test], epoch=batch.epoch[test], task=batch.task[test],
        conditions={name: np.asarray(values)[test] for name, values in batch.conditions.items()})
    dataset = trials_dataset(test_batch, outputs_free[test], latents_free[test], run.model, seed=run.config.seed,
                             config=run.config.to_dict(), noise=False, checkpoint_step=run.step)
    rows = read_metrics(run_dir)
    summary = {
        "kind": "fit",
        **scores,
        "observation": run.fit.observation,
        "forcing_interval": run.fit.forcing_interval,
        "n_trials": int(len(test)),
        "n_train_trials": int(batch.n_trials - len(test)),
        "n_heldout_neurons": int(len(trials.heldout)),
        "n_neurons": int(batch.targets.shape[-1]),
        "checkpoint_step": run.step,
        "steps": run.config.steps,
        "final_loss": float(rows[-1]["loss"]) if rows else None,
        "seed": run.config.seed,
        "noise": False,
        "format_version": FORMAT_VERSION,
    }
    from ..analyses.regimes import regime_statistics

    statistics = regime_statistics(dataset, transitions=False)
    summary["regimes_used"] = int(statistics["n_regimes"])
    summary["switch_fraction"] = float(statistics["switch_fraction"])
    dataset.attrs["fit"] = json.dumps({**run.fit.to_dict(), "heldout_neurons": run.data["heldout_neurons"]})
    dataset.attrs[SUMMARY_ATTRIBUTE] = _summary_json(summary)
    if progress is not None:
        progress(f"scored {len(test)} held-out trials of the fit at checkpoint step {run.step}")
    if save:
        write_evaluation(run_dir, dataset)
        _psth_figure(run, trials, outputs_free, scores["psth_by"], run_dir / "figures" / "psth.png")
    return dataset, json.loads(dataset.attrs[SUMMARY_ATTRIBUTE])


def _psth_figure(run: FittedRun, trials, outputs: np.ndarray, names: list[str], path: Path) -> Path:
    """figures/psth.png: six neurons' recorded and predicted PSTHs on the test trials, held-out neurons first."""
    from ..analyses.figures import fit_psths, save_figure

    test, batch = trials.test, trials.batch
    order = list(trials.heldout) + [n for n in range(batch.targets.shape[-1]) if n not in set(trials.heldout)]
    predicted = expected_activity(outputs[test], run.fit.observation)
    figure = fit_psths(trials.targets[test], predicted, batch.mask[test], _groups(batch, test, names), batch.dt,
                       order[:6], names=[f"{name} (held out)" if i in set(trials.heldout) else str(name)
                                         for i, name in enumerate(batch.output_names)])
    return save_figure(figure, path)
