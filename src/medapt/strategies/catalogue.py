"""Strategies as data: architecture surgery + an ordered list of phases (DESIGN §3).

Defaults follow Mehmood et al. (phase 1: head only, Adam 1e-4, 1000 epochs; phases 2/3: Adam
1e-5; 150 epochs, or 100 partial + 50 full for the hybrid "PFT" strategies; batch 16; BatchNorm
frozen). Every number can be overridden per experiment (:meth:`Strategy.with_epochs`,
:meth:`Strategy.scaled`) and users can add their own strategies from YAML (:func:`load_yaml`).

A phase declares its data: ``source`` (the DAPT surrogate task) or ``target`` (each downstream
task's training split, validation monitored, best checkpoint kept). Target phases come last; the
first one gives the model a new head for the task. Named *presets* fill a phase's training
schedule (``preset: ttl`` — TruncatedTL's). Parametric *families* resolve ``FAMILY@k`` names
(``TTL@8``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..config import read_yaml
from ..errors import ConfigError
from ..models.build import Surgery
from ..registry import Registry

__all__ = ["Phase", "Plateau", "StepSchedule", "Surgery", "Strategy", "STRATEGIES", "PRESETS", "get", "names", "register",
           "load_yaml", "parse_trainable", "phase_from_dict", "from_dict", "DATA_ROLES", "MONITORS"]

_TRAINABLE = re.compile(r"^(head|all|last:\d+|lastblocks:\d+|from:\d+|units:[\w.,+-]+)$")
_LR_SELECTOR = re.compile(r"^(head|backbone|all|last:\d+|lastblocks:\d+|from:\d+|units:[\w.,+-]+)$")
DATA_ROLES = ("source", "target")
MONITORS = ("auroc", "auprc", "loss")
OPTIMIZERS = ("adam", "adamw", "sgd")


def parse_trainable(spec: str) -> str:
    """Validate a phase's ``trainable`` spec.

    ``head`` (only the head), ``all`` (every unit + head), ``last:N`` (the last N units + head),
    ``lastblocks:N`` (the last N blocks — Mehmood et al.'s sub-blocks — and any tail layer after
    them, e.g. EfficientNet's conv_head; the same as ``last:N`` on a ResNet), ``from:K`` (units
    after cut point K + head), ``units:a,b`` (named units + head).
    """
    if not isinstance(spec, str) or not _TRAINABLE.match(spec):
        raise ConfigError(f"trainable spec {spec!r} is not valid; use 'head', 'all', 'last:N', 'lastblocks:N', "
                          "'from:K' or 'units:NAME,NAME'")
    return spec


@dataclass(frozen=True)
class Plateau:
    """``ReduceLROnPlateau`` on the monitored validation metric: multiply the learning rate by
    ``factor`` after ``patience`` epochs without improvement; stop the phase once it falls below
    ``min_lr`` (TruncatedTL: ×0.5, stop below 1e-7 in the paper, patience 5 and 1e-6 in its code)."""

    factor: float = 0.5
    patience: int = 5
    min_lr: float = 1e-7

    def __post_init__(self) -> None:
        if not 0 < self.factor < 1:
            raise ConfigError(f"plateau.factor must be in (0, 1), got {self.factor}")
        if self.patience < 0:
            raise ConfigError(f"plateau.patience must be >= 0, got {self.patience}")
        if not self.min_lr > 0:
            raise ConfigError(f"plateau.min_lr must be > 0, got {self.min_lr}")


@dataclass(frozen=True)
class StepSchedule:
    """A per-step learning-rate schedule: linear warm-up over ``warmup_steps`` optimizer steps, then
    ×``factor`` after each step in ``decay_steps`` — BiT-HyperRule's (Kolesnikov et al., *Big
    Transfer*; ``bit_hyperrule.get_lr``): the multiplier at step t (0-based, the step about to be
    taken) is t / warmup_steps below the warm-up end, else ``factor`` ** (decay points s < t).
    The engine applies it with ``torch.optim.lr_scheduler.LambdaLR``, one scheduler step per batch."""

    warmup_steps: int = 0
    decay_steps: tuple[int, ...] = ()
    factor: float = 0.1

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ConfigError(f"lr_schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        decays = tuple(int(s) for s in self.decay_steps)
        if any(b <= a for a, b in zip(decays, decays[1:])) or any(s < 1 for s in decays):
            raise ConfigError(f"lr_schedule.decay_steps must be increasing step counts >= 1, got {list(decays)}")
        object.__setattr__(self, "decay_steps", decays)
        if not 0 < self.factor < 1:
            raise ConfigError(f"lr_schedule.factor must be in (0, 1), got {self.factor}")

    def multiplier(self, step: int) -> float:
        """The learning-rate multiplier of optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return self.factor ** sum(1 for s in self.decay_steps if s < step)


