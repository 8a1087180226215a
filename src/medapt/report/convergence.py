"""Report section on convergence speed: epochs and seconds to each validation AUC threshold, and the
speed-up over the baseline (the ``epochs_to_auc@t`` … rows of ``metrics.csv``; medapt.evaluate.convergence)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..evaluate.convergence import CONVERGENCE_PREFIXES
from .figures import _colours
from .html import _e, _fmt, _slug, _table
from .sections import ReportContext, section

__all__ = ["convergence_section", "steps_to_threshold_plot"]


def _rows(metrics: pd.DataFrame) -> pd.DataFrame:
    m = metrics[metrics["metric"].astype(str).str.startswith(CONVERGENCE_PREFIXES)].copy()
    if not len(m):
        return m
    parts = m["metric"].str.split("@", n=1, expand=True)
    m["kind"], m["threshold"] = parts[0], parts[1].astype(float)
    return m


def _median(v: pd.Series) -> float:
    v = pd.to_numeric(v, errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


def steps_to_threshold_plot(table: pd.DataFrame, strategies: list[str], title: str) -> Figure:
    """Bars: median epochs to each threshold per strategy (Transfusion's "steps to threshold"); an
    ``×`` marks a strategy that reached the threshold in no seed."""
    thresholds = sorted(table["threshold"].unique())
    fig = Figure(figsize=(max(5.0, 0.9 * len(strategies) + 2), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(thresholds), 1)
    colours = _colours([f"{t:g}" for t in thresholds])
    x = np.arange(len(strategies))
    for i, t in enumerate(thresholds):
        sub = table[table["threshold"] == t].set_index("strategy")
        ys = [float(sub.loc[s, "epochs"]) if s in sub.index else math.nan for s in strategies]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, [0 if math.isnan(y) else y for y in ys], width, color=colours[f"{t:g}"], label=f"AUC ≥ {t:g}")
        for p, y in zip(pos, ys):
            if math.isnan(y):
                ax.text(p, 0, "×", ha="center", va="bottom", fontsize=10, color=colours[f"{t:g}"])
    ax.set_xticks(x, strategies, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("epochs to threshold (median over seeds)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@section("convergence", 27)
def convergence_section(ctx: ReportContext) -> str:
    if ctx.rf.metrics is None:
        return ""
    m = _rows(ctx.rf.metrics)
    if not len(m):
        return ""
    conv = (ctx.rf.config or {}).get("convergence") or {}
    baseline = conv.get("baseline", "Scratch") if isinstance(conv, dict) else "Scratch"
    parts = ["<h2>Convergence speed</h2>",
             '<p class="note">For every strategy with target phases: the first epoch at which the validation ROC-AUC '
             "reaches each threshold, the training seconds up to the end of that epoch (validation passes excluded), "
             f"and the speed-up over <b>{_e(str(baseline))}</b> on the same task and seed (its epochs or seconds "
             "divided by the strategy's; above 1 = faster). Medians over seeds; \"reached\" counts the seeds that got "
             "there; — = never reached (or no baseline). Cf. Raghu et al., Transfusion, Figs 5–6 (steps to a "
             "threshold AUC, pretrained vs random).</p>"]
    for task, g in m.groupby("task", sort=True):
        strategies = [s for s in ctx.order if s in set(g["strategy"])] + sorted(set(g["strategy"]) - set(ctx.order))
        rows = []
        for (s, t), h in g.groupby(["strategy", "threshold"], sort=False):
            ep = h[h["kind"] == "epochs_to_auc"]["value"]
            rows.append({"strategy": s, "threshold": t, "epochs": _median(ep),
                         "reached": f"{int(pd.to_numeric(ep, errors='coerce').notna().sum())}/{len(ep)}",
                         "seconds": _median(h[h["kind"] == "seconds_to_auc"]["value"]),
                         "speed-up (epochs)": _median(h[h["kind"] == "speedup_epochs"]["value"]),
                         "speed-up (seconds)": _median(h[h["kind"] == "speedup_seconds"]["value"])})
        table = pd.DataFrame(rows)
        table["order"] = table["strategy"].map({s: i for i, s in enumerate(strategies)})
        table = table.sort_values(["threshold", "order"], kind="stable").drop(columns="order")
        parts.append(f"<h3>{_e(task)}</h3>")
        parts.append(ctx.figs.add_figure(_slug("convergence", task),
                                  steps_to_threshold_plot(table, strategies, f"{task} — epochs to validation AUC"),
                                  f"Epochs until the validation ROC-AUC first reaches each threshold, task {task} "
                                  "(median over seeds; × = not reached)."))
        shown = table.copy()
        shown["threshold"] = shown["threshold"].map(lambda v: f"{v:g}")
        shown["epochs"] = shown["epochs"].map(lambda v: _fmt(v, 1))
        for c in ("seconds", "speed-up (epochs)", "speed-up (seconds)"):
            shown[c] = shown[c].map(lambda v: _fmt(v, 2))
        parts.append(_table(shown, left=("strategy",)))
    return "\n".join(parts)
