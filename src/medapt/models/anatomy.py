"""Backbone anatomy: a CNN seen as an ordered list of *units* grouped into stages.

A unit is the smallest piece the strategies reason about: the stem, then every block of every
stage in forward order (DESIGN §1). For ResNet50 that is the stem plus 16 bottlenecks in stages of
3, 4, 6 and 3, hence 17 cut points; for EfficientNet the stem, the blocks of the 7 stages, and
``conv_head`` + ``bn2`` as one final unit of the last stage.

A small table per family maps module names to units; any other timm CNN that exposes
``feature_info`` gets its units from its top-level children and its stages from ``feature_info``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["Unit", "Anatomy", "dissect", "FAMILIES", "ROLES"]


#: what a unit is: the stem, a block of a stage (a "sub-block" in Mehmood et al.), or a tail layer
#: after the last block (EfficientNet's conv_head + bn2, DenseNet's norm5)
ROLES = ("stem", "block", "tail")


@dataclass(frozen=True)
class Unit:
    """One unit: its name (a module path, or ``stem``/``head_conv``), stage index, module and role."""

    name: str
    stage: int  # 0 = stem, 1.. = stages
    module: nn.Module
    role: str = "block"  # stem | block | tail

    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@dataclass(frozen=True)
class Anatomy:
    """The ordered units of a backbone and its stage boundaries.

    Cut point ``k`` (1-based) is the boundary after unit ``k``: ``k = 1`` is after the stem,
    ``k = len(units)`` is the whole backbone. Truncating at ``k`` keeps units ``1..k``.
    """

    units: tuple[Unit, ...]
    family: str

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def n_stages(self) -> int:
        return max(u.stage for u in self.units)

    @property
    def cut_points(self) -> list[int]:
        return list(range(1, self.n_units + 1))

    def stage_end(self, stage: int) -> int:
        """Cut point after the last unit of ``stage`` (0 = stem)."""
        if not 0 <= stage <= self.n_stages:
            raise ConfigError(f"stage {stage} out of range: this {self.family} backbone has stages 0..{self.n_stages}")
        return max(i + 1 for i, u in enumerate(self.units) if u.stage == stage)

    @property
    def stage_ends(self) -> list[int]:
        """Cut points at stage boundaries (stem included): the block-wise TTL search space."""
        return [self.stage_end(s) for s in range(self.n_stages + 1)]

    def params_per_unit(self) -> list[tuple[str, int]]:
        return [(u.name, u.n_params()) for u in self.units]

    def params_up_to(self, k: int) -> int:
        """Parameters kept by truncation after unit ``k``."""
        self._check_cut(k)
        return sum(u.n_params() for u in self.units[:k])

    def _check_cut(self, k: int) -> None:
        if not 1 <= k <= self.n_units:
            raise ConfigError(f"cut point {k} out of range: this {self.family} backbone has cut points 1..{self.n_units}")

    def index(self, name: str) -> int:
        for i, u in enumerate(self.units):
            if u.name == name:
                return i
        raise ConfigError(f"no unit named {name!r}; units are {[u.name for u in self.units]}")

    @property
    def blocks(self) -> list[int]:
        """0-based indices of the block units (stem and tail layers excluded)."""
        return [i for i, u in enumerate(self.units) if u.role == "block"]

    def output_strides(self, size: int = 64) -> list[int]:
        """The output stride of every unit (input size / feature-map size), from one forward pass
        of a ``size`` × ``size`` zero image (a larger one for networks without padding)."""
        sizes = []
        try:
            x = torch.zeros(1, 3, size, size)
            with torch.no_grad():
                modes = [(m, m.training) for u in self.units for m in u.module.modules()]
                for u in self.units:
                    u.module.eval()
                try:
                    for u in self.units:
                        x = u.module(x)
                        sizes.append(x.shape[-1])
                finally:
                    for m, t in modes:
                        m.training = t
        except RuntimeError:
            if size >= 256:
                raise
            return self.output_strides(256)
        return [max(1, round(size / s)) for s in sizes]

    def stride_end(self, stride: int) -> int:
        """The cut point after the last unit whose output stride is at most ``stride`` — "the stem
        and the stages up to stride S", which is ResNet's layer1 for 4 and layer2 for 8 whatever
        the family calls its stages (Mehmood et al.'s first blocks, DA_TF_F1B / F2B)."""
        strides = self.output_strides()
        kept = [i + 1 for i, s in enumerate(strides) if s <= stride]
        if not kept or strides[0] > stride:
            raise ConfigError(f"keep stride:{stride}: this {self.family} backbone's stem already has output stride "
                              f"{strides[0]}; its units end at strides {sorted(set(strides))}")
        return max(kept)


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def _group(model: nn.Module, paths: list[str]) -> nn.Module:
    mods = [_get(model, p) for p in paths]
    return mods[0] if len(mods) == 1 else nn.Sequential(*mods)


def _units_from_table(model: nn.Module, stem: list[str], stages: list[list[list[str]]], tail: list[str], family: str) -> Anatomy:
    units = [Unit("stem", 0, _group(model, stem), "stem")]
    for s, stage in enumerate(stages, start=1):
        for j, paths in enumerate(stage):
            units.append(Unit(paths[0], s, _group(model, paths)))
    if tail:
        last = units[-1]
        units.append(Unit("+".join(tail), last.stage, _group(model, tail), "tail"))
    return Anatomy(tuple(units), family)


def _children_paths(model: nn.Module, container: str) -> list[list[str]]:
    return [[f"{container}.{n}"] for n, _ in _get(model, container).named_children()]


def _resnet(model: nn.Module) -> Anatomy:
    stem = [n for n in ("conv1", "bn1", "act1", "relu", "maxpool") if hasattr(model, n)]
    stages = [_children_paths(model, f"layer{i}") for i in range(1, 5)]
    return _units_from_table(model, stem, stages, [], "resnet")


def _efficientnet(model: nn.Module) -> Anatomy:
    stages = [_children_paths(model, f"blocks.{i}") for i in range(len(model.blocks))]
    tail = [n for n in ("conv_head", "bn2") if isinstance(getattr(model, n, None), nn.Module)
            and not isinstance(getattr(model, n), nn.Identity)]
    return _units_from_table(model, ["conv_stem", "bn1"], stages, tail, "efficientnet")


def _densenet(model: nn.Module) -> Anatomy:
    f = model.features
    names = [n for n, _ in f.named_children()]
    stem = [f"features.{n}" for n in names if not n.startswith(("denseblock", "transition", "norm5"))]
    blocks = sorted(n for n in names if n.startswith("denseblock"))
    stages = []
    for b in blocks:
        i = b.removeprefix("denseblock")
        stage = [[f"features.{b}"]]
        if f"transition{i}" in names:
            stage.append([f"features.transition{i}"])
        stages.append(stage)
    tail = ["features.norm5"] if "norm5" in names else []
    return _units_from_table(model, stem, stages, tail, "densenet")


def _cbr(model: nn.Module) -> Anatomy:
    """CBR nets (:mod:`medapt.models.cbr`): a unit per conv-BN-ReLU block with its max-pool; every
    block is its own stage, and block 1 plays the stem (stage 0)."""
    units = [Unit(paths[0], i, _group(model, paths), "stem" if i == 0 else "block")
             for i, paths in enumerate(model.unit_paths())]
    return Anatomy(tuple(units), "cbr")


def _stage_units(model: nn.Module, path: str) -> list[list[str]]:
    mod = _get(model, path)
    if isinstance(mod, nn.Sequential) and len(mod) > 1:
        return _children_paths(model, path)
    return [[path]]


def _generic(model: nn.Module) -> Anatomy:
    """Any timm CNN with ``feature_info``: stages are the feature_info modules, in forward order.

    Top-level children before the first stage form the stem; children after the last stage (and
    before global pooling) form a final unit of the last stage; a stage that is an
    ``nn.Sequential`` contributes one unit per child, any other stage module is one unit.
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ConfigError(
            f"cannot dissect {type(model).__name__}: it is not a known family (resnet, efficientnet, "
            "densenet) and exposes no timm feature_info. Use a timm CNN or add a family table in medapt.models.anatomy."
        )
    levels = info.get_dicts() if hasattr(info, "get_dicts") else info
    # a stride-2 level that is a single layer (e.g. the stem's activation) belongs to the stem
    stage_paths = {i["module"] for i in levels
                   if not (i.get("reduction", 4) <= 2 and not isinstance(_get(model, i["module"]), nn.Sequential))}
    stop = {"global_pool", "avgpool", "fc", "classifier", "head", "head_drop", "pre_logits", "flatten"}
    # flatten to (path, is_feature_stage) in forward order, expanding containers of stages
    items: list[tuple[str, bool]] = []

    def visit(path: str, mod: nn.Module) -> None:
        if path in stage_paths:
            items.append((path, True))
        elif any(p.startswith(path + ".") for p in stage_paths) and isinstance(mod, nn.Sequential):
            for n, child in mod.named_children():
                visit(f"{path}.{n}", child)
        else:
            items.append((path, False))

    for name, child in model.named_children():
        if name in stop:
            break
        visit(name, child)
    flags = [f for _, f in items]
    first = flags.index(True) if True in flags else len(items)
    last = len(flags) - 1 - flags[::-1].index(True) if True in flags else -1
    first = max(first, 1)  # a stem that timm reports as the first feature level stays the stem
    stem = [p for p, _ in items[:first]]
    # modules between reported stages (timm reports only stride changes) are stages too
    stages = [_stage_units(model, p) for p, _ in items[first:last + 1]]
    tail = [p for p, _ in items[last + 1:]]
    if not stages or not stem:
        raise ConfigError(f"cannot find a stem and stages in {type(model).__name__} from its feature_info {sorted(stage_paths)}")
    return _units_from_table(model, stem, stages, tail, "generic")


# (predicate on the model, dissector). First match wins.
FAMILIES: list[tuple[str, Callable[[nn.Module], bool], Callable[[nn.Module], Anatomy]]] = [
    ("resnet", lambda m: all(hasattr(m, f"layer{i}") for i in range(1, 5)) and hasattr(m, "conv1"), _resnet),
    ("efficientnet", lambda m: type(m).__name__ == "EfficientNet", _efficientnet),
    ("densenet", lambda m: hasattr(m, "features") and hasattr(getattr(m, "features"), "denseblock1"), _densenet),
    ("cbr", lambda m: type(m).__name__ == "CBRNet", _cbr),
]


def dissect(model: nn.Module) -> Anatomy:
    """Return the :class:`Anatomy` of a timm or torchvision CNN (classifier ignored).

    >>> a = dissect(timm.create_model("resnet50"))
    >>> a.n_units, a.stage_ends
    (17, [1, 4, 8, 14, 17])
    """
    _reject_non_cnn(model)
    for _, match, fn in FAMILIES:
        if match(model):
            return fn(model)
    return _generic(model)


#: what :func:`dissect` supports, for error messages
SUPPORTED = ("resnet (timm and torchvision ResNets, ResNeXt), efficientnet (EfficientNet B0-B7, tf_efficientnet_lite0-4, "
             "MobileNet-style timm EfficientNets), densenet (DenseNet121/169/201), cbr (cbr_tiny, cbr_small, "
             "cbr_large_t, cbr_large_w), and other timm CNNs that expose feature_info (dissected generically)")


def _reject_non_cnn(model: nn.Module) -> None:
    """A vision transformer / MLP-mixer has no stem + convolutional stages to cut: say so, with what works."""
    name = type(model).__name__
    tokens = hasattr(model, "patch_embed") or any(
        type(m).__name__ in ("Attention", "MultiheadAttention", "WindowAttention") for m in model.modules())
    if tokens:
        raise ConfigError(f"backbone {name} is a transformer (patch embedding + attention blocks), not a CNN: medapt's "
                          f"strategies cut a CNN into a stem and blocks of stages, which it has no anatomy for. "
                          f"Supported families: {SUPPORTED}. `medapt strategies --backbone NAME` shows how one maps.")


@torch.no_grad()
def check_equivalent(model: nn.Module, anatomy: Anatomy, size: int = 64) -> float:
    """Max abs difference between the units run in order and ``model.forward_features``."""
    model.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    y = x
    for u in anatomy.units:
        y = u.module(y)
    ref = model.forward_features(x) if hasattr(model, "forward_features") else None
    return float((y - ref).abs().max()) if ref is not None else float("nan")