@dataclass(frozen=True)
class Phase:
    """A span of training with a fixed trainable set, optimizer, learning rate and epoch count.

    Args:
        name: the phase's name (``phase1``…); schedule overrides address phases by name.
        trainable: which units train (see :func:`parse_trainable`); the head always trains.
        lr: base learning rate. epochs: the number of epochs (at most, with ``plateau`` or
            ``early_stop``). optimizer: ``adam`` | ``adamw`` | ``sgd`` (momentum 0.9).
        batch_size: images per step (the global batch under DDP).
        data: ``source`` (the DAPT task) or ``target`` (each downstream task).
        lr_mult: ``((selector, multiplier), …)`` — parameter groups with their own learning rate
            (``lr × multiplier``); selectors ``head``, ``backbone`` or a trainable spec; a later
            selector wins. ``{backbone: 0.1}`` is layer-wise fine-tuning's η/10.
        monitor: validation metric scored every epoch, the best epoch's weights are kept —
            ``auroc`` | ``auprc`` | ``loss`` | ``None``; default ``auroc`` for target phases,
            ``None`` for source phases.
        plateau: :class:`Plateau` learning-rate schedule on ``monitor`` (``None``: constant lr).
        early_stop: stop after this many epochs without improvement of ``monitor``.
        augment: training augmentations, names of :data:`medapt.train.AUGMENTATIONS`
            (``hflip``, ``rrc``, ``rotate``…); any augmentation disables the frozen-prefix cache.
        class_weights: ``balanced`` (n / (C · n_c) on the training rows) or one weight per class.
        lr_schedule: :class:`StepSchedule`, a per-batch warm-up + step-decay schedule (BiT-HyperRule's);
            not with ``plateau``.
        mixup: MixUp's α (Zhang et al.; BiT: 0.1 from 20k training images); 0 = off. Not applied
            while the frozen prefix is cached (the engine says so).
        resolution: ``(resize, crop)``, BiT-HyperRule's resolution: training images are resized to
            ``resize``² and randomly cropped to ``crop``² with a random horizontal flip; validation
            and the own head's evaluation resize to ``crop``². Disables the frozen-prefix cache.
    """

    name: str
    trainable: str
    lr: float
    epochs: int
    optimizer: str = "adam"
    batch_size: int = 16
    data: str = "source"
    lr_mult: tuple[tuple[str, float], ...] = ()
    monitor: str | None = "auto"
    plateau: Plateau | None = None
    early_stop: int | None = None
    augment: tuple[str, ...] = ()
    class_weights: str | tuple[float, ...] | None = None
    lr_schedule: StepSchedule | None = None
    mixup: float = 0.0
    resolution: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        where = f"phase {self.name!r}"
        parse_trainable(self.trainable)
        if self.epochs < 0:
            raise ConfigError(f"{where}: epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"{where}: lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{where}: optimizer {self.optimizer!r} not in {', '.join(OPTIMIZERS)}")
        if self.batch_size < 1:
            raise ConfigError(f"{where}: batch_size must be >= 1, got {self.batch_size}")
        if self.data not in DATA_ROLES:
            raise ConfigError(f"{where}: data {self.data!r} not in {', '.join(DATA_ROLES)}")
        # normalise the YAML forms (mappings, lists) into hashable, JSON-able values
        lr_mult = self.lr_mult.items() if isinstance(self.lr_mult, dict) else self.lr_mult
        lr_mult = tuple((str(s), float(m)) for s, m in lr_mult)
        for sel, mult in lr_mult:
            if not _LR_SELECTOR.match(sel):
                raise ConfigError(f"{where}: lr_mult selector {sel!r} is not valid; use head, backbone, all, "
                                  "last:N, from:K or units:NAME,…")
            if not mult > 0 or not math.isfinite(mult):
                raise ConfigError(f"{where}: lr_mult.{sel} must be > 0 (a learning-rate scale), got {mult}")
        object.__setattr__(self, "lr_mult", lr_mult)
        monitor = self.monitor
        if monitor == "auto":
            monitor = "auroc" if self.data == "target" else None
        if monitor in ("none", ""):
            monitor = None
        if monitor is not None and monitor not in MONITORS:
            raise ConfigError(f"{where}: monitor {monitor!r} not in {', '.join(MONITORS)} (or none)")
        object.__setattr__(self, "monitor", monitor)
        if isinstance(self.plateau, dict):
            object.__setattr__(self, "plateau", Plateau(**self.plateau))
        if self.plateau is not None and monitor is None:
            raise ConfigError(f"{where}: plateau needs a monitored validation metric; set monitor: auroc, auprc or loss")
        if self.early_stop is not None:
            if self.early_stop < 1:
                raise ConfigError(f"{where}: early_stop must be >= 1 epoch, got {self.early_stop}")
            if monitor is None:
                raise ConfigError(f"{where}: early_stop needs a monitored validation metric; set monitor")
        aug = (self.augment,) if isinstance(self.augment, str) else tuple(str(a) for a in self.augment or ())
        object.__setattr__(self, "augment", aug)
        cw = self.class_weights
        if cw is not None and not isinstance(cw, str):
            cw = tuple(float(w) for w in cw)
            if any(not w > 0 for w in cw):
                raise ConfigError(f"{where}: class_weights must be > 0, got {list(cw)}")
        elif isinstance(cw, str) and cw != "balanced":
            raise ConfigError(f"{where}: class_weights {cw!r}: use 'balanced' or a list with one weight per class")
        object.__setattr__(self, "class_weights", cw)
        if isinstance(self.lr_schedule, dict):
            object.__setattr__(self, "lr_schedule", StepSchedule(**self.lr_schedule))
        if self.lr_schedule is not None and self.plateau is not None:
            raise ConfigError(f"{where}: lr_schedule and plateau both set the learning rate; keep one")
        if not self.mixup >= 0 or not math.isfinite(self.mixup):
            raise ConfigError(f"{where}: mixup is MixUp's Beta(α, α) parameter and must be >= 0 (0: off), got {self.mixup}")
        if self.resolution is not None:
            res = self.resolution
            if isinstance(res, dict):
                res = (res.get("resize"), res.get("crop"))
            try:
                resize, crop = (int(v) for v in res)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: resolution must be [resize, crop] (two pixel sizes, e.g. [512, 480]), "
                                  f"got {self.resolution!r}") from None
            if not resize >= crop >= 1:
                raise ConfigError(f"{where}: resolution [resize, crop] needs resize >= crop >= 1, got {[resize, crop]}")
            object.__setattr__(self, "resolution", (resize, crop))

    @property
    def head_only(self) -> bool:
        return self.trainable == "head"

    @property
    def target(self) -> bool:
        return self.data == "target"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the step keys and ``medapt strategies --format json``)."""
        d = asdict(self)
        d["lr_mult"] = [list(p) for p in self.lr_mult]
        d["augment"] = list(self.augment)
        if isinstance(self.class_weights, tuple):
            d["class_weights"] = list(self.class_weights)
        # left out when unset, so the step keys of phases without them are unchanged
        if self.lr_schedule is None:
            d.pop("lr_schedule")
        else:
            d["lr_schedule"]["decay_steps"] = list(self.lr_schedule.decay_steps)
        if not self.mixup:
            d.pop("mixup")
        if self.resolution is None:
            d.pop("resolution")
        else:
            d["resolution"] = list(self.resolution)
        return d


#: named phase presets: training schedules from the papers, applied with ``preset: NAME``
PRESETS: Registry[dict[str, Any]] = Registry("phase preset")
PRESETS.register("ttl", {
    # Peng et al., TruncatedTL (paper text): Adam 1e-4, batch 64, ReduceLROnPlateau x0.5 on validation
    # AUPRC, stop when lr < 1e-7, best model on validation AUPRC, random crop + slight rotation;
    # patience 5 and at most 50 epochs are the published code's defaults (sun-umn/TTL @907e62e)
    "lr": 1e-4, "batch_size": 64, "epochs": 50, "optimizer": "adam", "monitor": "auprc",
    "plateau": {"factor": 0.5, "patience": 5, "min_lr": 1e-7}, "augment": ["rrc", "rotate"],
})
PRESETS.register("ttl-code", {
    # the published TruncatedTL code: the plateau and the best checkpoint on validation *loss*, stop at lr < 1e-6
    "lr": 1e-4, "batch_size": 64, "epochs": 50, "optimizer": "adam", "monitor": "loss",
    "plateau": {"factor": 0.5, "patience": 5, "min_lr": 1e-6}, "augment": ["rrc", "rotate"],
})

_PHASE_FIELDS = {f.name for f in fields(Phase)}


def phase_from_dict(d: dict[str, Any], origin: str = "config") -> Phase:
    """A :class:`Phase` from plain data; ``preset: NAME`` fills the fields not given."""
    if not isinstance(d, dict):
        raise ConfigError(f"{origin}: a phase must be a mapping, got {type(d).__name__}")
    d = dict(d)
    preset = d.pop("preset", None)
    base = dict(PRESETS.get(preset)) if preset is not None else {}
    extra = set(d) - _PHASE_FIELDS
    if extra:
        raise ConfigError(f"{origin}: unknown phase field(s) {sorted(extra)}; allowed: {sorted(_PHASE_FIELDS | {'preset'})}")
    try:
        return Phase(**(base | d))
    except TypeError as exc:
        raise ConfigError(f"{origin}: phase {d.get('name', '?')!r}: {exc}") from exc


@dataclass(frozen=True)
class Strategy:
    """A named recipe: surgery + ordered phases. ``phases == ()`` means no training (a baseline).

    Source phases (DAPT) come first, target phases (fine-tuning on each downstream task) last.
    """

    name: str
    family: str
    surgery: Surgery = field(default_factory=Surgery)
    phases: tuple[Phase, ...] = ()
    description: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        seen_target = False
        for p in self.phases:
            if p.target:
                seen_target = True
            elif seen_target:
                raise ConfigError(f"strategy {self.name!r}: source phase {p.name!r} comes after a target phase; "
                                  "target phases (fine-tuning on each task) must come last")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"strategy {self.name!r}: phase names must be unique, got {names}")

    @property
    def trains(self) -> bool:
        return bool(self.phases)

    @property
    def source_phases(self) -> tuple[Phase, ...]:
        return tuple(p for p in self.phases if not p.target)

    @property
    def target_phases(self) -> tuple[Phase, ...]:
        return tuple(p for p in self.phases if p.target)

    def with_epochs(self, epochs: dict[str, int]) -> Strategy:
        """A copy with the named phases' epochs replaced (unknown phase names are ignored)."""
        return replace(self, phases=tuple(replace(p, epochs=int(epochs.get(p.name, p.epochs))) for p in self.phases))

    def with_phase_values(self, name: str, **values: Any) -> Strategy:
        """A copy with the named phase's fields replaced (validated again)."""
        out = []
        for p in self.phases:
            out.append(phase_from_dict(p.to_dict() | values, f"strategy {self.name!r}") if p.name == name else p)
        return replace(self, phases=tuple(out))

    def scaled(self, factor: float) -> Strategy:
        """Scale every phase's epochs by ``factor`` (at least 1 epoch), keeping the paper's ratios."""
        if factor <= 0:
            raise ConfigError(f"epoch scale must be > 0, got {factor}")
        return replace(self, phases=tuple(replace(p, epochs=max(1, math.ceil(p.epochs * factor))) for p in self.phases))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phases"] = [p.to_dict() for p in self.phases]
        return d


