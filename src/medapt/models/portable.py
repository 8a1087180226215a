"""Portable weights: a :class:`UnitModel` saved with its backbone library's own key names.

medapt's models keep their weights as ``units.N.*`` + ``head.*`` (the unit list), which timm does
not load. :func:`save_portable` writes the same tensors under the names of the timm (or
torchvision) model the units were taken from — ``conv1.weight``, ``layer1.0.bn1.running_mean``,
``blocks.3.1.conv_pw.weight`` … — plus a JSON beside it (architecture, cut point, input size,
normalisation, class names). Which file holds what:

* ``F`` (``.safetensors``): the kept units under timm's names; for a **whole backbone with its
  GAP + linear head** also timm's classifier (``fc`` / ``classifier``), so timm loads it as is::

      timm.create_model(name, pretrained=True, num_classes=n,
                        pretrained_cfg_overlay=dict(file=F, num_classes=n))

  (``num_classes`` in the overlay too: timm drops a classifier whose size differs from its config's).
  A whole backbone with another head loads into timm as a feature extractor (``num_classes=0``).
* ``<F stem>.head.safetensors``: any head timm cannot express (a head on a truncated backbone, a
  flatten head, an MLP head on standardised features), under ``head.*`` names.
* ``F.json`` (``model.safetensors.json``): the metadata; :func:`load` reads all three and rebuilds the model for any cut.

Identity, not naming conventions, maps the keys: the units share their modules with the library
model they were dissected from, so each unit tensor *is* one tensor of that model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path, atomic_write_json
from ..errors import ConfigError, WeightsError
from .anatomy import dissect
from .backbones import create_backbone
from .build import HEADS, cut_point
from .model import FlattenHead, GapHead, UnitModel

__all__ = ["FeatureMLPHead", "save_portable", "load", "read_metadata", "metadata_path", "head_path",
           "library_model", "PORTABLE_VERSION"]

PORTABLE_VERSION = 1


class FeatureMLPHead(nn.Module):
    """GAP features → z-score (the training split's statistics) → MLP: a downstream head (Mehmood
    et al.'s Model 1/2) attached to the backbone it was trained on, so the pair runs as one model."""

    accepts_pooled = True

    def __init__(self, mlp: nn.Sequential, feature_mean: torch.Tensor, feature_std: torch.Tensor):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("feature_mean", torch.as_tensor(feature_mean, dtype=torch.float32).clone())
        self.register_buffer("feature_std", torch.as_tensor(feature_std, dtype=torch.float32).clone())
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        self.in_features, self.n_outputs = linears[0].in_features, linears[-1].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((GapHead.pool(x) - self.feature_mean) / self.feature_std)


def mlp_from_state_dict(sd: dict[str, torch.Tensor], prefix: str = "mlp.") -> nn.Sequential:
    """The ``Linear → ReLU → … → Linear`` stack whose weights are ``sd`` (keys ``mlp.<i>.weight``)."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.weight$", k))})
    if not idx:
        raise WeightsError(f"no MLP layers ({prefix}<i>.weight) in the head weights")
    layers: list[nn.Module] = []
    for pos in range(idx[-1] + 1):
        if pos in idx:
            w = sd[f"{prefix}{pos}.weight"]
            layers.append(nn.Linear(int(w.shape[1]), int(w.shape[0])))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def metadata_path(path: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``: one JSON per exported file, so exports of one model in
    several formats side by side keep theirs."""
    p = Path(path)
    return p.with_name(f"{p.name}.json")


def head_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}.head.safetensors")


def library_model(backbone: str, keep: str, head: nn.Module) -> tuple[nn.Module, UnitModel]:
    """(the timm/torchvision model, a UnitModel on its units up to ``keep`` with ``head``), sharing tensors."""
    root, info = create_backbone(backbone, "none")
    anatomy = dissect(root)
    k = cut_point(keep, anatomy)
    units = list(anatomy.units)[: k if k is not None else None]
    return root, UnitModel(units, head, backbone, info, anatomy.family)


