"""Tiny models for the analysis tests: seeded timm backbones at 32 px and hand-built toy models
whose units are known functions."""

import types

import pytest
import torch
from torch import nn

from medapt.models import build
from medapt.models.anatomy import Unit
from medapt.models.backbones import WeightsInfo
from medapt.models.model import GapHead, UnitModel


def seeded_build(backbone: str, seed: int = 0) -> UnitModel:
    """``build(backbone)`` with a fixed initialisation, without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build(backbone)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def toy_model(*modules: nn.Module, name: str = "toy") -> UnitModel:
    """A UnitModel whose units are ``modules`` (unit names ``u1``, ``u2``, …); the head is unused."""
    units = [Unit(f"u{i}", i, m) for i, m in enumerate(modules, start=1)]
    width = next((m.out_channels for m in reversed(modules) if isinstance(m, nn.Conv2d)), 3)
    return UnitModel(units, GapHead(width, 1), name, WeightsInfo("none"), "toy")


def fixed_conv(c_in: int, c_out: int, seed: int) -> nn.Conv2d:
    """A 1×1 convolution with seeded weights: GAP of its output is a linear map of the channel means."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(c_out, c_in, 1, 1, generator=g))
    return conv


@pytest.fixture(scope="module")
def resnet18():
    return seeded_build("resnet18", 0)


@pytest.fixture
def toys():
    """The helpers above, for tests (conftest modules are not importable under importlib mode)."""
    return types.SimpleNamespace(toy_model=toy_model, fixed_conv=fixed_conv, Lambda=Lambda, seeded_build=seeded_build)
