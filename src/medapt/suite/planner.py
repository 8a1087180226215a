"""The planner: expand an experiment into steps, hash them, and share equal ones (DESIGN §9).

Sharing falls out of the hashing: all full-backbone strategies start from one ``init`` step and
run one identical phase 1, so they share its step; features are extracted once per weights step
and dataset; ``ImageNet`` and ``DA``'s initial weights are one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.section import check_external
from ..errors import ConfigError
from ..models.backbones import create_backbone
from .steps import Step
from .tasks import run_extract, run_head, run_inference, run_init, run_prepare, run_pretrain

__all__ = ["Plan", "plan_experiment"]


@dataclass
class Plan:
    """Steps in dependency order (each once), and for each (strategy, seed) its final weights step."""

    steps: list[Step] = field(default_factory=list)
    final: dict[tuple[str, int], Step] = field(default_factory=dict)
    heads: list[tuple[str, int, str, str, Step]] = field(default_factory=list)  # strategy, seed, head, task, step
    inference: dict[tuple[str, int], Step] = field(default_factory=dict)
    _by_id: dict[str, Step] = field(default_factory=dict)

    def add(self, step: Step, user: str | None = None) -> Step:
        """Add ``step`` unless an equal one (same hash) is planned; return the planned one."""
        have = self._by_id.get(step.id)
        if have is None:
            self._by_id[step.id] = have = step
            self.steps.append(step)
        if user is not None:
            self._add_user(have, user)
        return have

    def _add_user(self, step: Step, user: str) -> None:
        """``user`` needs ``step`` and so every step it depends on."""
        if user not in step.users:
            step.add_user(user)
            for d in step.deps:
                self._add_user(d, user)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out


def plan_experiment(exp) -> Plan:
    """Expand an :class:`~medapt.suite.experiment.Experiment` into a :class:`Plan`."""
    plan = Plan()
    _, winfo = create_backbone(exp.backbone.name, "none")  # validates the name; normalisation numbers
    mean, std = list(winfo.mean), list(winfo.std)
    weights_file = None  # a local weights file: its size and mtime, so a replaced file is not reused stale
    if exp.backbone.weights not in ("none", "embedded", "imagenet"):
        p = Path(exp.backbone.weights).expanduser()
        if not p.is_file():
            raise ConfigError(f"backbone.weights {exp.backbone.weights!r} is neither none, embedded, imagenet nor an "
                              "existing file; give the path to a .safetensors or .pt state dict")
        st = p.stat()
        weights_file = {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    d = exp.data
    if d.channels != 3:
        raise ConfigError(f"data.channels is {d.channels}, but the backbones take 3-channel input; set data.channels: 3 "
                          "(grayscale images are replicated to 3 channels)")
    engine = exp.engine
    device = engine.device

    def prepare(spec, split, what: str) -> Step:
        key = {"spec": spec.model_dump(mode="json"), "split": None if split is None else split.model_dump(mode="json"),
               "image_size": d.image_size, "channels": d.channels, "mean": mean, "std": std}
        return plan.add(Step("prepare", key, [], run_prepare, label=what))

    src = prepare(d.source, d.split, "source")
    targets = {}
    for task, t in d.targets.items():
        check_external(task, t)  # same class names in the same order, before anything runs
        dev = prepare(t.dataset, d.split, task)
        ext = prepare(t.external, None, f"{task}/external") if t.external is not None else None
        targets[task] = (dev, ext)

    for seed in exp.seeds:
        for name in exp.strategies:
            s = exp.strategy(name)
            init_key = {"backbone": exp.backbone.name, "weights": exp.backbone.weights, "weights_file": weights_file,
                        "surgery": {"keep": s.surgery.keep, "init": s.surgery.init}, "seed": seed}
            w = plan.add(Step("init", init_key, [src], run_init, label=f"{s.surgery.keep} {s.surgery.init}"), name)
            for phase in s.phases:
                key = {"phase": phase.__dict__, "engine": engine.config(seed).__dict__ | {"progress": None}, "seed": seed}
                w = plan.add(Step("pretrain", key, [w, src], run_pretrain, label=phase.name), name)
            plan.final[(name, seed)] = w
            for task, (dev, ext) in targets.items():
                fkey = {"device": device, "batch_size": engine.eval_batch_size, "dataset": task}
                fx = plan.add(Step("extract", fkey, [w, dev], run_extract, label=task), name)
                deps = [fx, dev]
                if ext is not None:
                    fe = plan.add(Step("extract", fkey | {"dataset": f"{task}/external"}, [w, ext], run_extract,
                                       label=f"{task}/external"), name)
                    deps += [fe, ext]
                for head in exp.downstream.heads:
                    hkey = {"head": head, "task": task, "epochs": exp.downstream.epochs, "lr": exp.downstream.lr,
                            "batch_size": exp.downstream.batch_size, "seed": seed,
                            "metrics": sorted(exp.downstream.metrics),
                            "device": "cpu" if device == "auto" else device}
                    h = plan.add(Step("head", hkey, deps, run_head, label=f"{head} {task}"), name)
                    plan.heads.append((name, seed, head, task, h))
            if exp.cost.inference:
                ikey = {"image_size": d.image_size, "device": device, "repeats": exp.cost.inference_repeats}
                plan.inference[(name, seed)] = plan.add(Step("inference", ikey, [w], run_inference, label="latency"), name)
    return plan
