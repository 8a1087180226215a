"""Report sections on the downstream results: summary, tables per task and head, AUC curves,
development-vs-external box plots, AUC vs cost, statistical comparisons."""

from __future__ import annotations

import re
import warnings
import weakref

import numpy as np
import pandas as pd

from ..errors import MedaptError
from ..evaluate.bootstrap import bootstrap_auc_ci
from ..evaluate.summary import aggregate_seeds, censored_median, external_dip, paired_ttest, summarize
from . import figures as F
from .costs import is_measured, pareto_front
from .html import _cell, _e, _fmt, _missing, _slug, _table, _time_cell, fmt_energy
from ._io import RunFiles
from .templating import render
from .sections import ReportContext, _energy_table, _slice_level_datasets, feature_protocol, log, section

#: resamples of the one-seed bootstrap CI over test images
N_BOOT = 2000


#: id(predictions) → (a weak reference to it, its image_bootstrap): the results tables and the
#: recommendation ask for the same intervals; 2,000 resamples per model are computed once
_BOOT_MEMO: dict[int, tuple[weakref.ref, dict]] = {}


def image_bootstrap(pred: pd.DataFrame | None) -> dict:
    """(strategy, head, task, split) → :func:`bootstrap_auc_ci` of the final-epoch predictions.

    For a run with one seed: the interval then comes from the test images (from the patients
    when ``predictions.csv`` has a ``patient`` column), not from seeds. Computed once per
    predictions table (the same object asked again gets the same dict).
    """
    if pred is None or pred.empty:
        return {}
    hit = _BOOT_MEMO.get(id(pred))
    if hit is not None and hit[0]() is pred:
        return hit[1]
    out = _image_bootstrap(pred)
    for k in [k for k, (ref, _) in _BOOT_MEMO.items() if ref() is None]:  # tables no longer alive
        del _BOOT_MEMO[k]
    _BOOT_MEMO[id(pred)] = (weakref.ref(pred), out)
    return out


def _image_bootstrap(pred: pd.DataFrame) -> dict:
    out: dict = {}
    for key, g in pred.groupby(["strategy", "head", "task", "split"], sort=False):
        key = tuple(str(k) for k in key)
        try:
            out[key] = group_bootstrap(g)
        except (MedaptError, ValueError) as exc:
            log.info("report: no bootstrap CI for %s: %s", key, exc)
    return out


def group_bootstrap(g: pd.DataFrame) -> dict:
    """:func:`bootstrap_auc_ci` of one model's final-epoch predictions on one split (rows of
    ``predictions.csv``): the ``score_*`` columns present in every row, the ``label_<i>`` targets
    when the task is multi-label, patients as the resampling unit when known. Raises
    :class:`MedaptError` / ``ValueError`` when the AUC is undefined."""
    cols = [c for c in g.columns if c.startswith("score_") and g[c].notna().all()]
    lcols = [c for c in g.columns if re.fullmatch(r"label_\d+", c) and g[c].notna().any()]
    if lcols:
        y, task_type = g[lcols].to_numpy(float), "multilabel"
    else:
        y, task_type = g["label"].to_numpy(), "binary" if len(cols) == 2 else "multiclass"
    groups = g["patient"].to_numpy(dtype=object) if "patient" in g else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bootstrap_auc_ci(y, g[cols].to_numpy(float), task_type, groups=groups, n_boot=N_BOOT, seed=0)


