"""Representation analysis: how similar are two models unit by unit, and where to cut a backbone.

* :mod:`~medapt.analysis.similarity` — SVCCA (Raghu et al. 2017), PWCCA (Morcos et al. 2018) and
  linear CKA (Kornblith et al. 2019) between two representations ``(N, D)``.
* :mod:`~medapt.analysis.units` — GAP activations after every unit from one forward pass,
  per-unit similarity between two models of one anatomy, a random-features baseline.
* :mod:`~medapt.analysis.detect` — TruncatedTL's SVCCA cut-point detection (Peng et al.): the
  first cut point where pretrained-vs-fine-tuned and pretrained-vs-random similarities overlap.
* :mod:`~medapt.analysis.probe` — the one-pass linear probe at every cut point.

Names are imported lazily, so ``import medapt.analysis`` loads neither torch nor scikit-learn.
See ``docs/analysis.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # similarity measures
    "METHODS": "similarity",
    "CONV_MODES": "similarity",
    "DegenerateRepresentationError": "similarity",
    "LimitedDataWarning": "similarity",
    "SimilarityResult": "similarity",
    "as_datapoints": "similarity",
    "compare": "similarity",
    "svcca": "similarity",
    "pwcca": "similarity",
    "linear_cka": "similarity",
    # per-unit similarity
    "TABLE_COLUMNS": "units",
    "unit_activations": "units",
    "similarity_table": "units",
    "similarity_per_unit": "units",
    "random_baseline": "units",
    # cut-point detection
    "OVERLAP_RULES": "detect",
    "CutPointDetection": "detect",
    "overlap_table": "detect",
    "first_overlap_point": "detect",
    "detect_cut_point": "detect",
    # probe
    "PROBE_METRICS": "probe",
    "PROBE_TASK_TYPES": "probe",
    "feature_file": "probe",
    "features_at_cut_points": "probe",
    "probe_cut_points": "probe",
}

_SUBMODULES = ("similarity", "units", "detect", "probe")

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"medapt.analysis.{_LAZY[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"medapt.analysis.{name}")
    raise AttributeError(f"module 'medapt.analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
