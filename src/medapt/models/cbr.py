"""CBR networks: Raghu et al.'s small conv-BN-ReLU CNNs, as timm models.

Raghu, Zhang, Kleinberg, Bengio, *Transfusion: Understanding Transfer Learning for Medical
Imaging* (NeurIPS 2019) compare ImageNet-size architectures with four "CBR" networks: a stack of
conv → BatchNorm → ReLU blocks with max-pooling, then global average pooling and a linear layer.
The paper gives no code; the only public implementation is the CBR module of Peng et al.'s
TruncatedTL code (*Rethinking Transfer Learning for Medical Image Classification*), which these
models follow exactly:

* block = ``Conv2d(k×k, stride 1, no padding, bias)`` → ``BatchNorm2d`` → ReLU;
* ``MaxPool2d(3, stride 2)`` after blocks 1–4 (so also after the last block of the 4-block nets);
* global average pooling → ``Dropout(0.1)`` → ``Linear``.

=============  ======  =================  =================================
name           kernel  channels           parameters (no head / 2 outputs)
=============  ======  =================  =================================
cbr_large_t    7×7     32-64-128-256-512  8,537,600 / 8,538,626
cbr_large_w    7×7     64-128-256-512     8,441,856 / 8,442,882
cbr_small      7×7     32-64-128-256      2,113,536 / 2,114,050
cbr_tiny       5×5     64-128-256-512     4,308,480 / 4,309,506
=============  ======  =================  =================================

(γ/β counted, BatchNorm running statistics not.)

These are not the sizes printed in the Transfusion paper (see ``docs/models.md``). Importing this
module (``import medapt.models`` does) registers the four names with timm's ``register_model``, so
``timm.create_model(name, num_classes=…)`` and ``medapt.models.create_backbone(name, weights)``
build them; there are no published weights (``pretrained=True`` is an error), but a local state
dict (e.g. from DAPT) loads with ``create_backbone(name, path)``. Module names
(``CBR1.conv``, ``CBR1.bn``, …, ``fc``) are those of the published code, so a state dict trained
with it loads as is.

Without padding every block shrinks the map, so the nets need a minimum input size
(``pretrained_cfg["min_input_size"]``): 217 px for ``cbr_large_t``, 121 px for ``cbr_large_w`` and
``cbr_small``, 91 px for ``cbr_tiny``.

>>> import timm, medapt.models
>>> model = timm.create_model("cbr_tiny", num_classes=2)
>>> model(torch.zeros(1, 3, 224, 224)).shape
torch.Size([1, 2])
>>> model.forward_features(torch.zeros(1, 3, 224, 224)).shape  # (B, num_features, h, w)
torch.Size([1, 512, 9, 9])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError, WeightsError

__all__ = ["ConvBnReLU", "CBRNet", "CBR_ARCHS", "cbr_large_t", "cbr_large_w", "cbr_small", "cbr_tiny"]

# name -> (kernel size, channels per block), from the published CBR module (sun-umn/TTL utils/CBR.py)
CBR_ARCHS: dict[str, tuple[int, tuple[int, ...]]] = {
    "cbr_large_t": (7, (32, 64, 128, 256, 512)),
    "cbr_large_w": (7, (64, 128, 256, 512)),
    "cbr_small": (7, (32, 64, 128, 256)),
    "cbr_tiny": (5, (64, 128, 256, 512)),
}
_POOLED_BLOCKS = 4  # max-pool after blocks 1..4


class ConvBnReLU(nn.Module):
    """``Conv2d(k×k, stride 1, no padding, bias)`` → ``BatchNorm2d`` → ReLU. ``(B, C_in, H, W) → (B, C_out, H-k+1, W-k+1)``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=kernel_size, stride=1)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


def _min_input_size(kernel_size: int, n_blocks: int) -> int:
    """Smallest square input for which every block and pool gets at least one output pixel."""
    size = 1
    for i in reversed(range(n_blocks)):
        if i < _POOLED_BLOCKS:
            size = 2 * (size - 1) + 3  # MaxPool2d(3, stride 2), no padding
        size += kernel_size - 1  # valid convolution
    return size