def summary_tables(rf: RunFiles, order: list[str], threshold: float) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Per task and head: the summary table. Returns (html, summary, aggregated)."""
    summ = summarize(rf.metrics, threshold=threshold)
    if summ.empty:
        return _missing("metrics.csv has no AUC rows, so there is nothing to summarise."), summ, summ
    agg = aggregate_seeds(summ[["strategy", "seed", "head", "task", "split", "best_auc", "final_auc",
                                "epoch_to_threshold", "seconds_to_threshold"]])
    dip = external_dip(summ)
    dip_agg = aggregate_seeds(dip[["strategy", "seed", "head", "task", "dip_best", "dip_final"]]) if len(dip) else None
    n_seeds = int(summ["seed"].nunique())
    boot = image_bootstrap(rf.predictions) if n_seeds == 1 else {}
    if n_seeds > 1:
        spread = (f"Mean ± s.d. over {n_seeds} seeds, [95% t-interval over seeds of the mean "
                  f"({n_seeds - 1} degrees of freedom)].")
    elif boot:
        unit = "patients" if any(b["unit"] == "patient" for b in boot.values()) else "test images"
        spread = (f"One seed: no spread over seeds is available; [95% CI] of the final AUC by percentile bootstrap "
                  f"over {unit} ({N_BOOT:,} class-stratified resamples of the final-epoch predictions), "
                  "i.e. the uncertainty of the test set only, not of training.")
    else:
        spread = "One seed: no spread over seeds is available."
    parts = [f'<p class="note">{feature_protocol(rf.config)} Rows ranked by the final AUC on the external set (the '
             f"development test split for a task without one); the best in bold. Threshold {threshold:g}. "
             "Best = highest AUC over epochs "
             "(chosen on the split itself, so optimistic); final = AUC after the last epoch. Dip = development − external "
             "(positive: worse on the external set). "
             + ("Epoch and seconds to the threshold: the median over seeds with the seeds that never reached it counted as censored (the first time by "
                "which at least half of the seeds had reached it; “not reached” when fewer than half did), "
                "and how many seeds reached it. " if n_seeds > 1 else "") + spread + "</p>"]
    for (task, head), _ in agg.groupby(["task", "head"], sort=True):
        rows = []
        a = agg[(agg["task"] == task) & (agg["head"] == head)]
        # rows ranked by the external set's mean final AUC (the development test split without one)
        rank_split = "external" if (a["split"] == "external").any() else "test"
        ranked = list(a[a["split"] == rank_split].sort_values("final_auc_mean", ascending=False, kind="stable")["strategy"])
        for s in ranked + [x for x in order if x in set(a["strategy"]) and x not in ranked]:
            row = {"strategy": _e(s)}
            for split, lab in (("external", "external"), ("test", "test")):
                r = a[(a["strategy"] == s) & (a["split"] == split)]
                if r.empty:
                    continue
                r = r.iloc[0]
                row[f"best AUC ({lab})"] = _cell(r.best_auc_mean, r.best_auc_std, r.best_auc_ci_low, r.best_auc_ci_high, r.n_seeds)
                row[f"final AUC ({lab})"] = _cell(r.final_auc_mean, r.final_auc_std, r.final_auc_ci_low, r.final_auc_ci_high, r.n_seeds)
                b = boot.get((str(s), str(head), str(task), split))
                if b is not None and np.isfinite(r.final_auc_mean) and np.isfinite(b["ci_low"]):
                    row[f"final AUC ({lab})"] += f"<br><span class=note>[{b['ci_low']:.3f}, {b['ci_high']:.3f}]</span>"
                row[f"epoch to {threshold:g} ({lab})"] = _time_cell(r.epoch_to_threshold_median,
                                                                     r.epoch_to_threshold_reached, r.n_seeds, 0)
                row[f"seconds to {threshold:g} ({lab})"] = _time_cell(r.seconds_to_threshold_median,
                                                                       r.seconds_to_threshold_reached, r.n_seeds, 2)
            if dip_agg is not None:
                d = dip_agg[(dip_agg["strategy"] == s) & (dip_agg["task"] == task) & (dip_agg["head"] == head)]
                if len(d):
                    d = d.iloc[0]
                    row["dip (best)"] = _cell(d.dip_best_mean, d.dip_best_std, d.dip_best_ci_low, d.dip_best_ci_high, d.n_seeds)
                    row["dip (final)"] = _cell(d.dip_final_mean, d.dip_final_std, d.dip_final_ci_low, d.dip_final_ci_high, d.n_seeds)
            rows.append(row)
        t = pd.DataFrame(rows).fillna("—")
        best_s = ranked[0] if ranked else None
        parts.append(f"<h3>{_e(task)} — head {_e(head)}</h3>")
        parts.append(_table(t, left=("strategy",), fmt={c: (lambda v: str(v)) for c in t.columns},
                            row_class=lambda r: "best" if best_s is not None and r["strategy"] == _e(best_s) else ""))
    return "\n".join(parts), summ, agg


def _comparisons(rf: RunFiles, summ: pd.DataFrame, agg: pd.DataFrame) -> list[dict]:
    """Best strategy (mean final AUC) vs every other, on the external set and on the development test
    split: DeLong on one seed, paired t-test over seeds. One dict (task, head, where, table) per group."""
    if summ.empty:
        return []
    groups = []
    n_seeds = summ["seed"].nunique()
    for split, word in (("external", "external set"), ("test", "development test split")):
        for (task, head), a in agg[agg["split"] == split].groupby(["task", "head"], sort=True):
            a = a.sort_values("final_auc_mean", ascending=False)
            if len(a) < 2:
                continue
            ref = a["strategy"].iloc[0]
            rows = []
            for other in a["strategy"].iloc[1:]:
                row = {"reference": ref, "strategy": other}
                if rf.predictions is not None:
                    row.update(_delong_row(rf.predictions, task, head, ref, other, split=split))
                if n_seeds > 1:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        t = paired_ttest(summ, ref, other, column="final_auc", split=split, head=head, task=task)
                    row["t-test Δ final AUC"] = _fmt(t["mean_diff"])
                    row["t-test p"] = _fmt(t["p_value"], 3)
                    row["t-test seeds"] = str(t["n"])
                rows.append(row)
            groups.append(dict(task=task, head=head, where=word,
                               table=_table(pd.DataFrame(rows).fillna("—"), left=("reference", "strategy", "DeLong note"))))
    return groups


def _delong_row(pred: pd.DataFrame, task: str, head: str, a: str, b: str, split: str = "test") -> dict:
    from .recommend import delong_pair

    r = delong_pair(pred, task, head, split, a, b)
    if "note" in r:
        return {"DeLong note": r["note"]}
    return {"DeLong seed": str(r["seed"]), "AUC ref": _fmt(r["auc_a"]), "AUC other": _fmt(r["auc_b"]),
            "Δ [95% CI]": f"{_fmt(r['diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
            "DeLong p": _fmt(r["p_value"], 3)}


def _pareto_points(summ: pd.DataFrame, costs: pd.DataFrame, task: str, splits: list[str],
                   head: str | None = None) -> pd.DataFrame:
    s = summ[summ["task"] == task]
    if head is not None:  # the recommendation's head, so plot, summary and recommendation agree
        s = s[s["head"] == head]
    pts = costs.copy()
    for split in splits:
        m = s[s["split"] == split].groupby("strategy")["final_auc"].mean()
        pts[f"auc_{split}"] = pts["strategy"].map(m)
    keep = np.zeros(len(pts), bool)
    for split in splits:
        keep |= pts[f"auc_{split}"].notna().to_numpy()
    return pts[keep].reset_index(drop=True)


def cost_points(ctx: ReportContext) -> pd.DataFrame | None:
    """Per strategy the costs the Pareto plot and summary use: ``kwh`` and ``seconds`` (whole
    standalone cost), ``trainable`` (largest training phase), ``params`` (final model) and
    ``latency_ms`` (per image, batch 1, from ``inference.csv``). ``None`` without costs.csv."""
    wc, sc = ctx.whole_costs, ctx.strategy_costs
    if wc is None or sc is None:
        return None
    pts = wc[["strategy", "kwh", "seconds", "trainable", "n_seeds"]].copy()
    pts["params"] = pts["strategy"].map(sc.set_index("strategy")["params"])
    pts["energy_sources"] = wc["energy_sources"]
    inf = ctx.rf.inference
    if inf is not None:
        lat = [c for c in inf.columns if re.fullmatch(r"latency_ms_\w+_b1", c)] or \
              [c for c in inf.columns if c.startswith("latency_ms")]
        if lat:
            pts["latency_ms"] = pts["strategy"].map(pd.to_numeric(inf[lat[0]], errors="coerce")
                                                    .groupby(inf["strategy"]).mean())
    if pts["kwh"].isna().all() or not (pts["kwh"] > 0).any():
        pts["kwh"] = np.nan  # energy not recorded: no energy panel, rather than every strategy at 0
    return pts


def _front_split(summ: pd.DataFrame, task: str) -> str:
    return "external" if (summ[summ["task"] == task]["split"] == "external").any() else "test"


def _plain_summary(rf: RunFiles, summ: pd.DataFrame, dip: pd.DataFrame, sc: pd.DataFrame | None,
                   threshold: float, ctx: ReportContext | None = None) -> str:
    from .recommend import primary_head

    items = []
    for task in sorted(summ["task"].unique()):
        head = primary_head(summ, task, rf.config)
        s = summ[(summ["task"] == task) & (summ["head"] == head)]
        bits = []
        for split, word in (("external", "external set"), ("test", "development test split")):
            m = s[s["split"] == split].groupby("strategy")["final_auc"].mean().dropna()
            if len(m):
                bits.append(f"on the {word} <b>{_e(m.idxmax())}</b> has the highest final AUC ({m.max():.3f})")
        txt = (f"<b>{_e(task)}</b> (head {_e(head)}): " + ("; ".join(bits) if bits else
               "no AUC values on the test or external split") + ".")
        d = dip[(dip["task"] == task) & (dip["head"] == head)].groupby("strategy")["dip_final"].mean().dropna() if len(dip) else pd.Series(dtype=float)
        if len(d):
            def change(v: float) -> str:
                return (f"{v:+.3f}, a loss on the external set" if v > 0 else
                        f"{v:+.3f}, a gain on the external set" if v < 0 else "no change")
            txt += (" Development→external dip (development − external final AUC): smallest for "
                    f"{_e(d.idxmin())} ({change(d.min())}), largest for {_e(d.idxmax())} ({change(d.max())}).")
        # censored median over heads and seeds: a run that never reached it counts, as "later than all"
        reached = s[(s["split"] == "test")].groupby("strategy")["seconds_to_threshold"].agg(censored_median).dropna()
        if len(reached):
            txt += (f" Fastest to reach AUC {threshold:g} on the test split: {_e(reached.idxmin())} "
                    f"(median {reached.min():.2f} s of head training over its runs, those that never reached it "
                    "counted as censored).")
        if sc is not None:
            split = _front_split(summ, task)
            pts = _pareto_points(summ, sc, task, [split], head)
            fronts = []
            for cost, word in (("kwh", "energy"), ("trainable", "trainable parameters"), ("latency_ms", "latency"),
                               ("seconds", "time")):
                if cost in pts and np.isfinite(pts[cost].to_numpy(float)).any():
                    mask = pareto_front(pts[cost], pts[f"auc_{split}"])
                    fronts.append(f"by {word}: " + ", ".join(_e(x) for x in pts["strategy"][mask]))
            if fronts:
                where = "external set" if split == "external" else "development test split (no external set)"
                txt += (f" Pareto-optimal strategies (no other is both cheaper and better on the {where}; whole cost) — "
                        + "; ".join(fronts) + ".")
        items.append(f"<li>{txt}</li>")
    notes = []
    n_seeds = summ["seed"].nunique()
    if n_seeds == 1:
        notes.append("All results come from one seed, so small differences between strategies may be noise.")
    if rf.costs is not None and len(rf.costs):
        src = set(rf.costs["energy_source"])
        est = sorted(x for x in src if not is_measured(x) and x not in ("none", "", "nan"))
        if est:
            table, _ = _energy_table(rf)
            ga = (f" Green Algorithms figures use constant table {_e(table)}." if table and
                  any("green-algorithms" in x for x in est) else "")
            from .decision import energy_footnote

            notes.append("Energy figures include estimates (" + ", ".join(_e(x) for x in est) + "), not measurements."
                         + ga + (energy_footnote(ctx) if ctx is not None else ""))
    for line in _slice_level_datasets(rf.config):
        notes.append(line[0].upper() + line[1:])
    if rf.config_text and re.search(r"\bphantom\b", rf.config_text):
        notes.append("This run uses the built-in synthetic phantom data: it shows that the pipeline works, "
                     "not which strategy is best for real MRI.")
    return ('<div class="summary"><ul>' + "".join(items) + "</ul>"
            + "".join(f"<p>{n}</p>" for n in notes) + "</div>")




# ----------------------------------------------------------------------------- sections


@section("summary", 10)
def summary_section(ctx: ReportContext) -> str:
    rf = ctx.rf
    messages, summary = [], ""
    if rf.metrics is None:
        messages.append("metrics.csv is missing from the run directory, so there are no downstream results: no "
                        "summary, curves, box plots or AUC-vs-cost plot. Run `medapt run` to completion to produce it.")
        return render("summary.html.j2", messages=messages, summary="")
    if len(ctx.summ):
        summary = _plain_summary(rf, ctx.summ, ctx.dip, cost_points(ctx), ctx.threshold, ctx)
    if rf.costs is None:
        messages.append("costs.csv is missing from the run directory, so no costs, Pareto-optimal strategies or cost "
                        "tables can be shown.")
    return render("summary.html.j2", messages=messages, summary=summary)


@section("results", 20)
def results_section(ctx: ReportContext) -> str:
    return "" if ctx.results is None else render("results.html.j2", tables=ctx.results[0])


@section("curves", 30)
def curves_section(ctx: ReportContext) -> str:
    if ctx.rf.metrics is None:
        return ""
    auc = ctx.rf.metrics[ctx.rf.metrics["metric"] == "auc"]
    curves = []
    for (task, head), g in auc.groupby(["task", "head"], sort=True):
        strategies = [s for s in ctx.order if s in set(g["strategy"])]
        curves.append(ctx.figs.add_figure(_slug("auc_curves", task, head),
                                          F.auc_curves(g, strategies, f"{task} — head {head}", ctx.threshold, as_figure=True),
                                          f"ROC-AUC per training epoch, task {task}, head {head} "
                                          f"(cf. Mehmood et al., Figs 5–10). Dashed line: threshold {ctx.threshold:g}."))
    return render("curves.html.j2", figures=curves)


@section("robustness", 40)
def robustness_section(ctx: ReportContext) -> str:
    if ctx.rf.metrics is None:
        return ""
    auc = ctx.rf.metrics[ctx.rf.metrics["metric"] == "auc"]
    boxes = []
    for (task, head), g in auc.groupby(["task", "head"], sort=True):
        strategies = [s for s in ctx.order if s in set(g["strategy"])]
        if {"test", "external"} <= set(g["split"]):
            boxes.append(ctx.figs.add_figure(_slug("boxplot", task, head),
                                             F.robustness_boxplot(g, strategies, f"{task} — head {head}", as_figure=True),
                                             f"Per-epoch ROC-AUC on the development test split vs the external set, "
                                             f"task {task}, head {head}; whiskers at the 1st and 99th percentiles "
                                             "(cf. Mehmood et al., Figs 11–12)."))
    return render("robustness.html.j2", figures=boxes)


@section("pareto", 50)
def pareto_section(ctx: ReportContext) -> str:
    if ctx.rf.metrics is None:
        return ""
    summ, sc, par = ctx.summ, cost_points(ctx), []
    budget = ctx.budget
    if sc is not None and len(summ):
        for task in sorted(summ["task"].unique()):
            present = set(summ[summ["task"] == task]["split"])
            splits = [s for s in ("external", "test") if s in present]
            from .recommend import primary_head

            head = primary_head(summ, task, ctx.rf.config)
            pts = _pareto_points(summ, sc, task, splits, head)
            if pts.empty:
                continue
            bk = getattr(budget, "kwh", None)
            par.append(ctx.figs.add_figure(
                _slug("pareto", task),
                F.pareto_plot(pts, f"{task} (head {head}): final AUC vs whole cost", splits, budget_kwh=bk, as_figure=True),
                f"Final-epoch ROC-AUC (head {head}, mean over seeds) of each strategy for task {task}, the external set "
                "first, against its whole standalone cost — energy of pre-training, fine-tuning, features and heads "
                "(kWh) —, the most parameters any of its phases trains, and its inference latency per image. "
                "Outlined points and the dashed line: the Pareto front (cf. Mehmood et al., Fig. B1)"
                + (f"; dotted red line: the budget of {budget.describe()}" if bk is not None else "") + "."))
            pt = pts.copy()
            fs = _front_split(summ, task)
            pt[f"pareto by energy ({fs})"] = (np.where(pareto_front(pt["kwh"], pt[f"auc_{fs}"]), "yes", "")
                                              if pt["kwh"].notna().any() else "—")
            pt["kwh"] = pt["kwh"].map(fmt_energy)
            pt = pt.rename(columns={"kwh": "energy (whole)", "seconds": "seconds (whole)"})
            par.append(_table(pt[[c for c in pt.columns if c not in ("n_seeds",)]],
                              left=("strategy", "energy_sources", f"pareto by energy ({fs})")))
    return render("pareto.html.j2", blocks=par,
                  message="costs.csv is missing from the run directory, so the AUC-vs-cost plot is not shown."
                  if ctx.rf.costs is None else "No strategy has both costs and AUC values.")


@section("comparisons", 60)
def comparisons_section(ctx: ReportContext) -> str:
    if ctx.rf.metrics is None or ctx.summ is None or ctx.summ.empty:
        return ""
    return render("comparisons.html.j2", groups=_comparisons(ctx.rf, ctx.summ, ctx.agg),
                  has_predictions=ctx.rf.predictions is not None)
