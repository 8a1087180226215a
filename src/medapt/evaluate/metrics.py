"""Downstream metrics: ROC-AUC, AUPRC and accuracy for the three task types.

Task types (``task_type``):

* ``binary`` — ``y`` int (N,) in {0, 1}; ``scores`` (N, 2) class probabilities (softmax over
  two outputs, as in Mehmood et al.'s heads) or (N,) probabilities of class 1.
* ``multiclass`` — ``y`` int (N,) in [0, C); ``scores`` (N, C) class probabilities.
  ROC-AUC and AUPRC are macro one-vs-rest averages over the C classes (scikit-learn's
  ``roc_auc_score(..., multi_class="ovr", average="macro")``).
* ``multilabel`` — ``y`` float (N, L) with 0/1 and NaN for "ignore" (e.g. CheXpert uncertain
  labels under the ``ignore`` policy); ``scores`` (N, L) sigmoid probabilities. Each label is
  scored on its non-NaN rows; the result is the mean over labels (Cherti & Jitsev;
  Hosseinzadeh Taher et al. report mean per-label AUC).

A metric that is undefined — one class only in ``y`` (or a class / label without positives or
negatives) — warns with :class:`UndefinedMetricWarning` and returns NaN rather than guessing
(the scikit-learn stance). All computation is delegated to :mod:`sklearn.metrics`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from sklearn import metrics as skm

from ..errors import LabelError, ShapeMismatchError, UnknownNameError
from ..registry import Registry

__all__ = [
    "TASK_TYPES",
    "METRICS",
    "UndefinedMetricWarning",
    "roc_auc",
    "auprc",
    "accuracy",
    "per_label_auc",
]

TASK_TYPES = ("binary", "multiclass", "multilabel")

#: name -> ``f(y, scores, task_type) -> float``; the names used in ``metrics.csv``.
METRICS: Registry[Callable[[np.ndarray, np.ndarray, str], float]] = Registry("metric")


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for this split (e.g. one class only) and is reported as NaN."""


# ----------------------------------------------------------------------------- checks


