"""A short human-readable account (Markdown) of an ``analysis.nc`` Dataset from :func:`analyze`."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .pipeline import POOLED_TASK

__all__ = ["render_report"]



def render_report(analysis: xr.Dataset, figures: dict[str, str], title: str = "Regime analysis") -> str:
    """Markdown: regimes used, which epoch (and condition) each serves, dynamics, primitives, figures."""
    a = analysis
    lines = [f"# {title}", ""]
    P = int(a.attrs.get("n_nonlinear", 0))
    lines += [
        f"{a.attrs.get('n_trials', '?')} trials, {int(a['n_steps'])} valid steps. "
        f"The network has P = {P} nonlinear units (at most 2^{P} = {2**P} linear regimes).",
        "",
        "## Regimes used",
        "",
    ]
    occupancy = a["occupancy"].values
    regimes = a["regime"].values
    cover = np.searchsorted(np.cumsum(occupancy), 0.95) + 1
    lines.append(
        f"It used **{int(a['n_regimes'])} regimes**; the {min(cover, len(regimes))} most occupied cover 95 % of "
        f"steps. The regime changed at {100 * float(a['switch_fraction']):.1f} % of consecutive steps. "
        f"Normalised mutual information between regime and epoch: "
        + ", ".join(f"{float(v):.2f} ({t})" for t, v in zip(a['task'].values, a['nmi'].values, strict=True)) + "."
    )
    lines += ["", _regime_table(a), ""]
    lines += _epoch_section(a)
    lines += _dynamics_section(a)
    lines += _primitives_section(a)
    lines += ["## Figures", ""]
    for caption, path in figures.items():
        lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _table_row(cells: list) -> str:
    """One Markdown table row; a ``|`` inside a cell (e.g. the input condition "fixation|colour") is escaped."""
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _table(head: list[str], rows: list[list]) -> list[str]:
    return [_table_row(head), "|" + "---|" * len(head)] + [_table_row(row + [""] * (len(head) - len(row)))
                                                         for row in rows]


def _regime_table(a: xr.Dataset, max_rows: int = 12) -> str:
    condition = a.attrs.get("condition", "")
    by_condition = bool(condition) and "condition_count" in a
    head = ["regime", "occupancy", "mean dwell (ms)", "main epoch (share)"]
    if by_condition:
        head.append(f"{condition} (share of its steps)")
    rows = []
    task = _reported_task(a)
    for code in a["regime"].values[:max_rows]:
        r = a.sel(regime=code)
        main = str(r["main_epoch"].sel(task=task).values)
        share = float(r["epoch_specificity"].sel(task=task))
        row = [f"Ω {code}", f"{float(r['occupancy']):.3f}", f"{float(r['mean_dwell_ms']):.0f}", f"{main} ({share:.2f})"]
        if by_condition:
            counts = r["condition_count"]
            total = float(counts.sum())
            row.append(", ".join(f"{v}: {float(c) / total:.2f}"
                                 for v, c in zip(counts["condition_value"].values, counts.values, strict=True)
                                 if total and c > 0))
        rows.append(row)
    if a.sizes["regime"] > max_rows:
        rows.append([f"… {a.sizes['regime'] - max_rows} more"])
    return "\n".join(_table(head, rows))


def _epoch_section(a: xr.Dataset) -> list[str]:
    lines = ["## Which regimes serve which epoch", ""]
    condition = a.attrs.get("condition", "")
    task = _reported_task(a)
    if task == POOLED_TASK:
        lines += [f"All {a.sizes['task'] - 1} tasks together, each step counted under its canonical epoch "
                  "(fixation, context, stimulus, delay, decision).", ""]
    if condition and "by_condition_epoch_count" in a:
        counts = a["by_condition_epoch_count"].sel(task=task)
        for epoch in counts["epoch"].values:
            parts = []
            for value in counts["condition_value"].values:
                column = counts.sel(epoch=epoch, condition_value=value)
                total = float(column.sum())
                if not total:
                    continue
                top = column.sortby(column, ascending=False)
                listed = [f"Ω {r} ({float(c) / total:.0%})" for r, c in zip(top["regime"].values, top.values, strict=True)
                          if c / total >= 0.1]
                parts.append(f"{value}: {', '.join(listed)}")
            lines.append(f"- **{epoch}** — " + "; ".join(parts))
        exclusive = _exclusive_regimes(a)
        if exclusive:
            lines += ["", f"Regimes specific to one {condition} (≥ 95 % of their steps): "
                      + "; ".join(f"{value}: {', '.join(f'Ω {r}' for r in codes)}" for value, codes in exclusive.items())
                      + "."]
    else:
        counts = a["epoch_count"].sel(task=task)
        for epoch in counts["epoch"].values:
            column = counts.sel(epoch=epoch)
            total = float(column.sum())
            if not total:
                continue
            top = column.sortby(column, ascending=False)
            shares = [(r, float(c) / total) for r, c in zip(top["regime"].values, top.values, strict=True)]
            listed = [f"Ω {r} ({share:.0%})" for r, share in shares if share >= 0.1]
            if not listed:  # many regimes, none with a tenth of the epoch: name the largest
                listed = [f"Ω {r} ({share:.0%})" for r, share in shares[:3]] + [
                    f"… {sum(1 for _, share in shares if share > 0) - 3} more"]
            lines.append(f"- **{epoch}** — {', '.join(listed)}")
    # on plain arrays: a label lookup per regime costs minutes at the 10⁵ regimes of a large P
    flags, main_epochs = a["epoch_specific"].sel(task=task).values, a["main_epoch"].sel(task=task).values
    specific = [f"Ω {r} ({main})" for r, main, flag in zip(a["regime"].values, main_epochs, flags, strict=True)
                if flag]
    shown = ", ".join(specific[:20]) + (f", … {len(specific) - 20} more" if len(specific) > 20 else "")
    lines += ["", "Epoch-specific regimes (≥ 90 % of their steps in one epoch): "
              + (shown if specific else "none") + ".", ""]
    return lines


def _reported_task(a: xr.Dataset) -> str:
    """The task whose regime–epoch table the report describes: all tasks pooled when there are several."""
    tasks = [str(t) for t in a["task"].values]
    return POOLED_TASK if POOLED_TASK in tasks else tasks[0]


def _where(a: xr.Dataset, code) -> str:
    """" (mostly <condition value>)" when ≥ 80 % of the regime's steps are under one condition value."""
    if "condition_count" not in a:
        return ""
    counts = a["condition_count"].sel(regime=code)
    total = float(counts.sum())
    if not total:
        return ""
    top = int(np.argmax(counts.values))
    share = float(counts.values[top]) / total
    return f" ({share:.0%} {counts['condition_value'].values[top]} {a.attrs.get('condition', '')})" if share >= 0.8 else ""


