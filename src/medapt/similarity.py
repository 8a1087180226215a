"""Representation similarity, the public API (``medapt.similarity``; docs/search.md).

SVCCA, PWCCA and linear CKA between two representations ``(N, D)`` (float64, REFERENCE numerics:
centre, SVD-truncate to 99 % of the variance, CCA from orthonormal bases), and per unit between
two models of one anatomy on the same images::

    import numpy as np, medapt.similarity as sim
    a = sim.load_model("resnet18", "imagenet")
    b = sim.load_model("resnet18", "runs/x/steps/pretrain/<hash>/weights.safetensors")
    images = np.load("images.npy", mmap_mode="r")        # (N, 3, H, W), normalised for the backbone
    table = sim.compare_models(a, b, images)             # cut_point, unit, method, value, dims_a, dims_b, n, note
    sim.svcca(x, y).value, sim.linear_cka(x, y).value    # two (N, D) arrays
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .analysis.pair import common_cut_points, similarity_of_pair
from .analysis.similarity import METHODS, SimilarityResult, compare, linear_cka, pwcca, svcca
from .analysis.units import random_baseline, similarity_per_unit, similarity_table, unit_activations
from .errors import ConfigError

__all__ = ["svcca", "pwcca", "linear_cka", "compare", "SimilarityResult", "METHODS", "similarity_per_unit",
           "similarity_table", "unit_activations", "random_baseline", "common_cut_points", "compare_models",
           "load_model", "WEIGHT_NAMES"]

#: weights given by name rather than by file
WEIGHT_NAMES = ("imagenet", "embedded", "none", "random")
_UNIT_KEY = re.compile(r"^units\.(\d+)\.")


def load_model(backbone: str, weights: str | os.PathLike = "imagenet", *, image_size: int = 224):
    """A :class:`~medapt.models.UnitModel` of ``backbone`` with ``weights``: ``imagenet`` |
    ``embedded`` | ``none``/``random`` (a random initialisation) | a ``.safetensors`` / ``.pt`` state
    dict written by medapt (a step's ``weights.safetensors``; its units decide how many are kept,
    its head is ignored)."""
    import torch

    from .models import Surgery, build

    w = str(weights)
    if w in WEIGHT_NAMES:
        init = "random" if w in ("none", "random") else "pretrained"
        return build(backbone, Surgery(init=init), weights="none" if init == "random" else w, image_size=image_size)
    p = Path(w).expanduser()
    if not p.is_file():
        raise ConfigError(f"weights {w!r} are neither {', '.join(WEIGHT_NAMES)} nor an existing file; give a medapt "
                          "weights.safetensors (a step folder of a run) or a .pt state dict")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    units = {int(m.group(1)) for k in state if (m := _UNIT_KEY.match(k))}
    if not units:
        raise ConfigError(f"{p}: no 'units.N.' parameters; this is not a medapt UnitModel state dict "
                          "(for timm/torchvision weights use backbone.weights in an experiment)")
    n = max(units) + 1
    with torch.device("meta"):
        full = build(backbone).n_units
    keep = "all" if n == full else f"cut:{n}"
    model = build(backbone, Surgery(keep=keep, init="random"), image_size=image_size)
    body = {k: v for k, v in state.items() if k.startswith("units.")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise ConfigError(f"{p}: the state dict does not fit {backbone} cut after unit {n} (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}); is it from another backbone?")
    return model


def compare_models(model_a, model_b, images: Any, methods: Sequence[str] = ("svcca", "pwcca", "cka"), *,
                   batch_size: int = 64, options: dict | None = None):
    """Similarity per unit of two models on the same images, on the cut points both have.

    Models of one anatomy (or a full model and a truncated copy); different anatomies are an
    error. Returns one row per (cut point, method): ``cut_point``, ``unit``, ``method``,
    ``value``, ``dims_a``, ``dims_b``, ``n``, ``note`` (e.g. fewer images than channels: the rank
    used, never a silent NaN).
    """
    return similarity_of_pair(model_a, model_b, images, methods, batch_size=batch_size, options=options)
