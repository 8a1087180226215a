"""External-first ranking and the budgeted recommendation (issue 16, point 1).

The question a user brings to the report is *which strategy should I use, for what it costs*.
Mehmood et al.'s point is robustness to another scanner or site, so strategies are ranked by their
final AUC on the **external** set (the development test split when a task has none), with the
development AUC and the dip beside it, and their **whole** standalone cost
(:func:`medapt.report.whole_cost.whole_costs`: pre-training, fine-tuning, features, heads).

* :func:`parse_budget` / :class:`Budget` — ``"0.5kWh"``, ``"500Wh"``, ``"2h"``, ``"90min"``,
  ``"2:30"``; from ``report.budget_kwh`` / ``report.budget_hours`` in ``config.yaml`` or
  ``medapt report --budget``.
* :func:`ranking` — per task, one row per strategy: rank, external and development AUC with their
  95 % CIs, dip, cost, DeLong p against the best on each split.
* :func:`recommendation` — per task: the best strategy, the best within the budget (or, when none
  fits, the cheapest), the cheapest not significantly worse than the best; each row with its
  sentence. ``medapt.report.recommendation_table(run_dir)`` reads a run directory and returns it;
  ``build_report`` writes it as ``recommendation.csv``.

With several seeds every AUC is the mean over seeds (CI: t-interval over seeds) and the
significance is the paired t-test over seeds (DeLong's test on the first common seed beside it);
with one seed the CI is the bootstrap over test images and the test DeLong's.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, MedaptError
from ..evaluate.delong import delong_test
from ..evaluate.summary import paired_ttest, t_interval
from .html import fmt_energy, fmt_hours
from .results import group_bootstrap, image_bootstrap

__all__ = ["Budget", "parse_budget", "budget_of", "primary_head", "delong_pair", "ranking", "recommendation",
           "ALPHA"]

#: significance level of "the difference is (not) significant"
ALPHA = 0.05


@dataclass(frozen=True)
class Budget:
    """An energy and/or time budget per strategy (whole standalone cost, mean over seeds)."""

    kwh: float | None = None
    hours: float | None = None

    def __bool__(self) -> bool:
        return self.kwh is not None or self.hours is not None

    def allows(self, kwh: float, seconds: float) -> bool | None:
        """Whether a cost fits; ``None`` when a figure the budget needs was not recorded (NaN)."""
        checks = [(kwh, self.kwh), (seconds / 3600 if seconds is not None else np.nan, self.hours)]
        checks = [(v, lim) for v, lim in checks if lim is not None]
        if any(not np.isfinite(v) for v, _ in checks):
            return None
        return all(v <= lim for v, lim in checks)

    def describe(self) -> str:
        parts = ([fmt_energy(self.kwh)] if self.kwh is not None else []) + (
            [fmt_hours(self.hours * 3600)] if self.hours is not None else [])
        return " and ".join(parts) if parts else "no budget"


_UNITS = {"kwh": ("kwh", 1.0), "wh": ("kwh", 1e-3), "mwh": ("kwh", 1e-6), "h": ("hours", 1.0),
          "hr": ("hours", 1.0), "hours": ("hours", 1.0), "min": ("hours", 1 / 60), "m": ("hours", 1 / 60),
          "s": ("hours", 1 / 3600)}


def parse_budget(text: str | float | Budget | None) -> Budget:
    """``"0.5kWh"``, ``"500 Wh"``, ``"2h"``, ``"90min"``, ``"2:30"`` (hours:minutes) → :class:`Budget`.

    Several parts joined by ``,`` or ``+`` set both (``"1kWh,3h"``). A bare number is refused (kWh or
    hours?). Raises :class:`~medapt.errors.ConfigError` naming the value and the accepted forms.

    >>> parse_budget("0.5kWh"), parse_budget("2:30").hours
    (Budget(kwh=0.5, hours=None), 2.5)
    """
    if text is None or isinstance(text, Budget):
        return text or Budget()
    kwh = hours = None
    for part in re.split(r"[,+]", str(text)):
        p = part.strip().lower().replace(" ", "")
        if not p:
            continue
        m = re.fullmatch(r"(\d+):([0-5]\d)", p)
        if m:
            hours = int(m.group(1)) + int(m.group(2)) / 60
            continue
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?([a-z]+)", p)
        if not m or m.group(2) not in _UNITS:
            raise ConfigError(f"budget {text!r}: cannot read {part.strip()!r}; give a number with its unit, "
                              "e.g. 0.5kWh, 500Wh, 2h, 90min or 2:30 (hours:minutes), or both as 1kWh,3h.")
        kind, scale = _UNITS[m.group(2)]
        value = float(p[: -len(m.group(2))]) * scale
        if not value > 0:
            raise ConfigError(f"budget {text!r}: must be positive.")
        if kind == "kwh":
            kwh = value
        else:
            hours = value
    return Budget(kwh, hours)


def budget_of(config: dict | None, override=None) -> Budget:
    """The budget: ``override`` (``--budget``) over ``report.budget_kwh`` / ``report.budget_hours``
    of ``config.yaml``; an override of one kind keeps the config's other kind."""
    rep = (config or {}).get("report")
    rep = rep if isinstance(rep, dict) else {}
    base = Budget(float(rep["budget_kwh"]) if rep.get("budget_kwh") is not None else None,
                  float(rep["budget_hours"]) if rep.get("budget_hours") is not None else None)
    o = parse_budget(override)
    return Budget(o.kwh if o.kwh is not None else base.kwh, o.hours if o.hours is not None else base.hours)


