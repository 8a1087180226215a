"""Report sections that answer "which strategy, for what cost": the recommendation with the
external-first ranking (position 5, first on the page) and the whole cost per strategy (75).
Both render their Jinja2 template (``templates/recommendation.html.j2``, ``whole_cost.html.j2``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .costs import suite_cost
from .html import _e, _table, fmt_energy, fmt_hours
from .recommend import ALPHA
from .sections import ReportContext, _table_sentence, section
from .templating import render
from .whole_cost import COST_PARTS

__all__ = ["energy_footnote"]


def energy_footnote(ctx: ReportContext) -> str:
    """The estimate-vs-measured note, registered once as a footnote; returns its marker ("" when the
    run has no costs)."""
    rf = ctx.rf
    if rf.costs is None:
        return ""
    src = sorted(set(rf.costs["energy_source"].astype(str)) - {"", "nan"})
    notes = sorted(set(rf.costs["energy_note"].astype(str)) - {"", "nan"}) if "energy_note" in rf.costs else []
    from .cost_sections import _source_label

    html = ("Energy sources in this run: " + (", ".join(_source_label(x) for x in src) or "none recorded") + ". A source counts as a measurement only if every <code>+</code>-joined "
        "part starts with <code>measured-</code> (RAPL for the CPU, NVML for the GPU); anything else — a CodeCarbon "
        "TDP estimate, a Green Algorithms estimate — is an estimate from the hardware's rated power and the run time, "
        "not a reading. " + _table_sentence(rf)
        + ("" if not notes else " Why each step's energy has its source (<code>energy_note</code> of costs.csv): "
           + "; ".join(f"“{_e(n)}”" for n in notes) + "."))
    return ctx.footnote("energy-source", html)


def _seed_word(n: int) -> str:
    return "one seed" if n == 1 else f"{n} seeds"


@section("recommendation", 5)
def recommendation_section(ctx: ReportContext) -> str:
    from .recommend import Budget

    if ctx.rf.metrics is None or ctx.summ is None or not len(ctx.summ):
        return render("recommendation.html.j2", message="metrics.csv is missing or has no AUC rows, so no strategy "
                      "can be recommended. Run `medapt run` to completion to produce it.", tasks=[], spread="",
                      alpha=ALPHA, budget="", budget_from="")
    rank, rec = ctx.ranking, ctx.recommendation
    budget = ctx.budget or Budget()
    n = int(rank["n_seeds"].max()) if len(rank) else 0
    tasks = []
    for task, t in rank.groupby("task", sort=True):
        r = rec[rec["task"] == task]
        sentences = list(r["sentence"])
        if ctx.rf.costs is None:
            sentences.append("costs.csv is missing, so costs and the budget cannot be judged.")
        shown = pd.DataFrame({
            "rank": t["rank"], "strategy": t["strategy"],
            "external AUC [95% CI]": [_auc(a, lo, hi) for a, lo, hi in zip(t.auc_external, t.external_ci_low, t.external_ci_high)],
            "development AUC [95% CI]": [_auc(a, lo, hi) for a, lo, hi in zip(t.auc_dev, t.dev_ci_low, t.dev_ci_high)],
            "dip": [f"{d:+.3f}" if np.isfinite(d) else "—" for d in t["dip"]],
            "energy (whole)": [fmt_energy(v) for v in t["kwh"]],
            "time (whole)": [_sec(v) for v in t["seconds"]],
        })
        if budget:
            shown["within budget"] = t["within_budget"].map({True: "yes", False: "no"}).fillna("not recorded").to_numpy()
        test = "t-test" if n > 1 else "DeLong"
        shown[f"p vs best, external ({test})"] = [f"{p:.3g}" if np.isfinite(p) else "—" for p in t["p_vs_best_external"]]
        shown[f"p vs best, development ({test})"] = [f"{p:.3g}" if np.isfinite(p) else "—" for p in t["p_vs_best_dev"]]
        if n > 1:
            shown["DeLong p, external (one seed)"] = [f"{p:.3g}" if np.isfinite(p) else "—" for p in t["delong_p_external"]]
        shown = shown[[c for c in shown.columns if not (shown[c].astype(str) == "—").all()]]  # e.g. no external set
        best = t["strategy"].iloc[0]
        tasks.append(dict(task=task, head=t["head"].iloc[0], sentences=sentences,
                          ranked_on_words="external AUC" if t["ranked_on"].iloc[0] == "external"
                          else "development test AUC (no external set for this task)",
                          table=_table(shown.reset_index(drop=True), left=("strategy",),
                                       row_class=lambda row, b=best: "best" if row["strategy"] == b else "")))
    if n > 1:
        spread = (f"AUCs are means over {n} seeds with the 95% t-interval over seeds; p-values from the paired t-test "
                  "of final AUCs over seeds (DeLong's test on the first common seed beside it).")
    else:
        spread = ("One seed: the [95% CI] is a percentile bootstrap over the test images (2,000 resamples); p-values "
                  "from DeLong's test on the same images. Small differences may be noise.")
    cfg_rep = (ctx.rf.config or {}).get("report")
    budget_from = ("report.budget_kwh / report.budget_hours in config.yaml"
                   if isinstance(cfg_rep, dict) and (cfg_rep.get("budget_kwh") or cfg_rep.get("budget_hours")) else
                   "--budget" if budget else "set one with --budget 0.5kWh or --budget 2h, or report.budget_kwh in the config")
    return render("recommendation.html.j2", message="", tasks=tasks, spread=spread, alpha=ALPHA,
                  budget=budget.describe(), budget_from=budget_from)


def _auc(a, lo, hi) -> str:
    if not np.isfinite(a):
        return "—"
    return f"{a:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "")


@section("whole_cost", 75)
def whole_cost_section(ctx: ReportContext) -> str:
    wc = ctx.whole_costs
    if wc is None:
        return render("whole_cost.html.j2", message="costs.csv is missing from the run directory, so the whole cost "
                      "per strategy is not shown.", n_seeds=0, run_total_energy="", run_total_time="", marker="", table="")
    shown = pd.DataFrame({"strategy": wc["strategy"]})
    for kind, label in COST_PARTS:
        if (wc[f"{kind}_seconds"] > 0).any() or (wc[f"{kind}_kwh"] > 0).any():
            shown[f"{label}: time"] = wc[f"{kind}_seconds"].map(_sec)
            shown[f"{label}: energy"] = wc[f"{kind}_kwh"].map(fmt_energy)
    shown["standalone total: time"] = wc["seconds"].map(_sec)
    shown["standalone total: energy"] = wc["kwh"].map(fmt_energy)
    shown["as run: time"] = wc["run_seconds"].map(_sec)
    shown["as run: energy"] = wc["run_kwh"].map(fmt_energy)
    shown["trainable parameters"] = wc["trainable"]
    from .cost_sections import _source_label

    shown["energy source"] = wc["energy_sources"].map(lambda v: ", ".join(_source_label(x) for x in str(v).split(";") if x) or "—")
    whole = suite_cost(ctx.rf.costs)
    return render("whole_cost.html.j2", message="", n_seeds=int(wc["n_seeds"].max()) if len(wc) else 0,
                  run_total_energy=fmt_energy(whole["kwh"]) if ctx.rf.costs["kwh"].notna().any() else "energy not recorded",
                  run_total_time=_sec(whole["seconds"]), marker=energy_footnote(ctx),
                  table=_table(shown, left=("strategy",), fmt={"energy source": str},
                               row_class=lambda r: ""))


def _sec(v) -> str:
    """Seconds, 3 significant figures, with the unit (s, or h beyond an hour)."""
    if v is None or not np.isfinite(float(v)):
        return "—"
    v = float(v)
    if v >= 3600:
        return fmt_hours(v)
    return "0 s" if v == 0 else f"{float(f'{v:.3g}'):g} s"