def _exclusive_regimes(a: xr.Dataset, share: float = 0.95) -> dict[str, list]:
    counts = a["condition_count"]
    totals = counts.sum("condition_value")
    result: dict[str, list] = {}
    for value in counts["condition_value"].values:
        fraction = counts.sel(condition_value=value) / totals
        codes = [r for r, f in zip(counts["regime"].values, fraction.values, strict=True) if f >= share]
        if codes:
            result[str(value)] = codes
    return result


def _dynamics_section(a: xr.Dataset, max_rows: int = 16) -> list[str]:
    if "spectral_radius" not in a:
        return ["## Dynamics", "", "Per-regime dynamics need integer regime codes (P ≤ 62).", ""]
    lines = [
        "## Fixed points and slow modes",
        "",
        f"Dynamics of the {int(a['spectral_radius'].notnull().sum())} most occupied regimes "
        f"({100 * a.attrs.get('dynamics_coverage', float('nan')):.1f} % of steps), under each epoch's mean input. "
        "A fixed point z* = (I − W_Ω)⁻¹(C s̄ + h) is *real* when it lies in its own regime, else *virtual*.",
        "",
    ]
    rows = []
    analysed = [code for code in a["regime"].values if np.isfinite(float(a["spectral_radius"].sel(regime=code)))]
    for code in analysed[:max_rows]:
        r = a.sel(regime=code)
        eig = r["eigenvalue_real"].values + 1j * r["eigenvalue_imag"].values
        slow = ", ".join(_complex(v) for v in eig[:3])
        real = [str(c) for c, ok in zip(r["input_condition"].values, r["fixed_point_real"].values, strict=True) if ok]
        rows.append([f"Ω {code}", f"{float(r['spectral_radius']):.3f}", "yes" if bool(r["stable"]) else "no", slow,
                     ", ".join(real) if real else "none (all virtual)"])
    if len(analysed) > max_rows:
        rest = a.sel(regime=analysed[max_rows:])
        rows.append([f"… {len(analysed) - max_rows} more: {int(rest['stable'].sum())} stable, "
                     f"{int(rest['fixed_point_real'].any('input_condition').sum())} with a real fixed point"])
    lines += _table(["regime", "ρ(W_Ω)", "stable", "slowest eigenvalues", "real fixed points (under input of)"], rows)
    searched = json.loads(a.attrs.get("cycle_periods_searched", "[]"))
    skipped = json.loads(a.attrs.get("cycle_periods_skipped", "[]"))
    if "cycle_points" in a:
        parts = [
            f"{int(period)}-cycle through {' → '.join(f'Ω {r}' for r in regimes if r >= 0)} under {condition} "
            f"({'stable' if stable else 'unstable'})"
            for period, regimes, condition, stable in zip(a["cycle_period"].values, a["cycle_regimes"].values,
                                                          a["cycle_condition"].values, a["cycle_stable"].values,
                                                          strict=True)
        ]
        lines += ["", f"Cycles (searched exhaustively for periods {searched}, each confirmed by iterating the model): "
                  + "; ".join(parts[:10]) + (f"; … {len(parts) - 10} more" if len(parts) > 10 else "") + "."]
    elif searched:
        lines += ["", f"No cycles of period {searched} (exhaustive search over all regime sequences, "
                  "candidates confirmed by iterating the model)."]
    if skipped:
        lines += ["", f"Cycles of period {skipped} were not searched: too many regime sequences for an exhaustive "
                  "search (use `neuroalrnn.analyses.find_cycles(..., method='scyfi')`)."]
    return lines + [""]