def primary_head(summ: pd.DataFrame, task: str, config: dict | None) -> str | None:
    """The head the recommendation uses: the first of ``downstream.heads`` in ``config.yaml`` with
    rows for ``task``, else the first frozen-feature head in the head registry's order (``model1``,
    Mehmood et al.'s, first) — never ``own``, which only strategies with target phases have."""
    heads = list(dict.fromkeys(summ[summ["task"] == task]["head"].astype(str)))
    conf = ((config or {}).get("downstream") or {}).get("heads") if isinstance((config or {}).get("downstream"), dict) else None
    for h in conf or []:
        if str(h) in heads:
            return str(h)
    try:
        from ..evaluate import HEADS

        known = [h for h in HEADS.names() if h in heads]
    except Exception:  # the registry is optional here: a report reads files only
        known = []
    frozen = known + [h for h in heads if h != "own" and h not in known] or heads
    return frozen[0] if frozen else None


def delong_pair(pred: pd.DataFrame | None, task: str, head: str, split: str, a: str, b: str) -> dict:
    """DeLong's test of ``a`` against ``b`` on the final-epoch predictions of one split and the first
    seed both have. Returns :func:`~medapt.evaluate.delong.delong_test`'s dict plus ``seed``, or
    ``{"note": why not}``."""
    if pred is None:
        return {"note": "predictions.csv is missing"}
    p = pred[(pred["task"].astype(str) == task) & (pred["head"].astype(str) == head) & (pred["split"].astype(str) == split)]
    seeds = sorted(set(p[p["strategy"] == a]["seed"]) & set(p[p["strategy"] == b]["seed"]))
    if not seeds:
        return {"note": f"no {split} predictions for both"}
    seed = seeds[0]
    score_cols = [c for c in p.columns if c.startswith("score_")]
    pa = p[(p["strategy"] == a) & (p["seed"] == seed)].set_index("index").sort_index()
    pb = p[(p["strategy"] == b) & (p["seed"] == seed)].set_index("index").sort_index()
    common = pa.index.intersection(pb.index)
    pa, pb = pa.loc[common], pb.loc[common]
    cols = [c for c in score_cols if pa[c].notna().all() and pb[c].notna().all()]
    try:
        if not (pa["label"].to_numpy() == pb["label"].to_numpy()).all():
            return {"note": "labels differ between the two prediction sets"}
        r = delong_test(pa["label"].to_numpy(), pa[cols].to_numpy(float), pb[cols].to_numpy(float))
    except (MedaptError, ValueError) as exc:
        return {"note": f"not computed: {exc}"}
    return dict(r, seed=seed)


