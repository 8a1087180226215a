"""TruncatedTL's SVCCA cut-point detection (Peng et al., *Rethinking Transfer Learning for Medical
Image Classification*): a cheap alternative to searching over every truncation point.

1. fine-tune the full pretrained model once (FTL) — done by the caller;
2. at every cut point, SVCCA between the pretrained and the fine-tuned unit's activations;
3. the same statistic between the pretrained activations and random features of the same sizes;
4. the cut point is the *first* one at which the two distributions overlap: from there on,
   fine-tuning left the unit no closer to its pretrained self than chance;
5. fine-tune the model truncated there — done by the caller.

The distributions come from repeated draws: random subsets of the images (and fresh random
features) per draw. "Overlap" is made concrete by an interval per cut point and distribution —
``mean2sd`` (default: mean ± 2 sample s.d. over draws) or ``minmax`` (the range over draws) —
and two distributions overlap when their intervals intersect (touching counts). A fine-tuned
interval lying wholly *below* the random one has crossed chance level without the intervals ever
meeting (it happens between two cut points, or when few datapoints inflate the random baseline);
it ends the search as well, so the detected point is the first cut point where the fine-tuned
similarity is not above the random one (column ``reached``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, ShapeMismatchError
from ..models.model import UnitModel
from ..registry import Registry
from .similarity import LimitedDataWarning
from .units import _check_same_anatomy, random_baseline, similarity_table, unit_activations

__all__ = ["OVERLAP_RULES", "CutPointDetection", "overlap_table", "first_overlap_point", "detect_cut_point"]

#: name -> ``f(values (draws, K)) -> (low (K,), high (K,))``: the interval a distribution occupies.
OVERLAP_RULES: Registry[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = Registry("overlap rule")


@OVERLAP_RULES.register("mean2sd")
def _mean_2sd(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ± 2 sample standard deviations (ddof=1) over draws."""
    m, s = v.mean(axis=0), v.std(axis=0, ddof=1)
    return m - 2 * s, m + 2 * s


