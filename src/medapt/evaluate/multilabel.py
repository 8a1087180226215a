"""Multi-label results (CheXpert-style chest X-ray findings): per-label AUC with label-wise
confidence intervals, and their mean.

Input is ``predictions.csv`` of a multi-label task: ``label_<i>`` (0/1, NaN = ignored, e.g. the
uncertain labels under ``uncertain: ignore``) beside ``score_<i>``. Each label's AUC is computed
on the images where that label is known. The interval is the t-interval over seeds (Cherti &
Jitsev report the mean over seeds); with one seed it is a percentile bootstrap over test images.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from .bootstrap import bootstrap_auc_ci
from .metrics import per_label_auc
from .summary import t_interval

__all__ = ["label_columns", "per_label_table"]


def label_columns(pred: pd.DataFrame) -> list[str]:
    """The ``label_<i>`` columns, by number."""
    return sorted((c for c in pred.columns if re.fullmatch(r"label_\d+", c)), key=lambda c: int(c[6:]))


def per_label_table(pred: pd.DataFrame, names: list[str] | None = None, *, split: str = "test",
                    confidence: float = 0.95, n_boot: int = 1000) -> pd.DataFrame:
    """One row per (strategy, head, task, label) — and a ``mean`` label row — with ``auc`` (mean over
    seeds), ``ci_low``, ``ci_high``, ``ci`` (``t over seeds`` or ``bootstrap``) and ``n_seeds``.

    ``names``: the label names (default ``label_<i>``).
    """
    lcols = label_columns(pred)
    if not lcols:
        return pd.DataFrame()
    p = pred[pred["split"] == split]
    rows = []
    for (strategy, head, task), g in p.groupby(["strategy", "head", "task"], sort=False):
        per_seed = []
        for _, h in g.groupby("seed", sort=True):
            y = h[lcols].to_numpy(float)
            s = h[[f"score_{c[6:]}" for c in lcols]].to_numpy(float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per_seed.append(per_label_auc(y, s, "multilabel"))
        a = np.vstack(per_seed)  # seeds × labels
        a = np.column_stack([a, np.nanmean(a, axis=1)])
        labels = [(names[i] if names and i < len(names) else c) for i, c in enumerate(lcols)] + ["mean"]
        for j, lab in enumerate(labels):
            x = a[:, j][np.isfinite(a[:, j])]
            if len(per_seed) > 1:
                lo, hi = t_interval(x, confidence)
                how = "t over seeds"
            else:  # one seed: resample the test images
                h = g
                y = h[lcols].to_numpy(float)
                s = h[[f"score_{c[6:]}" for c in lcols]].to_numpy(float)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if lab == "mean":
                            r = bootstrap_auc_ci(y, s, "multilabel", n_boot=n_boot, confidence=confidence)
                        else:
                            known = np.isfinite(y[:, j])
                            r = bootstrap_auc_ci(y[known, j].astype(int), s[known, j], "binary", n_boot=n_boot,
                                                 confidence=confidence)
                    lo, hi = r["ci_low"], r["ci_high"]
                except Exception:  # a label with one class in the test set: no interval
                    lo = hi = float("nan")
                how = "bootstrap over images"
            rows.append({"strategy": strategy, "head": head, "task": task, "label": lab,
                         "auc": float(x.mean()) if x.size else float("nan"), "ci_low": lo, "ci_high": hi,
                         "ci": how, "n_seeds": int(x.size)})
    return pd.DataFrame(rows)
