"""Paired statistics of a study: cells against a reference over seeds (Hosseinzadeh Taher et al.).

A *cell* is (method, source, shots) — a strategy on a weight source at a shot level — and its
replicates are seeds (few-shot draws of one seed are averaged first, so seeds pair). For every
(head, task) and every cell other than the reference, at the same shot level:

* :func:`cell_table` — mean, s.d. and t-interval over seeds (:func:`t_interval`);
* :func:`paired_tests` — paired t-test over seeds (``scipy.stats.ttest_rel``) of the chosen AUC,
  Holm-corrected over all comparisons (``statsmodels.stats.multitest.multipletests``), with the
  verdict ``win`` / ``loss`` / ``—`` at level ``alpha``;
* :func:`delong_per_seed` — DeLong's test of the two cells' AUCs on the same test images, per
  seed (and draw), Holm-corrected over all those tests; summarised as wins/losses out of n.

Input is the run's long ``metrics.csv`` / ``predictions.csv`` with the study columns ``method``,
``source``, ``shots`` and ``draw`` (:mod:`medapt.suite.study`); a run without them is one source
at the full shot level.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError
from .summary import t_interval

__all__ = ["holm", "study_frame", "replicates", "cell_table", "paired_tests", "delong_per_seed", "CELL"]

#: the columns that name a cell
CELL = ["method", "source", "shots"]


def holm(pvalues, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction: (reject, adjusted p-values); NaN p-values stay NaN, not rejected.

    >>> holm([0.01, 0.04, 0.03])[1].round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    reject, adj = np.zeros(len(p), dtype=bool), np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        r, a, _, _ = multipletests(p[ok], alpha=alpha, method="holm")
        reject[ok], adj[ok] = r, a
    return reject, adj


def study_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the study columns filled: a plain run is method = strategy, one source, full shots."""
    df = df.copy()
    if "method" not in df:
        df["method"] = df["strategy"]
    df["method"] = df["method"].fillna(df["strategy"])
    for c, default in (("source", "-"), ("shots", "full"), ("draw", 0)):
        if c not in df:
            df[c] = default
        df[c] = df[c].fillna(default)
    df["shots"] = df["shots"].astype(str)
    df["draw"] = df["draw"].astype(int)
    return df


def replicates(metrics: pd.DataFrame, metric: str = "final_auc", split: str = "test") -> pd.DataFrame:
    """One AUC per (cell, head, task, seed): ``final_auc`` (last epoch) or ``best_auc`` (best epoch),
    averaged over the few-shot draws of the seed."""
    m = study_frame(metrics)
    m = m[(m["metric"] == "auc") & (m["split"] == split)]
    keys = CELL + ["head", "task", "seed", "draw"]
    m = m.sort_values(keys + ["epoch"], kind="stable")
    g = m.groupby(keys, sort=True)
    per = (g["value"].last() if metric == "final_auc" else g["value"].max()).rename("value").reset_index()
    return per.groupby(CELL + ["head", "task", "seed"], sort=True)["value"].mean().reset_index()


