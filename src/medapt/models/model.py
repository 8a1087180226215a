"""The model medapt trains: a backbone's units in order, then GAP + linear head.

:class:`UnitModel` runs any span of units, so the engine can start from cached activations at a
cut point and the feature extractor can stop at the last kept unit.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .anatomy import Anatomy, Unit, dissect
from .backbones import WeightsInfo, create_backbone

__all__ = ["GapHead", "UnitModel", "build"]


class GapHead(nn.Module):
    """Global average pooling then a linear layer (DESIGN §1).

    Accepts a feature map ``(B, C, H, W)`` or already pooled features ``(B, C)``, so a head-only
    phase can train on cached pooled features.
    """

    def __init__(self, in_features: int, n_outputs: int):
        super().__init__()
        self.in_features, self.n_outputs = in_features, n_outputs
        self.fc = nn.Linear(in_features, n_outputs)

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x))


class UnitModel(nn.Module):
    """Backbone units (``self.units``) followed by a :class:`GapHead` (``self.head``).

    Attributes: ``unit_names`` and ``unit_stages`` (parallel to ``units``), ``backbone``
    (the architecture name) and ``weights`` (:class:`WeightsInfo`).
    """

    def __init__(self, units: list[Unit], head: GapHead, backbone: str, weights: WeightsInfo, family: str):
        super().__init__()
        self.units = nn.ModuleList([u.module for u in units])
        self.unit_names = [u.name for u in units]
        self.unit_stages = [u.stage for u in units]
        self.head = head
        self.backbone, self.weights, self.family = backbone, weights, family

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def anatomy(self) -> Anatomy:
        return Anatomy(tuple(Unit(n, s, m) for n, s, m in zip(self.unit_names, self.unit_stages, self.units)), self.family)

    def forward_units(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Run units ``start..end-1`` (0-based, python slice semantics) on ``x``."""
        for m in self.units[start:end]:
            x = m(x)
        return x

    def forward_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from activations at cut point ``start`` (``start == n_units``: pooled or map features)."""
        return self.head(self.forward_units(x, start))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_units(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """GAP output of the last kept unit, ``(B, C)`` — the downstream features (DESIGN §5)."""
        return GapHead.pool(self.forward_units(x))

    @property
    def num_features(self) -> int:
        return self.head.in_features

    def n_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _out_channels(units: list[Unit], in_chans: int = 3, size: int = 64) -> int:
    with torch.no_grad():
        x = torch.zeros(1, in_chans, size, size)
        seq = nn.Sequential(*[u.module for u in units])
        was = seq.training
        seq.eval()
        y = seq(x)
        seq.train(was)
    return int(y.shape[1])


def build(
    backbone: str,
    weights: str | os.PathLike = "none",
    *,
    n_outputs: int = 1,
    keep_units: int | None = None,
) -> UnitModel:
    """Build a :class:`UnitModel`: backbone units (optionally truncated) + a fresh GAP/linear head.

    Args:
        backbone: timm name or ``torchvision:<name>``.
        weights: ``none`` | ``embedded`` | ``imagenet`` | path to a state dict.
        n_outputs: head outputs (1 logit for a binary task, C for C classes).
        keep_units: truncate after this cut point (1-based; ``None`` keeps all units).

    >>> m = build("resnet50", n_outputs=1)
    >>> m.n_units, m.n_params()
    (17, 23510081)
    """
    model, info = create_backbone(backbone, weights)
    anatomy = dissect(model)
    units = list(anatomy.units)
    if keep_units is not None:
        anatomy._check_cut(keep_units)
        units = units[:keep_units]
    head = GapHead(_out_channels(units), n_outputs)
    return UnitModel(units, head, backbone, info, anatomy.family)
