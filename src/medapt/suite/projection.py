"""`medapt run --dry-run`: each step's status, FLOPs and a time estimate before anything runs.

FLOPs are counted with ``FlopCounterMode`` on the part of the model that will actually run (a
cached prefix costs one forward pass, not one per epoch). Seconds come from a short *measured*
throughput probe on this machine's device (one training step of the full model), converted to
FLOP/s and applied to every step: a projection, labelled as such, not a measurement.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..cost import count_flops, project_seconds, throughput_probe, training_flops_per_image
from ..strategies import Phase, Strategy, Surgery, apply_phase, build_for
from ..models.model import GapHead
from ..train import RunningPart, Runtime, loss_for, plan_cache

__all__ = ["project_plan"]

log = logging.getLogger("medapt.suite")


def _dataset_size(step, ctx) -> tuple[int | None, int | None, int | None]:
    """(n images, n train, n classes) of a prepare step: exact when prepared, else from the spec."""
    info = ctx.store.info(step)
    if info is not None:
        r = info["result"]
        return r["n"], r["splits"].get("train", r["n"]), len(r["classes"])
    from ..data import inspect_source, parse_dataset_spec, source_classes

    spec = parse_dataset_spec(step.key["spec"])
    try:
        if spec.format == "phantom":  # sized by its spec, nothing to read
            k = len(source_classes(spec))
            n = spec.n_per_class * k
        else:  # reads the source without writing anything
            summary = inspect_source(spec)
            n, k = int(summary["n_images"]), len(summary["classes"])
    except Exception as exc:  # a dry run must not fail on a source it cannot read yet
        log.warning("dry run: cannot size dataset %s (%s)", step.label, exc)
        return None, None, None
    split = step.key["split"]
    n_train = n if split is None else int(round(n * split["train"]))
    return n, n_train, k


@lru_cache(maxsize=64)
def _phase_flops(backbone: str, keep: str, init: str, trainable: str, size: int, n_out: int, bn: str,
                 cache: str, augment: bool) -> tuple[float, float, bool]:
    """(training FLOPs per image of the running part, forward FLOPs per image of the cached prefix, cached)."""
    model = build_for(Strategy("-", "-", Surgery(keep, init)), backbone, "none", n_outputs=n_out)
    idx = apply_phase(model, Phase("p", trainable, 1e-4, 1), bn)
    plan = plan_cache(model, idx, mode=cache, augment=augment)
    x = torch.zeros(2, 3, size, size)
    y = torch.zeros(2) if n_out == 1 else torch.zeros(2, dtype=torch.long)
    loss = loss_for("binary" if n_out == 1 else "multiclass")
    if plan.use:
        with torch.no_grad():
            a = model.forward_units(x, 0, plan.cut)
            prefix = count_flops(lambda: model.forward_units(x, 0, plan.cut)) / 2
        if plan.pooled:
            a = GapHead.pool(a)
        return training_flops_per_image(RunningPart(model, plan.cut), a, lambda o: loss(o.float(), y)), prefix, True
    return training_flops_per_image(model, x, lambda o: loss(o.float(), y)), 0.0, False


@lru_cache(maxsize=16)
def _forward_flops(backbone: str, keep: str, size: int) -> tuple[float, int]:
    """(forward FLOPs per image of the feature extractor, number of features)."""
    model = build_for(Strategy("-", "-", Surgery(keep, "random")), backbone, "none").eval()
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        return count_flops(lambda: model.features(x)), model.num_features


@lru_cache(maxsize=16)
def _head_flops(head: str, n_features: int, n_classes: int) -> float:
    from ..evaluate import build_head

    return training_flops_per_image(build_head(head, n_features, n_classes), torch.zeros(2, n_features))


def _init_of(step):
    while step.kind != "init":
        step = step.deps[0]
    return step


def _probe_flops_per_second(exp) -> tuple[float, str]:
    """Measure training throughput of the full backbone on this device; convert to FLOP/s."""
    rt = Runtime(exp.engine.device, exp.engine.precision)
    model = build_for(Strategy("-", "-", Surgery()), exp.backbone.name, "none")
    size, bs = exp.data.image_size, 8
    apply_phase(model, Phase("p", "all", 1e-4, 1), exp.engine.bn_policy)
    rt.prepare_model(model)
    x = rt.to_device(torch.randn(bs, 3, size, size))
    y = torch.zeros(bs, device=rt.torch_device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    loss = loss_for("binary")

    def step() -> None:
        opt.zero_grad()
        with rt.autocast():
            out = model(x)
        loss(out.float(), y).backward()
        opt.step()

    ips = throughput_probe(step, bs, warmup=1, repeats=3)
    fpi = training_flops_per_image(model, x[:2], lambda o: loss(o.float(), y[:2]))
    return ips * fpi, f"{ips:.1f} img/s training {exp.backbone.name} at {size}px on {rt.torch_device}"


def project_plan(plan, ctx) -> list[dict[str, Any]]:
    """One row per step: id, kind, label, users, status, images, FLOPs, projected seconds."""
    exp = ctx.experiment
    size = exp.data.image_size
    t0 = time.perf_counter()
    flops_per_s, probe = _probe_flops_per_second(exp)
    log.info("dry run: throughput probe %s (%.1fs)", probe, time.perf_counter() - t0)
    sizes: dict[str, tuple[int | None, int | None, int | None]] = {}

    def sized(prepare_step):  # once per dataset: sizing a real source reads it
        if prepare_step.id not in sizes:
            sizes[prepare_step.id] = _dataset_size(prepare_step, ctx)
        return sizes[prepare_step.id]

    rows = []
    for s in plan.steps:
        status = "done" if ctx.store.done(s) else ("partial" if ctx.store.partial(s).exists() else "to run")
        flops, images = 0.0, None
        if s.kind == "prepare":
            images = sized(s)[0]
        elif s.kind == "pretrain":
            src = s.deps[1]
            _, n_train, k = sized(src)
            init = _init_of(s.deps[0])
            ph = s.key["phase"]
            n_out = 1 if (k or 2) <= 2 else k
            e = s.key["engine"]
            fpi, prefix, cached = _phase_flops(exp.backbone.name, init.key["surgery"]["keep"], "random",
                                               ph["trainable"], size, n_out, e["bn_policy"], e["cache"], e["augment"])
            if n_train is not None:
                images = n_train * ph["epochs"]
                flops = images * fpi + (n_train * prefix if cached else 0.0)
        elif s.kind == "extract":
            n = sized(s.deps[1])[0]
            if n is not None:
                images = n
                flops = n * _forward_flops(exp.backbone.name, _init_of(s.deps[0]).key["surgery"]["keep"], size)[0]
        elif s.kind == "head":
            _, n_train, k = sized(s.deps[1])
            if n_train is not None:
                n_feat = _forward_flops(exp.backbone.name, _init_of(s.deps[0].deps[0]).key["surgery"]["keep"], size)[1]
                images = n_train * s.key["epochs"]
                flops = images * _head_flops(s.key["head"], n_feat, k)
        rows.append({"id": s.id, "kind": s.kind, "label": s.label, "users": list(s.users), "status": status,
                     "images": images, "flops": flops,
                     "seconds": project_seconds(flops, flops_per_s) if flops and status != "done" else 0.0})
    rows.append({"id": "total", "kind": "", "label": probe, "users": [], "status": "",
                 "images": None, "flops": float(np.nansum([r["flops"] for r in rows])),
                 "seconds": float(np.nansum([r["seconds"] for r in rows]))})
    return rows