def cell_table(rep: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean, s.d., t-interval and seed count per (cell, head, task)."""
    rows = []
    for key, g in rep.groupby(CELL + ["head", "task"], sort=False):
        x = g["value"].to_numpy(float)
        x = x[np.isfinite(x)]
        lo, hi = t_interval(x, confidence)
        rows.append(dict(zip(CELL + ["head", "task"], key), mean=float(x.mean()) if x.size else np.nan,
                         std=float(x.std(ddof=1)) if x.size > 1 else np.nan, ci_low=lo, ci_high=hi, n=int(x.size)))
    return pd.DataFrame(rows)


def _reference(rep: pd.DataFrame, reference: str | None) -> tuple[str, str]:
    """(method, source) of the reference: ``METHOD`` or ``METHOD/SOURCE`` (default: the first cell)."""
    pairs = list(dict.fromkeys(zip(rep["method"], rep["source"])))
    if not pairs:
        raise ConfigError("no test AUC rows to compare")
    if reference is None:
        return pairs[0]
    parts = reference.split("/")
    hits = [p for p in pairs if p[0] == parts[0] and (len(parts) < 2 or p[1] == parts[1])]
    if not hits:
        names = [f"{m}/{s}" for m, s in pairs]
        raise ConfigError(f"stats.reference {reference!r} names no cell of this run; it has {names} "
                          "(METHOD or METHOD/SOURCE; comparisons are made at each shot level)")
    return hits[0]


def paired_tests(rep: pd.DataFrame, reference: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Paired t-tests over seeds of every cell against the reference at the same shot level.

    Returns one row per comparison: cell columns, head, task, ``reference``, ``n`` (paired seeds),
    ``diff`` (mean cell − reference), ``t``, ``p``, ``p_holm`` and ``verdict``.
    """
    ref_m, ref_s = _reference(rep, reference)
    rows = []
    for (head, task, shots), g in rep.groupby(["head", "task", "shots"], sort=False):
        ref = g[(g["method"] == ref_m) & (g["source"] == ref_s)][["seed", "value"]]
        if ref.empty:
            continue
        for (m, s), h in g.groupby(["method", "source"], sort=False):
            if (m, s) == (ref_m, ref_s):
                continue
            pair = h[["seed", "value"]].merge(ref, on="seed", suffixes=("", "_ref")).dropna()
            a, b = pair["value"].to_numpy(float), pair["value_ref"].to_numpy(float)
            t = p = np.nan
            if len(pair) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # identical samples: NaN
                    r = stats.ttest_rel(a, b)
                t, p = float(r.statistic), float(r.pvalue)
            rows.append({"method": m, "source": s, "shots": shots, "head": head, "task": task,
                         "reference": f"{ref_m}/{ref_s}", "n": len(pair),
                         "diff": float((a - b).mean()) if len(pair) else np.nan, "t": t, "p": p})
    out = pd.DataFrame(rows, columns=CELL + ["head", "task", "reference", "n", "diff", "t", "p"])
    reject, adj = holm(out["p"].to_numpy(float), alpha) if len(out) else (np.zeros(0, bool), np.zeros(0))
    out["p_holm"] = adj
    out["verdict"] = [("win" if d > 0 else "loss") if r else "—" for r, d in zip(reject, out["diff"])]
    return out


def _scores(df: pd.DataFrame) -> np.ndarray:
    cols = sorted((c for c in df.columns if c.startswith("score_") and df[c].notna().any()),
                  key=lambda c: int(c.rsplit("_", 1)[1]))
    return df[cols].to_numpy(float)


def delong_per_seed(predictions: pd.DataFrame, reference: str | None = None, alpha: float = 0.05,
                    split: str = "test") -> pd.DataFrame:
    """DeLong's test per seed and draw of every cell against the reference (same shot level, same
    test images); Holm over all tests. Multi-label tasks (no single ``label``) are left out.

    Returns one row per test: cell columns, head, task, seed, draw, ``auc``, ``auc_ref``, ``p``,
    ``p_holm``, ``verdict``.
    """
    from .delong import delong_test

    p = study_frame(predictions)
    p = p[p["split"] == split]
    if "label" in p:
        p = p[p["label"].notna()]
    else:
        p = p.iloc[:0]
    if p.empty:
        return pd.DataFrame(columns=CELL + ["head", "task", "seed", "draw", "auc", "auc_ref", "p", "p_holm", "verdict"])
    ref_m, ref_s = _reference(p.assign(value=0.0), reference)
    rows = []
    for (head, task, shots, seed, draw), g in p.groupby(["head", "task", "shots", "seed", "draw"], sort=False):
        ref = g[(g["method"] == ref_m) & (g["source"] == ref_s)].sort_values("index")
        if ref.empty:
            continue
        for (m, s), h in g.groupby(["method", "source"], sort=False):
            if (m, s) == (ref_m, ref_s):
                continue
            h = h.sort_values("index")
            if not np.array_equal(h["index"].to_numpy(), ref["index"].to_numpy()):
                continue  # not the same test images
            try:
                r = delong_test(h["label"].to_numpy().astype(int), _scores(h), _scores(ref))
            except (ValueError, ArithmeticError) as exc:
                warnings.warn(f"DeLong {m}/{s} vs {ref_m}/{ref_s}, seed {seed}: {exc}", stacklevel=2)
                continue
            rows.append({"method": m, "source": s, "shots": shots, "head": head, "task": task, "seed": int(seed),
                         "draw": int(draw), "auc": r["auc_a"], "auc_ref": r["auc_b"], "p": r["p_value"]})
    out = pd.DataFrame(rows, columns=CELL + ["head", "task", "seed", "draw", "auc", "auc_ref", "p"])
    reject, adj = holm(out["p"].to_numpy(float), alpha) if len(out) else (np.zeros(0, bool), np.zeros(0))
    out["p_holm"] = adj
    out["verdict"] = [("win" if a > b else "loss") if r else "—" for r, a, b in zip(reject, out["auc"], out["auc_ref"])]
    return out
