"""Backbones, their anatomy (units, stages, cut points) and the trained model."""

from . import cbr  # noqa: F401  (registers cbr_tiny, cbr_small, cbr_large_t, cbr_large_w with timm)
from .anatomy import Anatomy, Unit, dissect
from .backbones import WeightsInfo, create_backbone, embedded_lite0_state_dict, list_backbones, load_state_dict_file
from .model import GapHead, UnitModel, build

__all__ = ["Anatomy", "Unit", "dissect", "WeightsInfo", "create_backbone", "embedded_lite0_state_dict",
           "list_backbones", "load_state_dict_file", "GapHead", "UnitModel", "build"]