STRATEGIES: Registry[Strategy] = Registry("strategy", hint="`medapt strategies` lists all.")


def register(s: Strategy) -> Strategy:
    STRATEGIES.register(s.name, s)
    return s


def get(name: str) -> Strategy:
    """The strategy registered under ``name`` (case-sensitive; ``FAMILY@k`` for families)."""
    return STRATEGIES.get(name)


def names() -> list[str]:
    return STRATEGIES.names()


# --- the catalogue --------------------------------------------------------------------------------

MEHMOOD = "Mehmood et al., Resource-efficient domain adaptive pre-training for medical images"
PENG = "Peng et al., Rethinking Transfer Learning for Medical Image Classification"
RAGHU = "Raghu et al., Transfusion: Understanding Transfer Learning for Medical Imaging"
P1 = Phase("phase1", "head", lr=1e-4, epochs=1000)
# Mehmood et al.'s blocks are ResNet50's: "first block" = stem + layer1 (output stride 4), "first two
# blocks" = + layer2 (stride 8); "last sub-block" = the last bottleneck. For every family the same
# meaning comes from output strides (keep stride:4 / stride:8) and from blocks (lastblocks:N), not
# from how timm groups a family's stages (EfficientNet's first timm stage is one 1,824-parameter block).


def _p(name: str, trainable: str, epochs: int) -> Phase:
    return Phase(name, trainable, lr=1e-5, epochs=epochs)


