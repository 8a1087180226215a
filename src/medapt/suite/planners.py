"""Planners turn an experiment's sections into steps (DESIGN §9).

Planning is iterative: every registered planner that applies to the experiment adds its static
steps (:meth:`Planner.plan`); the run executes them; then each planner may add steps that the
results create (:meth:`Planner.extend` — a search choosing k, the best of several candidates);
the run executes those, and so on until no planner adds anything. The dry run shows the static
plan and, from :meth:`Planner.pending`, what depends on results.

Planners share one :class:`Builder`, whose constructors (datasets, the weights chain of a
strategy) are the only way steps are made; equal steps are one step (same hash), so a phase 1
shared by every full-backbone strategy, or a dataset used by several tasks, is planned once.

Shipped planners: ``dapt`` (init + source phases of every strategy, inference cost),
``finetune`` (target phases on each task + the own head's evaluation) and ``downstream``
(frozen features + MLP heads for every strategy and task).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..data.section import check_external
from ..errors import ConfigError
from ..models import normalisation
from ..registry import Registry
from ..strategies import Strategy
from .graph import Plan, Step
from .kinds.evaluate import EvaluateKey
from .kinds.extract import ExtractKey
from .kinds.finetune import FinetuneKey
from .kinds.head import HeadKey
from .kinds.inference import InferenceKey
from .kinds.init import InitKey
from .kinds.prepare import PrepareKey
from .kinds.pretrain import PhaseKey

__all__ = ["Planner", "PLANNERS", "Builder", "Pending", "plan_experiment", "extend_plan"]


@dataclass
class Pending:
    """A dry-run row for steps that exist only after earlier results (with an upper bound)."""

    planner: str
    label: str
    steps: int  # at most this many steps
    flops: float = 0.0  # at most this many FLOPs (0: unknown)
    note: str = ""


class Planner:
    """One experiment section → steps. Subclasses set ``name`` and override :meth:`plan`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def applies(self, exp) -> bool:
        return True

    def plan(self, b: Builder) -> None:
        raise NotImplementedError

    def extend(self, b: Builder, store) -> None:
        """Add steps that completed results create (default: none)."""

    def pending(self, b: Builder) -> list[Pending]:
        """Dry-run rows for what :meth:`extend` may add (default: nothing)."""
        return []


PLANNERS: Registry[Planner] = Registry("planner")


def register_planner(cls: type[Planner]) -> type[Planner]:
    PLANNERS.register(cls.name, cls())
    return cls


