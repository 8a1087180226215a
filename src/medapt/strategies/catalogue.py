"""Strategies as data: architecture surgery + an ordered list of phases (DESIGN §3).

Defaults follow Mehmood et al. (phase 1: head only, Adam 1e-4, 1000 epochs; phases 2/3: Adam
1e-5; 150 epochs, or 100 partial + 50 full for the hybrid "PFT" strategies; batch 16; BatchNorm
frozen). Every number can be overridden per experiment (:meth:`Strategy.with_epochs`,
:meth:`Strategy.scaled`) and users can add their own strategies from YAML (:func:`load_yaml`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import read_yaml
from ..errors import ConfigError
from ..registry import Registry

__all__ = ["Phase", "Surgery", "Strategy", "STRATEGIES", "get", "names", "register", "load_yaml", "parse_trainable"]

_TRAINABLE = re.compile(r"^(head|all|last:\d+|from:\d+|units:[\w.,+-]+)$")


def parse_trainable(spec: str) -> str:
    """Validate a phase's ``trainable`` spec.

    ``head`` (only the head), ``all`` (every unit + head), ``last:N`` (the last N units + head),
    ``from:K`` (units after cut point K + head), ``units:a,b`` (named units + head).
    """
    if not isinstance(spec, str) or not _TRAINABLE.match(spec):
        raise ConfigError(f"trainable spec {spec!r} is not valid; use 'head', 'all', 'last:N', 'from:K' or 'units:NAME,NAME'")
    return spec


@dataclass(frozen=True)
class Phase:
    """A span of training with a fixed trainable set, optimizer, learning rate and epoch count."""

    name: str
    trainable: str
    lr: float
    epochs: int
    optimizer: str = "adam"
    batch_size: int = 16

    def __post_init__(self) -> None:
        parse_trainable(self.trainable)
        if self.epochs < 0:
            raise ConfigError(f"phase {self.name!r}: epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"phase {self.name!r}: lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "sgd", "adamw"):
            raise ConfigError(f"phase {self.name!r}: optimizer {self.optimizer!r} not in adam, adamw, sgd")
        if self.batch_size < 1:
            raise ConfigError(f"phase {self.name!r}: batch_size must be >= 1, got {self.batch_size}")

    @property
    def head_only(self) -> bool:
        return self.trainable == "head"


@dataclass(frozen=True)
class Surgery:
    """Architecture changes applied to the pretrained backbone before any phase.

    ``keep``: ``all`` | ``stages:N`` (stem + first N stages) | ``cut:K`` (units 1..K);
    ``init``: ``pretrained`` (the configured weights) or ``random`` (train from scratch).
    """

    keep: str = "all"
    init: str = "pretrained"

    def __post_init__(self) -> None:
        if not re.match(r"^(all|stages:\d+|cut:\d+)$", self.keep):
            raise ConfigError(f"surgery keep {self.keep!r} is not valid; use 'all', 'stages:N' or 'cut:K'")
        if self.init not in ("pretrained", "random"):
            raise ConfigError(f"surgery init {self.init!r} not in pretrained, random")

    @property
    def full(self) -> bool:
        return self.keep == "all"


@dataclass(frozen=True)
class Strategy:
    """A named recipe: surgery + ordered phases. ``phases == ()`` means no training (a baseline)."""

    name: str
    family: str
    surgery: Surgery = field(default_factory=Surgery)
    phases: tuple[Phase, ...] = ()
    description: str = ""
    reference: str = ""

    @property
    def trains(self) -> bool:
        return bool(self.phases)

    def with_epochs(self, epochs: dict[str, int]) -> Strategy:
        """A copy with the named phases' epochs replaced (unknown phase names are ignored)."""
        return replace(self, phases=tuple(replace(p, epochs=int(epochs.get(p.name, p.epochs))) for p in self.phases))

    def with_phase_values(self, name: str, **values: Any) -> Strategy:
        return replace(self, phases=tuple(replace(p, **values) if p.name == name else p for p in self.phases))

    def scaled(self, factor: float) -> Strategy:
        """Scale every phase's epochs by ``factor`` (at least 1 epoch), keeping the paper's ratios."""
        if factor <= 0:
            raise ConfigError(f"epoch scale must be > 0, got {factor}")
        return replace(self, phases=tuple(replace(p, epochs=max(1, math.ceil(p.epochs * factor))) for p in self.phases))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phases"] = [asdict(p) for p in self.phases]
        return d


STRATEGIES: Registry[Strategy] = Registry("strategy", hint="`medapt strategies` lists all.")


def register(s: Strategy) -> Strategy:
    STRATEGIES.register(s.name, s)
    return s


def get(name: str) -> Strategy:
    """The strategy registered under ``name`` (case-sensitive)."""
    return STRATEGIES.get(name)


def names() -> list[str]:
    return STRATEGIES.names()


# --- the catalogue --------------------------------------------------------------------------------

MEHMOOD = "Mehmood et al., Resource-efficient domain adaptive pre-training for medical images"
P1 = Phase("phase1", "head", lr=1e-4, epochs=1000)