def _target(name: str, trainable: str, **values: Any) -> Phase:
    return Phase(name, trainable, **({"lr": 1e-4, "epochs": 100, "data": "target"} | values))


for _s in [
    Strategy("ImageNet", "baseline", description="ImageNet weights, no DAPT", reference=MEHMOOD),
    Strategy("DA", "full DAPT", phases=(P1, _p("phase2", "all", 150)),
             description="head warm-up, then every unit trains", reference=MEHMOOD),
    Strategy("DA_L1SB", "partial DAPT", phases=(P1, _p("phase2", "lastblocks:1", 150)),
             description="head warm-up, then the last block (sub-block) trains", reference=MEHMOOD),
    Strategy("DA_L2SB", "partial DAPT", phases=(P1, _p("phase2", "lastblocks:2", 150)),
             description="head warm-up, then the last two blocks (sub-blocks) train", reference=MEHMOOD),
    Strategy("DA_L1SB_PFT", "hybrid DAPT", phases=(P1, _p("phase2", "lastblocks:1", 100), _p("phase3", "all", 50)),
             description="head warm-up, last sub-block, then every unit", reference=MEHMOOD),
    Strategy("DA_L2SB_PFT", "hybrid DAPT", phases=(P1, _p("phase2", "lastblocks:2", 100), _p("phase3", "all", 50)),
             description="head warm-up, last two sub-blocks, then every unit", reference=MEHMOOD),
    Strategy("DA_TF_F1B", "simplified + DAPT", Surgery(keep="stride:4"), phases=(P1, _p("phase2", "all", 150)),
             description="stem + the units up to output stride 4 (ResNet: layer1), DAPT on all of it", reference=MEHMOOD),
    Strategy("DA_TF_F2B", "simplified + DAPT", Surgery(keep="stride:8"), phases=(P1, _p("phase2", "all", 150)),
             description="stem + the units up to output stride 8 (ResNet: layer2), DAPT on all of it", reference=MEHMOOD),
    Strategy("ImageNet_TF_F1B", "simplified baseline", Surgery(keep="stride:4"),
             description="stem + the units up to output stride 4 with ImageNet weights, no DAPT", reference=MEHMOOD),
    Strategy("ImageNet_TF_F2B", "simplified baseline", Surgery(keep="stride:8"),
             description="stem + the units up to output stride 8 with ImageNet weights, no DAPT", reference=MEHMOOD),
    Strategy("FTL", "fine-tuning", phases=(_target("finetune", "all"),),
             description="pretrained backbone + new head, everything fine-tuned on the target task", reference=PENG),
    Strategy("LinearProbe", "linear probe", phases=(_target("probe", "head"),),
             description="frozen pretrained backbone, a new head trained on the target task", reference=PENG),
    Strategy("Scratch", "scratch", Surgery(init="random"), phases=(_target("train", "all"),),
             description="random initialisation, everything trains on the target task", reference=RAGHU),
]:
    register(_s)


