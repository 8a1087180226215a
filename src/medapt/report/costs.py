"""Cost tables from ``costs.csv`` and the Pareto front of AUC against cost.

Costs of a strategy are the sum of its training rows — ``pretrain`` (Mehmood et al., Appendix B:
runtime and energy of the DAPT phases) and ``finetune`` (target phases). A shared step (e.g. phase 1, which every full-backbone strategy
shares) counts for every strategy in its ``shared_by`` — that is what the strategy would cost if
run alone — even though the suite ran it once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "MEASURED_PREFIX",
    "TRAINING_STEPS",
    "suite_cost",
    "expand_shared",
    "strategy_costs",
    "pareto_front",
    "params_table",
    "time_energy_table",
    "is_measured",
]

#: energy sources starting with this are measurements; anything else is an estimate
MEASURED_PREFIX = "measured"


def is_measured(source: str) -> bool:
    """True for a measured energy source (``measured-rapl``, ``measured-rapl+measured-nvml`` …).

    A combined label (parts joined by ``+``) is a measurement only if every part is; anything
    else — ``estimated-…``, an empty or unknown label — is shown as an estimate.
    """
    parts = [p.strip() for p in str(source).split("+")]
    return bool(parts) and all(p.startswith(MEASURED_PREFIX) for p in parts)


#: the steps that train a phase: pre-training on the source (DAPT) and fine-tuning on a target task
TRAINING_STEPS = ("pretrain", "finetune")


def expand_shared(costs: pd.DataFrame, step: str | tuple[str, ...] = TRAINING_STEPS) -> pd.DataFrame:
    """Rows of ``step`` (one kind or several), one copy per strategy that uses each (``strategy`` ∪ ``shared_by``):
    each strategy's **standalone** view, what it would cost run alone.

    ``seconds``, ``kwh`` and ``flops_total`` become the rows' ``standalone_*`` values where
    ``costs.csv`` has them (a step that reused a frozen-prefix cache another step built is charged
    for building it too, so the totals do not depend on the order the suite ran the strategies
    in); the figures of the run as executed stay in ``run_seconds`` / ``run_kwh``. Adds
    ``n_sharing`` (how many strategies use the row) so tables can say the step ran once.
    """
    rows = costs[costs["step"].astype(str).isin([step] if isinstance(step, str) else list(step))]
    out = []
    for _, r in rows.iterrows():
        users = [s for s in str(r.get("shared_by", "") or "").split(";") if s.strip()]
        users = [s.strip() for s in users]
        if r["strategy"] not in users:
            users.insert(0, r["strategy"])
        for s in users:
            rec = r.to_dict()
            rec["strategy"] = s
            rec["n_sharing"] = len(users)
            out.append(rec)
    cols = list(costs.columns) + ["n_sharing"]
    table = pd.DataFrame(out, columns=cols)
    table["n_sharing"] = table["n_sharing"].astype("Int64")
    table["run_seconds"], table["run_kwh"] = table["seconds"], table["kwh"]
    for col in ("seconds", "kwh", "flops"):
        alone = f"standalone_{col}"
        if alone in table:  # run directories written before standalone costs keep their figures
            target = "flops_total" if col == "flops" else col
            table[target] = pd.to_numeric(table[alone], errors="coerce").fillna(pd.to_numeric(table[target],
                                                                                              errors="coerce"))
    return table


def suite_cost(costs: pd.DataFrame | None) -> dict[str, float]:
    """What the run cost as executed: every step once (shared steps and caches once), all kinds."""
    if costs is None or costs.empty:
        return {"seconds": 0.0, "kwh": 0.0, "flops": 0.0}
    return {"seconds": float(pd.to_numeric(costs["seconds"], errors="coerce").sum()),
            "kwh": float(pd.to_numeric(costs["kwh"], errors="coerce").sum()),
            "flops": float(pd.to_numeric(costs["flops_total"], errors="coerce").sum())}


def strategy_costs(costs: pd.DataFrame | None, inference: pd.DataFrame | None,
                   strategies: list[str]) -> pd.DataFrame:
    """Per strategy: training ``seconds`` and ``kwh`` run alone (mean over seeds of the per-seed sum of its
    :func:`expand_shared` rows),
    ``params`` (of the final model) and ``energy_sources``.

    A strategy without pretrain rows (the ImageNet baselines) costs 0 s and 0 kWh of
    pre-training. ``params`` comes from ``inference.csv`` (column ``params`` or ``params_total``)
    when present, else from ``params_total`` of the strategy's last pretrain phase; NaN if neither.
    """
    rec = {s: dict(strategy=s, seconds=0.0, kwh=0.0, params=np.nan, energy_sources="", n_seeds=0) for s in strategies}
    if costs is not None and len(costs):
        ex = expand_shared(costs)
        if len(ex):
            for c in ("seconds", "kwh", "params_total"):
                ex[c] = pd.to_numeric(ex[c], errors="coerce")
            per_seed = ex.groupby(["strategy", "seed"], sort=False)[["seconds", "kwh"]].sum(min_count=1)
            mean = per_seed.groupby(level="strategy").mean()
            for s, r in mean.iterrows():
                d = rec.setdefault(s, dict(strategy=s, seconds=0.0, kwh=0.0, params=np.nan, energy_sources="", n_seeds=0))
                d["seconds"], d["kwh"] = float(r["seconds"]), float(r["kwh"])
                d["n_seeds"] = int(per_seed.loc[s].shape[0])
            for s, g in ex.groupby("strategy", sort=False):
                rec[s]["energy_sources"] = ";".join(sorted(set(g["energy_source"].astype(str)) - {""}))
                last = g.sort_values("phase", kind="stable").iloc[-1]
                rec[s]["params"] = float(last["params_total"])
    if inference is not None:
        col = next((c for c in ("params", "params_total") if c in inference.columns), None)
        if col:
            for s, v in inference.groupby("strategy")[col].first().items():
                if s in rec and pd.notna(v):
                    rec[s]["params"] = float(v)
    return pd.DataFrame(list(rec.values()))


def pareto_front(cost, score) -> np.ndarray:
    """Boolean mask of the Pareto-optimal points: lower ``cost`` and higher ``score`` are better.

    A point is optimal unless another has cost ≤ and score ≥ with at least one strictly better.
    NaN points are never optimal.

    >>> pareto_front([1, 2, 3, 2], [0.8, 0.9, 0.85, 0.7]).tolist()
    [True, True, False, False]
    """
    c = np.asarray(cost, dtype=float)
    s = np.asarray(score, dtype=float)
    ok = np.isfinite(c) & np.isfinite(s)
    mask = np.zeros(len(c), bool)
    for i in np.flatnonzero(ok):
        better = ok & (c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))
        mask[i] = not better.any()
    return mask


def _order(names, preferred: list[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [s for s in preferred if s in names] + [s for s in names if s not in preferred]


def params_table(costs: pd.DataFrame | None, inference: pd.DataFrame | None, order: list[str]) -> pd.DataFrame:
    """Table 1 of Mehmood et al.: total parameters and trainable parameters per phase.

    Rows: strategies (``order`` first); columns ``strategy``, ``params_total`` (of the last
    phase; the model of every phase when constant), ``<phase> trainable`` for every pretrain
    phase. Strategies only in ``inference.csv`` (no pre-training) get their total from there.
    Values from the first seed (parameter counts do not depend on the seed).
    """
    rows: dict[str, dict] = {}
    phases: list[str] = []
    if costs is not None and len(costs):
        ex = expand_shared(costs)
        if len(ex):
            ex = ex[ex["seed"] == ex["seed"].min()] if "seed" in ex else ex
            phases = sorted(ex["phase"].astype(str).unique())
            for s, g in ex.groupby("strategy", sort=False):
                g = g.sort_values("phase", kind="stable")
                r = {"strategy": s, "params_total": int(g["params_total"].iloc[-1])}
                totals = set(g["params_total"].astype(int))
                if len(totals) > 1:
                    r["note"] = "total differs by phase: " + ", ".join(
                        f"{p} {int(t):,}" for p, t in zip(g["phase"], g["params_total"]))
                for _, ph in g.iterrows():
                    r[f"{ph['phase']} trainable"] = int(ph["params_trainable"])
                rows[s] = r
    if inference is not None:
        col = next((c for c in ("params", "params_total") if c in inference.columns), None)
        if col:
            for s, v in inference.groupby("strategy")[col].first().items():
                if s not in rows and pd.notna(v):
                    rows[s] = {"strategy": s, "params_total": int(v)}
    cols = ["strategy", "params_total"] + [f"{p} trainable" for p in phases]
    if any("note" in r for r in rows.values()):
        cols.append("note")
    table = pd.DataFrame([rows[s] for s in _order(rows, order)], columns=cols)
    for c in cols[1:1 + 1 + len(phases)]:
        table[c] = table[c].astype("Int64")  # counts stay integers next to the missing phases
    return table


def time_energy_table(costs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Table B1 of Mehmood et al.: seconds and kWh per phase and strategy, with the energy source.

    One row per (strategy, phase) plus a ``total`` row per strategy; values are means over seeds
    (``n_seeds``). ``energy_source`` lists every source seen (e.g. ``estimated-green-algorithms``)
    so an estimate is never shown as a measurement; ``shared_by`` says how many strategies use a
    shared step.
    """
    ex = expand_shared(costs)
    cols = ["strategy", "phase", "seconds", "kwh", "energy_source", "energy_note", "n_sharing", "n_seeds"]
    if ex.empty:
        return pd.DataFrame(columns=cols)
    for c in ("seconds", "kwh"):
        ex[c] = pd.to_numeric(ex[c], errors="coerce")
    if "energy_note" not in ex:
        ex["energy_note"] = ""
    out = []
    for s in _order(ex["strategy"], order):
        g = ex[ex["strategy"] == s]
        for ph, h in g.groupby("phase", sort=True):
            out.append(dict(strategy=s, phase=ph, seconds=h["seconds"].mean(), kwh=h["kwh"].mean(),
                            energy_source=";".join(sorted(set(h["energy_source"]) - {""})),
                            energy_note="; ".join(sorted(set(h["energy_note"].astype(str)) - {"", "nan"})),
                            n_sharing=int(h["n_sharing"].max()), n_seeds=int(h["seed"].nunique())))
        per_seed = g.groupby("seed")[["seconds", "kwh"]].sum(min_count=1)
        out.append(dict(strategy=s, phase="total", seconds=per_seed["seconds"].mean(), kwh=per_seed["kwh"].mean(),
                        energy_source=";".join(sorted(set(g["energy_source"]) - {""})), energy_note="",
                        n_sharing=np.nan, n_seeds=int(len(per_seed))))
    table = pd.DataFrame(out, columns=cols)
    table["n_sharing"] = table["n_sharing"].astype("Int64")
    return table

