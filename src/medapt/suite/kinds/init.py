"""``init``: the backbone with its configured weights, cut and headed by the surgery (the step every
chain of weights starts from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...models import Surgery, build
from ..context import n_outputs, save_weights
from . import Input, StepKind, register_kind


@dataclass(frozen=True)
class InitKey:
    backbone: str
    weights: str
    weights_file: dict[str, Any] | None  # a local file's path, size and mtime: a replaced file is not reused stale
    surgery: dict[str, str]  # keep, init, head
    seed: int
    image_size: int


@register_kind
class Init(StepKind):
    name = "init"
    description = "backbone + surgery (keep, init, head) → initial weights; the head is sized for `data`'s task"
    Key = InitKey
    inputs = (Input("data", ("prepare",), optional=True),)
    builds_model = True

    def run(self, ctx, step, workdir: Path) -> dict:
        k = step.key
        data = step.input("data")
        if data is not None:
            ds = ctx.dataset(data)
            n_out = n_outputs(ds.task_type, ds.n_classes)
        else:  # fine-tuning only: every target phase gives the model its own head
            n_out = 1
        with torch.random.fork_rng(devices=[]):  # the weights depend on the suite seed only
            torch.manual_seed(int(k.seed))
            model = build(k.backbone, Surgery(**k.surgery), weights=k.weights, n_outputs=n_out, image_size=k.image_size,
                          generator=torch.Generator().manual_seed(int(k.seed)))
        save_weights(model, workdir)
        return {"n_outputs": n_out, "n_units": model.n_units, "unit_names": model.unit_names,
                "params": model.n_params(), "weights_source": model.weights.source,
                "mean": list(model.weights.mean), "std": list(model.weights.std)}