def _bootstrap(pred: pd.DataFrame | None, strategy: str, task: str, head: str, split: str) -> tuple[float, float]:
    if pred is None:
        return np.nan, np.nan
    g = pred[(pred["strategy"] == strategy) & (pred["task"].astype(str) == task) & (pred["head"].astype(str) == head)
             & (pred["split"].astype(str) == split)]
    if g.empty:
        return np.nan, np.nan
    if pred["seed"].nunique() == 1:  # the intervals the results tables computed (image_bootstrap)
        b = image_bootstrap(pred).get((str(strategy), str(head), str(task), str(split)))
        return (np.nan, np.nan) if b is None else (float(b["ci_low"]), float(b["ci_high"]))
    g = g[g["seed"] == g["seed"].min()]
    try:
        b = group_bootstrap(g)
        return float(b["ci_low"]), float(b["ci_high"])
    except (MedaptError, ValueError):
        return np.nan, np.nan


def _split_stats(s: pd.DataFrame, strategy: str, split: str, pred, task, head) -> tuple[float, float, float, int]:
    v = s[(s["strategy"] == strategy) & (s["split"] == split)]["final_auc"].to_numpy(float)
    v = v[np.isfinite(v)]
    if not v.size:
        return np.nan, np.nan, np.nan, 0
    if v.size > 1:
        lo, hi = t_interval(v)
    else:
        lo, hi = _bootstrap(pred, strategy, task, head, split)
    return float(v.mean()), lo, hi, int(v.size)


def _ttest_p(summ, a, b, split, head, task) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(paired_ttest(summ, a, b, column="final_auc", split=split, head=head, task=task)["p_value"])
        except (MedaptError, ValueError, KeyError):
            return np.nan


RANK_COLUMNS = ["task", "head", "ranked_on", "rank", "strategy", "auc_external", "external_ci_low", "external_ci_high",
                "auc_dev", "dev_ci_low", "dev_ci_high", "dip", "kwh", "seconds", "within_budget",
                "p_vs_best_external", "delong_p_external", "p_vs_best_dev", "delong_p_dev", "n_seeds"]


def ranking(summ: pd.DataFrame, costs: pd.DataFrame | None, predictions: pd.DataFrame | None,
            config: dict | None = None, budget: Budget | None = None) -> pd.DataFrame:
    """Per task (its :func:`primary_head`): every strategy ranked by mean final external AUC.

    Args:
        summ: :func:`medapt.evaluate.summarize` of ``metrics.csv``.
        costs: :func:`medapt.report.whole_cost.whole_costs` (``kwh``, ``seconds``; standalone).
        predictions: ``predictions.csv`` (CIs with one seed, DeLong's test); may be ``None``.
        budget: marks ``within_budget``.

    Returns:
        :data:`RANK_COLUMNS`. ``ranked_on`` is ``external`` or, for a task without an external set,
        ``test``. ``p_vs_best_*``: the paired t-test over seeds with several seeds, else DeLong's p;
        ``delong_p_*`` always DeLong's (first common seed). CIs: t-interval over seeds, or the
        bootstrap over test images with one seed.
    """
    budget = budget or Budget()
    rows = []
    for task in sorted(summ["task"].astype(str).unique()):
        head = primary_head(summ, task, config)
        if head is None:
            continue
        s = summ[(summ["task"] == task) & (summ["head"] == head)]
        ranked_on = "external" if (s["split"] == "external").any() else "test"
        recs = []
        for strat in dict.fromkeys(s["strategy"]):
            ext = _split_stats(s, strat, "external", predictions, task, head)
            dev = _split_stats(s, strat, "test", predictions, task, head)
            c = costs[costs["strategy"] == strat] if costs is not None else pd.DataFrame()
            kwh = float(c["kwh"].iloc[0]) if len(c) else np.nan
            sec = float(c["seconds"].iloc[0]) if len(c) else np.nan
            recs.append(dict(task=task, head=head, ranked_on=ranked_on, strategy=strat,
                             auc_external=ext[0], external_ci_low=ext[1], external_ci_high=ext[2],
                             auc_dev=dev[0], dev_ci_low=dev[1], dev_ci_high=dev[2], dip=dev[0] - ext[0],
                             kwh=kwh, seconds=sec, within_budget=budget.allows(kwh, sec) if budget else True,
                             n_seeds=max(ext[3], dev[3])))
        t = pd.DataFrame(recs)
        key = "auc_external" if ranked_on == "external" else "auc_dev"
        t = t.sort_values([key, "kwh"], ascending=[False, True], na_position="last", kind="stable").reset_index(drop=True)
        t.insert(3, "rank", np.arange(1, len(t) + 1))
        n = int(t["n_seeds"].max()) if len(t) else 0
        for split, col, key_s in (("external", "external", "auc_external"), ("test", "dev", "auc_dev")):
            valid = t[t[key_s].notna()]
            best = valid.sort_values(key_s, ascending=False, kind="stable")["strategy"].iloc[0] if len(valid) else None
            pv, dl = [], []
            for strat in t["strategy"]:
                if best is None or strat == best or not np.isfinite(t.loc[t["strategy"] == strat, key_s].iloc[0]):
                    pv.append(np.nan)
                    dl.append(np.nan)
                    continue
                d = delong_pair(predictions, task, head, split, best, strat).get("p_value", np.nan)
                dl.append(d)
                pv.append(_ttest_p(summ, best, strat, split, head, task) if n > 1 else d)
            t[f"p_vs_best_{col}"], t[f"delong_p_{col}"] = pv, dl
        rows.append(t)
    return pd.concat(rows, ignore_index=True)[RANK_COLUMNS] if rows else pd.DataFrame(columns=RANK_COLUMNS)


