"""The one model builder: ``build(backbone, surgery)`` is the only place medapt makes weights.

A :class:`Surgery` says what becomes of the pretrained backbone — which units are kept
(``keep``), how their weights are initialised (``init``, a name in :data:`INITS`) and which head
follows them (``head``, a name in :data:`HEADS`). The steps, in order (the order fixes how the
global RNG is consumed, so a seeded build is reproducible):

1. the backbone is created (timm / torchvision) with the configured weights when the init needs
   them, else randomly initialised;
2. it is dissected into units and given a GAP + linear head;
3. truncation keeps units 1..k and gives the model a new head for the kept channels;
4. the init is applied (``pretrained`` and ``random`` are complete after step 1);
5. a non-GAP head replaces the GAP head.

>>> m = build("resnet50", Surgery(keep="cut:8"), n_outputs=2)
>>> m.n_units, m.num_features
(8, 512)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .anatomy import Anatomy, dissect
from .backbones import create_backbone
from .model import FlattenHead, GapHead, UnitModel, feature_shape

__all__ = ["Surgery", "Init", "INITS", "HEADS", "build", "new_head", "cut_point", "architecture_surgery"]

_KEEP = re.compile(r"^(all|stages:\d+|stride:\d+|cut:\d+)$")


@dataclass(frozen=True)
class Init:
    """An initialisation of the kept units.

    ``pretrained``: the backbone is created with the configured weights (else randomly);
    ``apply(model, generator)`` then changes the weights in place (``None``: nothing to do).
    ``reshapes``: ``apply`` also changes the architecture (e.g. ``slim@k``), so a step that
    reloads saved weights must run it again to get the same shapes (:func:`architecture_surgery`).
    """

    name: str
    pretrained: bool
    description: str = ""
    apply: Callable[[UnitModel, torch.Generator], None] | None = field(default=None, compare=False)
    reshapes: bool = False


#: initialisations by name (``pretrained``, ``random``; families ``name@k`` possible)
INITS: Registry[Init] = Registry("init")
INITS.register("pretrained", Init("pretrained", True, "the configured weights (ImageNet, embedded, a file)"))
INITS.register("random", Init("random", False, "PyTorch's default random initialisation (train from scratch)"))

#: model heads by name: ``f(units, n_outputs, image_size) -> nn.Module``
HEADS: Registry[Callable[[list, int, int], nn.Module]] = Registry("model head")


@HEADS.register("gap")
def _gap_head(units, n_outputs: int, image_size: int) -> nn.Module:
    """Global average pooling + linear (DESIGN §1; Mehmood et al.)."""
    return GapHead(_channels(units), n_outputs)


@HEADS.register("flatten")
def _flatten_head(units, n_outputs: int, image_size: int) -> nn.Module:
    """No pooling: the flattened feature map + linear (TruncatedTL's comparison; tied to ``image_size``)."""
    return FlattenHead(feature_shape(units, image_size), n_outputs)


@dataclass(frozen=True)
class Surgery:
    """What happens to the pretrained backbone before any phase.

    ``keep``: ``all`` | ``stride:S`` (the stem and every unit up to output stride S: 4 = ResNet's
    stem + layer1, 8 = + layer2, for every family) | ``stages:N`` (stem + the family's first N
    stages) | ``cut:K`` (units 1..K);
    ``init``: a name in :data:`INITS` (``pretrained``, ``random``, …);
    ``head``: a name in :data:`HEADS` (``gap``, ``flatten``).
    """

    keep: str = "all"
    init: str = "pretrained"
    head: str = "gap"

    def __post_init__(self) -> None:
        if not isinstance(self.keep, str) or not _KEEP.match(self.keep):
            raise ConfigError(f"surgery keep {self.keep!r} is not valid; use 'all', 'stride:S', 'stages:N' or 'cut:K'")
        if self.init not in INITS:
            INITS.get(self.init)  # raises: unknown init, with the registered ones
        if self.head not in HEADS:
            HEADS.get(self.head)

    @property
    def full(self) -> bool:
        return self.keep == "all"


def cut_point(keep: str, anatomy: Anatomy) -> int | None:
    """The cut point a ``keep`` spec selects on ``anatomy`` (``None`` = every unit)."""
    if keep == "all":
        return None
    kind, n = keep.split(":")
    if kind == "cut":
        anatomy._check_cut(int(n))
        return int(n)
    if kind == "stride":
        return anatomy.stride_end(int(n))
    stage_ends = anatomy.stage_ends
    if int(n) >= len(stage_ends):
        raise ConfigError(f"keep {keep!r}: this {anatomy.family} backbone has stages 1..{len(stage_ends) - 1} "
                          "after the stem")
    return stage_ends[int(n)]


def architecture_surgery(surgery: Surgery) -> Surgery:
    """The surgery that rebuilds ``surgery``'s architecture without pretrained weights or init draws to spare.

    For loading saved weights: the init becomes ``random`` unless it reshapes the model (``slim@k``),
    which must run again (on a randomly initialised backbone) to give the saved tensors their shapes.
    """
    if INITS.get(surgery.init).reshapes:
        return surgery
    return Surgery(keep=surgery.keep, init="random", head=surgery.head)


def _channels(units) -> int:
    try:
        return feature_shape(units, 64)[0]
    except RuntimeError:  # a network without padding needs a larger probe image
        return feature_shape(units, 224)[0]


def build(
    backbone: str,
    surgery: Surgery | None = None,
    *,
    weights: str | os.PathLike = "none",
    n_outputs: int = 1,
    image_size: int = 224,
    generator: torch.Generator | None = None,
) -> UnitModel:
    """Build a :class:`UnitModel`: the backbone cut, initialised and headed as ``surgery`` says.

    Args:
        backbone: timm name or ``torchvision:<name>``.
        surgery: keep / init / head (default: every unit, pretrained weights, GAP head).
        weights: ``none`` | ``embedded`` | ``imagenet`` | path to a state dict — used when the
            init is pretrained.
        n_outputs: head outputs (1 logit for a binary task, C for C classes, L labels).
        image_size: input size; only a ``flatten`` head depends on it.
        generator: randomness for inits that draw (Mean-Var, Gabor, …); the backbone's and the
            head's default initialisation draw from torch's global RNG, as timm's layers do —
            seed it (or fork it) around the call for a reproducible model.

    >>> build("resnet50").n_params()
    23510081
    """
    if surgery is not None and not isinstance(surgery, Surgery):
        raise ConfigError(f"build(): surgery must be a medapt.models.Surgery, got {surgery!r}; weights are a keyword "
                          "argument: build(name, weights='none')")
    surgery = surgery or Surgery()
    init = INITS.get(surgery.init)
    model, info = create_backbone(backbone, weights if init.pretrained else "none")
    anatomy = dissect(model)
    units = list(anatomy.units)
    head = _gap_head(units, n_outputs, image_size)
    out = UnitModel(units, head, backbone, info, anatomy.family)
    k = cut_point(surgery.keep, anatomy)
    if k is not None:  # the kept channels change: a new head (drawn after the full one, as ever)
        units = units[:k]
        out = UnitModel(units, _gap_head(units, n_outputs, image_size), backbone, info, anatomy.family)
    if init.apply is not None:
        init.apply(out, generator if generator is not None else torch.Generator().manual_seed(0))
    if surgery.head != "gap":
        out.head = HEADS.get(surgery.head)(list(out.anatomy.units), n_outputs, image_size)
    return out


def new_head(model: UnitModel, n_outputs: int, *, kind: str | None = None, image_size: int = 224,
             generator: torch.Generator | None = None) -> nn.Module:
    """Replace ``model.head`` by a fresh head of the same kind (or ``kind``) with ``n_outputs``.

    With ``generator`` the head is drawn from it under a forked global RNG, so the caller's
    global stream is untouched (a new head for a target task: deterministic per seed and task).
    """
    kind = kind or ("flatten" if isinstance(model.head, FlattenHead) else "gap")
    factory = HEADS.get(kind)
    units = list(model.units)
    if generator is None:
        model.head = factory(units, n_outputs, image_size)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            model.head = factory(units, n_outputs, image_size)
    return model.head