class CBRNet(nn.Module):
    """A CBR network with timm's model interface.

    Args:
        channels: output channels of each block (4 or 5 blocks in the published nets).
        kernel_size: the square kernel of every convolution.
        in_chans: input channels.
        num_classes: classifier outputs; 0 gives no classifier (``fc`` is ``Identity``).
        drop_rate: dropout before the classifier (0.1 in the published code).
        global_pool: only ``"avg"`` (global average pooling).

    ``forward_features(x)``: ``(B, in_chans, H, W) → (B, num_features, h, w)``;
    ``forward_head``: pooled, dropout, linear → ``(B, num_classes)``.
    """

    def __init__(self, channels: tuple[int, ...] | list[int], kernel_size: int, in_chans: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.1, global_pool: str = "avg"):
        super().__init__()
        if not channels:
            raise ConfigError("a CBR network needs at least one block; got channels=()")
        _check_pool(global_pool)
        self.channels, self.kernel_size = tuple(int(c) for c in channels), int(kernel_size)
        self.n_blocks = len(self.channels)
        self.num_classes, self.drop_rate, self.global_pool = num_classes, drop_rate, global_pool
        self.num_features = self.head_hidden_size = self.channels[-1]
        self.feature_info: list[dict[str, Any]] = []
        prev = in_chans
        # registered in forward order, named as in the published code (CBR1, pool1, …, fc)
        for i, c in enumerate(self.channels, start=1):
            setattr(self, f"CBR{i}", ConvBnReLU(prev, c, self.kernel_size))
            last = f"CBR{i}"
            if i <= _POOLED_BLOCKS:
                setattr(self, f"pool{i}", nn.MaxPool2d(kernel_size=3, stride=2))
                last = f"pool{i}"
            self.feature_info.append(dict(num_chs=c, reduction=2 ** min(i, _POOLED_BLOCKS), module=last))
            prev = c
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def min_input_size(self) -> int:
        return _min_input_size(self.kernel_size, self.n_blocks)

    def unit_paths(self) -> list[list[str]]:
        """Module paths of each unit (block + its max-pool), in forward order."""
        return [[f"CBR{i}"] + ([f"pool{i}"] if i <= _POOLED_BLOCKS else []) for i in range(1, self.n_blocks + 1)]

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            _check_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_input_size:
            raise ConfigError(f"input {tuple(x.shape[-2:])} is too small for this CBR network (no padding): "
                              f"it needs at least {self.min_input_size}×{self.min_input_size} pixels")
        for paths in self.unit_paths():
            for p in paths:
                x = getattr(self, p)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _check_pool(global_pool: str) -> None:
    if global_pool != "avg":
        raise ConfigError(f"CBR networks support global_pool='avg' only, got {global_pool!r}")


def _cfg(name: str) -> dict[str, Any]:
    k, chs = CBR_ARCHS[name]
    m = _min_input_size(k, len(chs))
    return dict(num_classes=1000, input_size=(3, 224, 224), min_input_size=(3, m, m), crop_pct=1.0,
                interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD, first_conv="CBR1.conv",
                classifier="fc", paper_name="Transfusion: Understanding Transfer Learning for Medical Imaging",
                notes=("architecture of the public CBR code (Peng et al., TruncatedTL, utils/CBR.py); no pretrained weights",))


# timm's register_model reads the module's ``default_cfgs`` to give each model its pretrained_cfg
default_cfgs = generate_default_cfgs({name: _cfg(name) for name in CBR_ARCHS})


def _create(name: str, pretrained: bool = False, **kwargs: Any) -> CBRNet:
    if pretrained:
        raise WeightsError(f"there are no published pretrained weights for {name!r}. Train it (from scratch or by "
                           "DAPT) and load the state dict with `create_backbone(name, '/path/to/weights.safetensors')`.")
    k, chs = CBR_ARCHS[name]
    out_indices = kwargs.pop("out_indices", tuple(range(len(chs))))  # one feature level per block
    return build_model_with_cfg(CBRNet, name, pretrained=False, channels=chs, kernel_size=k,
                                feature_cfg=dict(flatten_sequential=True, out_indices=out_indices), **kwargs)


@register_model
def cbr_large_t(pretrained: bool = False, **kwargs: Any) -> CBRNet:
    """CBR-LargeT: 5 blocks, 7×7, channels 32-64-128-256-512 (8,537,600 parameters without head)."""
    return _create("cbr_large_t", pretrained, **kwargs)


@register_model
def cbr_large_w(pretrained: bool = False, **kwargs: Any) -> CBRNet:
    """CBR-LargeW: 4 blocks, 7×7, channels 64-128-256-512 (8,441,856 parameters without head)."""
    return _create("cbr_large_w", pretrained, **kwargs)


@register_model
def cbr_small(pretrained: bool = False, **kwargs: Any) -> CBRNet:
    """CBR-Small: 4 blocks, 7×7, channels 32-64-128-256 (2,113,536 parameters without head)."""
    return _create("cbr_small", pretrained, **kwargs)


@register_model
def cbr_tiny(pretrained: bool = False, **kwargs: Any) -> CBRNet:
    """CBR-Tiny: 4 blocks, 5×5, channels 64-128-256-512 (4,308,480 parameters without head)."""
    return _create("cbr_tiny", pretrained, **kwargs)
