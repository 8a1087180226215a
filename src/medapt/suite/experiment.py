"""The experiment file: one YAML validated with pydantic (DESIGN §10).

>>> exp = load_experiment("examples/quickstart.yaml", overrides=["engine.device=cpu"])
>>> exp.strategies[:2]
['ImageNet', 'DA']
"""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import apply_overrides, format_validation_error, read_yaml
from ..data import DataSection
from ..errors import ConfigError, UnknownNameError
from ..strategies import STRATEGIES, Strategy, from_dict
from .search_spec import SearchSpec, SimilaritySpec
from .tracking import TrackingSpec

__all__ = ["Experiment", "BackboneSpec", "ScheduleSpec", "EngineSpec", "DownstreamSpec", "CostSpec",
           "SourceSpec", "StatsSpec", "load_experiment", "experiment_from_dict"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneSpec(_Model):
    """``name``: timm name or ``torchvision:<name>``; ``weights``: none | embedded | imagenet | a file path."""

    name: str = "tf_efficientnet_lite0"
    weights: str = "embedded"


class ScheduleSpec(_Model):
    """Overrides of the strategies' paper defaults.

    ``epoch_scale`` multiplies every phase's epochs (keeping the paper's ratios; at least 1);
    ``epochs``/``lr`` set a named phase's values for every strategy (``{phase1: 20}``);
    ``batch_size`` replaces every phase's batch size; ``phases`` sets any field of a named phase
    for every strategy (``{finetune: {monitor: loss, augment: [hflip]}}``).
    """

    epoch_scale: float = Field(1.0, gt=0)
    epochs: dict[str, int] = Field(default_factory=dict)
    lr: dict[str, float] = Field(default_factory=dict)
    batch_size: int | None = Field(None, ge=1)
    phases: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: a named schedule for the target (fine-tuning) phases: ``bit-hyperrule`` (Kolesnikov et al.,
    #: as used by Cherti & Jitsev) sets optimizer, lr, batch and epochs from the training-set size
    #: (medapt.suite.study.bit_hyperrule); ``none`` keeps the strategies' own values
    rule: Literal["none", "bit-hyperrule"] = "none"
    #: with ``rule: bit-hyperrule``: apply its resolution (resize 160/crop 128 below 96² pixels, else
    #: 512/480) in fine-tuning and the own head's evaluation; ``false`` keeps data.image_size
    bit_resolution: bool = True


class EngineSpec(_Model):
    """Where and how phases run.

    ``device``, ``precision``, ``channels_last`` (``None``: on CUDA) and ``nproc_per_node``
    (training steps on that many processes with torchrun + DDP) make the run's
    :class:`medapt.train.Runtime`; the rest is :class:`medapt.train.EngineConfig`.
    """

    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool | None = None
    nproc_per_node: int = Field(1, ge=1)
    bn_policy: Literal["frozen", "train"] = "frozen"
    cache: Literal["auto", "off"] = "auto"
    cache_dtype: Literal["float32", "float16"] = "float32"
    augment: bool = False
    deterministic: bool = False
    eval_batch_size: int = Field(64, ge=1)
    # PyTorch's fused Adam/AdamW/SGD kernels: faster optimizer steps, weights not bitwise equal to the
    # default multi-tensor ones (float rounding); in the step hashes only when on (old runs keep theirs)
    fused_optimizer: bool = False
    # not in step hashes (they change when files are written, not the numbers): checkpoints after every
    # N-th epoch and/or every S seconds (0 = off; default: at most one per 5 minutes of training, so a
    # crash loses <= 5 min and short epochs write none), and a disk bound on the prefix caches (LRU)
    checkpoint_every: int = Field(0, ge=0)
    checkpoint_seconds: float = Field(300.0, ge=0)
    cache_max_gb: float | None = Field(None, gt=0)

    @field_validator("cache", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false and `on` as true
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v

    def runtime(self):
        """The run's :class:`~medapt.train.Runtime` (device resolved, process count checked)."""
        from ..train import Runtime

        return Runtime(self.device, self.precision, self.channels_last, self.nproc_per_node)


class DownstreamSpec(_Model):
    """Mehmood et al.'s downstream protocol: frozen GAP features, MLP heads, Adam 5e-5, 500 epochs, batch 64.

    ``metrics`` are stored per epoch for the test, validation and external splits (``auc`` is
    required: the summaries and the report are built on it). ``standardize``: z-score the features
    with the training split's statistics before the heads (default false: the raw GAP outputs, the
    paper's protocol).
    """

    heads: list[str] = Field(default_factory=lambda: ["model1", "model2"])
    epochs: int = Field(500, ge=1)
    lr: float = Field(5e-5, gt=0)
    batch_size: int | None = Field(64, ge=1)
    threshold: float = Field(0.9, gt=0, le=1)
    standardize: bool = False
    metrics: list[str] = Field(default_factory=lambda: ["auc", "auprc", "accuracy"])

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        from ..evaluate import METRICS

        for m in v:
            METRICS.get(m)
        if "auc" not in v:
            raise ValueError("metrics must include 'auc' (the report and the summaries are built on it)")
        return v

    @field_validator("heads")
    @classmethod
    def _known_heads(cls, v: list[str]) -> list[str]:
        from ..evaluate import HEADS

        for h in v:
            HEADS.get(h)
        if not v:
            raise ValueError("at least one head is needed")
        return v


class ConvergenceSpec(_Model):
    """Convergence speed (docs/transfer.md): the epoch and seconds at which each target phase's validation
    AUC first reaches each of ``thresholds``, and the speed-up over the strategy ``baseline`` (``null``: none)."""

    thresholds: list[float] = Field(default_factory=lambda: [0.9])
    baseline: str | None = "Scratch"

    @field_validator("thresholds")
    @classmethod
    def _valid_thresholds(cls, v: list[float]) -> list[float]:
        for t in v:
            if not 0 < t <= 1:
                raise ValueError(f"{t} is not an AUC threshold in (0, 1]")
        return v


class CostSpec(_Model):
    """``track_energy``: run CodeCarbon around each step; ``inference``: measure final models' latency;
    ``energy_table``: Green Algorithms constant table of every estimate (``v1.1``, the constants
    behind Mehmood et al.'s Table B1, or ``latest``)."""

    track_energy: bool = True
    energy_table: Literal["v1.1", "latest"] = "v1.1"
    inference: bool = True
    inference_repeats: int = Field(5, ge=1)
    hardware: str | None = None  # the dry run's Green Algorithms profile (default: the one matching this machine)


class SourceSpec(_Model):
    """One weight source of a study (Hosseinzadeh Taher et al.'s benchmark axis).

    ``backbone``: timm name or ``torchvision:<name>``; ``weights``: ``none`` | ``embedded`` |
    ``imagenet`` | a local state dict (``.safetensors``/``.pt``), which may be the
    ``weights.safetensors`` of a previous medapt run's step (continual pre-training: its units
    are mapped back onto the backbone). ``name`` labels the source in the tables (default:
    derived from the weights).
    """

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.+-]+$")
    backbone: str = "tf_efficientnet_lite0"
    weights: str = "embedded"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        w = self.weights
        return Path(w).parent.name if w.endswith("weights.safetensors") else Path(w).stem if "/" in w or "." in w else w


class StatsSpec(_Model):
    """Paired statistics of a study: every cell against ``reference`` (``METHOD`` or
    ``METHOD/SOURCE``, e.g. ``FTL/imagenet``; default: the first strategy on the first source) at
    the same shot level, on ``metric`` (``final_auc``: the
    AUC at the last/kept epoch; ``best_auc``: the best over epochs) of ``split``; Holm's correction
    over all comparisons at level ``alpha``."""

    reference: str | None = None
    metric: Literal["final_auc", "best_auc"] = "final_auc"
    split: str = "test"
    alpha: float = Field(0.05, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0, lt=1)


class ReportSpec(_Model):
    """``budget_kwh`` / ``budget_hours``: the user's budget per strategy (whole standalone cost, mean over
    seeds); the report recommends the best strategy by external AUC within it (``medapt report --budget``
    overrides)."""

    budget_kwh: float | None = Field(None, gt=0)
    budget_hours: float | None = Field(None, gt=0)
    interactive: bool = False  # embed the offline Vega-Lite Pareto chart (extra: medapt[interactive])


class Experiment(_Model):
    """A suite: strategies × seeds × heads × tasks on one backbone (DESIGN §2)."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    strategies: list[str] = Field(min_length=1)
    custom_strategies: list[dict[str, Any]] = Field(default_factory=list)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    data: DataSection
    downstream: DownstreamSpec = Field(default_factory=DownstreamSpec)
    convergence: ConvergenceSpec = Field(default_factory=ConvergenceSpec)
    cost: CostSpec = Field(default_factory=CostSpec)
    #: study axes (medapt.suite.study, docs/study.md): weight sources (given, they replace `backbone`),
    #: few-shot levels and draws, paired statistics
    sources: list[SourceSpec] = Field(default_factory=list)
    shots: list[int | Literal["full"]] = Field(default_factory=list)
    shot_draws: int = Field(1, ge=1, le=100)
    stats: StatsSpec = Field(default_factory=StatsSpec)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, v: Any) -> Any:
        # `seeds: 10` means seeds 0..9 (the benchmark's ten runs); a list is taken as given
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"seeds is {v}; give a number of seeds >= 1 (e.g. seeds: 3) or a list (seeds: [0, 1, 2])")
            return list(range(v))
        return v

    @field_validator("shots")
    @classmethod
    def _shot_levels(cls, v: list) -> list:
        for s in v:
            if s != "full" and s < 1:
                raise ValueError(f"shots lists {s}; a shot level is images per class >= 1, or 'full'")
        if len(set(map(str, v))) != len(v):
            raise ValueError("shots lists a level twice")
        return v

    @model_validator(mode="after")
    def _sources_unique(self) -> Experiment:
        labels = [s.label for s in self.sources]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"sources: label(s) {dup} used twice; give each source a distinct name")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds lists a seed twice")
        return self
    search: SearchSpec | None = None  # a cut-point search (medapt.suite.search; docs/search.md)
    similarity: SimilaritySpec | None = None  # per-unit similarity ImageNet vs DAPT (report section)
    report: ReportSpec = Field(default_factory=ReportSpec)
    tracking: TrackingSpec | None = None  # mlflow | tensorboard: log the run there (medapt.suite.tracking)

    @model_validator(mode="after")
    def _known_strategies(self) -> Experiment:
        custom = {d.get("name") for d in self.custom_strategies}
        for name in self.strategies:
            if name not in STRATEGIES and name not in custom:
                if "@" in name:
                    STRATEGIES.get(name)  # an unknown family or a malformed k: its own message
                raise UnknownNameError("strategy", name, list(STRATEGIES.names()) + STRATEGIES.family_patterns()
                                       + sorted(c for c in custom if c),
                                       hint="`medapt strategies` lists all; define your own under custom_strategies.")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("strategies lists a name twice")
        return self

    @model_validator(mode="after")
    def _phases_have_their_data(self) -> Experiment:
        from ..train import AUGMENTATIONS

        for name in self.strategies:
            s = self.strategy(name)
            if s.source_phases and self.data.source is None:
                raise ValueError(f"strategy {name!r} has source (DAPT) phases "
                                 f"({', '.join(p.name for p in s.source_phases)}) but data.source is not set")
            if s.target_phases and not self.data.targets:
                raise ValueError(f"strategy {name!r} has target phases ({', '.join(p.name for p in s.target_phases)}) "
                                 "that fine-tune on each downstream task, but data.targets is empty")
            for p in s.phases:
                for a in p.augment:
                    AUGMENTATIONS.get(a)
                split, field = (self.data.split, "data.split") if p.target else (self.data.source_split, "data.source_split")
                if p.monitor is not None and split.val <= 0:
                    where = ("task(s) " + ", ".join(repr(t) for t in self.data.targets)) if p.target else "the source task"
                    raise ValueError(
                        f"strategy {name!r}, phase {p.name!r} monitors validation {p.monitor} on {where}, but the 'val' "
                        f"split is absent ({field}.val is {split.val}); set {field}.val (e.g. 0.15) or "
                        f"schedule.phases.{p.name}.monitor: none")
        return self

    def strategy(self, name: str) -> Strategy:
        """The strategy with this experiment's schedule applied (``FAMILY@k`` names resolved)."""
        custom = {d["name"]: d for d in self.custom_strategies}
        s = from_dict(custom[name], "custom_strategies") if name in custom else STRATEGIES.get(name)
        if self.schedule.epoch_scale != 1.0:
            s = s.scaled(self.schedule.epoch_scale)
        if self.schedule.epochs:
            s = s.with_epochs(self.schedule.epochs)
        for phase, lr in self.schedule.lr.items():
            s = s.with_phase_values(phase, lr=float(lr))
        if self.schedule.batch_size:
            for p in s.phases:
                s = s.with_phase_values(p.name, batch_size=self.schedule.batch_size)
        for phase, values in self.schedule.phases.items():
            if any(p.name == phase for p in s.phases):
                s = s.with_phase_values(phase, **values)
        return s

    def digest(self) -> str:
        # tracking only says where results are also logged: it does not make another run
        return hashlib.sha256(json.dumps(self.model_dump(mode="json", exclude={"tracking"}), sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _fields_of(loc: tuple) -> list[str]:
    """Valid keys at a location of the experiment (for "did you mean" on unknown keys)."""
    node: Any = Experiment
    for part in loc:
        origin = typing.get_origin(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            if part in node.model_fields:
                node = node.model_fields[part].annotation
                continue
            return []
        if origin in (dict,) or origin is typing.Union or str(origin).endswith("Annotated"):
            args = [a for a in typing.get_args(node) if isinstance(a, type) and issubclass(a, BaseModel)]
            if not args and typing.get_args(node):
                inner = typing.get_args(node)
                node = inner[-1] if origin is dict else inner[0]
                if typing.get_origin(node) is typing.Annotated or str(typing.get_origin(node)).endswith("Annotated"):
                    node = typing.get_args(node)[0]
                if origin is dict:
                    continue
            for a in args:
                fmt = a.model_fields.get("format")
                if fmt is not None and fmt.default == part:
                    node = a
                    break
            else:
                if origin is dict:
                    continue
                return []
            continue
        return []
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    args = [a for a in typing.get_args(node) if isinstance(a, type) and issubclass(a, BaseModel)]
    return sorted({f for a in args for f in a.model_fields})


def experiment_from_dict(data: dict[str, Any], source: str = "config") -> Experiment:
    """Validate plain data into an :class:`Experiment`, with readable errors."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, _fields_of)) from None


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override (``key.sub=value``) and validate an experiment YAML; relative dataset paths are
    resolved against the YAML's folder (:mod:`medapt.suite.paths`)."""
    from .paths import resolve_relative_paths

    # relative dataset paths in the YAML are relative to its folder; those of -o overrides to the working folder
    data = apply_overrides(resolve_relative_paths(read_yaml(path), path), overrides or [])
    return experiment_from_dict(data, str(path))
