"""TransFusion slimming (``TF@k``): keep the pretrained bottom, rebuild the top at half width.

Raghu et al. (*Transfusion: Understanding Transfer Learning for Medical Imaging*) show that a
pretrained bottom with a much thinner top, trained from random, does as well as the full transfer
("Slim": pretrained up to block 2, the remaining stages at half width). Peng et al.
(*Rethinking Transfer Learning for Medical Image Classification*) publish that construction for
ResNet50 (``slim_resnet50``, block-wise) and a layer-wise variant.

:func:`slim_units` does it for any cut point *k* of a dissected backbone:

* units ``1..k`` are copies of the pretrained ones (weights and BatchNorm running statistics);
* every later unit is rebuilt with its channels divided by ``shrink`` (2: half) and initialised
  from a ``torch.Generator`` with :func:`~medapt.models.inits.he_init_` (He-normal fan-out convs,
  BatchNorm γ=1, β=0: the published code's initialisation);
* the first rebuilt unit takes the kept unit's output channels as its input.

**A cut inside a stage** follows the published layer-wise variant (TruncatedTL,
``layer_wise_slim_resnet50``): the rest of *that* stage keeps the stage's residual (output) width,
so its identity shortcuts still fit, and halves its inner width (a bottleneck's 3×3 width, a basic
block's middle width, an inverted residual's expansion); the later stages are halved throughout.
At a stage boundary this is the block-wise construction. Per family:

* ``resnet`` (timm or torchvision; Bottleneck and BasicBlock, grouped 3×3 convs kept grouped):
  as above. A rebuilt block whose input and output widths differ but which had an identity
  shortcut (ResNet18/34 ``layer1.0`` when the cut is after the stem) gets a 1×1 conv + BN
  projection, as ResNet's own ``_make_layer`` would build it.
* ``efficientnet`` (timm; depthwise-separable, inverted-residual and edge-residual blocks):
  the expansion width and the squeeze-excitation width are halved; a depthwise-separable block
  has no inner width of its own (its depthwise conv runs at the input width). The final
  ``conv_head`` + ``bn2`` unit is always halved (1280 → 640 for B0/Lite0): it has no residual
  to keep and is the feature width the head sees.
* ``cbr`` (:mod:`medapt.models.cbr`): every rebuilt block at half its channels (each block is
  its own stage).

Other families raise a :class:`~medapt.errors.ConfigError` naming these.

With 2 outputs and a GAP + linear head on ResNet50 the totals equal the published code's:
k = 4: 6,101,570; k = 8 (Transfusion's "Slim"): 7,137,346; k = 14: 12,947,522.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ..errors import ConfigError
from .anatomy import Anatomy, Unit
from .inits import he_init_

__all__ = ["SlimUnits", "slim_units", "SLIM_FAMILIES"]

_BN = nn.modules.batchnorm._BatchNorm


class SlimUnits(NamedTuple):
    """The slimmed units (kept copies, then rebuilt ones) and the channels of the last one."""

    units: list[Unit]
    out_channels: int


def _anatomy(source: object) -> Anatomy:
    if isinstance(source, Anatomy):
        return source
    anatomy = getattr(source, "anatomy", None)  # UnitModel
    if isinstance(anatomy, Anatomy):
        return anatomy
    raise ConfigError(f"slim_units needs a UnitModel or an Anatomy, got {type(source).__name__}")


def slim_units(source: object, k: int, generator: torch.Generator, *, shrink: int = 2) -> SlimUnits:
    """TransFusion slim (``TF@k``): pretrained units ``1..k``, later units rebuilt at ``1/shrink`` width, random.

    Args:
        source: a pretrained :class:`~medapt.models.UnitModel` or its :class:`~medapt.models.Anatomy`
            (family ``resnet``, ``efficientnet`` or ``cbr``). It is not modified.
        k: cut point, 1-based (``1`` = after the stem; ``n_units`` keeps everything).
        generator: source of the random initialisation of the rebuilt units.
        shrink: channel divisor of the rebuilt units (2 = half, as in the papers; the published
            code also allows 4, 8).

    Returns:
        :class:`SlimUnits` ``(units, out_channels)``: ``units`` has the same names and stages as
        ``source``'s; ``units[:k]`` are deep copies of the pretrained units; ``out_channels`` is
        the channel count of the last unit's output ``(B, out_channels, h, w)`` — the input width
        of a GAP + linear head. The inside-stage rule is in the module docstring.

    >>> pre = build("resnet50", "imagenet", n_outputs=2)
    >>> units, c = slim_units(pre, 8, torch.Generator().manual_seed(0))
    >>> c, sum(u.n_params() for u in units) + c * 2 + 2   # Transfusion's "Slim"
    (1024, 7137346)
    """
    anatomy = _anatomy(source)
    if anatomy.family not in SLIM_FAMILIES:
        raise ConfigError(f"TransFusion slimming supports the families {', '.join(sorted(SLIM_FAMILIES))}; "
                          f"this backbone is {anatomy.family!r}. Use a ResNet, an EfficientNet or a CBR network.")
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"slim_units needs a torch.Generator, got {type(generator).__name__}")
    if not isinstance(shrink, int) or shrink < 1:
        raise ConfigError(f"shrink must be a positive integer (2 halves the channels), got {shrink!r}")
    anatomy._check_cut(k)
    out_channels, rebuild = SLIM_FAMILIES[anatomy.family]
    units = list(anatomy.units)
    new = [Unit(u.name, u.stage, copy.deepcopy(u.module), u.role) for u in units[:k]]  # pretrained, BN statistics too
    ch = out_channels(units[k - 1])
    cut_stage = units[k - 1].stage
    for u in units[k:]:
        # the rest of the cut stage keeps its residual width; later stages are slimmed throughout
        module, ch = rebuild(u, ch, u.stage == cut_stage, shrink)
        he_init_(module, generator)
        new.append(Unit(u.name, u.stage, module, u.role))
    return SlimUnits(new, ch)


# --- resizing modules in place (on copies) --------------------------------------------------------

class _Resizer:
    """Resizes the convs and BNs of one copied unit and remembers which it touched."""

    def __init__(self, unit: Unit, shrink: int):
        self.unit, self.shrink = unit, shrink
        self.module = copy.deepcopy(unit.module)
        self.done: set[int] = set()

    def fail(self, why: str) -> ConfigError:
        return ConfigError(f"cannot slim unit {self.unit.name!r} ({type(self.unit.module).__name__}): {why}")

    def shrunk(self, c: int, groups: int = 1, at_least_one: bool = False) -> int:
        n = c // self.shrink
        if at_least_one:
            n = max(n, 1)
        if n < 1 or n % groups:
            raise self.fail(f"{c} channels divided by {self.shrink} give {n}, not a positive multiple of {groups} groups")
        return n

    def conv(self, conv: nn.Module, in_ch: int, out_ch: int) -> None:
        if not isinstance(conv, nn.Conv2d):
            raise self.fail(f"expected a Conv2d, found {type(conv).__name__}")
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if depthwise and in_ch != out_ch:
            raise self.fail(f"a depthwise conv cannot map {in_ch} to {out_ch} channels")
        groups = in_ch if depthwise else conv.groups
        if in_ch % groups or out_ch % groups:
            raise self.fail(f"{in_ch}→{out_ch} channels do not split into {groups} groups")
        w = conv.weight
        conv.in_channels, conv.out_channels, conv.groups = in_ch, out_ch, groups
        conv.weight = nn.Parameter(w.new_empty(out_ch, in_ch // groups, *conv.kernel_size), requires_grad=w.requires_grad)
        if conv.bias is not None:
            conv.bias = nn.Parameter(conv.bias.new_empty(out_ch), requires_grad=conv.bias.requires_grad)
        self.done.add(id(conv))

    def bn(self, bn: nn.Module, n: int) -> None:
        if not isinstance(bn, _BN):
            raise self.fail(f"expected a BatchNorm, found {type(bn).__name__}")
        bn.num_features = n
        if bn.affine:
            bn.weight = nn.Parameter(bn.weight.new_empty(n), requires_grad=bn.weight.requires_grad)
            bn.bias = nn.Parameter(bn.bias.new_empty(n), requires_grad=bn.bias.requires_grad)
        if bn.track_running_stats:
            bn.running_mean = bn.running_mean.new_zeros(n)
            bn.running_var = bn.running_var.new_ones(n)
            bn.num_batches_tracked.zero_()
        self.done.add(id(bn))

    def se(self, se: nn.Module | None, ch: int) -> None:
        """timm's SqueezeExcite (conv_reduce → conv_expand) on ``ch`` channels, its bottleneck shrunk."""
        if se is None or not any(True for _ in se.parameters()):
            return
        if not (hasattr(se, "conv_reduce") and hasattr(se, "conv_expand")):
            raise self.fail(f"unknown attention module {type(se).__name__}")
        rd = self.shrunk(se.conv_reduce.out_channels, at_least_one=True)
        self.conv(se.conv_reduce, ch, rd)
        self.conv(se.conv_expand, rd, ch)

    def finish(self) -> nn.Module:
        left = [f"{n} ({type(m).__name__})" for n, m in self.module.named_modules()
                if any(True for _ in m.parameters(recurse=False)) and id(m) not in self.done]
        if left:
            raise self.fail("slimming does not know how to resize " + ", ".join(left))
        return self.module