def _check(y: np.ndarray, scores: np.ndarray, task_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes/labels; return ``(y, scores)`` with scores always 2-D (N, C or L)."""
    if task_type not in TASK_TYPES:
        raise UnknownNameError("task type", str(task_type), TASK_TYPES)
    y = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        if task_type != "binary":
            raise ShapeMismatchError(
                f"scores have shape {s.shape}; a {task_type} task needs (N, C) scores. "
                "Pass one column per class (or label)."
            )
        s = np.stack([1.0 - s, s], axis=1)
    if s.ndim != 2:
        raise ShapeMismatchError(f"scores must be (N,) or (N, C); got shape {s.shape}.")
    if len(y) != len(s):
        raise ShapeMismatchError(
            f"labels have {len(y)} rows but scores have {len(s)}; they must describe the same images."
        )
    if not np.all(np.isfinite(s)):
        raise ShapeMismatchError("scores contain NaN or inf; check the model's outputs.")
    if task_type == "multilabel":
        y = y.astype(np.float64)
        if y.ndim != 2 or y.shape[1] != s.shape[1]:
            raise ShapeMismatchError(
                f"multi-label targets must be (N, L) matching scores {s.shape}; got {y.shape}."
            )
        ok = np.isnan(y) | (y == 0) | (y == 1)
        if not ok.all():
            bad = np.unique(y[~ok])[:5]
            raise LabelError(f"multi-label targets must be 0, 1 or NaN (ignore); found {bad.tolist()}.")
        return y, s
    if y.ndim != 1:
        raise ShapeMismatchError(f"{task_type} labels must be 1-D integers (N,); got shape {y.shape}.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise LabelError(f"{task_type} labels must be integers; got non-integer values.")
    y = y.astype(np.int64)
    n_classes = s.shape[1]
    if task_type == "binary" and n_classes != 2:
        raise ShapeMismatchError(f"binary scores must have 2 columns (or be 1-D); got {n_classes}.")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise LabelError(
            f"labels must lie in [0, {n_classes}) to match the {n_classes} score columns; "
            f"found {y.min()}..{y.max()}."
        )
    return y, s


def _undefined(what: str) -> float:
    warnings.warn(f"{what}; the metric is undefined and reported as NaN.", UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _per_column(y: np.ndarray, s: np.ndarray, fn: Callable, name: str) -> np.ndarray:
    """Apply a binary metric to each column of (N, L) targets, ignoring NaN rows."""
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        keep = ~np.isnan(y[:, j])
        yj = y[keep, j]
        if yj.size == 0 or yj.min() == yj.max():
            _undefined(f"{name}: label {j} has only one class among its {yj.size} labelled rows")
            continue
        out[j] = fn(yj, s[keep, j])
    return out


def _onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return (y[:, None] == np.arange(n_classes)[None, :]).astype(np.int64)


# ----------------------------------------------------------------------------- metrics

def _ranking_metric(y, scores, task_type: str, name: str, per_column, multiclass) -> float:
    """The shared shape of ROC-AUC and AUPRC: ``per_column(y, s)`` per label (multi-label, then the
    mean) or on class 1 (binary); ``multiclass(y, s)`` macro one-vs-rest. Undefined → NaN + warning."""
    y, s = _check(y, scores, task_type)
    if task_type == "multilabel":
        vals = _per_column(y, s, per_column, name)
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else _undefined(f"{name}: no label has two classes")
    present = np.unique(y)
    if present.size < 2:
        return _undefined(f"{name}: only class {present.tolist()} present among {len(y)} labels")
    if task_type == "binary":
        return float(per_column(y, s[:, 1]))
    if present.size < s.shape[1]:
        missing = sorted(set(range(s.shape[1])) - set(present.tolist()))
        return _undefined(f"{name}: classes {missing} are absent from the labels (one-vs-rest needs every class)")
    return float(multiclass(y, s))



def per_label_auc(y: np.ndarray, scores: np.ndarray, task_type: str) -> np.ndarray:
    """ROC-AUC of each class (one-vs-rest) or label; NaN (with a warning) where undefined.

    Returns float64 (C,) for binary/multiclass (binary: both columns give the same AUC when the
    scores are probabilities), (L,) for multi-label.
    """
    y, s = _check(y, scores, task_type)
    if task_type == "multilabel":
        return _per_column(y, s, skm.roc_auc_score, "ROC-AUC")
    return _per_column(_onehot(y, s.shape[1]).astype(np.float64), s, skm.roc_auc_score, "ROC-AUC")


@METRICS.register("auc")
def roc_auc(y: np.ndarray, scores: np.ndarray, task_type: str) -> float:
    """ROC-AUC: binary AUC, macro one-vs-rest AUC (multiclass), mean per-label AUC (multi-label).

    Equal to ``sklearn.metrics.roc_auc_score`` with ``multi_class="ovr", average="macro"``
    (multiclass) or ``average="macro"`` (multi-label without NaN). Undefined (one class only in
    ``y``, or a class absent from a multiclass split) → :class:`UndefinedMetricWarning` and NaN;
    a multi-label label with one class is left out of the mean, with a warning.

    >>> roc_auc([0, 1, 1], [[.9, .1], [.4, .6], [.2, .8]], "binary")
    1.0
    """
    # scikit-learn demands rows summing to 1 for "ovr"; the heads give softmax probabilities.
    return _ranking_metric(
        y, scores, task_type, "ROC-AUC", skm.roc_auc_score,
        lambda y, s: skm.roc_auc_score(y, _as_probabilities(s), multi_class="ovr", average="macro",
                                       labels=np.arange(s.shape[1])),
    )


@METRICS.register("auprc")
def auprc(y: np.ndarray, scores: np.ndarray, task_type: str) -> float:
    """Area under the precision-recall curve (average precision, ``sklearn.metrics.average_precision_score``).

    Binary: AP of class 1. Multiclass: macro one-vs-rest AP. Multi-label: mean per-label AP over
    non-NaN rows. Undefined → warning and NaN, as for :func:`roc_auc`.
    """
    return _ranking_metric(
        y, scores, task_type, "AUPRC", skm.average_precision_score,
        lambda y, s: skm.average_precision_score(_onehot(y, s.shape[1]), s, average="macro"),
    )


@METRICS.register("accuracy")
def accuracy(y: np.ndarray, scores: np.ndarray, task_type: str) -> float:
    """Accuracy of the arg-max class (binary/multiclass) or of every non-NaN label at 0.5 (multi-label).

    Undefined only for an empty split (warning, NaN).
    """
    y, s = _check(y, scores, task_type)
    if task_type == "multilabel":
        keep = ~np.isnan(y)
        if not keep.any():
            return _undefined("accuracy: no labelled entries")
        return float(np.mean((s[keep] >= 0.5) == (y[keep] == 1)))
    if len(y) == 0:
        return _undefined("accuracy: empty split")
    return float(skm.accuracy_score(y, s.argmax(axis=1)))


def _as_probabilities(s: np.ndarray) -> np.ndarray:
    """Rows summing to 1 (needed by scikit-learn's one-vs-rest check) without changing column ranks."""
    sums = s.sum(axis=1, keepdims=True)
    if np.all(s >= 0) and np.allclose(sums, 1.0, atol=1e-6):
        return s
    # re-normalising rows would change each column's ranking, hence the AUC: refuse instead.
    raise ShapeMismatchError(
        "multiclass scores must be class probabilities (non-negative rows summing to 1); "
        "apply softmax to the logits before computing the one-vs-rest AUC."
    )