def _p(name: str, trainable: str, epochs: int) -> Phase:
    return Phase(name, trainable, lr=1e-5, epochs=epochs)


for _s in [
    Strategy("ImageNet", "baseline", description="ImageNet weights, no DAPT", reference=MEHMOOD),
    Strategy("DA", "full DAPT", phases=(P1, _p("phase2", "all", 150)),
             description="head warm-up, then every unit trains", reference=MEHMOOD),
    Strategy("DA_L1SB", "partial DAPT", phases=(P1, _p("phase2", "last:1", 150)),
             description="head warm-up, then the last sub-block trains", reference=MEHMOOD),
    Strategy("DA_L2SB", "partial DAPT", phases=(P1, _p("phase2", "last:2", 150)),
             description="head warm-up, then the last two sub-blocks train", reference=MEHMOOD),
    Strategy("DA_L1SB_PFT", "hybrid DAPT", phases=(P1, _p("phase2", "last:1", 100), _p("phase3", "all", 50)),
             description="head warm-up, last sub-block, then every unit", reference=MEHMOOD),
    Strategy("DA_L2SB_PFT", "hybrid DAPT", phases=(P1, _p("phase2", "last:2", 100), _p("phase3", "all", 50)),
             description="head warm-up, last two sub-blocks, then every unit", reference=MEHMOOD),
    Strategy("DA_TF_F1B", "simplified + DAPT", Surgery(keep="stages:1"), phases=(P1, _p("phase2", "all", 150)),
             description="stem + first stage only, DAPT on all of it", reference=MEHMOOD),
    Strategy("DA_TF_F2B", "simplified + DAPT", Surgery(keep="stages:2"), phases=(P1, _p("phase2", "all", 150)),
             description="stem + first two stages only, DAPT on all of it", reference=MEHMOOD),
    Strategy("ImageNet_TF_F1B", "simplified baseline", Surgery(keep="stages:1"),
             description="stem + first stage with ImageNet weights, no DAPT", reference=MEHMOOD),
    Strategy("ImageNet_TF_F2B", "simplified baseline", Surgery(keep="stages:2"),
             description="stem + first two stages with ImageNet weights, no DAPT", reference=MEHMOOD),
    Strategy("FTL", "fine-tuning", phases=(Phase("finetune", "all", lr=1e-4, epochs=100),),
             description="full fine-tuning of a pretrained backbone + new head",
             reference="Peng et al., Rethinking Transfer Learning for Medical Image Classification"),
    Strategy("LinearProbe", "linear probe", phases=(Phase("probe", "head", lr=1e-4, epochs=100),),
             description="frozen pretrained backbone, head only",
             reference="Peng et al., Rethinking Transfer Learning for Medical Image Classification"),
    Strategy("Scratch", "scratch", Surgery(init="random"), phases=(Phase("train", "all", lr=1e-4, epochs=100),),
             description="random initialisation, everything trains",
             reference="Raghu et al., Transfusion: Understanding Transfer Learning for Medical Imaging"),
]:
    register(_s)


# --- user strategies from YAML --------------------------------------------------------------------

def from_dict(d: dict[str, Any], origin: str = "config") -> Strategy:
    """Build a :class:`Strategy` from plain data (the YAML form)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{origin}: a strategy must be a mapping, got {type(d).__name__}")
    allowed = {"name", "family", "surgery", "phases", "description", "reference"}
    extra = set(d) - allowed
    if extra:
        raise ConfigError(f"{origin}: unknown strategy field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    if "name" not in d:
        raise ConfigError(f"{origin}: a strategy needs a 'name'")
    try:
        phases = tuple(Phase(**p) for p in d.get("phases") or ())
        surgery = Surgery(**(d.get("surgery") or {}))
    except TypeError as exc:
        raise ConfigError(f"{origin}: strategy {d['name']!r}: {exc}") from exc
    return Strategy(str(d["name"]), str(d.get("family", "custom")), surgery, phases,
                    str(d.get("description", "")), str(d.get("reference", "")))


def load_yaml(path: str | Path, *, register_them: bool = True) -> list[Strategy]:
    """Read user strategies from a YAML file: a list of mappings (or ``{strategies: [...]}``).

    Example::

        - name: DA_L3SB
          family: partial DAPT
          phases:
            - {name: phase1, trainable: head, lr: 1.0e-4, epochs: 1000}
            - {name: phase2, trainable: "last:3", lr: 1.0e-5, epochs: 150}
    """
    p = Path(path)
    data = read_yaml(p, "strategy file", (list, dict), hint="")
    if isinstance(data, dict):
        data = data.get("strategies")
    if not isinstance(data, list):
        raise ConfigError(f"strategy file {str(p)!r} must hold a list of strategies")
    out = [from_dict(d, f"{p}[{i}]") for i, d in enumerate(data)]
    if register_them:
        for s in out:
            if s.name in STRATEGIES and STRATEGIES.get(s.name) != s:
                raise ConfigError(f"{p}: strategy {s.name!r} already exists with a different definition; pick another name")
            if s.name not in STRATEGIES:
                register(s)
    return out