def _last_conv(module: nn.Module) -> nn.Conv2d:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"unit {type(module).__name__} has no convolution to read its channels from")
    return convs[-1]


# --- ResNet ----------------------------------------------------------------------------------------

def _resnet_out(unit: Unit) -> int:
    m = unit.module
    if hasattr(m, "conv3"):
        return m.conv3.out_channels
    if hasattr(m, "conv2"):
        return m.conv2.out_channels
    return _last_conv(m).out_channels  # stem


def _resnet_rebuild(unit: Unit, in_ch: int, keep_width: bool, shrink: int) -> tuple[nn.Module, int]:
    r = _Resizer(unit, shrink)
    m = r.module
    if type(m).__name__ not in ("Bottleneck", "BasicBlock") or not hasattr(m, "conv2"):
        raise r.fail("slimming rebuilds ResNet Bottleneck and BasicBlock units only")
    bottleneck = hasattr(m, "conv3")
    last = m.conv3 if bottleneck else m.conv2
    width = r.shrunk(m.conv1.out_channels, groups=m.conv2.groups if bottleneck else 1)
    out = last.out_channels if keep_width else r.shrunk(last.out_channels)
    r.conv(m.conv1, in_ch, width)
    r.bn(m.bn1, width)
    if bottleneck:
        r.conv(m.conv2, width, width)
        r.bn(m.bn2, width)
        r.conv(m.conv3, width, out)
        r.bn(m.bn3, out)
    else:
        r.conv(m.conv2, width, out)
        r.bn(m.bn2, out)
    stride = max(c.stride[0] for c in (m.conv1, m.conv2))
    if getattr(m, "downsample", None) is not None:
        convs = [c for c in m.downsample.modules() if isinstance(c, nn.Conv2d)]
        bns = [b for b in m.downsample.modules() if isinstance(b, _BN)]
        if len(convs) != 1 or len(bns) != 1:
            raise r.fail("its downsample is not one conv + one BatchNorm")
        r.conv(convs[0], in_ch, out)
        r.bn(bns[0], out)
    elif in_ch != out or stride != 1:
        # the identity shortcut no longer fits: project, as ResNet's _make_layer does
        m.downsample = nn.Sequential(nn.Conv2d(in_ch, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)).to(
            device=m.conv1.weight.device, dtype=m.conv1.weight.dtype)
        r.done |= {id(x) for x in m.downsample}
    return r.finish(), out