def _ttl(k: int, head: str = "gap") -> Strategy:
    name = "TTL" if head == "gap" else f"TTL-{head}"
    if k < 1:
        raise ConfigError(f"{name}@{k}: the cut point k must be >= 1 (units 1..k are kept)")
    what = "a new GAP head" if head == "gap" else f"a new {head} head (no pooling)"
    return Strategy(f"{name}@{k}", "TTL", Surgery(keep=f"cut:{k}", head=head),
                    phases=(phase_from_dict({"name": "finetune", "trainable": "all", "data": "target", "preset": "ttl"}),),
                    description=f"TruncatedTL: units 1..{k} with their pretrained weights, {what}, "
                                "everything fine-tuned on the target task (ttl preset)", reference=PENG)


STRATEGIES.register_family("TTL", _ttl, "TruncatedTL: keep units 1..k, new head, fine-tune all on the target (ttl preset)")
# the paper's no-pooling comparison: the flattened feature map of unit k + linear (size tied to the image size)
STRATEGIES.register_family("TTL-flatten", lambda k: _ttl(k, "flatten"),
                           "TruncatedTL without pooling: keep units 1..k, flatten + linear head, fine-tune all (ttl preset)")


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
    where = f"{origin}: strategy {d['name']!r}"
    phases = tuple(phase_from_dict(p, where) for p in d.get("phases") or ())
    try:
        surgery = Surgery(**(d.get("surgery") or {}))
    except TypeError as exc:
        raise ConfigError(f"{where}: surgery: {exc}") from exc
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
        - name: DA_then_FT
          phases:
            - {name: phase1, trainable: head, lr: 1.0e-4, epochs: 1000}
            - {name: phase2, trainable: all, lr: 1.0e-5, epochs: 150}
            - {name: finetune, trainable: all, data: target, preset: ttl}
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
