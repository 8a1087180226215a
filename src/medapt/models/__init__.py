"""Backbones, their anatomy (units, stages, cut points), the one model builder and the trained model."""

from . import cbr  # noqa: F401  (registers cbr_tiny, cbr_small, cbr_large_t, cbr_large_w with timm)
from .anatomy import Anatomy, Unit, dissect
from .backbones import WeightsInfo, create_backbone, embedded_lite0_state_dict, list_backbones, load_state_dict_file
from .build import HEADS, INITS, Init, Surgery, architecture_surgery, build, cut_point, new_head
from . import transfer  # noqa: F401,E402  (registers the inits transfusion@k, slim@k, meanvar, gabor_conv1)
from .model import FlattenHead, GapHead, UnitModel, feature_shape
from .portable import load, save_portable

__all__ = ["Anatomy", "Unit", "dissect", "WeightsInfo", "create_backbone", "embedded_lite0_state_dict",
           "list_backbones", "load_state_dict_file", "HEADS", "INITS", "Init", "Surgery", "build", "cut_point",
           "architecture_surgery", "new_head", "FlattenHead", "GapHead", "UnitModel", "feature_shape", "normalisation",
           "load", "save_portable"]


def normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the input normalisation ``backbone``'s weights expect (its timm config).

    >>> normalisation("tf_efficientnet_lite0")
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """
    _, info = create_backbone(backbone, "none")
    return tuple(info.mean), tuple(info.std)
