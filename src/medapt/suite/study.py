"""Study protocols: weight sources × strategies × seeds × shot levels as one plan.

The benchmark of Hosseinzadeh Taher et al. fine-tunes many pretrained *sources* on the same
targets with 10 runs each; Cherti & Jitsev add few-shot transfer and BiT-HyperRule. An
experiment with ``sources``, ``shots`` or ``schedule.rule`` is planned by the ``study`` planner,
which replaces the ``dapt``, ``finetune`` and ``downstream`` planners and makes every

    source × strategy × seed × task × shot level × draw

a *cell replicate*. Steps are built through the same constructors, so equal inputs are one step:
a source's init and DAPT phases are computed once for all its shot levels, a dataset once for all
sources with the same normalisation, features once per (weights, dataset) whatever the shot
level of the head trained on them.

Rows of the run's tables carry ``strategy`` = the cell name (``FTL/imagenet/5-shot``: the parts
that vary in the study), and ``method``, ``source``, ``shots``, ``draw``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, WeightsError
from .experiment import BackboneSpec, SourceSpec
from .graph import Plan, Step
from .kinds.evaluate import EvaluateKey
from .kinds.extract import ExtractKey
from .kinds.fewshot import FewshotKey, shots_train_size
from .kinds.finetune import FinetuneKey
from .kinds.head import HeadKey
from .kinds.inference import InferenceKey
from .kinds.init import InitKey
from .kinds.pretrain import PhaseKey
from .planners import Builder, Planner, register_planner

log = logging.getLogger(__name__)

__all__ = ["BitSchedule", "bit_hyperrule", "StudyPlanner", "sharing", "sharing_line", "cell_name", "study_sources"]


# --- BiT-HyperRule ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BitSchedule:
    """BiT-HyperRule (Kolesnikov et al., *Big Transfer*; used by Cherti & Jitsev) for one dataset.

    ``boundaries``: step counts [warm-up end, decay, decay, decay, end]; ``lr``: base learning
    rate (SGD, momentum 0.9) at ``batch_size`` 512; ×0.1 at each decay point; ``resize``/``crop``:
    the resolution rule; ``mixup``: MixUp α (0: none).
    """

    boundaries: tuple[int, int, int, int, int]
    lr: float = 0.003
    batch_size: int = 512
    momentum: float = 0.9
    resize: int = 512
    crop: int = 480
    mixup: float = 0.0

    @property
    def steps(self) -> int:
        return self.boundaries[-1]

    def epochs(self, n_train: int, batch_size: int | None = None) -> int:
        """Epochs that give at least the rule's number of steps on ``n_train`` images at ``batch_size``
        (an epoch is ``ceil(n_train / batch_size)`` steps: the engine keeps the last, smaller batch), so
        the phase ends less than one epoch past the rule's last step."""
        b = batch_size or self.batch_size
        return max(1, math.ceil(self.steps / math.ceil(max(1, n_train) / b)))


