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

Patient ids are compared after :func:`normalize_patient_id` — as strings, stripped, case-folded,
and without the leading zeros of a purely numeric id — because the same patient is often written
two ways across files or columns (``7`` read as a number and ``"007"`` read as text, ``P01`` and
``p01``); compared as written, one patient could land in two splits. Ids that collapse onto one
another are reported (:func:`patient_id_collisions`; a log warning, and ``meta.json`` of the
prepared dataset).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .spec import SplitSpec

__all__ = ["assign_splits", "SPLITS", "normalize_patient_id", "normalize_patient_ids", "patient_id_collisions"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


_DIGITS = re.compile(r"[0-9]+")


def normalize_patient_id(pid) -> str | None:
    """The key a patient id is grouped by: string, stripped, case-folded, numeric ids without
    leading zeros. Missing ids (``None``, NaN, ``""``) give ``None``.

    >>> [normalize_patient_id(x) for x in (7, "007", " 7 ", 7.0, "P01", "p01", "0", "", None)]
    ['7', '7', '7', '7', 'p01', 'p01', '0', None, None]
    """
    if pid is None:
        return None
    if isinstance(pid, (bool, np.bool_)):
        return str(pid).casefold()
    if isinstance(pid, (int, np.integer)):
        return str(int(pid))
    if isinstance(pid, (float, np.floating)):
        if not np.isfinite(pid):
            return None
        if float(pid).is_integer():
            return str(int(pid))
    try:
        if pd.isna(pid):
            return None
    except (TypeError, ValueError):  # array-like: not a missing scalar
        pass
    s = str(pid).strip().casefold()
    if not s:
        return None
    if _DIGITS.fullmatch(s):
        s = s.lstrip("0") or "0"
    return s


def patient_id_collisions(ids: Iterable) -> dict[str, list[str]]:
    """Normalised id → the distinct ways it was written (``repr``, so ``7`` and ``'007'`` differ),
    for every normalised id written in more than one way. Empty when no ids collapse.

    >>> patient_id_collisions([7, "007", "P01", "p01", "p01", "x"])
    {'7': ["'007'", '7'], 'p01': ["'P01'", "'p01'"]}
    """
    seen: dict[str, set[str]] = {}
    for pid in ids:
        key = normalize_patient_id(pid)
        if key is not None:
            seen.setdefault(key, set()).add(repr(pid.item() if isinstance(pid, np.generic) else pid))
    return {k: sorted(v) for k, v in sorted(seen.items()) if len(v) > 1}


def normalize_patient_ids(ids: Iterable, what: str = "patient ids") -> tuple[np.ndarray, dict[str, list[str]]]:
    """Normalised keys of ``ids`` (object array, ``None`` where missing) and their collisions.

    Logs a warning naming the ids that collapse onto another (e.g. ``'P01'`` and ``'p01'``):
    they are one patient from now on, and the data owner should check that this is right.
    """
    ids = list(ids)
    keys = np.array([normalize_patient_id(x) for x in ids], dtype=object)
    collisions = patient_id_collisions(ids)
    if collisions:
        shown = "; ".join(f"{' = '.join(v)} → {k!r}" for k, v in list(collisions.items())[:10])
        more = f" (and {len(collisions) - 10} more)" if len(collisions) > 10 else ""
        log.warning("%s: %d id(s) are written in more than one way and are treated as one patient each: %s%s. "
                    "Ids are compared as strings, stripped, case-folded, numeric ids without leading zeros.",
                    what, len(collisions), shown, more)
    return keys, collisions


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
        patients: (N,) patient ids, grouped after :func:`normalize_patient_id` (``7``, ``"007"``
            and ``" 7 "`` are one patient, as are ``"P01"`` and ``"p01"``); ``None``/NaN/empty
            entries are treated as one group per image.
        split: fractions and seed.

    Returns:
        (N,) object array of split names. Deterministic for ``split.seed`` and the input order.

    Example:
        >>> assign_splits(np.array([0, 0, 1, 1]), ["a", "a", "b", "c"], SplitSpec(train=0.5, test=0.5))
        array(['train', 'train', 'test', 'train'], dtype=object)
    """
    labels = np.asarray(labels)
    n = len(labels)
    keys = [normalize_patient_id(x) for x in patients] if patients is not None else [None] * n
    pats = pd.Series(keys, dtype=object)
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
