"""Summaries of the long metric table (``metrics.csv``, schema in docs/run-directory.md).

Pure pandas/scipy, no torch: the report uses these on an old run directory.

* :func:`summarize` — best and final AUC, first epoch and seconds to reach a threshold
  (Mehmood et al. use 0.9), per (strategy, seed, head, task, split).
* :func:`external_dip` — development (``test``) minus ``external`` AUC, per seed.
* :func:`aggregate_seeds` — mean, standard deviation and t-interval (95 %) over seeds; for the
  time to the threshold, how many seeds reached it and the censored median.
* :func:`censored_median` — median time to an event that some runs never reach.
* :func:`t_interval` — Student-t confidence interval of a mean (n − 1 degrees of freedom).
* :func:`paired_ttest` — two strategies compared over seeds (Hosseinzadeh Taher et al. use
  t-tests over 10 runs).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError, MissingFieldError

__all__ = [
    "METRIC_COLUMNS",
    "SUMMARY_KEYS",
    "summarize",
    "external_dip",
    "aggregate_seeds",
    "t_interval",
    "censored_median",
    "CENSORED_COLUMNS",
    "paired_ttest",
]

#: the columns of ``metrics.csv``
METRIC_COLUMNS = ("strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value")
#: one summary row per combination of these
SUMMARY_KEYS = ["strategy", "seed", "head", "task", "split"]
#: time-to-event columns of :func:`summarize`: NaN means "never reached", not "unknown"
CENSORED_COLUMNS = ("epoch_to_threshold", "seconds_to_threshold")


def _require(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise MissingFieldError(
            f"{what} lacks column(s) {missing}; it has {list(df.columns)}. "
            "See docs/run-directory.md for the expected schema."
        )


def summarize(metrics: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """Per (strategy, seed, head, task, split): best/final AUC and time to a threshold.

    Args:
        metrics: the long table of ``metrics.csv`` (columns :data:`METRIC_COLUMNS`); only rows
            with ``metric == "auc"`` are used.
        threshold: AUC to reach (default 0.9, Mehmood et al.).

    Returns:
        One row per key with ``best_auc`` (max over epochs, NaN-aware), ``best_epoch`` (first
        epoch reaching it), ``final_auc`` (at the last epoch), ``n_epochs``,
        ``epoch_to_threshold`` (first epoch with AUC ≥ threshold) and ``seconds_to_threshold``
        (its cumulative training time) — both NaN if never reached.

    >>> m = pd.DataFrame(dict(strategy="DA", seed=0, head="model1", task="t", split="test",
    ...     epoch=[1, 2, 3], seconds=[.1, .2, .3], metric="auc", value=[.8, .95, .9]))
    >>> summarize(m)[["best_auc", "final_auc", "epoch_to_threshold"]].values.tolist()
    [[0.95, 0.9, 2.0]]
    """
    _require(metrics, METRIC_COLUMNS, "the metrics table")
    auc = metrics[metrics["metric"] == "auc"].sort_values(SUMMARY_KEYS + ["epoch"], kind="stable")
    out_cols = SUMMARY_KEYS + [
        "best_auc", "best_epoch", "final_auc", "n_epochs", "epoch_to_threshold", "seconds_to_threshold",
    ]
    if auc.empty:
        return pd.DataFrame(columns=out_cols)
    rows = []
    for key, g in auc.groupby(SUMMARY_KEYS, sort=True, dropna=False):
        v = g["value"].to_numpy(dtype=float)
        ep = g["epoch"].to_numpy()
        sec = g["seconds"].to_numpy(dtype=float)
        finite = np.isfinite(v)
        if finite.any():
            i_best = int(np.nanargmax(v))
            best, best_epoch = float(v[i_best]), float(ep[i_best])
        else:
            best = best_epoch = float("nan")
        hit = np.flatnonzero(finite & (v >= threshold))
        rows.append(
            (*key, best, best_epoch, float(v[-1]), len(v),
             float(ep[hit[0]]) if hit.size else float("nan"),
             float(sec[hit[0]]) if hit.size else float("nan"))
        )
    return pd.DataFrame(rows, columns=out_cols)


def external_dip(summary: pd.DataFrame, dev_split: str = "test", external_split: str = "external") -> pd.DataFrame:
    """Development → external difference of best and final AUC, per (strategy, seed, head, task).

    ``dip_best = best_auc[dev] − best_auc[external]`` (positive: worse on the external cohort),
    likewise ``dip_final``. Keys present in only one split are dropped.
    """
    _require(summary, SUMMARY_KEYS + ["best_auc", "final_auc"], "the summary table")
    keys = [k for k in SUMMARY_KEYS if k != "split"]
    cols = ["best_auc", "final_auc"]
    dev = summary[summary["split"] == dev_split][keys + cols]
    ext = summary[summary["split"] == external_split][keys + cols]
    m = dev.merge(ext, on=keys, suffixes=(f"_{dev_split}", f"_{external_split}"))
    m["dip_best"] = m[f"best_auc_{dev_split}"] - m[f"best_auc_{external_split}"]
    m["dip_final"] = m[f"final_auc_{dev_split}"] - m[f"final_auc_{external_split}"]
    return m.reset_index(drop=True)


def t_interval(x, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``x`` (n − 1 degrees of freedom).

    ``mean ± t_{n−1, (1+confidence)/2} · s / √n`` with the sample standard deviation ``s``
    (ddof 1). This is the interval that holds its level for a handful of seeds drawn from a
    normal distribution: with 3 seeds a 95 % interval covers the true mean 95 % of the time,
    where a percentile bootstrap of the same 3 values covers it only about 74 % of the time
    (its resamples cannot spread wider than the 3 values themselves). Non-finite values are
    dropped; fewer than two values give ``(nan, nan)``; identical values give a zero-width
    interval.

    >>> lo, hi = t_interval([0.90, 0.92, 0.94])
    >>> round(lo, 4), round(hi, 4)
    (0.8703, 0.9697)
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1); got {confidence}.")
    a = np.asarray(x, dtype=float)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return float("nan"), float("nan")
    m = float(a.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return m - half, m + half


def censored_median(times) -> float:
    """Median time to an event when runs that never reach it count as censored (NaN = not reached).

    The smallest time by which at least half of the runs had reached the event: with the
    ``n`` times sorted, and the runs that never reached it placed last (at +∞), the
    ``⌈n/2⌉``-th. This is the Kaplan–Meier median when every run is followed to the same end
    (all censoring after the last epoch); for an odd ``n`` with every run reaching the event it
    is the ordinary median, for an even ``n`` the lower of the two middle values (a time at which
    a run really did reach it). Fewer than half reached → NaN ("not reached").

    >>> censored_median([3, 5, float("nan")]), censored_median([3, float("nan"), float("nan")])
    (5.0, nan)
    >>> censored_median([4, float("nan")])  # half reached: by epoch 4, 1 of 2 runs had
    4.0
    """
    a = np.asarray(times, dtype=float)
    n = a.size
    reached = np.sort(a[np.isfinite(a)])
    k = (n + 1) // 2  # ⌈n/2⌉
    return float(reached[k - 1]) if n and reached.size >= k else float("nan")


def aggregate_seeds(
    summary: pd.DataFrame, confidence: float = 0.95, censored: tuple[str, ...] = CENSORED_COLUMNS
) -> pd.DataFrame:
    """Mean, standard deviation and t-interval over seeds of every numeric column.

    Works on :func:`summarize` or :func:`external_dip` output: rows are grouped by every
    non-numeric column (strategy, head, task, split …); for each numeric column ``c`` except
    ``seed`` it gives ``c_mean``, ``c_std`` (ddof 1; NaN for one seed), ``c_ci_low``,
    ``c_ci_high`` (the ``confidence`` t-interval of the mean over seeds, n − 1 degrees of
    freedom, :func:`t_interval`; NaN for fewer than two seeds) and ``c_n`` (seeds with a finite
    value — e.g. the seeds that reached the threshold). ``n_seeds`` counts the rows of the group.

    ``censored`` columns (default :data:`CENSORED_COLUMNS`, the time to the threshold) hold NaN
    for a seed that never reached it. For them ``c_reached`` (= ``c_n``) counts the seeds that
    did and ``c_median`` is the :func:`censored_median` over all ``n_seeds`` (NaN when fewer than
    half reached it); ``c_mean``, ``c_std`` and the interval are given only when every seed
    reached it (NaN otherwise), since a mean over the seeds that happened to be fast is biased.

    Seeds are few (3 to 10 in the seed papers), so the interval is the t-interval, not a
    bootstrap over seeds, which undercovers badly at that size. For one model on one test set,
    :func:`medapt.evaluate.bootstrap_auc_ci` resamples test images (or patients) instead.
    """
    _require(summary, ["seed"], "the summary table")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1); got {confidence}.")
    keys = [c for c in summary.columns if c != "seed" and not pd.api.types.is_numeric_dtype(summary[c])]
    values = [c for c in summary.columns if c != "seed" and c not in keys]
    rows = []
    for key, g in summary.groupby(keys, sort=True, dropna=False) if keys else [((), summary)]:
        key = key if isinstance(key, tuple) else (key,)
        rec = dict(zip(keys, key))
        rec["n_seeds"] = len(g)
        for c in values:
            x = g[c].to_numpy(dtype=float)
            if c in censored:
                rec[f"{c}_reached"] = int(np.isfinite(x).sum())
                rec[f"{c}_median"] = censored_median(x)
                if not np.isfinite(x).all():
                    x = x[:0]  # someone never reached it: no mean, s.d. or interval
            x = x[np.isfinite(x)]
            rec[f"{c}_mean"] = float(x.mean()) if x.size else float("nan")
            rec[f"{c}_std"] = float(x.std(ddof=1)) if x.size > 1 else float("nan")
            rec[f"{c}_ci_low"], rec[f"{c}_ci_high"] = t_interval(x, confidence)
            rec[f"{c}_n"] = rec.get(f"{c}_reached", int(x.size))
        rows.append(rec)
    return pd.DataFrame(rows)


def paired_ttest(
    summary: pd.DataFrame,
    a: str,
    b: str,
    *,
    column: str = "best_auc",
    split: str = "test",
    head: str | None = None,
    task: str | None = None,
    paired: bool = True,
) -> dict:
    """Compare strategies ``a`` and ``b`` over seeds with a t-test on ``column``.

    Rows of the two strategies are matched on (seed, head, task) within ``split`` (restrict with
    ``head``/``task``). ``paired=True`` uses ``scipy.stats.ttest_rel`` on the matched pairs;
    ``paired=False`` the independent two-sample test (``ttest_ind``) that Hosseinzadeh Taher et
    al. report. Fewer than two pairs → a warning and NaN statistics.

    Returns:
        dict with ``a``, ``b``, ``column``, ``split``, ``n`` (pairs), ``mean_a``, ``mean_b``,
        ``mean_diff`` (a − b), ``t``, ``p_value`` and ``test``.
    """
    _require(summary, SUMMARY_KEYS + [column], "the summary table")
    s = summary[summary["split"] == split]
    if head is not None:
        s = s[s["head"] == head]
    if task is not None:
        s = s[s["task"] == task]
    for name in (a, b):
        if not (s["strategy"] == name).any():
            known = sorted(s["strategy"].unique().tolist())
            raise ConfigError(f"strategy {name!r} has no rows in split {split!r} of the summary; it has {known}.")
    on = ["seed", "head", "task"]
    m = s[s["strategy"] == a][on + [column]].merge(s[s["strategy"] == b][on + [column]], on=on, suffixes=("_a", "_b"))
    m = m[np.isfinite(m[f"{column}_a"]) & np.isfinite(m[f"{column}_b"])]
    xa, xb = m[f"{column}_a"].to_numpy(float), m[f"{column}_b"].to_numpy(float)
    out = dict(a=a, b=b, column=column, split=split, n=len(m),
               mean_a=float(xa.mean()) if len(m) else float("nan"),
               mean_b=float(xb.mean()) if len(m) else float("nan"),
               test="paired t-test (scipy.stats.ttest_rel)" if paired else "two-sample t-test (scipy.stats.ttest_ind)")
    out["mean_diff"] = out["mean_a"] - out["mean_b"]
    if len(m) < 2:
        warnings.warn(f"t-test {a} vs {b}: {len(m)} matched seed(s); need at least 2.", stacklevel=2)
        out.update(t=float("nan"), p_value=float("nan"))
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical samples: scipy returns NaN itself
        res = stats.ttest_rel(xa, xb) if paired else stats.ttest_ind(xa, xb)
    out.update(t=float(res.statistic), p_value=float(res.pvalue))
    return out
