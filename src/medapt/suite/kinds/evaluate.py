"""``evaluate``: a fine-tuned model's **own head** scored on the test split and the external set.

The model is the one its last target phase kept (the best validation epoch); its scores become
``metrics.csv`` rows with ``head = own`` at that epoch, and ``predictions.csv`` rows, so the
report gives it the same summaries, confidence intervals and DeLong tests as the frozen-feature
heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...cost import count_flops
from ...evaluate import METRICS
from ...train import predict
from ...train.augment import resize_batch
from ..context import save_cost
from . import Estimate, Input, StepKind, register_kind
from .head import prediction_frame


@dataclass(frozen=True)
class EvaluateKey:
    task: str
    metrics: tuple[str, ...]
    batch_size: int
    runtime: dict  # Runtime.numerics()


@register_kind
class Evaluate(StepKind):
    name = "evaluate"
    description = "the fine-tuned model's own head on the test split and the external set"
    Key = EvaluateKey
    inputs = (Input("weights", ("finetune",)), Input("data", ("prepare",)), Input("external", ("prepare",), optional=True))
    uses_accelerator = True
    memory_gb = 2.0
    builds_model = True

    def run(self, ctx, step, workdir: Path) -> dict:
        k = step.key
        weights = step.inputs["weights"]
        model = ctx.load_model(weights).eval()
        ctx.runtime.prepare_model(model)
        selected = ctx.store.result(weights)
        epoch, seconds = int(selected["selected_epoch"]), float(selected["selected_seconds"])
        ds = ctx.dataset(step.inputs["data"])
        # a model fine-tuned under BiT-HyperRule's resolution is evaluated at its crop size, as BiT does
        res = getattr(weights.key, "phase", None) and weights.key.phase.resolution
        crop = res[1] if res else None
        splits = {"test": (ds, ds.indices("test"))}
        if step.input("external") is not None:
            ext = ctx.dataset(step.inputs["external"])
            splits["external"] = (ext, np.arange(len(ext.labels)))
        meter = ctx.meter(step, f"own:{k.task}")
        rows, preds, final = [], [], {}
        with meter:
            meter.set_params(model.n_params(), 0)
            for split, (d, idx) in splits.items():
                if not len(idx):
                    continue
                _, probs = predict(model, d.images, idx, task_type=d.task_type, runtime=ctx.runtime,
                                   batch_size=k.batch_size, resize=crop)
                labels = np.asarray(d.labels[idx])
                for m in k.metrics:
                    v = float(METRICS.get(m)(labels, probs, d.task_type))
                    rows.append({"split": split, "epoch": epoch, "seconds": seconds, "metric": m, "value": v})
                    final[f"{split}_{m}"] = v
                preds.append(prediction_frame(split, idx, labels, probs))
                meter.add_images(len(idx))
            xb = resize_batch(ctx.runtime.to_device(torch.as_tensor(np.asarray(ds.images[:1], dtype=np.float32))), crop)
            with torch.no_grad():
                meter.set_flops_per_image(count_flops(lambda: model(xb)))
        pd.DataFrame(rows, columns=["split", "epoch", "seconds", "metric", "value"]).to_csv(workdir / "metrics.csv", index=False)
        if preds:
            pd.concat(preds).to_csv(workdir / "predictions.csv", index=False)
        return {"final": final, "selected_epoch": epoch, "cost": save_cost(workdir, meter)}

    def estimate(self, step, est) -> Estimate:
        n = (est.dataset(step.inputs["data"]) or {}).get("test")
        ext = step.input("external")
        if ext is not None and n is not None:
            n += (est.dataset(ext) or {}).get("n", 0)
        if n is None:
            return Estimate()
        model = est.model(step.inputs["weights"], est.n_outputs(step))
        res = step.inputs["weights"].key.phase.resolution
        size = res[1] if res else est.image_size
        x = torch.zeros(1, 3, size, size)
        with torch.no_grad():
            flops = n * count_flops(lambda: model.eval()(x))
        return Estimate(images=n, flops=flops, forward_flops=flops)

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        out = super().tables(step, store)
        return out | tagged_tables(step, store)


def tagged_tables(step, store) -> dict[str, pd.DataFrame]:
    """The step's ``metrics.csv`` / ``predictions.csv``, one copy per tag (strategy, seed, head, task)."""
    out = {}
    d = store.path(step)
    for name in ("metrics.csv", "predictions.csv"):
        if (d / name).exists():
            df = pd.read_csv(d / name)
            frames = [df.assign(**tag) for tag in step.tags]
            if frames:
                out[name] = pd.concat(frames, ignore_index=True)
    return out
