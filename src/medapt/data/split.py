"""Patient-level, class-stratified, seeded train/val/test splits.

scikit-learn's grouped splitters either ignore the class balance (``GroupShuffleSplit``) or only
make k equal folds (``StratifiedGroupKFold``), and the protocol needs arbitrary fractions
(Mehmood et al.: 80/20 train/test, optionally a validation share). So the assignment is a small
greedy allocation:

1. every patient (group) gets its stratum: its majority class (multi-label: its rarest
   positive label, or "none");
2. patients are shuffled with ``numpy.random.default_rng(seed)`` and then ordered largest
   first (stable), as ``StratifiedGroupKFold`` does, so big patients are placed while there is
   room;
3. within each stratum, each patient goes to the split that is least filled relative to its
   target image count (fraction × images of the stratum), so even a class with few patients
   reaches every split when it can.

A patient's images therefore never span two splits; per-class fractions are met to within
one patient. Images without a patient id are their own group.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from .spec import SplitSpec

__all__ = ["assign_splits", "SPLITS"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _strata(labels: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Stratum per group: majority class (single-label) or rarest positive label (multi-label)."""
    if labels.ndim == 1:
        n_cls = int(labels.max()) + 1 if labels.size else 1
        counts = np.zeros((n_groups, n_cls), dtype=np.int64)
        np.add.at(counts, (codes, labels.astype(np.int64)), 1)
        return counts.argmax(1)
    pos = np.nan_to_num(labels, nan=0.0) > 0.5
    counts = np.zeros((n_groups, labels.shape[1]), dtype=np.int64)
    np.add.at(counts, codes, pos.astype(np.int64))
    prevalence = pos.sum(0) + 1
    has = counts > 0
    score = np.where(has, prevalence[None, :], np.iinfo(np.int64).max)
    stratum = score.argmin(1)
    return np.where(has.any(1), stratum, labels.shape[1])  # "no positive label" stratum


def assign_splits(labels: np.ndarray, patients, split: SplitSpec) -> np.ndarray:
    """Assign every image to ``"train"``, ``"val"`` or ``"test"``.

    Args:
        labels: (N,) int class indices, or (N, L) float multi-label targets (NaN = unknown).
        patients: (N,) patient ids; ``None``/NaN entries are treated as one group per image.
        split: fractions and seed.

    Returns:
        (N,) object array of split names. Deterministic for ``split.seed`` and the input order.

    Example:
        >>> assign_splits(np.array([0, 0, 1, 1]), ["a", "a", "b", "c"], SplitSpec(train=0.5, test=0.5))
        array(['train', 'train', 'test', 'train'], dtype=object)
    """
    labels = np.asarray(labels)
    n = len(labels)
    pats = pd.Series(list(patients) if patients is not None else [None] * n, dtype=object)
    missing = pats.isna()
    if missing.any():  # one group per image without a patient id
        pats = pats.where(~missing, pd.Series([f"__image_{i}" for i in range(n)], dtype=object))
    codes, uniq = pd.factorize(pats, sort=False)
    n_groups = len(uniq)
    sizes = np.bincount(codes, minlength=n_groups)
    strata = _strata(labels, codes, n_groups)

    rng = np.random.default_rng(split.seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]

    fracs = np.array([split.train, split.val, split.test])
    active = fracs > 0
    group_split = np.empty(n_groups, dtype=np.int64)
    for s in np.unique(strata):
        members = order[strata[order] == s]
        target = fracs * sizes[members].sum()
        filled = np.zeros(3)
        for g in members:
            # the split that is least filled relative to its target; ties go to the earlier
            # split (train, val, test). Small strata thus still give every split a patient.
            ratio = np.where(active, filled / np.where(active, target, 1.0), np.inf)
            k = int(np.argmin(ratio))
            group_split[g] = k
            filled[k] += sizes[g]
    out = np.array(SPLITS, dtype=object)[group_split[codes]]

    for k, name in enumerate(SPLITS):
        if active[k] and not (out == name).any():
            warnings.warn(
                f"the {name} split is empty ({n} images in {n_groups} patients are too few for "
                f"fraction {fracs[k]}); add data or change the split fractions",
                stacklevel=2,
            )
    if labels.ndim == 1:
        for k, name in enumerate(SPLITS):
            sel = out == name
            if active[k] and sel.any() and len(np.unique(labels[sel])) < len(np.unique(labels)):
                log.warning("the %s split lacks some classes (too few patients per class); "
                            "its AUC will be undefined for them", name)
    return out
