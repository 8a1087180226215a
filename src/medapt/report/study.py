"""Report sections of a study (sources × strategies × seeds × shot levels) and of multi-label tasks.

* ``study`` — per cell (method, source, shots): mean ± t-interval over seeds of the test AUC,
  paired t-tests over seeds against the reference and DeLong's test per seed, both
  Holm-corrected; significant wins and losses marked.
* ``fewshot`` — AUC vs shots per method and source (mean and t-interval over seeds).
* ``multilabel`` — per-label AUC with label-wise intervals and their mean, for multi-label tasks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluate.paired import CELL, cell_table, delong_per_seed, paired_tests, replicates
from .figures import _colours
from .html import _e, _fmt, _missing, _slug, _table
from .sections import ReportContext, log, section


def _stats_cfg(ctx: ReportContext) -> dict:
    st = (ctx.rf.config or {}).get("stats")
    return st if isinstance(st, dict) else {}


def _is_study(ctx: ReportContext) -> bool:
    m = ctx.rf.metrics
    return m is not None and "method" in m.columns and m["method"].notna().any()


def _ci(r) -> str:
    if not np.isfinite(r["mean"]):
        return "—"
    if np.isfinite(r["ci_low"]):
        return f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    return f"{r['mean']:.3f}"


def _verdict(v) -> str:
    return {"win": "<b>win ▲</b>", "loss": "<b>loss ▼</b>"}.get(v, _e(v))


@section("study", 15)
def study_section(ctx: ReportContext) -> str:
    if not _is_study(ctx):
        return ""
    st = _stats_cfg(ctx)
    metric, split = st.get("metric", "final_auc"), st.get("split", "test")
    alpha, conf = float(st.get("alpha", 0.05)), float(st.get("confidence", 0.95))
    try:
        rep = replicates(ctx.rf.metrics, metric, split)
        cells = cell_table(rep, conf)
        tests = paired_tests(rep, st.get("reference"), alpha)
        dl = delong_per_seed(ctx.rf.predictions, st.get("reference"), alpha, split) \
            if ctx.rf.predictions is not None else pd.DataFrame()
    except Exception as exc:  # a section never breaks the report
        log.warning("report: study statistics failed: %s", exc)
        return "<h2>Study: sources, seeds, shots</h2>" + _missing(f"The study statistics could not be computed: {exc}")
    what = "AUC at the last epoch" if metric == "final_auc" else "best AUC over epochs"
    parts = ["<h2>Study: sources, seeds, shots</h2>",
             f'<p class="note">Each cell is a strategy (method) on a weight source at a shot level; its value is the '
             f"{_e(split)} {what} of each seed (few-shot draws of a seed averaged), shown as mean "
             f"[{int(conf * 100)}% t-interval over seeds]. Paired t-tests over seeds (Hosseinzadeh Taher et al.) and "
             "DeLong's test per seed compare every cell with the reference at the same shot level; p-values are "
             f"Holm-corrected over all comparisons of each kind; <b>win</b>/<b>loss</b> = significant at α = {alpha:g} "
             "after correction.</p>"]
    if rep.empty:
        return "\n".join(parts + [_missing(f"No {split} AUC rows.")])
    for (head, task), g in cells.groupby(["head", "task"], sort=False):
        t = tests[(tests["head"] == head) & (tests["task"] == task)]
        d = dl[(dl["head"] == head) & (dl["task"] == task)] if len(dl) else dl
        rows = []
        for _, r in g.iterrows():
            row = {"method": r["method"], "source": r["source"], "shots": r["shots"], "seeds": int(r["n"]),
                   "AUC": _ci(r)}
            tt = t[(t["method"] == r["method"]) & (t["source"] == r["source"]) & (t["shots"] == r["shots"])]
            if len(tt):
                x = tt.iloc[0]
                row["Δ vs ref"] = _fmt(x["diff"])
                row["t-test p (Holm)"] = _fmt(x["p_holm"])
                row["t-test"] = x["verdict"]
            else:
                row["Δ vs ref"], row["t-test p (Holm)"], row["t-test"] = "reference", "", ""
            dd = d[(d["method"] == r["method"]) & (d["source"] == r["source"]) & (d["shots"] == r["shots"])] \
                if len(d) else d
            row["DeLong per seed"] = (f"{(dd['verdict'] == 'win').sum()} win / {(dd['verdict'] == 'loss').sum()} loss "
                                      f"of {len(dd)}") if len(dd) else ""
            rows.append(row)

        parts.append(f"<h3>{_e(task)} — head {_e(head)}</h3>"
                     + _table(pd.DataFrame(rows), left=("method", "source", "shots"), fmt={"t-test": _verdict}))
        per_seed = rep[(rep["head"] == head) & (rep["task"] == task)].pivot_table(
            index=CELL, columns="seed", values="value", aggfunc="first", sort=False)
        per_seed.columns = [f"seed {c}" for c in per_seed.columns]
        parts.append("<details><summary>Per-seed values</summary>"
                     + _table(per_seed.reset_index(), left=tuple(CELL)) + "</details>")
    return "\n".join(parts)


def shots_figure(cells: pd.DataFrame, title: str) -> Figure:
    """AUC vs shots (log scale; ``full`` drawn at the right) per method/source, with t-intervals."""
    from matplotlib.figure import Figure

    levels = [s for s in cells["shots"].unique() if s != "full"]
    levels = sorted(levels, key=int)
    xs = {s: float(s) for s in levels}
    xfull = (max(xs.values()) * 4) if xs else 1.0
    xs["full"] = xfull
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    names = list(dict.fromkeys(f"{m}/{s}" for m, s in zip(cells["method"], cells["source"])))
    colours = _colours(names)
    for i, ((m, s), g) in enumerate(cells.groupby(["method", "source"], sort=False)):
        dodge = 1.0 + 0.04 * (i - (len(names) - 1) / 2)  # side by side, so the intervals stay readable
        g = g.assign(x=g["shots"].map(xs) * dodge).sort_values("x")
        # an AUC lies in [0, 1]: the t-interval is drawn clipped to it
        lo = (g["mean"] - g["ci_low"].clip(lower=0)).fillna(0).clip(lower=0)
        hi = (g["ci_high"].clip(upper=1) - g["mean"]).fillna(0).clip(lower=0)
        ax.errorbar(g["x"], g["mean"], yerr=[lo, hi], marker="o", capsize=3, color=colours[f"{m}/{s}"],
                    label=f"{m}/{s}")
    ax.set_ylim(max(0.0, float((cells["ci_low"].fillna(cells["mean"])).min()) - 0.05), 1.0)
    ax.set_xscale("log")
    ax.set_xticks([xs[k] for k in levels] + [xfull], [str(k) for k in levels] + ["full"])
    ax.minorticks_off()
    ax.set_xlabel("training images per class (shots)")
    ax.set_ylabel("ROC-AUC (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title)
    return fig


@section("fewshot", 16)
def fewshot_section(ctx: ReportContext) -> str:
    if not _is_study(ctx) or ctx.rf.metrics["shots"].astype(str).nunique() < 2:
        return ""
    st = _stats_cfg(ctx)
    rep = replicates(ctx.rf.metrics, st.get("metric", "final_auc"), st.get("split", "test"))
    cells = cell_table(rep, float(st.get("confidence", 0.95)))
    parts = ["<h2>Few-shot transfer</h2>",
             '<p class="note">Test AUC against the number of training images per class (patient-level draws of '
             "the training split; Cherti &amp; Jitsev), mean and t-interval over seeds, per method and source.</p>"]
    for (head, task), g in cells.groupby(["head", "task"], sort=False):
        parts.append(ctx.figs.add_figure(_slug("fewshot", task, head), shots_figure(g, f"{task} — head {head}"),
                                  f"Test ROC-AUC vs shots, task {task}, head {head}."))
    return "\n".join(parts)


def _label_names(config: dict | None, task: str) -> list[str] | None:
    try:
        ds = config["data"]["targets"][task]["dataset"]
        return list(ds.get("classes") or ds.get("label_columns") or []) or None
    except (KeyError, TypeError):
        return None


@section("multilabel", 22)
def multilabel_section(ctx: ReportContext) -> str:
    from ..evaluate.multilabel import label_columns, per_label_table

    pred = ctx.rf.predictions
    if pred is None or not label_columns(pred):
        return ""
    parts = ["<h2>Multi-label tasks: per-label AUC</h2>",
             '<p class="note">ROC-AUC of each label on the test split over the images where the label is known '
             "(uncertain or missing labels under the <code>ignore</code> policy are left out), with the mean over "
             "labels; interval: t over seeds, or a bootstrap over test images for one seed.</p>"]
    for task, g in pred[pred[label_columns(pred)].notna().any(axis=1)].groupby("task", sort=False):
        tab = per_label_table(g, _label_names(ctx.rf.config, str(task)))
        if tab.empty:
            continue
        tab["AUC"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else _fmt(a)
                      for a, lo, hi in zip(tab["auc"], tab["ci_low"], tab["ci_high"])]
        wide = tab.pivot_table(index=["strategy", "head"], columns="label", values="AUC", aggfunc="first", sort=False)
        order = [c for c in dict.fromkeys(tab["label"]) if c in wide.columns]
        wide = wide[order].reset_index()
        parts.append(f"<h3>{_e(task)}</h3>" + _table(wide, left=("strategy", "head")))
    return "\n".join(parts)