@dataclass
class Builder:
    """The shared step constructors of the planners, bound to one experiment, plan and runtime."""

    exp: Any
    plan: Plan
    runtime: Any
    mean: list[float] = field(init=False)
    std: list[float] = field(init=False)
    weights_file: dict | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        exp = self.exp
        mean, std = normalisation(exp.backbone.name)  # validates the backbone name
        self.mean, self.std = list(mean), list(std)
        if exp.backbone.weights not in ("none", "embedded", "imagenet"):
            p = Path(exp.backbone.weights).expanduser()
            if not p.is_file():
                raise ConfigError(f"backbone.weights {exp.backbone.weights!r} is neither none, embedded, imagenet nor an "
                                  "existing file; give the path to a .safetensors or .pt state dict")
            st = p.stat()
            self.weights_file = {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if exp.data.channels != 3:
            raise ConfigError(f"data.channels is {exp.data.channels}, but the backbones take 3-channel input; set "
                              "data.channels: 3 (grayscale images are replicated to 3 channels)")
        for task, t in exp.data.targets.items():
            check_external(task, t)  # same class names in the same order, before anything runs

    # --- datasets ---------------------------------------------------------------------------------

    def prepare(self, spec, split, label: str) -> Step:
        d = self.exp.data
        key = PrepareKey(spec.model_dump(mode="json"), None if split is None else split.model_dump(mode="json"),
                         d.image_size, d.channels, tuple(self.mean), tuple(self.std))
        return self.plan.add(Step("prepare", key, label=label))

    def source(self) -> Step | None:
        d = self.exp.data
        return None if d.source is None else self.prepare(d.source, d.source_split, "source")

    def target(self, task: str) -> tuple[Step, Step | None]:
        """(development dataset, external set or None) of a target task."""
        t = self.exp.data.targets[task]
        dev = self.prepare(t.dataset, self.exp.data.split, task)
        ext = self.prepare(t.external, None, f"{task}/external") if t.external is not None else None
        return dev, ext

    # --- weights ----------------------------------------------------------------------------------

    def engine_key(self) -> dict[str, Any]:
        e = self.exp.engine
        key = {"bn_policy": e.bn_policy, "cache": e.cache, "cache_dtype": e.cache_dtype, "augment": e.augment,
               "deterministic": e.deterministic, "eval_batch_size": e.eval_batch_size}
        if e.fused_optimizer:  # only when on: the steps of runs without it keep their hashes
            key["fused_optimizer"] = True
        return key

    def init(self, s: Strategy, seed: int) -> Step:
        exp = self.exp
        key = InitKey(exp.backbone.name, exp.backbone.weights, self.weights_file,
                      {"keep": s.surgery.keep, "init": s.surgery.init, "head": s.surgery.head}, seed, exp.data.image_size)
        src = self.source()
        label = " ".join(x for x in (s.surgery.keep, s.surgery.init, "" if s.surgery.head == "gap" else s.surgery.head) if x)
        return self.plan.add(Step("init", key, {"data": src} if src is not None else {}, label=label), s.name)

    def source_weights(self, name: str, seed: int) -> Step:
        """The weights after a strategy's source phases (its ``init`` when it has none)."""
        s = self.exp.strategy(name)
        w = self.init(s, seed)
        for phase in s.source_phases:
            key = PhaseKey(phase, self.engine_key(), seed, self.runtime.numerics(training=True))
            w = self.plan.add(Step("pretrain", key, {"weights": w, "data": self.source()}, label=phase.name), name)
        return w

    def task_weights(self, name: str, seed: int, task: str) -> Step:
        """The weights a strategy has for ``task``: after its target phases on it, if any."""
        s = self.exp.strategy(name)
        w = self.source_weights(name, seed)
        dev, _ = self.target(task)
        for i, phase in enumerate(s.target_phases):
            key = FinetuneKey(phase, self.engine_key(), seed, self.runtime.numerics(training=True), task=task,
                              new_head=i == 0)
            w = self.plan.add(Step("finetune", key, {"weights": w, "data": dev}, label=f"{phase.name} {task}"), name,
                              tag={"strategy": name, "seed": seed, "head": "own", "task": task})
        return w


@register_planner
class DaptPlanner(Planner):
    name = "dapt"
    description = "init + the source (DAPT) phases of every strategy, and the final model's inference cost"

    def plan(self, b: Builder) -> None:
        exp = b.exp
        for seed in exp.seeds:
            for name in exp.strategies:
                w = b.source_weights(name, seed)
                if exp.cost.inference:
                    key = InferenceKey(exp.data.image_size, b.runtime.device_type, exp.cost.inference_repeats)
                    b.plan.add(Step("inference", key, {"weights": w}, label="latency"), name,
                               tag={"strategy": name, "seed": seed})


@register_planner
class FinetunePlanner(Planner):
    name = "finetune"
    description = "the target phases of every strategy on each task, then the own head on test + external"

    def applies(self, exp) -> bool:
        return any(exp.strategy(n).target_phases for n in exp.strategies)

    def plan(self, b: Builder) -> None:
        exp = b.exp
        for seed in exp.seeds:
            for name in exp.strategies:
                if not exp.strategy(name).target_phases:
                    continue
                for task in exp.data.targets:
                    w = b.task_weights(name, seed, task)
                    dev, ext = b.target(task)
                    key = EvaluateKey(task, tuple(sorted(exp.downstream.metrics)), exp.engine.eval_batch_size,
                                      b.runtime.numerics())
                    inputs = {"weights": w, "data": dev} | ({"external": ext} if ext is not None else {})
                    b.plan.add(Step("evaluate", key, inputs, label=f"own head {task}"), name,
                               tag={"strategy": name, "seed": seed, "head": "own", "task": task})


@register_planner
class DownstreamPlanner(Planner):
    name = "downstream"
    description = "frozen GAP features of every strategy's weights and the MLP heads trained on them"

    def plan(self, b: Builder) -> None:
        exp = b.exp
        fkey = ExtractKey(exp.engine.eval_batch_size, {"device": b.runtime.device_type})
        for seed in exp.seeds:
            for name in exp.strategies:
                for task in exp.data.targets:
                    w = b.task_weights(name, seed, task)
                    dev, ext = b.target(task)
                    inputs = {"features": b.plan.add(Step("extract", fkey, {"weights": w, "data": dev}, label=task), name),
                              "data": dev}
                    if ext is not None:
                        inputs["external_features"] = b.plan.add(
                            Step("extract", fkey, {"weights": w, "data": ext}, label=f"{task}/external"), name)
                        inputs["external"] = ext
                    d = exp.downstream
                    for head in d.heads:
                        hkey = HeadKey(head, task, d.epochs, d.lr, d.batch_size, seed, tuple(sorted(d.metrics)),
                                       d.standardize)
                        b.plan.add(Step("head", hkey, inputs, label=f"{head} {task}"), name,
                                   tag={"strategy": name, "seed": seed, "head": head, "task": task})


def _planners(exp) -> list[Planner]:
    ps = [p for _, p in PLANNERS.items() if p.applies(exp)]
    replaced = {r for p in ps for r in getattr(p, "replaces", ())}  # e.g. the study planner replaces dapt
    return [p for p in ps if p.name not in replaced]


def plan_experiment(exp, runtime=None) -> Plan:
    """The static plan of an :class:`~medapt.suite.experiment.Experiment` (every planner's :meth:`~Planner.plan`)."""
    from .run import resolve_runtime

    plan = Plan()
    plan.builder = Builder(exp, plan, runtime if runtime is not None else resolve_runtime(exp))
    for p in _planners(exp):
        p.plan(plan.builder)
    return plan


def extend_plan(plan: Plan, store) -> list[Step]:
    """Ask every planner for steps that results create; return the new steps (in plan order)."""
    n = len(plan.steps)
    for p in _planners(plan.builder.exp):
        p.extend(plan.builder, store)
    return plan.steps[n:]


def pending(plan: Plan) -> list[Pending]:
    """What the planners may add once results exist (for the dry run)."""
    return [row for p in _planners(plan.builder.exp) for row in p.pending(plan.builder)]


from . import study  # noqa: E402,F401  (registers the study planner: sources × seeds × shots)
# planners of other modules register themselves on import (issue 12: search, similarity)
from . import search, similarity  # noqa: E402,F401