# --- EfficientNet ----------------------------------------------------------------------------------

def _effnet_out(unit: Unit) -> int:
    m = unit.module
    if hasattr(m, "conv_pwl"):  # inverted / edge residual
        return m.conv_pwl.out_channels
    if hasattr(m, "conv_pw"):  # depthwise-separable
        return m.conv_pw.out_channels
    return _last_conv(m).out_channels  # stem; conv_head + bn2


def _effnet_rebuild(unit: Unit, in_ch: int, keep_width: bool, shrink: int) -> tuple[nn.Module, int]:
    r = _Resizer(unit, shrink)
    m = r.module
    kind = type(m).__name__
    if isinstance(m, nn.Sequential):  # the final conv_head + bn2 unit: always halved
        convs = [c for c in m if isinstance(c, nn.Conv2d)]
        bns = [b for b in m if isinstance(b, _BN)]
        if len(convs) != 1 or len(bns) != 1:
            raise r.fail("expected conv_head + bn2")
        out = r.shrunk(convs[0].out_channels)
        r.conv(convs[0], in_ch, out)
        r.bn(bns[0], out)
        return r.finish(), out
    if kind == "DepthwiseSeparableConv":
        out = m.conv_pw.out_channels if keep_width else r.shrunk(m.conv_pw.out_channels)
        r.conv(m.conv_dw, in_ch, in_ch)
        r.bn(m.bn1, in_ch)
        r.se(getattr(m, "se", None), in_ch)
        r.conv(m.conv_pw, in_ch, out)
        r.bn(m.bn2, out)
    elif kind == "InvertedResidual":
        mid = r.shrunk(m.conv_pw.out_channels)
        out = m.conv_pwl.out_channels if keep_width else r.shrunk(m.conv_pwl.out_channels)
        r.conv(m.conv_pw, in_ch, mid)
        r.bn(m.bn1, mid)
        r.conv(m.conv_dw, mid, mid)
        r.bn(m.bn2, mid)
        r.se(getattr(m, "se", None), mid)
        r.conv(m.conv_pwl, mid, out)
        r.bn(m.bn3, out)
    elif kind == "EdgeResidual":
        mid = r.shrunk(m.conv_exp.out_channels)
        out = m.conv_pwl.out_channels if keep_width else r.shrunk(m.conv_pwl.out_channels)
        r.conv(m.conv_exp, in_ch, mid)
        r.bn(m.bn1, mid)
        r.se(getattr(m, "se", None), mid)
        r.conv(m.conv_pwl, mid, out)
        r.bn(m.bn2, out)
    else:
        raise r.fail("slimming rebuilds DepthwiseSeparableConv, InvertedResidual and EdgeResidual blocks only")
    if getattr(m, "has_skip", False) and in_ch != out:
        raise r.fail(f"its residual connection cannot join {in_ch} input and {out} output channels")
    return r.finish(), out


# --- CBR -------------------------------------------------------------------------------------------

def _cbr_out(unit: Unit) -> int:
    return _last_conv(unit.module).out_channels


def _cbr_rebuild(unit: Unit, in_ch: int, keep_width: bool, shrink: int) -> tuple[nn.Module, int]:
    r = _Resizer(unit, shrink)
    block = r.module[0] if isinstance(r.module, nn.Sequential) else r.module
    if not (hasattr(block, "conv") and hasattr(block, "bn")):
        raise r.fail("expected a conv-BN-ReLU block")
    out = r.shrunk(block.conv.out_channels)
    r.conv(block.conv, in_ch, out)
    r.bn(block.bn, out)
    return r.finish(), out


# family -> (output channels of a unit, rebuild(unit, in_channels, keep_width, shrink) -> (module, out))
SLIM_FAMILIES: dict[str, tuple[Callable[[Unit], int], Callable[[Unit, int, bool, int], tuple[nn.Module, int]]]] = {
    "resnet": (_resnet_out, _resnet_rebuild),
    "efficientnet": (_effnet_out, _effnet_rebuild),
    "cbr": (_cbr_out, _cbr_rebuild),
}
