"""The whole cost of each strategy: pre-training, target fine-tuning, feature extraction, heads and
evaluation — standalone (what the strategy would cost run alone) and as run in the suite.

* **standalone**: every step the strategy uses (its own and those it shares, ``shared_by``), at the
  step's ``standalone_*`` figures (a reused frozen-prefix cache charged to every step that uses it,
  docs/run-directory.md), summed per seed, mean over seeds. This is what the ranking, the
  recommendation and the Pareto plot use: it does not depend on which strategies ran beside it.
* **as run**: the rows the strategy itself ran (``strategy`` column), at the run's actual figures
  (``seconds``, ``kwh``), summed per seed, mean over seeds. Summed over strategies and seeds this is
  the run's total: a shared step or cache is counted once, for the strategy that ran it first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .costs import expand_shared

__all__ = ["COST_PARTS", "whole_costs"]

#: step kinds of costs.csv → the column group of the whole-cost table, in pipeline order
COST_PARTS = (("pretrain", "pre-training"), ("finetune", "target fine-tuning"), ("extract", "feature extraction"),
              ("head", "heads"), ("evaluate", "evaluation"))


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def whole_costs(costs: pd.DataFrame | None, order: list[str]) -> pd.DataFrame:
    """One row per strategy (``order`` first, then any other in ``costs.csv``).

    Columns: ``strategy``; ``<kind>_seconds`` and ``<kind>_kwh`` for every kind of :data:`COST_PARTS`
    (standalone, mean over seeds; 0 where the strategy has no such step); ``seconds``, ``kwh``
    (standalone totals); ``run_seconds``, ``run_kwh`` (as run); ``trainable`` (the most parameters
    any of its training phases trains, 0 when it trains none); ``energy_sources``; ``n_seeds``.
    A strategy in ``order`` but without rows (an ImageNet baseline in a run that did not record
    its features) costs 0. Other step kinds in ``costs.csv`` count in the totals only.

    >>> whole_costs(pd.read_csv("run/costs.csv"), ["ImageNet", "DA"])  # doctest: +SKIP
    """
    kinds = [k for k, _ in COST_PARTS]
    cols = (["strategy"] + [f"{k}_{m}" for k in kinds for m in ("seconds", "kwh")]
            + ["seconds", "kwh", "run_seconds", "run_kwh", "trainable", "energy_sources", "n_seeds"])
    names = list(dict.fromkeys(list(order) + ([] if costs is None else list(costs["strategy"].astype(str)))))
    rec = {s: dict.fromkeys(cols, 0.0) | {"strategy": s, "energy_sources": "", "n_seeds": 0} for s in names}
    if costs is not None and len(costs):
        steps = sorted(set(costs["step"].astype(str)))
        ex = expand_shared(costs, tuple(steps))
        for s in dict.fromkeys(ex["strategy"].astype(str)):  # a user named only in `shared_by` (e.g. a search)
            if s not in rec:
                names.append(s)
                rec[s] = dict.fromkeys(cols, 0.0) | {"strategy": s, "energy_sources": "", "n_seeds": 0}
        ex["seconds"], ex["kwh"] = _num(ex, "seconds"), _num(ex, "kwh")
        n_seeds = ex.groupby("strategy")["seed"].nunique()
        for (s, kind), g in ex.groupby(["strategy", "step"], sort=False):
            per_seed = g.groupby("seed")[["seconds", "kwh"]].sum(min_count=1)
            # a seed without this kind of step contributes 0, so divide by all of the strategy's seeds
            mean = per_seed.sum(min_count=1) / max(int(n_seeds[s]), 1)  # NaN where no row recorded it
            if kind in kinds:
                rec[s][f"{kind}_seconds"], rec[s][f"{kind}_kwh"] = float(mean["seconds"]), float(mean["kwh"])
            for m in ("seconds", "kwh"):  # a step without a figure makes the total unknown, not smaller
                rec[s][m] += float(mean[m])
        for s, g in ex.groupby("strategy", sort=False):
            rec[s]["n_seeds"] = int(g["seed"].nunique())
            rec[s]["energy_sources"] = ";".join(sorted(set(g["energy_source"].astype(str)) - {"", "nan"}))
            train = g[g["step"].isin(["pretrain", "finetune"])]
            tr = _num(train, "params_trainable")
            rec[s]["trainable"] = float(tr.max()) if tr.notna().any() else 0.0
        own = costs.assign(_s=_num(costs, "seconds"), _k=_num(costs, "kwh"))
        for s, g in own.groupby(own["strategy"].astype(str), sort=False):
            per_seed = g.groupby("seed")[["_s", "_k"]].sum(min_count=1)
            n = max(rec[s]["n_seeds"], len(per_seed), 1)
            rec[s]["run_seconds"] = float(per_seed["_s"].sum(min_count=1) / n)
            rec[s]["run_kwh"] = float(per_seed["_k"].sum(min_count=1) / n)
    table = pd.DataFrame([rec[s] for s in names], columns=cols)
    if costs is not None and len(costs) and _num(costs, "kwh").isna().all():
        # the run recorded no energy at all (track_energy off): unknown, also for strategies without rows
        table[[c for c in cols if c.endswith("kwh")]] = np.nan
    table["n_seeds"] = table["n_seeds"].astype(int)
    return table
