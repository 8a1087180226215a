"""Bootstrap confidence interval of one model's ROC-AUC on one test set.

Across seeds the report uses a t-interval (:func:`medapt.evaluate.summary.t_interval`): seeds
are few, and a bootstrap of 3 values covers far less than its nominal level. For a *single*
model the uncertainty that matters is that of the test set, and there the images are many, so
the percentile bootstrap over test images is the usual choice (as ``pROC::ci.auc`` does):

* resample the test images with replacement, ``n_boot`` times, stratified by class by default
  (every resample keeps the class counts, so the AUC is always defined);
* with ``groups`` (patient ids), resample **patients** instead and keep all their images: images
  of one patient are correlated, and resampling them one by one would make the interval too
  narrow (stratified by each patient's majority class);
* recompute the AUC of every resample and take the ``(1 ± confidence)/2`` quantiles.

A resample is represented by the multiplicity of each image (a row of multinomial counts), and
its AUC is the weighted Mann–Whitney statistic computed from one sort of the scores, so 2,000
resamples cost a few matrix operations rather than 2,000 calls to scikit-learn. The weighted
statistic equals :func:`medapt.evaluate.roc_auc` on the materialised resample (tested).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import ConfigError, ShapeMismatchError
from .metrics import _check, roc_auc

__all__ = ["bootstrap_auc_ci"]

# bound the (resamples × images) work arrays to about this many float64 entries
_CHUNK_ENTRIES = 2_000_000


def _columns(y: np.ndarray, s: np.ndarray, task_type: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(positive indicator, negative indicator, scores) per one-vs-rest column of the metric."""
    if task_type == "binary":
        return [((y == 1).astype(float), (y == 0).astype(float), s[:, 1])]
    if task_type == "multiclass":
        return [((y == k).astype(float), (y != k).astype(float), s[:, k]) for k in range(s.shape[1])]
    known = ~np.isnan(y)
    return [((known[:, j] & (y[:, j] == 1)).astype(float), (known[:, j] & (y[:, j] == 0)).astype(float), s[:, j])
            for j in range(s.shape[1])]