REC_COLUMNS = ["task", "head", "ranked_on", "role", "strategy", "auc", "ci_low", "ci_high", "auc_dev", "dip", "kwh",
               "seconds", "cost_ratio", "p_vs_best", "test_vs_best", "n_seeds", "budget", "sentence"]


def _auc_txt(r, key: str) -> str:
    lo, hi = r[f"{'external' if key == 'auc_external' else 'dev'}_ci_low"], r[f"{'external' if key == 'auc_external' else 'dev'}_ci_high"]
    return f"{r[key]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "")


def _cost_txt(r) -> str:
    kwh = fmt_energy(r["kwh"])
    if kwh != "—":
        return kwh
    sec = float(r["seconds"])
    t = fmt_hours(sec) if sec >= 3600 else f"{float(f'{sec:.3g}'):g} s" if np.isfinite(sec) else "unknown time"
    return f"{t}, energy not recorded"


def _sig(p: float, n_seeds: int, delong_p: float) -> tuple[str, str]:
    if not np.isfinite(p):
        return "cannot be tested here (no paired predictions)", "—"
    word = "is" if p < ALPHA else "is not"
    if n_seeds > 1:
        how = f"paired t-test over {n_seeds} seeds, p = {p:.3g}" + (
            f"; DeLong on one seed, p = {delong_p:.3g}" if np.isfinite(delong_p) else "")
        return f"the difference {word} significant ({how})", "paired t-test"
    return f"the difference {word} significant (DeLong p = {p:.3g})", "DeLong"


def _ratio(best, r) -> tuple[float, str]:
    """How many times ``r``'s cost the best strategy costs: by energy, else (not recorded) by time."""
    for col, what in (("kwh", "cost"), ("seconds", "time")):
        a, b = float(best[col]), float(r[col])
        if np.isfinite(a) and np.isfinite(b) and b > 0:
            return a / b, what
    return np.nan, ""


