"""The model medapt trains: a backbone's units in order, then a head (GAP + linear by default).

:class:`UnitModel` runs any span of units, so the engine can start from cached activations at a
cut point and the feature extractor can stop at the last kept unit. Models are made by
:func:`medapt.models.build` only (the one place weights are made).
"""

from __future__ import annotations

import torch
from torch import nn

from .anatomy import Anatomy, Unit
from .backbones import WeightsInfo

__all__ = ["GapHead", "FlattenHead", "UnitModel", "feature_shape"]


class GapHead(nn.Module):
    """Global average pooling then a linear layer (DESIGN §1).

    Accepts a feature map ``(B, C, H, W)`` or already pooled features ``(B, C)``, so a head-only
    phase can train on cached pooled features.
    """

    accepts_pooled = True

    def __init__(self, in_features: int, n_outputs: int):
        super().__init__()
        self.in_features, self.n_outputs = in_features, n_outputs
        self.fc = nn.Linear(in_features, n_outputs)

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x))


class FlattenHead(nn.Module):
    """No pooling: the feature map ``(B, C, H, W)`` flattened into a linear layer.

    TruncatedTL's comparison without GAP (Peng et al.): ``C·H·W·n + n`` parameters, so the head
    is tied to one input size. ``in_features`` stays ``C`` (the GAP features used downstream).
    """

    accepts_pooled = False

    def __init__(self, feature_shape: tuple[int, int, int], n_outputs: int):
        super().__init__()
        c, h, w = feature_shape
        self.feature_shape, self.in_features, self.n_outputs = (c, h, w), c, n_outputs
        self.fc = nn.Linear(c * h * w, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.feature_shape:
            raise ValueError(f"flatten head expects feature maps of shape {self.feature_shape}, got {tuple(x.shape[1:])}; "
                             "it is tied to the image size it was built for")
        return self.fc(x.flatten(1))


class UnitModel(nn.Module):
    """Backbone units (``self.units``) followed by a head (``self.head``).

    Attributes: ``unit_names``, ``unit_stages`` and ``unit_roles`` (parallel to ``units``), ``backbone``
    (the architecture name), ``weights`` (:class:`WeightsInfo`) and ``family`` (the anatomy's).
    """

    def __init__(self, units: list[Unit], head: nn.Module, backbone: str, weights: WeightsInfo, family: str):
        super().__init__()
        self.units = nn.ModuleList([u.module for u in units])
        self.unit_names = [u.name for u in units]
        self.unit_stages = [u.stage for u in units]
        self.unit_roles = [u.role for u in units]
        self.head = head
        self.backbone, self.weights, self.family = backbone, weights, family

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def anatomy(self) -> Anatomy:
        return Anatomy(tuple(Unit(n, s, m, r) for n, s, m, r in
                             zip(self.unit_names, self.unit_stages, self.units, self.unit_roles)), self.family)

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


@torch.no_grad()
def feature_shape(units: list[Unit] | nn.ModuleList, size: int = 64, in_chans: int = 3) -> tuple[int, int, int]:
    """(C, H, W) of the output of ``units`` run in order on a ``size`` × ``size`` input."""
    mods = [u.module if isinstance(u, Unit) else u for u in units]
    seq = nn.Sequential(*mods)
    was = [m.training for m in seq.modules()]
    seq.eval()
    y = seq(torch.zeros(1, in_chans, size, size))
    for m, t in zip(seq.modules(), was):
        m.training = t
    return int(y.shape[1]), int(y.shape[2]), int(y.shape[3])
