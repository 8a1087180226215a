"""Convergence speed: when the validation AUC first reaches a threshold, and the speed-up over a baseline.

Raghu et al. (*Transfusion*) measure what pretraining buys in *speed*: the number of training
steps a network needs to reach a given AUC, pretrained vs random (their Figs 5–6). medapt measures
it on every strategy with target phases, from the validation curves in ``metrics.csv`` (rows
``head = own``, ``split = val``, ``metric = auc``: one per epoch, with the training seconds so far).

For every (strategy, seed, task) curve and every threshold *t* of ``convergence.thresholds``,
:func:`convergence_rows` gives ``metrics.csv`` rows (``head = own``, ``split = val``):

* ``epochs_to_auc@t`` — value = the first epoch whose validation AUC is ≥ t; ``epoch`` and
  ``seconds`` are that epoch and the wall-clock training seconds up to its end (NaN: never reached);
* ``seconds_to_auc@t`` — value = those seconds;
* ``speedup_epochs@t`` and ``speedup_seconds@t`` — the baseline's epochs (seconds) to t divided by
  the strategy's, on the same task and seed (the median over the baseline's seeds when that seed is
  absent). 2.0 = twice as fast as the baseline. NaN when either never reached t, or the baseline
  (``convergence.baseline``, default ``Scratch``) is not in the run.

The seconds are the engine's training-loop seconds (validation passes excluded), summed over the
strategy's earlier target phases on the task, as in the validation curves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["convergence_rows", "check_thresholds", "metric_names", "CONVERGENCE_PREFIXES"]

CONVERGENCE_PREFIXES = ("epochs_to_auc@", "seconds_to_auc@", "speedup_epochs@", "speedup_seconds@")
_KEYS = ["strategy", "seed", "head", "task", "split"]


def check_thresholds(thresholds: Iterable[float], field: str = "convergence.thresholds") -> list[float]:
    """Thresholds as floats in (0, 1]; a clear error naming ``field`` otherwise."""
    out = []
    for t in thresholds:
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise ConfigError(f"{field}: {t!r} is not a number; give AUC thresholds in (0, 1], e.g. [0.7, 0.8]") from None
        if not (0 < v <= 1) or math.isnan(v):
            raise ConfigError(f"{field}: {v} is not an AUC threshold in (0, 1]")
        out.append(v)
    return out


def metric_names(t: float) -> dict[str, str]:
    """The four metric names of threshold ``t`` (``epochs_to_auc@0.8`` …)."""
    return {p.split("@")[0]: f"{p}{t:g}" for p in CONVERGENCE_PREFIXES}


def _first_hit(curve: pd.DataFrame, t: float) -> tuple[float, float]:
    c = curve.sort_values("epoch", kind="stable")
    v = c["value"].to_numpy(dtype=float)
    hit = np.flatnonzero(np.isfinite(v) & (v >= t))
    if not len(hit):
        return math.nan, math.nan
    r = c.iloc[int(hit[0])]
    return float(r["epoch"]), float(r["seconds"])


def convergence_rows(metrics: pd.DataFrame, thresholds: Iterable[float], baseline: str | None = "Scratch") -> pd.DataFrame:
    """``metrics.csv`` rows of convergence speed (module docstring) from the validation AUC curves.

    >>> m = pd.DataFrame({"strategy": ["A"] * 3, "seed": 0, "head": "own", "task": "t", "split": "val",
    ...                   "epoch": [1, 2, 3], "seconds": [1.0, 2.0, 3.0], "metric": "auc", "value": [.5, .8, .9]})
    >>> convergence_rows(m, [0.8], baseline=None)[["metric", "epoch", "value"]].values.tolist()[:2]
    [['epochs_to_auc@0.8', 2.0, 2.0], ['seconds_to_auc@0.8', 2.0, 2.0]]
    """
    thresholds = check_thresholds(thresholds)
    cols = _KEYS + ["epoch", "seconds", "metric", "value"]
    if metrics is None or not len(metrics) or not thresholds:
        return pd.DataFrame(columns=cols)
    val = metrics[(metrics["metric"] == "auc") & (metrics["split"] == "val") & (metrics["head"] == "own")]
    if not len(val):
        return pd.DataFrame(columns=cols)
    hits = []
    for key, g in val.groupby(_KEYS, sort=False):
        for t in thresholds:
            e, s = _first_hit(g, t)
            hits.append(dict(zip(_KEYS, key)) | {"t": t, "e": e, "s": s})
    hits = pd.DataFrame(hits)
    base = hits[hits["strategy"] == baseline] if baseline else hits.iloc[0:0]
    rows = []
    for r in hits.itertuples(index=False):
        names = metric_names(r.t)
        keys = {k: getattr(r, k) for k in _KEYS}
        b = base[(base["task"] == r.task) & (base["head"] == r.head) & (base["t"] == r.t)]
        same_seed = b[b["seed"] == r.seed]
        b = same_seed if len(same_seed) else b
        if len(b) and b["e"].notna().all():
            be, bs = float(b["e"].median()), float(b["s"].median())
        else:  # no baseline, or a baseline seed that never reached t
            be = bs = math.nan
        speed_e = be / r.e if r.e and not math.isnan(r.e) else math.nan
        speed_s = bs / r.s if r.s and not math.isnan(r.s) else math.nan
        for metric, value in ((names["epochs_to_auc"], r.e), (names["seconds_to_auc"], r.s),
                              (names["speedup_epochs"], speed_e), (names["speedup_seconds"], speed_s)):
            rows.append(keys | {"epoch": r.e, "seconds": r.s, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=cols)


def write_convergence(run_dir, thresholds: Iterable[float], baseline: str | None = "Scratch"):
    """Replace the convergence rows of ``run_dir/metrics.csv`` by fresh ones (atomically); return how many.

    Nothing happens without ``metrics.csv`` or without validation curves.
    """
    from pathlib import Path

    from ..atomic import atomic_write_csv

    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return 0
    m = pd.read_csv(path)
    if "metric" not in m:
        return 0
    m = m[~m["metric"].astype(str).str.startswith(CONVERGENCE_PREFIXES)]
    rows = convergence_rows(m, thresholds, baseline)
    if not len(rows):
        return 0
    atomic_write_csv(pd.concat([m, rows[m.columns.intersection(rows.columns)]], ignore_index=True)[list(m.columns)],
                     path)
    return len(rows)
