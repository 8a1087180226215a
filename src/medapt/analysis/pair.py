"""Per-unit similarity of a model pair whose anatomies share a prefix (a full backbone and a
truncated copy of it, before and after a strategy).

:func:`~medapt.analysis.units.similarity_per_unit` needs identical anatomies; a DAPT strategy that
keeps units 1..k (``DA_TF_F1B``) is compared with the ImageNet backbone on its k units. Models of
different families, or whose unit names differ inside the common prefix, are an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import ConfigError
from ..models.model import UnitModel
from .units import similarity_table, unit_activations

__all__ = ["common_cut_points", "similarity_of_pair"]


def common_cut_points(model_a: UnitModel, model_b: UnitModel) -> list[int]:
    """Cut points 1..m that both models have with the same unit names (m = the shorter model's units)."""
    a, b = list(model_a.unit_names), list(model_b.unit_names)
    m = min(len(a), len(b))
    diff = next((i for i in range(m) if a[i] != b[i]), None)
    if diff is not None or getattr(model_a, "family", None) != getattr(model_b, "family", None):
        at = f"unit {diff + 1}: {a[diff]!r} vs {b[diff]!r}" if diff is not None else \
            f"families {getattr(model_a, 'family', '?')!r} vs {getattr(model_b, 'family', '?')!r}"
        raise ConfigError(
            f"model_a ({model_a.backbone}, {len(a)} units) and model_b ({model_b.backbone}, {len(b)} units) have "
            f"different anatomies ({at}). Per-unit similarity pairs unit k with unit k: compare copies of one "
            "backbone (pretrained vs fine-tuned, full vs truncated).")
    return list(range(1, m + 1))


def similarity_of_pair(
    model_a: UnitModel,
    model_b: UnitModel,
    images: Any,
    methods: Sequence[str] = ("svcca", "pwcca", "cka"),
    *,
    batch_size: int = 64,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Similarity per unit on the cut points both models have (:func:`common_cut_points`).

    Returns the table of :func:`~medapt.analysis.units.similarity_table` (columns ``cut_point``,
    ``unit``, ``method``, ``value``, ``dims_a``, ``dims_b``, ``n``, ``note``).
    """
    cuts = common_cut_points(model_a, model_b)
    acts_a = unit_activations(model_a, images, cuts, batch_size=batch_size)
    acts_b = unit_activations(model_b, images, cuts, batch_size=batch_size)
    return similarity_table(acts_a, acts_b, methods, unit_names=model_a.unit_names, options=options)
