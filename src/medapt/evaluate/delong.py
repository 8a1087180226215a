"""DeLong's test for two correlated ROC-AUCs measured on one test set.

Binary: DeLong, DeLong & Clarke-Pearson (1988), computed with the fast mid-rank algorithm of
Sun & Xu (2014). The AUC is the Mann–Whitney statistic; each positive image ``i`` gets the
structural component ``V10(i)`` (share of negatives it outranks, ties ½) and each negative ``j``
``V01(j)``; ``Var(AUC_a − AUC_b) = var(V10_a − V10_b)/m + var(V01_a − V01_b)/n`` with sample
variances, m positives and n negatives.

Multi-class (an extension, documented in docs/report.md): the macro one-vs-rest AUC is a mean
of C two-sample U-statistics on the partition of the images by true class, so it is a
C-sample U-statistic. Its first-order (Hoeffding) expansion gives every image ``i`` of class
``g`` one structural component

    T(i) = 1/C · Σ_k  w_k(i) · V_k(i),   with  V_k(i) = V10_k(i), w = 1            if g = k
                                               V_k(i) = V01_k(i), w = n_g/(N−n_k)  if g ≠ k

and ``Var(D) = Σ_g var(T_a − T_b over class g)/n_g``. For C = 2 with probability scores this is
exactly the binary DeLong variance (tested).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import LabelError, ShapeMismatchError

__all__ = ["delong_test", "structural_components"]


def structural_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong structural components from positive and negative scores (Sun & Xu 2014).

    Args:
        pos: (m,) scores of the positives; neg: (n,) scores of the negatives.

    Returns:
        ``(auc, v10, v01)``: v10 (m,) = share of negatives each positive outranks (ties ½),
        v01 (n,) = share of positives that outrank each negative; ``auc = v10.mean() = v01.mean()``.
    """
    m, n = len(pos), len(neg)
    both = np.concatenate([pos, neg])
    r_all = stats.rankdata(both)  # mid-ranks handle ties as the Mann–Whitney ½
    r_pos = stats.rankdata(pos)
    r_neg = stats.rankdata(neg)
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    return float(v10.mean()), v10, v01


def _as_2d(scores, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = np.stack([1.0 - s, s], axis=1)
    if s.ndim != 2:
        raise ShapeMismatchError(f"{name} must be (N,) or (N, C); got shape {s.shape}.")
    if not np.all(np.isfinite(s)):
        raise ShapeMismatchError(f"{name} contain NaN or inf.")
    return s


def _macro_ovr(y: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> tuple[float, float, float]:
    """Macro one-vs-rest AUCs of a and b and the variance of their difference (module docstring)."""
    N, C = sa.shape
    counts = np.bincount(y, minlength=C)
    t = np.zeros(N)  # T_a(i) − T_b(i)
    aucs = np.zeros((2, C))
    for k in range(C):
        pk = y == k
        for sign, s, row in ((1.0, sa, 0), (-1.0, sb, 1)):
            auc, v10, v01 = structural_components(s[pk, k], s[~pk, k])
            aucs[row, k] = auc
            t[pk] += sign * v10 / C
            # an image of class g ≠ k enters AUC_k with weight n_g / (N − n_k)
            t[~pk] += sign * v01 * counts[y[~pk]] / (N - counts[k]) / C
    var = sum(np.var(t[y == g], ddof=1) / counts[g] for g in range(C)) if (counts > 1).all() else float("nan")
    return float(aucs[0].mean()), float(aucs[1].mean()), float(var)


def delong_test(y_true, scores_a, scores_b, confidence: float = 0.95) -> dict:
    """Test whether two models' ROC-AUCs on the same images differ (DeLong et al. 1988).

    Args:
        y_true: int (N,) class labels, 0/1 for binary, 0..C−1 for multi-class (every class must
            be present).
        scores_a, scores_b: model scores, (N,) positive-class scores or (N, C) class
            probabilities (binary uses column 1; multi-class uses the macro one-vs-rest AUC).
        confidence: level of the confidence interval of the difference (default 0.95).

    Returns:
        dict with ``auc_a``, ``auc_b``, ``diff`` (a − b), ``se``, ``z``, ``p_value`` (two-sided),
        ``ci_low``, ``ci_high``, ``n`` and ``n_classes``, and ``method``.

    >>> r = delong_test([0, 0, 1, 1], [.1, .4, .35, .8], [.1, .2, .7, .8])
    >>> round(r["auc_a"], 2), round(r["auc_b"], 2)
    (0.75, 1.0)
    """
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ShapeMismatchError(f"y_true must be 1-D class labels; got shape {y.shape}.")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise LabelError("y_true must hold integer class labels.")
    y = y.astype(np.int64)
    sa, sb = _as_2d(scores_a, "scores_a"), _as_2d(scores_b, "scores_b")
    if sa.shape != sb.shape or len(sa) != len(y):
        raise ShapeMismatchError(
            f"y_true {y.shape}, scores_a {sa.shape} and scores_b {sb.shape} must describe the same images."
        )
    C = sa.shape[1]
    if y.min() < 0 or y.max() >= C:
        raise LabelError(f"labels must lie in [0, {C}) for {C} score columns; found {y.min()}..{y.max()}.")
    counts = np.bincount(y, minlength=C)
    if (counts == 0).any():
        raise LabelError(
            f"DeLong's test needs every class in y_true; class(es) {np.flatnonzero(counts == 0).tolist()} are absent."
        )

    if C == 2:
        pos, neg = y == 1, y == 0
        auc_a, v10a, v01a = structural_components(sa[pos, 1], sa[neg, 1])
        auc_b, v10b, v01b = structural_components(sb[pos, 1], sb[neg, 1])
        var = np.var(v10a - v10b, ddof=1) / pos.sum() + np.var(v01a - v01b, ddof=1) / neg.sum() \
            if pos.sum() > 1 and neg.sum() > 1 else float("nan")
        method = "DeLong (binary)"
    else:
        auc_a, auc_b, var = _macro_ovr(y, sa, sb)
        method = f"DeLong, macro one-vs-rest over {C} classes (C-sample U-statistic extension)"

    diff = auc_a - auc_b
    se = float(np.sqrt(var)) if np.isfinite(var) else float("nan")
    if se > 0:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    elif se == 0:  # both models rank identically (or perfectly): no evidence of a difference
        z, p = (0.0, 1.0) if diff == 0 else (float("inf") * np.sign(diff), 0.0)
    else:
        z = p = float("nan")
    q = stats.norm.ppf(0.5 + confidence / 2)
    return dict(auc_a=float(auc_a), auc_b=float(auc_b), diff=float(diff), se=se, z=float(z), p_value=p,
                ci_low=float(diff - q * se), ci_high=float(diff + q * se), n=int(len(y)), n_classes=int(C),
                method=method)