def _weighted_auc(pos: np.ndarray, neg: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC of every resample: ``w`` (B, N) image multiplicities → (B,), NaN where undefined.

    Σ over positive i and negative j of w_i·w_j·([s_i > s_j] + ½[s_i = s_j]) / (W⁺·W⁻).
    """
    order = np.argsort(score, kind="stable")
    v = score[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])  # one block per distinct score
    ws = w[:, order]
    p = np.add.reduceat(ws * pos[order], starts, axis=1)
    q = np.add.reduceat(ws * neg[order], starts, axis=1)
    below = np.cumsum(q, axis=1) - q  # negative weight strictly below each distinct score
    num = (p * (below + 0.5 * q)).sum(1)
    den = p.sum(1) * q.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _resample_auc(y: np.ndarray, s: np.ndarray, task_type: str, w: np.ndarray) -> np.ndarray:
    """The metric of :func:`roc_auc` for every resample (rows of ``w``)."""
    per = np.stack([_weighted_auc(pos, neg, sc, w) for pos, neg, sc in _columns(y, s, task_type)], axis=1)
    if task_type == "multilabel":  # labels without both classes are left out, as in roc_auc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(per, axis=1)
    return per.mean(axis=1)  # binary: one column; multiclass: NaN if a class is missing


def _multiplicities(rng: np.random.Generator, n_boot: int, codes: np.ndarray, strata: np.ndarray | None) -> np.ndarray:
    """(n_boot, n_units) counts: units drawn with replacement, within each stratum if given."""
    n_units = int(codes.max()) + 1 if codes.size else 0
    counts = np.zeros((n_boot, n_units))
    groups = [np.arange(n_units)] if strata is None else [np.flatnonzero(strata == k) for k in np.unique(strata)]
    for members in groups:
        m = len(members)
        counts[:, members] = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot)
    return counts


def bootstrap_auc_ci(
    y_true,
    scores,
    task_type: str,
    *,
    groups=None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    stratified: bool = True,
) -> dict:
    """Percentile-bootstrap confidence interval of one model's ROC-AUC on one test set.

    Args:
        y_true, scores, task_type: as for :func:`medapt.evaluate.roc_auc` (binary, multiclass
            macro one-vs-rest, multi-label mean per-label AUC).
        groups: optional (N,) patient ids. Given, patients are resampled with all their images
            (ids compared as strings; missing ids count as one patient per image).
        n_boot: resamples (default 2000).
        confidence: level of the interval (default 0.95).
        seed: seed of a private ``numpy.random.Generator`` (the global RNG is not touched).
        stratified: keep the class counts (images) or the counts of patients per majority class
            (patients) in every resample. Ignored for multi-label tasks.

    Returns:
        dict with ``auc`` (on the full set), ``ci_low``, ``ci_high``, ``se`` (standard deviation
        of the resampled AUCs), ``n_boot``, ``n_valid`` (resamples with a defined AUC; the
        others are dropped, with a warning), ``unit`` (``"image"`` or ``"patient"``),
        ``n_units``, ``confidence`` and ``method``.

    >>> r = bootstrap_auc_ci([0, 0, 1, 1, 0, 1], [.1, .4, .35, .8, .2, .9], "binary", n_boot=500)
    >>> round(r["auc"], 3), r["unit"], r["ci_low"] <= r["auc"] <= r["ci_high"]
    (0.889, 'image', True)
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1); got {confidence}.")
    if int(n_boot) != n_boot or n_boot < 2:
        raise ConfigError(f"n_boot must be a whole number ≥ 2; got {n_boot}.")
    y, s = _check(y_true, scores, task_type)
    n = len(y)
    point = roc_auc(y_true, scores, task_type)  # warns and gives NaN when undefined
    if groups is not None:
        g = pd.Series(list(groups), dtype=object)
        if len(g) != n:
            raise ShapeMismatchError(f"groups has {len(g)} entries but there are {n} images.")
        missing = g.isna()
        g = g.astype(str).where(~missing, pd.Series([f"__image_{i}" for i in range(n)], dtype=object))
        codes, uniq = pd.factorize(g, sort=False)
        unit = "patient"
    else:
        codes, uniq = np.arange(n), np.arange(n)
        unit = "image"
    n_units = len(uniq)
    strata = None
    if stratified and task_type != "multilabel" and n_units:
        cnt = np.zeros((n_units, s.shape[1]), dtype=np.int64)
        np.add.at(cnt, (codes, y), 1)
        strata = cnt.argmax(1)  # the class of an image, the majority class of a patient
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ENTRIES // max(n, 1))
    reps = []
    for start in range(0, int(n_boot), chunk):
        b = min(chunk, int(n_boot) - start)
        w = _multiplicities(rng, b, codes, strata)[:, codes]  # image multiplicity = its unit's count
        reps.append(_resample_auc(y, s, task_type, w))
    reps = np.concatenate(reps) if reps else np.empty(0)
    valid = reps[np.isfinite(reps)]
    if valid.size < len(reps):
        warnings.warn(f"bootstrap AUC: {len(reps) - valid.size} of {len(reps)} resamples lack a class and are "
                      "left out of the interval.", stacklevel=2)
    if valid.size >= 2 and np.isfinite(point):
        lo, hi = np.quantile(valid, [(1 - confidence) / 2, (1 + confidence) / 2])
        se = float(valid.std(ddof=1))
    else:
        lo = hi = se = float("nan")
    how = "stratified " if strata is not None else ""
    return dict(auc=float(point), ci_low=float(lo), ci_high=float(hi), se=se, n_boot=int(n_boot),
                n_valid=int(valid.size), unit=unit, n_units=int(n_units), confidence=float(confidence),
                method=f"percentile bootstrap over {unit}s ({how}resampling with replacement)")
