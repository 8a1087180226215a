"""Continual pre-training: a medapt checkpoint (a ``UnitModel`` state dict, keys ``units.<i>.…`` and
``head.…``) mapped back onto the backbone's own keys, so it can be the ``weights`` of a new run
(ImageNet → DAPT on task A → strategies on task B; Hosseinzadeh Taher et al.'s ImageNet →
CheXpert continual pre-training).

The mapping is read from the model itself: the units of a dissected backbone are its own
sub-modules, so a unit's tensor and the backbone's tensor are the same storage.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WeightsError

__all__ = ["is_unit_state_dict", "unit_to_backbone_keys"]


def is_unit_state_dict(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` was saved from a medapt ``UnitModel`` (every key under ``units.`` or ``head.``)."""
    return bool(sd) and all(k.startswith(("units.", "head.")) for k in sd) and any(k.startswith("units.") for k in sd)


def unit_to_backbone_keys(model: nn.Module, sd: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """``sd`` (a UnitModel state dict) with the backbone ``model``'s own keys; the head is dropped.

    A checkpoint of a truncated model (fewer units) lacks the later units' keys; the loader then
    names them as missing.
    """
    from .anatomy import dissect

    units = nn.ModuleList([u.module for u in dissect(model).units])
    by_ptr: dict[tuple[int, tuple], str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        if t.numel():
            by_ptr[(t.data_ptr(), tuple(t.shape))] = name
    out: dict[str, torch.Tensor] = {}
    unknown = []
    own = units.state_dict()
    for k, v in sd.items():
        if k.startswith("head."):
            continue  # medapt gives every new model its own head
        sub = k[len("units."):]
        t = own.get(sub)
        name = by_ptr.get((t.data_ptr(), tuple(t.shape))) if t is not None and t.numel() else None
        if name is None:
            unknown.append(k)
            continue
        out[name] = v
    if unknown:
        raise WeightsError(f"weights from {origin} (a medapt checkpoint) do not fit {type(model).__name__}: "
                           f"unexpected keys: {', '.join(unknown[:6])}{' …' if len(unknown) > 6 else ''}. "
                           "Use the checkpoint with the backbone it was trained on.")
    return out
