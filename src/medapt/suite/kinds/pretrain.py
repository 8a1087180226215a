"""``pretrain``: one source phase (DAPT) on the source task's training split.

:class:`PhaseKind` is the shared body of the two kinds that train a phase (``pretrain`` here,
``finetune`` for target phases): load the input weights, run :func:`medapt.train.train_phase`
with the frozen-prefix cache and a cost meter on the run's runtime, write the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...strategies import Phase
from ...train import EngineConfig, phase_flops, train_phase
from ..context import init_step, save_cost, save_weights
from . import Estimate, Input, StepKind, register_kind


@dataclass(frozen=True)
class PhaseKey:
    phase: Phase
    engine: dict[str, Any]  # bn_policy, cache, cache_dtype, augment, deterministic, eval_batch_size
    seed: int
    runtime: dict[str, Any]  # Runtime.numerics(training=True)


class PhaseKind(StepKind):
    """Shared body of the kinds that train one phase of a strategy."""

    uses_accelerator = True
    distributed = True
    memory_gb = 2.0
    builds_model = True

    def label(self, step) -> str:
        who = "/".join(step.users[:2]) + ("…" if len(step.users) > 2 else "")
        return f"{who} {step.key.phase.name}"

    def train(self, ctx, step, workdir: Path, model, ds, *, val_rows: np.ndarray | None = None, desc: str) -> dict:
        k = step.key
        e = ctx.experiment.engine  # how files are written: not part of the step's key
        cfg = EngineConfig(seed=k.seed, progress=ctx.progress, **k.engine, checkpoint_every=e.checkpoint_every,
                           checkpoint_seconds=e.checkpoint_seconds, cache_max_gb=e.cache_max_gb)
        meter = ctx.meter(step, k.phase.name)
        with meter:
            res = train_phase(model, k.phase, ds.images, ds.labels, task_type=ds.task_type, cfg=cfg,
                              runtime=ctx.runtime, workdir=workdir, cache_dir=ctx.run_dir / "cache", meter=meter,
                              data_key=ds.digest, indices=ds.indices("train"), val_indices=val_rows, desc=desc)
        out = {"n_outputs": model.head.n_outputs, "phase": res.to_dict()}
        if ctx.runtime.is_main:  # under DDP every rank holds the same weights; rank 0 writes
            save_weights(model, workdir)
            (workdir / "checkpoint.pt").unlink(missing_ok=True)  # the final weights replace it
            out["cost"] = save_cost(workdir, meter)
        return out

    def estimate(self, step, est) -> Estimate:
        k = step.key
        size = est.dataset(step.inputs["data"])
        model = est.model(step.inputs["weights"], est.n_outputs(step))
        flops = phase_flops(model, k.phase, task_type=est.task_type(step.inputs["data"]),
                            input_shape=(3, est.image_size, est.image_size), bn_policy=k.engine["bn_policy"],
                            cache=k.engine["cache"], augment=k.engine["augment"])
        if size is None:
            return Estimate(note=flops.note)
        n_train, n_val = size["train"], (size["val"] if k.phase.monitor else 0)
        images = n_train * k.phase.epochs
        total = images * flops.train + n_val * k.phase.epochs * flops.eval
        if flops.cached:
            total += (n_train + n_val) * flops.prefix
        return Estimate(images=images, flops=total, note=flops.note)


@register_kind
class Pretrain(PhaseKind):
    name = "pretrain"
    description = "one source (DAPT) phase on the source task's training split"
    Key = PhaseKey
    inputs = (Input("weights", ("init", "pretrain")), Input("data", ("prepare",)))

    def run(self, ctx, step, workdir: Path) -> dict:
        model = ctx.load_model(step.inputs["weights"])
        ds = ctx.dataset(step.inputs["data"])
        val = ds.indices("val") if step.key.phase.monitor else None
        if val is not None and not len(val):
            from ...errors import ConfigError

            raise ConfigError(f"phase {step.key.phase.name!r} monitors validation {step.key.phase.monitor} on the source "
                              "task, but the source dataset has no validation split; set data.split.val > 0")
        return self.train(ctx, step, workdir, model, ds, val_rows=val, desc=self.label(step))


def architecture_key(step) -> dict:
    """What fixes a weights step's architecture: backbone, kept units, head kind, image size."""
    k = init_step(step).key
    return {"backbone": k.backbone, "keep": k.surgery["keep"], "head": k.surgery["head"], "image_size": k.image_size}