def _primitives_section(a: xr.Dataset) -> list[str]:
    lines = ["## Computational primitives", ""]
    horizon = a.attrs.get("horizon", "?")
    epoch = a.attrs.get("evidence_epoch", "")
    varying = json.loads(a.attrs.get("varying_inputs", "[]"))
    if "integrates" in a:
        found = []
        for code in a["regime"].values:
            r = a.sel(regime=code)
            if not np.isfinite(float(r["integration_eigenvalue"])):
                continue
            inputs = [str(k) for k in a["input"].values if k in varying and bool(r["integrates"].sel(input=k))]
            if inputs:
                effects = ", ".join(f"{k} {float(r['integration_effect'].sel(input=k)):.1f}" for k in inputs)
                found.append(f"Ω {code}{_where(a, code)} integrates {effects} (λ = "
                             f"{float(r['integration_eigenvalue']):.3f})")
        lines.append(
            f"- **Integration** — a real mode with λ^T within [0.25, 4] over T = {horizon} steps (the length of "
            f"the {epoch} epoch), driven by an input that varies there and read by the outputs; the effect is the "
            f"change of the outputs (logits) after T steps of unit input along that mode, flagged at ≥ 2: "
            + ("; ".join(found) if found else "none found") + "."
        )
    if "gated" in a:
        condition = a.attrs.get("condition", "")
        parts = []
        values = a["condition_value"].values
        for k in varying:
            gains = a["gating_gain"].sel(input=k)
            index = a["gating_index"].sel(input=k, condition_value=values[0], condition_value_other=values[-1])
            gains_text = ", ".join(f"{v}: {float(g):.1f}" for v, g in zip(values, gains.values, strict=True))
            verdict = "gated" if bool(a["gated"].sel(input=k)) else "not gated"
            strongest = values[int(np.argmax(gains.values))]
            ratio = float(gains.max() / max(float(gains.min()), 1e-12))
            plain = f": it reaches the outputs {ratio:.1f}× more strongly in the {strongest} {condition}" \
                if verdict == "gated" else ""
            parts.append(f"{k} is **{verdict}** by {condition}{plain} (gain {gains_text}; index {float(index):+.2f})")
        lines.append(
            f"- **Gating** (occupancy-weighted {horizon}-step gain of each input to the outputs in the {epoch} "
            f"epoch, per {condition}; gated when |index| ≥ 0.5): " + ("; ".join(parts) if parts else "no varying inputs")
            + "."
        )
    regimes = a["regime"].values
    transients = [f"Ω {r}" for r in regimes[a["boundary_transient"].values.astype(bool)]]
    amplifying = []
    if "amplifies" in a:
        for r in regimes[a["amplifies"].values.astype(bool)]:
            peak = float(a["peak_norm"].sel(regime=r)) if "peak_norm" in a else float("nan")
            if np.isfinite(peak):
                amplifying.append(f"Ω {r} (peak ‖W_Ω^k‖ = {peak:.2f} at k = {int(a['peak_step'].sel(regime=r))})")
            else:  # the peak over powers is only computed for the most occupied regimes
                amplifying.append(f"Ω {r} (‖W_Ω‖ = {float(a['operator_norm'].sel(regime=r)):.2f})")
    lines.append(
        "- **Transients**: regimes visited briefly at epoch boundaries (mean dwell ≤ 2 steps, ≥ 50 % of visits "
        "starting within a step of an epoch change): " + (", ".join(transients) if transients else "none")
        + "; transient amplification (‖W_Ω^k‖ > 1 while ρ < 1): "
        + (", ".join(amplifying) if amplifying else "none") + "."
    )
    return lines + [""]


def _complex(value: complex) -> str:
    if abs(value.imag) < 1e-9:
        return f"{value.real:.3f}"
    return f"{value.real:.3f}{value.imag:+.3f}i"