def _classifier_name(root: nn.Module) -> str | None:
    cfg = getattr(root, "pretrained_cfg", None) or {}
    name = cfg.get("classifier")
    if isinstance(name, str):
        return name
    for cand in ("fc", "classifier"):  # torchvision
        if isinstance(getattr(root, cand, None), nn.Linear):
            return cand
    return None


def _unit_key_map(root: nn.Module, um: UnitModel) -> dict[str, str]:
    """``units.N.*`` key of ``um`` → the library model's key of the same tensor."""
    by_id: dict[int, str] = {}
    for name, t in root.state_dict(keep_vars=True).items():
        by_id.setdefault(id(t), name)
    out = {}
    for name, t in um.state_dict(keep_vars=True).items():
        if name.startswith("units."):
            if id(t) not in by_id:  # pragma: no cover - a unit that is not part of the library model
                raise WeightsError(f"unit tensor {name} has no counterpart in the {um.backbone} model")
            out[name] = by_id[id(t)]
    return out


def _head_spec(head: nn.Module) -> dict[str, Any]:
    if isinstance(head, FeatureMLPHead):
        return {"kind": "mlp", "in_features": head.in_features, "n_outputs": head.n_outputs}
    if isinstance(head, FlattenHead):
        return {"kind": "flatten", "feature_shape": list(head.feature_shape), "n_outputs": head.n_outputs}
    if isinstance(head, GapHead):
        return {"kind": "gap", "in_features": head.in_features, "n_outputs": head.n_outputs}
    raise WeightsError(f"cannot export a head of type {type(head).__name__}")