def bit_hyperrule(n_train: int, image_size: tuple[int, int] | int) -> BitSchedule:
    """The BiT-HyperRule schedule for a training set of ``n_train`` images of ``image_size`` pixels.

    Size classes as in the public ``bit_hyperrule.py``: fewer than 20k images → 500 steps
    (boundaries 100/200/300/400/500); fewer than 500k → 10k steps (500/3k/6k/9k/10k); else 20k
    steps (500/6k/12k/18k/20k). Images with area below 96² are resized to 160 and cropped to 128,
    else 512 and 480. MixUp α = 0.1 from 20k images on.

    >>> bit_hyperrule(19_999, 224).boundaries
    (100, 200, 300, 400, 500)
    >>> bit_hyperrule(20_000, 64).mixup, bit_hyperrule(20_000, 64).crop
    (0.1, 128)
    """
    if n_train < 1:
        raise ConfigError(f"BiT-HyperRule needs a training set of at least one image, got {n_train}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if n_train < 20_000:
        b = (100, 200, 300, 400, 500)
    elif n_train < 500_000:
        b = (500, 3000, 6000, 9000, 10_000)
    else:
        b = (500, 6000, 12_000, 18_000, 20_000)
    small = h * w < 96 * 96
    return BitSchedule(b, resize=160 if small else 512, crop=128 if small else 480,
                       mixup=0.0 if n_train < 20_000 else 0.1)


def bit_phase(phase, n_train: int, image_size: int, batch_size: int | None = None, resolution: bool = True):
    """``phase`` with BiT-HyperRule's optimizer (SGD, momentum 0.9), learning rate (0.003 scaled
    linearly to the batch size, as BiT does), length (its step count in epochs of ``n_train``),
    per-step schedule (linear warm-up to the end of the first boundary, ×0.1 after each decay
    point: :class:`~medapt.strategies.catalogue.StepSchedule`), MixUp α (0.1 from 20k images) and,
    with ``resolution``, its resolution (``Phase.resolution``: resize 160 / crop 128 below 96² pixels,
    else 512 / 480; training at random crops with flips, evaluation resized to the crop).

    The phase runs whole epochs, so it may go a few steps past the rule's end at the last learning
    rate. A plateau schedule of the phase is dropped (the step schedule sets the lr)."""
    from ..strategies.catalogue import StepSchedule

    rule = bit_hyperrule(n_train, image_size)
    bs = int(min(batch_size or rule.batch_size, max(1, n_train)))  # a batch is at most the training set
    schedule = StepSchedule(warmup_steps=rule.boundaries[0], decay_steps=rule.boundaries[1:-1], factor=0.1)
    return dataclasses.replace(phase, optimizer="sgd", lr=rule.lr * bs / rule.batch_size, batch_size=bs,
                               epochs=rule.epochs(n_train, bs), plateau=None, lr_schedule=schedule,
                               mixup=rule.mixup, resolution=(rule.resize, rule.crop) if resolution else None)


@functools.lru_cache(maxsize=256)
def _log_rule(task: str, n_train: int, image_size: int, resolution: bool = True) -> None:
    """Say once per (task, size) what the rule sets, and whether its resolution is applied."""
    r = bit_hyperrule(n_train, image_size)
    if resolution:
        res = (f"resolution: data.image_size {image_size} resized to {r.resize}, random {r.crop} crops with flips in "
               f"training, resized to {r.crop} for validation and evaluation (schedule.bit_resolution: false turns it off)")
    else:
        res = (f"its resolution (resize {r.resize}, crop {r.crop}) is off (schedule.bit_resolution: false): training and "
               f"evaluation at data.image_size {image_size}")
    log.info("BiT-HyperRule for task %r (%d training images): %d steps, warm-up to step %d, x0.1 after steps %s, "
             "MixUp %s; %s", task, n_train, r.steps, r.boundaries[0], "/".join(map(str, r.boundaries[1:-1])),
             f"alpha {r.mixup:g}" if r.mixup else "off", res)


# --- cells -----------------------------------------------------------------------------------------

def study_sources(exp) -> list[SourceSpec]:
    """The experiment's sources (``backbone`` as the one source when ``sources`` is empty)."""
    if exp.sources:
        return list(exp.sources)
    return [SourceSpec(name=None, backbone=exp.backbone.name, weights=exp.backbone.weights)]


def shot_levels(exp) -> list[int | str]:
    return list(exp.shots) if exp.shots else ["full"]


def cell_name(exp, strategy: str, source: str, shots: int | str, draw: int) -> str:
    """The table name of a cell: the strategy, then the source and shot level where they vary."""
    parts = [strategy]
    if len(exp.sources) > 1:
        parts.append(source)
    if exp.shots:
        parts.append("full" if shots == "full" else f"{shots}-shot")
    if exp.shot_draws > 1 and shots != "full":
        parts.append(f"d{draw}")
    return "/".join(parts)


def check_source(src: SourceSpec, i: int) -> None:
    """A source's weight file exists and fits its backbone (keys and shapes), before anything runs."""
    w = src.weights
    if w in ("none", "embedded", "imagenet"):
        return
    p = Path(w).expanduser()
    if not p.is_file():
        raise ConfigError(f"sources[{i}] ({src.label}): weights {w!r} is neither none, embedded, imagenet nor an "
                          "existing file; give the path to a .safetensors or .pt state dict (or a previous run's "
                          "steps/<kind>/<hash>/weights.safetensors for continual pre-training)")
    from ..models.backbones import create_backbone

    try:
        create_backbone(src.backbone, str(p))
    except WeightsError as exc:
        raise WeightsError(f"sources[{i}] ({src.label}), backbone {src.backbone!r}: {exc}") from None


@dataclass
class StudyBuilder(Builder):
    """The planners' constructors for one source, with cell names as users and tags."""

    source_label: str = ""

    def init(self, s, seed: int) -> Step:
        # Builder.init without its user: the cells that need this init are added as users
        exp = self.exp
        key = InitKey(exp.backbone.name, exp.backbone.weights, self.weights_file,
                      {"keep": s.surgery.keep, "init": s.surgery.init, "head": s.surgery.head}, seed, exp.data.image_size)
        src = self.source()
        label = " ".join(x for x in (s.surgery.keep, s.surgery.init, "" if s.surgery.head == "gap" else s.surgery.head) if x)
        return self.plan.add(Step("init", key, {"data": src} if src is not None else {}, label=label))

    def weights_chain(self, name: str, seed: int, user: str) -> Step:
        s = self.exp.strategy(name)
        w = self.init(s, seed)
        for phase in s.source_phases:
            key = PhaseKey(phase, self.engine_key(), seed, self.runtime.numerics(training=True))
            w = self.plan.add(Step("pretrain", key, {"weights": w, "data": self.source()}, label=phase.name))
        self.plan.add(w, user)
        return w

    def finetuned(self, name: str, seed: int, task: str, data: Step, n_train: int | None, tag: dict, user: str) -> Step:
        s = self.exp.strategy(name)
        w = self.weights_chain(name, seed, user)
        for i, phase in enumerate(s.target_phases):
            if self.exp.schedule.rule == "bit-hyperrule":
                if n_train is None:
                    raise ConfigError(f"schedule.rule bit-hyperrule: the training-set size of task {task!r} is not "
                                      "known before the run; prepare the data first (`medapt prepare`)")
                phase = bit_phase(phase, n_train, self.exp.data.image_size, self.exp.schedule.batch_size,
                                  resolution=self.exp.schedule.bit_resolution)
                _log_rule(task, n_train, self.exp.data.image_size, self.exp.schedule.bit_resolution)
            key = FinetuneKey(phase, self.engine_key(), seed, self.runtime.numerics(training=True), task=task,
                              new_head=i == 0)
            w = self.plan.add(Step("finetune", key, {"weights": w, "data": data}, label=f"{phase.name} {task}"), user,
                              tag={**tag, "head": "own"})
        return w


class _NoStore:
    def info(self, step):
        return None


@register_planner
class StudyPlanner(Planner):
    name = "study"
    description = "sources × strategies × seeds × shot levels (experiments with sources, shots or schedule.rule)"
    replaces: ClassVar[tuple[str, ...]] = ("dapt", "finetune", "downstream")

    def applies(self, exp) -> bool:
        return bool(exp.sources or exp.shots or exp.schedule.rule != "none")

    def plan(self, b: Builder) -> None:
        exp, plan = b.exp, b.plan
        for i, src in enumerate(study_sources(exp)):
            check_source(src, i)
        sizes: dict[str, Any] = {}
        for src in study_sources(exp):
            sexp = exp.model_copy(update={"backbone": BackboneSpec(name=src.backbone, weights=src.weights)})
            sb = StudyBuilder(sexp, plan, b.runtime, source_label=src.label)
            for seed in exp.seeds:
                for name in exp.strategies:
                    self._cells(sb, name, seed, sizes)

    def _n_train(self, dev: Step, shots, sizes: dict) -> int | None:
        from .kinds import KINDS

        if dev.id not in sizes:
            sizes[dev.id] = KINDS.get("prepare").size(dev, _NoStore())
        size = sizes[dev.id]
        if size is None:
            return None
        return size["train"] if shots == "full" else shots_train_size(size, shots)

    def _cells(self, sb: StudyBuilder, name: str, seed: int, sizes: dict) -> None:
        exp, plan = sb.exp, sb.plan
        s = exp.strategy(name)
        src_cell = cell_name(exp, name, sb.source_label, "full", 0).removesuffix("/full")
        w_src = sb.weights_chain(name, seed, src_cell)
        if exp.cost.inference:
            key = InferenceKey(exp.data.image_size, sb.runtime.device_type, exp.cost.inference_repeats)
            plan.add(Step("inference", key, {"weights": w_src}, label="latency"), src_cell,
                     tag={"strategy": src_cell, "seed": seed})
        fkey = ExtractKey(exp.engine.eval_batch_size, {"device": sb.runtime.device_type})
        d = exp.downstream
        for task in exp.data.targets:
            dev, ext = sb.target(task)
            for shots in shot_levels(exp):
                for draw in range(exp.shot_draws if shots != "full" else 1):
                    cell = cell_name(exp, name, sb.source_label, shots, draw)
                    tag = {"strategy": cell, "seed": seed, "task": task, "method": name, "source": sb.source_label,
                           "shots": str(shots), "draw": draw}
                    data = dev if shots == "full" else plan.add(
                        Step("fewshot", FewshotKey(task, int(shots), draw, seed), {"data": dev},
                             label=f"{shots}-shot {task} d{draw}"), cell)
                    if s.target_phases:
                        n_train = self._n_train(dev, shots, sizes) if exp.schedule.rule != "none" else None
                        w = sb.finetuned(name, seed, task, data, n_train, tag, cell)
                        ekey = EvaluateKey(task, tuple(sorted(d.metrics)), exp.engine.eval_batch_size,
                                           sb.runtime.numerics())
                        inputs = {"weights": w, "data": dev} | ({"external": ext} if ext is not None else {})
                        plan.add(Step("evaluate", ekey, inputs, label=f"own head {task}"), cell,
                                 tag={**tag, "head": "own"})
                    else:
                        w = w_src
                    inputs = {"features": plan.add(Step("extract", fkey, {"weights": w, "data": dev}, label=task), cell),
                              "data": data}
                    if ext is not None:
                        inputs["external_features"] = plan.add(
                            Step("extract", fkey, {"weights": w, "data": ext}, label=f"{task}/external"), cell)
                        inputs["external"] = ext
                    for head in d.heads:
                        hkey = HeadKey(head, task, d.epochs, d.lr, d.batch_size, seed, tuple(sorted(d.metrics)),
                                       d.standardize)
                        plan.add(Step("head", hkey, inputs, label=f"{head} {task}"), cell, tag={**tag, "head": head})


# --- sharing -----------------------------------------------------------------------------------------

RESULT_KINDS = ("head", "evaluate")


def sharing(plan: Plan) -> dict[str, int]:
    """How much the plan shares: ``steps`` planned, ``results`` (head and own-head evaluations, one
    per cell replicate and head), ``shared`` (steps that two or more results need) and
    ``unshared`` (the steps a plan without sharing would run: every result's own chain)."""
    results = [s for s in plan.steps if s.kind in RESULT_KINDS]
    need: dict[str, int] = {}
    unshared = 0
    for r in results:
        seen: set[str] = set()
        todo = [r]
        while todo:
            s = todo.pop()
            if s.id in seen:
                continue
            seen.add(s.id)
            todo += s.deps
        unshared += len(seen)
        for sid in seen:
            need[sid] = need.get(sid, 0) + 1
    return {"steps": len(plan.steps), "results": len(results), "shared": sum(1 for v in need.values() if v > 1),
            "unshared": unshared}


def sharing_line(plan: Plan) -> str:
    """``N steps run for M results; K shared (without sharing: U)`` for the dry run and the log."""
    s = sharing(plan)
    return (f"{s['steps']} steps run for {s['results']} results; {s['shared']} shared "
            f"(without sharing: {s['unshared']} steps)")
