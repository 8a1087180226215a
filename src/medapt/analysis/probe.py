"""The one-pass cut-point probe: how good are the frozen features at every cut point?

TruncatedTL (Peng et al.) searches for the truncation point by fine-tuning a model per candidate
cut point. A linear probe is the cheap first look: run the frozen backbone **once** over the
images, keep the GAP features after every unit (:func:`features_at_cut_points`), fit a
standardised logistic regression per cut point on the training split and score it on the
validation split (:func:`probe_cut_points`). The probe ranks the cut points by how linearly
decodable the task is from each; it is not a substitute for fine-tuning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import ConfigError, EmptyDatasetError, LabelError, ShapeMismatchError, UnknownNameError
from ..evaluate.metrics import auprc, roc_auc
from ..models.model import UnitModel
from ..registry import Registry
from ._forward import gap_pass, resolve_cut_points

__all__ = ["PROBE_METRICS", "PROBE_TASK_TYPES", "features_at_cut_points", "probe_cut_points", "feature_file"]

#: name -> ``f(y, probabilities (N, C), task_type) -> float`` (macro one-vs-rest for multiclass).
PROBE_METRICS = Registry("probe metric")
PROBE_METRICS.register("auroc", roc_auc)
PROBE_METRICS.register("auprc", auprc)

PROBE_TASK_TYPES = ("binary", "multiclass")


def feature_file(out_dir: str | os.PathLike, k: int) -> Path:
    """Where :func:`features_at_cut_points` writes the features of cut point ``k``."""
    return Path(out_dir) / f"cut{k:03d}.npy"


def features_at_cut_points(
    model: UnitModel,
    images: Any,
    rows: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 64,
    out_dir: str | os.PathLike | None = None,
    cut_points: Iterable[int | str] | None = None,
) -> dict[int, np.ndarray]:
    """GAP features at every cut point from one forward pass of the frozen backbone.

    Args:
        model: a :class:`~medapt.models.UnitModel`, run in eval mode (its mode is restored).
        images: ``(N, C, H, W)`` model inputs (normalised), typically the float16 memmap of a
            prepared dataset; read ``batch_size`` rows at a time, never copied whole.
        rows: row indices into ``images`` (e.g. one split), in order; ``None`` = all rows.
        batch_size: images per forward batch.
        out_dir: when given, each cut point's features go to a float32 ``.npy``
            (:func:`feature_file`, ``cut001.npy`` …) written under a temporary name and renamed once
            complete, and are returned as read-only memmaps; ``None`` keeps them in memory.
        cut_points: restrict to these cut points / unit names (default: every cut point).

    Returns:
        ``{cut point k: float32 (len(rows), C_k)}``, in increasing ``k``.

    >>> from medapt.models import build
    >>> f = features_at_cut_points(build("resnet18"), np.zeros((4, 3, 32, 32), np.float16))
    >>> len(f), f[9].shape, f[9].dtype
    (9, (4, 512), dtype('float32'))
    """
    cuts = resolve_cut_points(model, cut_points)
    if out_dir is None:
        return gap_pass(model, images, cuts, rows=rows, batch_size=batch_size,
                        alloc=lambda k, shape: np.empty(shape, dtype=np.float32))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = {k: feature_file(out, k).with_suffix(f".{os.getpid()}.tmp") for k in cuts}
    try:
        arrays = gap_pass(model, images, cuts, rows=rows, batch_size=batch_size,
                          alloc=lambda k, shape: np.lib.format.open_memmap(tmp[k], mode="w+", dtype=np.float32,
                                                                           shape=shape))
        for a in arrays.values():
            a.flush()
        del arrays  # close the writable maps before renaming
        for k in cuts:
            os.replace(tmp[k], feature_file(out, k))
    finally:
        for t in tmp.values():
            if t.exists():
                t.unlink()
    return {k: np.load(feature_file(out, k), mmap_mode="r") for k in cuts}


def _class_counts(y: np.ndarray, n_classes: int) -> dict[int, int]:
    return {c: int(np.sum(y == c)) for c in range(n_classes)}


def _labels(y: Any, split: str, task_type: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeMismatchError(f"{split} labels must be 1-D class indices (N,); got shape {y.shape}.")
    if y.size and (y.dtype.kind not in "iub" and not np.all(y == np.round(y))):
        raise LabelError(f"{split} labels must be integer class indices for a {task_type} task.")
    y = y.astype(np.int64)
    if y.size == 0:
        raise EmptyDatasetError(f"the {split} split is empty (0 labels); the probe needs images in both splits.")
    if y.min() < 0 or (task_type == "binary" and y.max() > 1):
        allowed = "0 or 1" if task_type == "binary" else "0..C-1"
        raise LabelError(f"{split} labels must be {allowed} for a {task_type} task; found {y.min()}..{y.max()}.")
    return y


def _check_classes(y: np.ndarray, split: str, n_classes: int) -> None:
    counts = _class_counts(y, n_classes)
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        raise LabelError(
            f"the {split} split has class counts {counts}: class(es) {missing} are absent, so "
            + ("the probe cannot learn them" if split == "train" else
               "macro one-vs-rest AUROC/AUPRC is undefined")
            + ". Re-split with stratification (medapt.data.split) or merge classes."
        )


def _check_features(feats: Mapping[int, Any], y: np.ndarray, split: str) -> None:
    for k, f in feats.items():
        shape = tuple(np.shape(f))
        if len(shape) != 2 or shape[0] != len(y):
            raise ShapeMismatchError(
                f"{split} features at cut point {k} have shape {shape}; expected ({len(y)}, C) to match "
                f"the {len(y)} {split} labels."
            )


def probe_cut_points(
    feats_train: Mapping[int, Any],
    y_train: Any,
    feats_val: Mapping[int, Any],
    y_val: Any,
    task_type: str,
    metric: str = "auprc",
    *,
    unit_names: Sequence[str] | None = None,
    n_classes: int | None = None,
    C: float = 1.0,
    max_iter: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Fit a linear probe per cut point on train, score it on validation, rank the cut points.

    The probe is ``StandardScaler`` then scikit-learn ``LogisticRegression`` (L2, ``C``, lbfgs;
    multinomial for multiclass; fixed ``random_state``). Scores are probabilities ``(N, C)``
    passed to :func:`medapt.evaluate.metrics.auprc` or :func:`~medapt.evaluate.metrics.roc_auc`
    (macro one-vs-rest for multiclass); AUPRC is TruncatedTL's selection metric (Peng et al.).

    Args:
        feats_train, feats_val: ``{cut point k: (N_split, C_k)}`` with the same keys, as returned
            by :func:`features_at_cut_points`.
        y_train, y_val: integer class labels ``(N_split,)``.
        task_type: ``binary`` or ``multiclass``.
        metric: ``auprc`` (default) or ``auroc``.
        unit_names: names indexed by ``k - 1`` (``model.unit_names``), for the ``unit`` column.
        n_classes: number of classes (multiclass; default: largest label + 1).
        C, max_iter, random_state: ``LogisticRegression`` settings.

    Returns:
        One row per cut point, best first (ties: the shallower, cheaper cut point first), columns
        ``rank``, ``cut_point``, ``unit``, ``metric``, ``score``, ``n_features``, ``note``
        (e.g. a convergence warning).

    Raises:
        LabelError / EmptyDatasetError: a split is empty, has one class, or (multiclass) lacks a
            class — the message gives its class counts.

    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(40) % 2
    >>> f = {1: rng.normal(size=(40, 3)) + y[:, None], 2: rng.normal(size=(40, 3))}
    >>> probe_cut_points(f, y, f, y, "binary")["cut_point"].tolist()
    [1, 2]
    """
    if task_type not in PROBE_TASK_TYPES:
        raise UnknownNameError("probe task type", str(task_type), PROBE_TASK_TYPES,
                               hint="Known: binary, multiclass (multi-label probes are not supported).")
    score_fn = PROBE_METRICS.get(metric)
    ytr, yva = _labels(y_train, "train", task_type), _labels(y_val, "validation", task_type)
    top = int(max(ytr.max(), yva.max()))
    n_cls = 2 if task_type == "binary" else (n_classes or top + 1)
    if n_cls <= top:
        raise LabelError(f"n_classes={n_cls} but labels go up to {top}; pass n_classes={top + 1} or more.")
    _check_classes(ytr, "train", n_cls)
    _check_classes(yva, "validation", n_cls)
    if set(feats_train) != set(feats_val):
        raise ConfigError(f"train and validation features cover different cut points: "
                          f"{sorted(feats_train)} vs {sorted(feats_val)}.")
    if not feats_train:
        raise ConfigError("no cut points to probe: the feature mappings are empty.")
    _check_features(feats_train, ytr, "train")
    _check_features(feats_val, yva, "validation")

    rows = []
    for k in sorted(feats_train):
        xtr = np.asarray(feats_train[k], dtype=np.float64)
        xva = np.asarray(feats_val[k], dtype=np.float64)
        if xtr.shape[1] != xva.shape[1]:
            raise ShapeMismatchError(f"cut point {k}: train features have {xtr.shape[1]} columns, "
                                     f"validation {xva.shape[1]}; they must come from the same model.")
        probe = make_pipeline(StandardScaler(),
                              LogisticRegression(C=C, max_iter=max_iter, random_state=random_state))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            probe.fit(xtr, ytr)
        converge = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:  # anything else is passed on, not swallowed
            if w not in converge:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        note = "; ".join(sorted({str(w.message).split("\n")[0] for w in converge}))
        score = score_fn(yva, probe.predict_proba(xva), task_type)  # columns = classes 0..C-1, all present
        name = unit_names[k - 1] if unit_names is not None else ""
        rows.append((k, name, metric, float(score), xtr.shape[1], note))
    table = pd.DataFrame(rows, columns=["cut_point", "unit", "metric", "score", "n_features", "note"])
    table = table.sort_values(["score", "cut_point"], ascending=[False, True], kind="stable", ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