def recommendation(rank: pd.DataFrame, budget: Budget | None = None) -> pd.DataFrame:
    """Per task, from :func:`ranking`: the rows ``best``, then ``within budget`` (or ``cheapest`` when
    no strategy fits the budget), and ``cheapest not significantly worse``, each with its sentence:

    "X reaches external AUC a [CI] for b kWh; the best overall, Y, reaches c for d kWh (n× the cost)
    — the difference is / is not significant (DeLong p)".
    """
    budget = budget or Budget()
    out = []
    for task, t in rank.groupby("task", sort=True):
        ranked_on = t["ranked_on"].iloc[0]
        key = "auc_external" if ranked_on == "external" else "auc_dev"
        pcol = "p_vs_best_external" if ranked_on == "external" else "p_vs_best_dev"
        dcol = "delong_p_external" if ranked_on == "external" else "delong_p_dev"
        t = t[t[key].notna()]
        if t.empty:
            continue
        where = "external AUC" if ranked_on == "external" else "development test AUC (this task has no external set)"
        best = t.iloc[0]
        n = int(t["n_seeds"].max())
        seeds_txt = f" (means over {n} seeds)" if n > 1 else " (one seed)"
        head = t["head"].iloc[0]

        def row(role, r, sentence, p=np.nan, test=""):
            ratio = _ratio(best, r)[0]
            out.append(dict(task=task, head=head, ranked_on=ranked_on, role=role, strategy=r["strategy"], auc=r[key],
                            ci_low=r["external_ci_low" if key == "auc_external" else "dev_ci_low"],
                            ci_high=r["external_ci_high" if key == "auc_external" else "dev_ci_high"],
                            auc_dev=r["auc_dev"], dip=r["dip"], kwh=r["kwh"], seconds=r["seconds"], cost_ratio=ratio,
                            p_vs_best=p, test_vs_best=test, n_seeds=n, budget=budget.describe(), sentence=sentence))

        row("best", best, f"{best['strategy']} has the highest {where}: {_auc_txt(best, key)} for {_cost_txt(best)}"
            f"{seeds_txt}, head {head}.")

        def versus(r) -> tuple[str, float, str]:
            sig, test = _sig(r[pcol], n, r[dcol])
            ratio, what = _ratio(best, r)
            times = f" ({ratio:.3g}× the {what})" if np.isfinite(ratio) else ""
            return (f"{r['strategy']} reaches {where} {_auc_txt(r, key)} for {_cost_txt(r)}; the best overall, "
                    f"{best['strategy']}, reaches {best[key]:.3f} for {_cost_txt(best)}{times} — {sig}{seeds_txt}.",
                    r[pcol], test)

        unknown = [w for w, col, lim in (("energy", "kwh", budget.kwh), ("time", "seconds", budget.hours))
                   if lim is not None and t[col].isna().all()]
        if budget and unknown:
            out.append(dict(task=task, head=head, ranked_on=ranked_on, role="budget not judged", strategy="",
                            n_seeds=n, budget=budget.describe(),
                            sentence=f"The budget of {budget.describe()} cannot be judged: this run recorded no "
                                     f"{' or '.join(unknown)} per strategy (costs.csv).",
                            **dict.fromkeys(["auc", "ci_low", "ci_high", "auc_dev", "dip", "kwh", "seconds",
                                             "cost_ratio", "p_vs_best"], np.nan), test_vs_best=""))
        elif budget:
            fits = t[t["within_budget"].map(lambda v: v is True)]
            if len(fits) and fits.iloc[0]["strategy"] == best["strategy"]:
                row("within budget", best, f"Within the budget of {budget.describe()}: the best overall, "
                    f"{best['strategy']}, fits it ({_cost_txt(best)}).")
            elif len(fits):
                sentence, p, test = versus(fits.iloc[0])
                row("within budget", fits.iloc[0], f"Within the budget of {budget.describe()}: " + sentence, p, test)
            else:
                by = "kwh" if budget.kwh is not None and t["kwh"].notna().any() else "seconds"
                cheap = t.sort_values(by, kind="stable").iloc[0]
                row("cheapest (no strategy fits the budget)", cheap,
                    f"No strategy fits the budget of {budget.describe()}: the cheapest is {cheap['strategy']} at "
                    f"{_cost_txt(cheap)} ({fmt_hours(cheap['seconds'])}), with {where} {_auc_txt(cheap, key)}.",
                    cheap[pcol])
        ok = t[(t["strategy"] != best["strategy"]) & (t[pcol] >= ALPHA)]
        by = "kwh" if t["kwh"].notna().any() else "seconds"
        if len(ok) and t[by].notna().any():
            cheap = ok.sort_values([by, "seconds"], kind="stable").iloc[0]
            same = [o["strategy"] for o in out if o["task"] == task and o["role"] == "within budget"]
            if np.isfinite(cheap[by]) and cheap[by] < best[by] and cheap["strategy"] not in same:
                sentence, p, test = versus(cheap)
                row("cheapest not significantly worse", cheap, "The cheapest strategy not significantly worse than "
                    "the best: " + sentence, p, test)
    return pd.DataFrame(out, columns=REC_COLUMNS)
