"""Per-unit similarity between two models of one anatomy, and a random-features baseline.

Unit ``k`` of one model is compared with unit ``k`` of the other through their GAP activations on
the same images, at every cut point (DESIGN §1), with the measures of
:mod:`medapt.analysis.similarity`. Typical pairs: pretrained vs fine-tuned (how much did
fine-tuning change each unit?), pretrained vs randomly initialised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, ShapeMismatchError
from ..models.model import UnitModel
from ._forward import gap_pass, resolve_cut_points
from .similarity import METHODS, DegenerateRepresentationError, compare

__all__ = ["TABLE_COLUMNS", "unit_activations", "similarity_table", "similarity_per_unit", "random_baseline"]

#: Columns of every per-unit similarity table, in order.
TABLE_COLUMNS = ["cut_point", "unit", "method", "value", "dims_a", "dims_b", "n", "note"]


def unit_activations(
    model: UnitModel,
    images: Any,
    units: Iterable[int | str] | None = None,
    *,
    batch_size: int = 64,
    rows: Sequence[int] | np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """GAP activations after each unit, from one forward pass of the frozen model.

    Args:
        model: a :class:`~medapt.models.UnitModel`; run in eval mode (its mode is restored).
        images: ``(N, C, H, W)`` as the model expects them (normalised); NumPy array, float16
            memmap or tensor, read batch by batch.
        units: cut points (1-based ints) and/or unit names; ``None`` = every cut point. The pass
            stops after the deepest requested unit.
        batch_size: images per forward batch.
        rows: optional row indices into ``images`` (in that order).

    Returns:
        ``{cut_point k: float64 array (N, C_k)}``, in increasing ``k``.

    >>> from medapt.models import build
    >>> acts = unit_activations(build("resnet18"), np.zeros((2, 3, 32, 32), np.float32), units=[1, 9])
    >>> {k: a.shape for k, a in acts.items()}
    {1: (2, 64), 9: (2, 512)}
    """
    cuts = resolve_cut_points(model, units)
    return gap_pass(model, images, cuts, rows=rows, batch_size=batch_size,
                    alloc=lambda k, shape: np.empty(shape, dtype=np.float64))


def _check_same_anatomy(model_a: UnitModel, model_b: UnitModel) -> None:
    a, b = list(model_a.unit_names), list(model_b.unit_names)
    if a == b:
        return
    diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    at = (f"first difference at unit {diff + 1}: {a[diff] if diff < len(a) else '(none)'!r} vs "
          f"{b[diff] if diff < len(b) else '(none)'!r}")
    raise ConfigError(
        f"model_a ({model_a.backbone}, {len(a)} units) and model_b ({model_b.backbone}, {len(b)} units) have "
        f"different anatomies; {at}. Per-unit similarity pairs unit k of one with unit k of the other, so "
        "both must be the same architecture (e.g. pretrained and fine-tuned copies of one backbone)."
    )


def similarity_table(
    acts_a: Mapping[int, np.ndarray],
    acts_b: Mapping[int, np.ndarray],
    methods: Sequence[str] = ("svcca", "pwcca", "cka"),
    *,
    unit_names: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Per-unit similarity from activations already computed (e.g. by :func:`unit_activations`).

    Args:
        acts_a, acts_b: ``{cut_point k: (N, C_k)}`` with the same keys and the same N.
        methods: names in :data:`~medapt.analysis.similarity.METHODS`.
        unit_names: names indexed by ``k - 1`` (``model.unit_names``); empty strings when ``None``.
        options: per-method keyword options, e.g. ``{"svcca": {"threshold": 0.95}}``.

    Returns:
        One row per (cut point, method), columns :data:`TABLE_COLUMNS`.
    """
    if set(acts_a) != set(acts_b):
        raise ConfigError(f"activation sets cover different cut points: {sorted(acts_a)} vs {sorted(acts_b)}.")
    options = options or {}
    for m in methods:
        METHODS.get(m)  # an unknown name fails before any work, with suggestions
    rows = []
    for k in sorted(acts_a):
        name = unit_names[k - 1] if unit_names is not None else ""
        for m in methods:
            try:
                r = compare(acts_a[k], acts_b[k], m, **options.get(m, {}))
            except (DegenerateRepresentationError, ShapeMismatchError) as exc:  # name the unit, keep the type
                raise type(exc)(f"cut point {k} ({name or 'unnamed'}), {m}: {exc}") from exc
            rows.append((k, name, m, r.value, r.dims_a, r.dims_b, r.n, r.note))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def similarity_per_unit(
    model_a: UnitModel,
    model_b: UnitModel,
    images: Any,
    methods: Sequence[str] = ("svcca", "pwcca", "cka"),
    *,
    units: Iterable[int | str] | None = None,
    batch_size: int = 64,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Similarity of unit ``k`` of ``model_a`` with unit ``k`` of ``model_b`` at every cut point.

    One forward pass per model over ``images`` (see :func:`unit_activations`), then each measure
    on the GAP activations ``(N, C_k)``. Both models must have the same anatomy (unit names).

    Returns:
        A DataFrame with columns ``cut_point`` (k, 1-based), ``unit``, ``method``, ``value``,
        ``dims_a``, ``dims_b`` (dimensions kept), ``n`` (images), ``note`` (why a value is limited,
        e.g. fewer images than neurons).

    Use many more images than channels (ResNet50's last units have 2048): with fewer, SVCCA/PWCCA
    are inflated and the ``note`` column says so.

    >>> from medapt.models import build
    >>> x = np.random.default_rng(0).normal(size=(64, 3, 32, 32)).astype(np.float32)
    >>> m = build("resnet18")
    >>> similarity_per_unit(m, m, x, ["cka"], units=[1])["value"].round(6).tolist()
    [1.0]
    """
    _check_same_anatomy(model_a, model_b)
    acts_a = unit_activations(model_a, images, units, batch_size=batch_size)
    acts_b = unit_activations(model_b, images, units, batch_size=batch_size)
    return similarity_table(acts_a, acts_b, methods, unit_names=model_a.unit_names, options=options)


def random_baseline(
    acts: Mapping[int, np.ndarray],
    methods: Sequence[str] = ("svcca",),
    *,
    seed: int | np.random.Generator = 0,
    unit_names: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """The same statistic between each unit's activations and random features of the same size.

    Step 3 of TruncatedTL's SVCCA cut-point detection (Peng et al.): "SVCCA between random
    features of the same sizes". For cut point ``k`` with activations ``(N, C_k)``, draws
    i.i.d. standard normal features ``(N, C_k)`` from ``seed`` and compares. This is the value
    the statistic takes for an unrelated representation of that size, which grows with
    ``C_k / N`` — the chance level the pretrained-vs-fine-tuned value is judged against. (For the
    baseline of a randomly *initialised* network instead, as in Raghu et al.'s Transfusion, run
    :func:`similarity_per_unit` against ``medapt.models.build(backbone)``.)

    Returns:
        A table like :func:`similarity_table` (``dims_b`` are the random features').

    >>> a = {1: np.random.default_rng(1).normal(size=(500, 4))}
    >>> float(random_baseline(a, ["cka"])["value"].iloc[0]) < 0.05
    True
    """
    rng = np.random.default_rng(seed)
    noise = {k: rng.standard_normal(np.shape(a)) for k, a in sorted(acts.items())}
    return similarity_table(acts, noise, methods, unit_names=unit_names, options=options)