@OVERLAP_RULES.register("minmax")
def _min_max(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The range over draws."""
    return v.min(axis=0), v.max(axis=0)


def _as_draws(values: Any, name: str) -> tuple[np.ndarray, list | None]:
    cols = list(values.columns) if isinstance(values, pd.DataFrame) else None
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.size == 0:
        raise ShapeMismatchError(
            f"{name} values have shape {v.shape}; expected (draws, cut points), one row per image subset "
            "or bootstrap draw (a wide DataFrame with cut points as columns also works)."
        )
    if not np.all(np.isfinite(v)):
        raise ConfigError(f"{name} values contain NaN or inf; every draw needs a value at every cut point.")
    return v, cols


def overlap_table(
    finetuned: Any,
    random: Any,
    *,
    cut_points: Sequence[int] | None = None,
    rule: str = "mean2sd",
) -> pd.DataFrame:
    """Per cut point: the interval of each distribution and whether they overlap.

    Args:
        finetuned: ``(draws, K)`` statistic between pretrained and fine-tuned activations.
        random: ``(draws', K)`` the same statistic against random features (draw counts may differ).
        cut_points: labels of the K columns (default ``1..K``, or the columns of a DataFrame).
        rule: ``mean2sd`` (mean ± 2 s.d., needs ≥ 2 draws) or ``minmax`` (range over draws).

    Returns:
        Columns ``cut_point``, ``finetuned_mean``, ``finetuned_low``, ``finetuned_high``,
        ``random_mean``, ``random_low``, ``random_high``, ``overlap`` (intervals intersect,
        touching included), ``below`` (fine-tuned interval wholly below the random one) and
        ``reached`` (``overlap or below``: fine-tuned no longer above chance).

    >>> overlap_table([[.9, .5], [.8, .3]], [[.2, .3], [.1, .4]], rule="minmax")["overlap"].tolist()
    [False, True]
    """
    interval = OVERLAP_RULES.get(rule)
    f, fcols = _as_draws(finetuned, "finetuned")
    r, _ = _as_draws(random, "random")
    if f.shape[1] != r.shape[1]:
        raise ShapeMismatchError(
            f"finetuned values cover {f.shape[1]} cut points but random values {r.shape[1]} "
            f"(shapes {f.shape} and {r.shape}); both need one column per cut point."
        )
    if rule == "mean2sd" and min(len(f), len(r)) < 2:
        raise ConfigError(
            f"rule 'mean2sd' needs at least 2 draws per distribution to estimate a standard deviation; got "
            f"{len(f)} finetuned and {len(r)} random draws. Use more draws, or rule='minmax'."
        )
    cuts = list(cut_points) if cut_points is not None else (fcols or list(range(1, f.shape[1] + 1)))
    if len(cuts) != f.shape[1]:
        raise ShapeMismatchError(f"{len(cuts)} cut point labels for {f.shape[1]} columns of values.")
    flo, fhi = interval(f)
    rlo, rhi = interval(r)
    overlap, below = (flo <= rhi) & (rlo <= fhi), fhi < rlo
    return pd.DataFrame({
        "cut_point": cuts,
        "finetuned_mean": f.mean(axis=0), "finetuned_low": flo, "finetuned_high": fhi,
        "random_mean": r.mean(axis=0), "random_low": rlo, "random_high": rhi,
        "overlap": overlap, "below": below, "reached": overlap | below,
    })


def first_overlap_point(
    finetuned: Any,
    random: Any,
    *,
    cut_points: Sequence[int] | None = None,
    rule: str = "mean2sd",
) -> int | None:
    """The first cut point at which the two distributions overlap, or at which the fine-tuned one
    lies wholly below the random one (column ``reached`` of :func:`overlap_table`); ``None`` if the
    fine-tuned distribution stays above chance at every cut point.

    Arguments as :func:`overlap_table`. Cut points are taken in column order (shallow to deep).

    >>> first_overlap_point([[.9, .6, .3], [.8, .5, .2]], [[.2, .2, .2], [.3, .3, .3]])
    3
    """
    return _first_overlap(overlap_table(finetuned, random, cut_points=cut_points, rule=rule))


def _first_overlap(table: pd.DataFrame) -> int | None:
    hits = table.loc[table["reached"], "cut_point"]
    return int(hits.iloc[0]) if len(hits) else None


@dataclass(frozen=True)
class CutPointDetection:
    """The outcome of :func:`detect_cut_point`.

    Attributes:
        cut_point: the first cut point where the distributions overlap (or the fine-tuned one is
            below chance) — truncate there — or ``None``.
        unit: its unit name (or ``None``).
        overlap: :func:`overlap_table` of the two distributions.
        draws: the long table of every value: ``draw``, ``pair`` (``finetuned``/``random``) and the
            per-unit table columns (cut point, unit, method, value, dims, n, note).
    """

    cut_point: int | None
    unit: str | None
    overlap: pd.DataFrame
    draws: pd.DataFrame


def detect_cut_point(
    pretrained: UnitModel,
    finetuned: UnitModel,
    images: Any,
    *,
    method: str = "svcca",
    n_draws: int = 10,
    subset_fraction: float = 0.5,
    rule: str = "mean2sd",
    seed: int = 0,
    units: Iterable[int | str] | None = None,
    batch_size: int = 64,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> CutPointDetection:
    """TruncatedTL's SVCCA detection (steps 2–4, Peng et al.) for a pretrained / fine-tuned pair.

    Each model runs once over ``images``; then each of ``n_draws`` draws takes a random subset of
    ``subset_fraction`` of the images (without replacement, so no duplicated rows deflate the
    rank), computes ``method`` between pretrained and fine-tuned activations at every cut point,
    and between the pretrained activations and fresh Gaussian features of the same sizes
    (:func:`~medapt.analysis.random_baseline`). The cut point is :func:`first_overlap_point` of
    the two distributions under ``rule``. Deterministic for a given ``seed``.

    Args:
        pretrained, finetuned: two :class:`~medapt.models.UnitModel` of one anatomy.
        images: ``(N, C, H, W)`` model inputs (array, float16 memmap or tensor), read in batches.
        method: ``svcca`` (the paper's), ``pwcca`` or ``cka``.
        n_draws: image subsets (≥ 2 for ``mean2sd``).
        subset_fraction: share of the images in each subset, in (0, 1].
        rule: ``mean2sd`` or ``minmax``, see :func:`overlap_table`.
        units: restrict to these cut points / unit names (default: all).
        options: per-method options, e.g. ``{"svcca": {"threshold": 0.99}}``.

    Returns:
        :class:`CutPointDetection`.
    """
    if not 0.0 < subset_fraction <= 1.0:
        raise ConfigError(f"subset_fraction {subset_fraction!r} must lie in (0, 1]; 0.5 draws half the images.")
    OVERLAP_RULES.get(rule)  # an unknown rule fails before the forward passes
    if n_draws < (2 if rule == "mean2sd" else 1):
        raise ConfigError(f"n_draws must be at least 1 (2 for rule 'mean2sd'); got {n_draws} with rule {rule!r}.")
    _check_same_anatomy(pretrained, finetuned)
    acts_p = unit_activations(pretrained, images, units, batch_size=batch_size)
    acts_f = unit_activations(finetuned, images, units, batch_size=batch_size)
    n = len(next(iter(acts_p.values())))
    m = max(2, int(round(subset_fraction * n)))
    rng = np.random.default_rng(seed)
    names = pretrained.unit_names
    tables = []
    for d in range(n_draws):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        sub_p = {k: a[idx] for k, a in acts_p.items()}
        sub_f = {k: a[idx] for k, a in acts_f.items()}
        ft = similarity_table(sub_p, sub_f, [method], unit_names=names, options=options)
        rd = random_baseline(sub_p, [method], seed=rng, unit_names=names, options=options)
        tables += [ft.assign(draw=d, pair="finetuned"), rd.assign(draw=d, pair="random")]
    draws = pd.concat(tables, ignore_index=True)
    limited = sorted(set(draws.loc[draws["note"] != "", "cut_point"]))
    if limited:
        warnings.warn(
            f"at cut points {limited}, subsets of {m} images are too small for the dimensions compared, "
            "so the similarities there (random baseline included) are inflated; see the 'note' column of "
            ".draws. Use many more images than channels, or a larger subset_fraction.",
            LimitedDataWarning, stacklevel=2,
        )
    draws = draws[["draw", "pair", *[c for c in draws.columns if c not in ("draw", "pair")]]]
    wide = {p: g.pivot(index="draw", columns="cut_point", values="value") for p, g in draws.groupby("pair")}
    overlap = overlap_table(wide["finetuned"], wide["random"], rule=rule)
    cut = _first_overlap(overlap)
    return CutPointDetection(cut, names[cut - 1] if cut is not None else None, overlap, draws)
