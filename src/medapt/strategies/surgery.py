"""Apply a strategy's phases to a model: each phase's trainable set and its parameter groups.

(Truncation and initialisation are the model builder's: :func:`medapt.models.build`.)

BatchNorm policy (DESIGN §1): ``frozen`` (default, as in Mehmood et al.: BN layers never train and
always run in inference mode, even inside trainable units) or ``train`` (PyTorch's usual
``model.train()``: every BN updates its running statistics, and γ/β train inside trainable units).
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models.model import UnitModel
from .catalogue import Phase

__all__ = ["trainable_unit_indices", "apply_phase", "param_groups", "count_params", "BN_POLICIES"]

BN_POLICIES = ("frozen", "train")
_BN = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


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
    if kind == "lastblocks":
        k, blocks = int(arg), model.anatomy.blocks
        if not 1 <= k <= len(blocks):
            raise ConfigError(f"trainable 'lastblocks:{k}' but the model has {len(blocks)} blocks")
        return list(range(blocks[-k], n))  # the blocks and every unit after them (a tail layer)
    if kind == "from":
        k = int(arg)
        if not 0 <= k <= n:  # from:n = the head alone (LWFT@n)
            raise ConfigError(f"trainable 'from:{k}' but the model has cut points 0..{n}")
        return list(range(k, n))
    idx = sorted(model.anatomy.index(name) for name in arg.split(","))
    return idx


def param_groups(model: UnitModel, phase: Phase) -> list[dict]:
    """The optimizer's parameter groups of a phase: ``[{"params": [...], "lr": ..., "lr_mult": m}, …]``.

    Without ``phase.lr_mult`` there is one group of every trainable parameter (in module order)
    at ``phase.lr``. With it, each trainable parameter gets the multiplier of the last selector
    that matches it (``head``; ``backbone`` = every unit; ``all``; or a unit spec such as
    ``last:2``, ``from:8``), 1.0 if none does; groups are ordered by multiplier of first appearance
    in module order, so one optimizer holds them all and its state dict resumes exactly.
    Call after :func:`apply_phase` (it reads ``requires_grad``).
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not phase.lr_mult:
        return [{"params": [p for _, p in trainable], "lr": phase.lr, "lr_mult": 1.0}]
    unit_of = {}
    for i, unit in enumerate(model.units):
        for p in unit.parameters():
            unit_of[id(p)] = i
    head = {id(p) for p in model.head.parameters()}
    selected = []
    for sel, mult in phase.lr_mult:
        if sel == "head":
            ids = head
        elif sel == "backbone":
            ids = set(unit_of)
        elif sel == "all":
            ids = set(unit_of) | head
        else:
            units = set(trainable_unit_indices(model, sel))
            ids = {pid for pid, i in unit_of.items() if i in units}
        selected.append((ids, mult))
    groups: dict[float, list[nn.Parameter]] = {}
    for _, p in trainable:
        mult = 1.0
        for ids, m in selected:
            if id(p) in ids:
                mult = m
        groups.setdefault(mult, []).append(p)
    return [{"params": ps, "lr": phase.lr * m, "lr_mult": m} for m, ps in groups.items()]


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