def save_portable(model: UnitModel, path: str | Path, keep: str, *, image_size: int,
                  metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` under its library's key names to ``path`` (+ head file + JSON); return the JSON.

    ``keep`` is the surgery's keep spec (``all``, ``stride:8``, ``cut:5`` …) the model was built with.
    """
    from safetensors.torch import save_file

    path = Path(path)
    head_meta = _head_spec(model.head)
    probe = GapHead(1, 1)  # a throwaway head: only the units' tensors are mapped
    root, skeleton = library_model(model.backbone, keep, probe)
    if skeleton.n_units != model.n_units:
        raise WeightsError(f"keep {keep!r} gives {skeleton.n_units} units on {model.backbone}, the model has "
                           f"{model.n_units}")
    kmap = _unit_key_map(root, skeleton)
    sd = {k: v for k, v in model.state_dict().items()}
    lib = {kmap[k]: v.detach().cpu().contiguous() for k, v in sd.items() if k.startswith("units.")}
    head_sd = {k: v.detach().cpu().contiguous() for k, v in sd.items() if k.startswith("head.")}
    whole = keep == "all"
    classifier = _classifier_name(root)
    in_timm = whole and head_meta["kind"] == "gap" and classifier is not None
    if in_timm:
        lib[f"{classifier}.weight"] = head_sd.pop("head.fc.weight")
        lib[f"{classifier}.bias"] = head_sd.pop("head.fc.bias")
    with atomic_path(path) as tmp:
        save_file(lib, str(tmp), metadata={"format": "pt"})
    hp = head_path(path)
    if head_sd:
        with atomic_path(hp) as tmp:
            save_file(head_sd, str(tmp))
    elif hp.exists():
        hp.unlink()
    library = "torchvision" if model.backbone.startswith("torchvision:") else "timm"
    arch = model.backbone.split(":", 1)[-1]
    n = head_meta["n_outputs"]
    if library == "timm":
        if in_timm:
            how = (f"timm.create_model({arch!r}, pretrained=True, num_classes={n}, "
                   f"pretrained_cfg_overlay=dict(file={path.name!r}, num_classes={n}))")
        elif whole:
            how = (f"timm.create_model({arch!r}, pretrained=True, num_classes=0, "
                   f"pretrained_cfg_overlay=dict(file={path.name!r}, num_classes=0))  # features; the head: "
                   "medapt.models.load()")
        else:
            how = f"medapt.models.load({path.name!r})  # a truncated backbone: timm has no such architecture"
    else:
        how = f"medapt.models.load({path.name!r})"
    meta = {
        "medapt_portable": PORTABLE_VERSION,
        "library": library,
        "architecture": arch,
        "backbone": model.backbone,
        "family": model.family,
        "keep": keep,
        "whole_backbone": whole,
        "cut_point": model.n_units,
        "n_units_total": len(dissect(root).units),
        "last_unit": model.unit_names[-1],
        "head": {**head_meta, "in_library_file": in_timm, "classifier": classifier if in_timm else None},
        "input_size": [3, int(image_size), int(image_size)],
        "weights_file": path.name,
        "head_file": hp.name if head_sd else None,
        "load": how,
        **(metadata or {}),
    }
    atomic_write_json(metadata_path(path), meta)
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON written beside an exported model (``model.onnx`` / ``model.pt`` / ``model.safetensors``)."""
    mp = metadata_path(path)
    if not mp.is_file():
        raise WeightsError(f"{mp} is missing: an exported medapt model has its metadata JSON beside it "
                           "(write it with `medapt export`)")
    try:
        return json.loads(mp.read_text())
    except ValueError as exc:
        raise WeightsError(f"{mp} is not valid JSON ({exc}); export the model again") from None


def _build_head(meta: dict[str, Any], head_sd: dict[str, torch.Tensor], units: list, image_size: int) -> nn.Module:
    h = meta["head"]
    if h["kind"] == "mlp":
        mlp = mlp_from_state_dict(head_sd, "head.mlp.")
        return FeatureMLPHead(mlp, head_sd["head.feature_mean"], head_sd["head.feature_std"])
    if h["kind"] not in HEADS:
        raise WeightsError(f"unknown head kind {h['kind']!r} in the metadata")
    return HEADS.get(h["kind"])(units, int(h["n_outputs"]), image_size)


def load(path: str | Path) -> UnitModel:
    """Load a model written by ``medapt export --format timm`` (any cut point, any head), in eval mode.

    >>> model = medapt.models.load("export/DA.safetensors")    # doctest: +SKIP
    >>> probs = torch.softmax(model(x), dim=1)                  # x normalised as the JSON says
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"medapt.models.load reads the .safetensors of `medapt export --format timm`, got {path}; "
                          "an .onnx file runs with onnxruntime, a TorchScript .pt with torch.jit.load")
    if not path.is_file():
        raise WeightsError(f"{path} does not exist")
    meta = read_metadata(path)
    lib = load_file(str(path))
    hp = path.with_name(meta["head_file"]) if meta.get("head_file") else None
    head_sd = load_file(str(hp)) if hp is not None else {}
    h = meta["head"]
    if h.get("in_library_file"):
        head_sd = {"head.fc.weight": lib.pop(f"{h['classifier']}.weight"), "head.fc.bias": lib.pop(f"{h['classifier']}.bias")}
    image_size = int(meta["input_size"][-1])
    root, um = library_model(meta["backbone"], meta["keep"], GapHead(1, 1))
    inverse = {v: k for k, v in _unit_key_map(root, um).items()}
    missing = sorted(set(inverse) - set(lib))
    extra = sorted(set(lib) - set(inverse))
    if missing or extra:
        raise WeightsError(f"{path}: the weights do not fit {meta['backbone']} kept as {meta['keep']!r} "
                           f"(missing {missing[:5]}, unexpected {extra[:5]})")
    units = list(um.units)
    um.head = _build_head(meta, head_sd, units, image_size)
    state = {inverse[k]: v for k, v in lib.items()} | head_sd
    um.load_state_dict(state, strict=True)
    return um.eval()
