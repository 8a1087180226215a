"""Apply a strategy to a model: truncation/initialisation, then each phase's trainable set.

BatchNorm policy (DESIGN §1): ``frozen`` (default, as in Mehmood et al.: BN layers never train and
always run in inference mode, even inside trainable units) or ``train`` (PyTorch's usual
``model.train()``: every BN updates its running statistics, and γ/β train inside trainable units).
"""

from __future__ import annotations

import os

from torch import nn

from ..errors import ConfigError
from ..models.model import UnitModel, build
from .catalogue import Phase, Strategy

__all__ = ["build_for", "keep_units", "trainable_unit_indices", "apply_phase", "count_params", "BN_POLICIES"]

BN_POLICIES = ("frozen", "train")
_BN = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def keep_units(strategy: Strategy, model_or_stage_ends: UnitModel | list[int]) -> int | None:
    """The cut point a strategy's surgery keeps (``None`` = all units)."""
    keep = strategy.surgery.keep
    if keep == "all":
        return None
    stage_ends = (model_or_stage_ends.anatomy.stage_ends if isinstance(model_or_stage_ends, UnitModel)
                  else model_or_stage_ends)
    kind, n = keep.split(":")
    if kind == "cut":
        return int(n)
    if int(n) >= len(stage_ends):
        raise ConfigError(f"strategy {strategy.name!r} keeps {n} stages but the backbone has {len(stage_ends) - 1}")
    return stage_ends[int(n)]


def build_for(strategy: Strategy, backbone: str, weights: str | os.PathLike = "none", *, n_outputs: int = 1) -> UnitModel:
    """Build the model a strategy trains: the backbone, cut as the surgery says, with a fresh head."""
    w = "none" if strategy.surgery.init == "random" else weights
    full = build(backbone, w, n_outputs=n_outputs)
    k = keep_units(strategy, full)
    if k is None:
        return full
    anatomy = full.anatomy
    anatomy._check_cut(k)
    from ..models.model import GapHead, _out_channels

    units = list(anatomy.units[:k])
    return UnitModel(units, GapHead(_out_channels(units), n_outputs), full.backbone, full.weights, full.family)


def trainable_unit_indices(model: UnitModel, spec: str) -> list[int]:
    """0-based indices of the units a ``trainable`` spec selects (the head always trains)."""
    n = model.n_units
    if spec == "head":
        return []
    if spec == "all":
        return list(range(n))
    kind, arg = spec.split(":", 1)
    if kind == "last":
        k = int(arg)
        if not 1 <= k <= n:
            raise ConfigError(f"trainable 'last:{k}' but the model has {n} units")
        return list(range(n - k, n))
    if kind == "from":
        k = int(arg)
        if not 0 <= k < n:
            raise ConfigError(f"trainable 'from:{k}' but the model has cut points 0..{n - 1}")
        return list(range(k, n))
    idx = sorted(model.anatomy.index(name) for name in arg.split(","))
    return idx


def _is_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def apply_phase(model: UnitModel, phase: Phase | str, bn_policy: str = "frozen") -> list[int]:
    """Set ``requires_grad`` and train/eval modes for a phase; return the trainable unit indices.

    Under ``frozen`` every BatchNorm runs in eval mode with γ/β frozen; under ``train`` every
    BatchNorm runs in train mode and γ/β train inside trainable units. Non-BN modules of frozen
    units run in eval mode (no dropout where nothing trains).
    """
    if bn_policy not in BN_POLICIES:
        raise ConfigError(f"bn policy {bn_policy!r} not in {BN_POLICIES}")
    spec = phase.trainable if isinstance(phase, Phase) else phase
    idx = set(trainable_unit_indices(model, spec))
    model.requires_grad_(False)
    model.eval()
    model.head.requires_grad_(True)
    model.head.train()
    for i, unit in enumerate(model.units):
        if i in idx:
            unit.train()
            for m in unit.modules():
                if _is_bn(m):
                    m.requires_grad_(bn_policy == "train")
                    m.train(bn_policy == "train")
                else:
                    for p in m.parameters(recurse=False):
                        p.requires_grad_(True)
        elif bn_policy == "train":
            for m in unit.modules():
                if _is_bn(m):
                    m.train()
    return sorted(idx)


def count_params(model: UnitModel, phase: Phase | str | None = None, bn_policy: str = "frozen") -> tuple[int, int]:
    """(total, trainable) parameters; with ``phase=None`` only the total is meaningful."""
    total = model.n_params()
    if phase is None:
        return total, 0
    apply_phase(model, phase, bn_policy)
    return total, model.n_params(trainable_only=True)
