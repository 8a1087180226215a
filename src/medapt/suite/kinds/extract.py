"""``extract``: frozen GAP features of the last kept unit for every image of a dataset (float32, N × C)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ...atomic import atomic_path
from ...cost import count_flops
from ..context import save_cost
from . import Estimate, Input, StepKind, register_kind


@dataclass(frozen=True)
class ExtractKey:
    batch_size: int
    runtime: dict  # the device type; features are always computed in fp32


@register_kind
class Extract(StepKind):
    name = "extract"
    description = "frozen GAP features of the last kept unit for every image of a dataset"
    Key = ExtractKey
    inputs = (Input("weights", ("init", "pretrain", "finetune")), Input("data", ("prepare",)))
    uses_accelerator = True
    memory_gb = 2.0
    builds_model = True

    def run(self, ctx, step, workdir: Path) -> dict:
        model = ctx.load_model(step.inputs["weights"])
        ds = ctx.dataset(step.inputs["data"])
        rt = replace(ctx.runtime, precision="fp32")  # features in full precision wherever they run
        rt.prepare_model(model)
        model.eval()
        bs = int(step.key.batch_size)
        meter = ctx.meter(step, f"features:{step.inputs['data'].label}", str(rt.torch_device))
        with meter:
            meter.set_params(model.n_params(), 0)
            out = None
            with atomic_path(workdir / "features.npy") as tmp, torch.no_grad():
                for s in range(0, len(ds.labels), bs):
                    xb = rt.to_device(torch.as_tensor(np.asarray(ds.images[s:s + bs], dtype=np.float32)))
                    f = model.features(xb).float().cpu().numpy()
                    if out is None:
                        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                        shape=(len(ds.labels), f.shape[1]))
                    out[s:s + len(f)] = f
                xb = rt.to_device(torch.as_tensor(np.asarray(ds.images[:1], dtype=np.float32)))
                meter.set_flops_per_image(count_flops(lambda: model.features(xb)))
                out.flush()
                del out
            meter.add_images(len(ds.labels))
        cost = save_cost(workdir, meter)
        return {"shape": [len(ds.labels), model.num_features], "cost": cost}

    def estimate(self, step, est) -> Estimate:
        size = est.dataset(step.inputs["data"])
        if size is None:
            return Estimate()
        model = est.model(step.inputs["weights"], 1).eval()
        x = torch.zeros(1, 3, est.image_size, est.image_size)
        with torch.no_grad():
            fpi = count_flops(lambda: model.features(x))
        return Estimate(images=size["n"], flops=size["n"] * fpi, forward_flops=size["n"] * fpi)


def features(store, step) -> np.ndarray:
    """The features an ``extract`` step wrote (memory-mapped, read-only)."""
    return np.load(store.path(step) / "features.npy", mmap_mode="r")
