"""``inference``: what the final model costs to use — parameters, MACs, latency at batch 1 and 32
(the features model: kept units + GAP)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ...atomic import atomic_write_json
from ...cost import inference_cost
from ...models import UnitModel
from . import Estimate, Input, StepKind, register_kind


@dataclass(frozen=True)
class InferenceKey:
    image_size: int
    device: str  # the run's device type (latency is measured on the CPU and on a CUDA device when there is one)
    repeats: int


class _Features(torch.nn.Module):
    def __init__(self, m: UnitModel):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.features(x)


@register_kind
class Inference(StepKind):
    name = "inference"
    description = "params, MACs and latency of the final model (units + GAP) at batch 1 and 32"
    Key = InferenceKey
    inputs = (Input("weights", ("init", "pretrain", "finetune")),)
    uses_accelerator = True
    builds_model = True

    def run(self, ctx, step, workdir: Path) -> dict:
        model = ctx.load_model(step.inputs["weights"])
        model.eval()
        k = step.key
        # latency on the CPU, and on the run's GPU when there is one (DESIGN §6)
        devices = ["cpu"] + ([str(ctx.runtime.torch_device)] if ctx.runtime.device_type == "cuda" else [])
        cost = inference_cost(_Features(model), (3, k.image_size, k.image_size), device=devices,
                              batch_sizes=(1, 32), repeats=k.repeats)
        atomic_write_json(workdir / "inference.json", cost, indent=None)
        return {"inference": cost}

    def estimate(self, step, est) -> Estimate:
        """Forward passes at batch 1 and 32: one untimed and ``repeats`` timed each (``inference_cost``),
        on the CPU (a GPU run measures there too, not projected here)."""
        from ...cost import count_flops

        k = step.key
        model = est.model(step.inputs["weights"], 1).eval()
        x = torch.zeros(1, 3, k.image_size, k.image_size)
        with torch.no_grad():
            fpi = count_flops(lambda: model.features(x))
        images = (1 + 32) * (1 + int(k.repeats))
        return Estimate(images=images, flops=images * fpi, forward_flops=images * fpi)

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        f = store.path(step) / "inference.json"
        if not f.exists():
            return {}
        cost = json.loads(f.read_text())
        return {"inference.csv": pd.DataFrame([{**tag, **cost} for tag in step.tags])}
