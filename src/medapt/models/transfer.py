"""The Transfusion / TruncatedTL initialisations as registered inits of the model builder.

Each name below is an :class:`~medapt.models.build.Init` in :data:`~medapt.models.build.INITS`,
so ``Surgery(init=...)`` (and a strategy's ``surgery.init`` in YAML) can use it, before DAPT on
the source or before fine-tuning on a target:

* ``transfusion@k`` — weight transfusion (Raghu et al.): pretrained units ``1..k``, units
  ``k+1..`` random, same widths;
* ``slim@k`` — TransFusion slim (``TF@k``): pretrained units ``1..k`` (BatchNorm statistics
  included), later units rebuilt at half width from random (:func:`medapt.models.slim.slim_units`).
  This init **reshapes** the model (``Init.reshapes``): a step that reloads saved weights rebuilds
  the same architecture through :func:`medapt.models.build.architecture_surgery`;
* ``meanvar`` — every unit's tensors i.i.d. from N(mean, var) of the pretrained tensor
  (:func:`medapt.models.inits.meanvar_`, BatchNorm γ/β sampled too, running statistics reset);
* ``gabor_conv1`` — conv1 a synthetic Gabor bank scaled to the pretrained conv1's norm, every
  other unit random (:func:`medapt.models.inits.gabor_conv1_`).

"Random" here is the backbone's own random initialisation — the one ``init: random`` (the
``Scratch`` strategy) gets, e.g. timm's He-normal convolutions, with no BatchNorm γ left at 0
(:func:`~medapt.models.backbones.unzero_bn_gammas_`) — drawn under a global RNG forked
and seeded from the builder's generator, so a seeded build is reproducible and the caller's
global RNG is untouched. Slimmed units are initialised as the published TruncatedTL code does
(:func:`medapt.models.inits.he_init_`). The head is always the builder's fresh head.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .anatomy import dissect
from .backbones import create_backbone
from .build import INITS, Init
from .inits import _seed_from, first_layer, gabor_conv1_, meanvar_
from .model import GapHead, UnitModel
from .slim import SLIM_FAMILIES, slim_units

__all__ = ["random_units", "check_k"]


def check_k(model: UnitModel, k: int, what: str) -> None:
    """``k`` must be a cut point of ``model``: an error that names the range otherwise."""
    if not 1 <= k <= model.n_units:
        raise ConfigError(f"{what}: k={k} is out of range; this {model.family} backbone ({model.backbone}, as kept) "
                          f"has units 1..{model.n_units}")


def random_units(model: UnitModel, generator: torch.Generator) -> list[nn.Module]:
    """Freshly randomly initialised copies of ``model``'s units (the backbone's own init, like ``init: random``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_from(generator))
        fresh, _ = create_backbone(model.backbone, "none")
    mods = [u.module for u in dissect(fresh).units][: model.n_units]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return [m.to(device) for m in mods]


@torch.no_grad()
def _randomise(model: UnitModel, start: int, generator: torch.Generator) -> None:
    """Units ``start..`` (0-based) get the backbone's random initialisation (weights and BN statistics)."""
    fresh = random_units(model, generator)
    for i in range(start, model.n_units):
        model.units[i].load_state_dict(fresh[i].state_dict())


def _transfusion(k: int) -> Init:
    if k < 1:
        raise ConfigError(f"transfusion@{k}: k must be >= 1 (units 1..k keep their pretrained weights)")

    def apply(model: UnitModel, generator: torch.Generator) -> None:
        check_k(model, k, f"Transfusion@{k}")
        _randomise(model, k, generator)

    return Init(f"transfusion@{k}", True, f"weight transfusion: pretrained units 1..{k}, the rest random, same widths",
                apply)


def _slim(k: int) -> Init:
    if k < 1:
        raise ConfigError(f"slim@{k}: k must be >= 1 (units 1..k keep their pretrained weights)")

    def apply(model: UnitModel, generator: torch.Generator) -> None:
        if model.family not in SLIM_FAMILIES:
            raise ConfigError(f"TF@{k} (TransFusion slim) supports the families {', '.join(sorted(SLIM_FAMILIES))}; "
                              f"{model.backbone} is a {model.family!r} backbone. Use a ResNet, an EfficientNet or a "
                              "CBR network.")
        check_k(model, k, f"TF@{k}")
        units, channels = slim_units(model, k, generator)
        n_out = model.head.n_outputs
        model.units = nn.ModuleList([u.module for u in units])
        model.unit_names = [u.name for u in units]
        model.unit_stages = [u.stage for u in units]
        model.unit_roles = [u.role for u in units]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(generator))
            model.head = GapHead(channels, n_out)

    return Init(f"slim@{k}", True, f"TransFusion slim: pretrained units 1..{k}, later units at half width, random",
                apply, reshapes=True)


@torch.no_grad()
def _meanvar(model: UnitModel, generator: torch.Generator) -> None:
    for unit in model.units:
        ref = {n: t.detach().clone() for n, t in unit.state_dict().items()}
        meanvar_(unit, ref, generator, bn="sample")


@torch.no_grad()
def _gabor(model: UnitModel, generator: torch.Generator) -> None:
    conv = first_layer(model.units[0])  # a clear error when the first layer is not a Conv2d
    reference = conv.weight.detach().clone()
    _randomise(model, 0, generator)
    gabor_conv1_(first_layer(model.units[0]), reference)


INITS.register_family("transfusion", _transfusion,
                      "weight transfusion: pretrained units 1..k, random above (same widths)")
INITS.register_family("slim", _slim, "TransFusion slim: pretrained units 1..k, the rest rebuilt at half width, random")
INITS.register("meanvar", Init("meanvar", True, "Mean-Var: each tensor i.i.d. N(mean, var) of its pretrained values",
                               _meanvar))
INITS.register("gabor_conv1", Init("gabor_conv1", True, "Gabor bank in conv1 (scaled to the pretrained conv1's norm), "
                                   "the rest random", _gabor))
