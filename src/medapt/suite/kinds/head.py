"""``head``: a downstream head (Model 1, Model 2, linear) trained on frozen features; metrics after
every epoch on the test (and validation) split and the external set (Mehmood et al.'s protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...cost import training_flops_per_image
from ...evaluate import build_head, train_head
from ..context import save_cost
from . import Estimate, Input, StepKind, register_kind
from .extract import features

__all__ = ["HeadKey", "prediction_frame"]


@dataclass(frozen=True)
class HeadKey:
    head: str
    task: str
    epochs: int
    lr: float
    batch_size: int | None
    seed: int
    metrics: tuple[str, ...]
    standardize: bool = False  # z-score the features (train statistics) before the head
    device: str = "cpu"  # heads are tiny MLPs: they always train on the CPU (a GPU would only add transfers)


def prediction_frame(split: str, idx: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """Rows of ``predictions.csv`` for one split: split, index, label (single-label tasks), score_*."""
    probs = np.asarray(probs)
    df = pd.DataFrame(probs, columns=[f"score_{i}" for i in range(probs.shape[1])])
    df.insert(0, "split", split)
    df.insert(1, "index", idx)
    if np.asarray(labels).ndim == 1:
        df.insert(2, "label", np.asarray(labels))
    else:  # multi-label: `label` empty, one 0/1 (NaN = ignored) column per label beside its score
        df.insert(2, "label", np.nan)
        for i, col in enumerate(np.asarray(labels, dtype=float).T):
            df[f"label_{i}"] = col
    return df


@register_kind
class Head(StepKind):
    name = "head"
    description = "a downstream MLP head on frozen features, metrics every epoch on test and external"
    Key = HeadKey
    inputs = (Input("features", ("extract",)), Input("data", ("prepare", "fewshot")),
              Input("external_features", ("extract",), optional=True), Input("external", ("prepare",), optional=True))

    def run(self, ctx, step, workdir: Path) -> dict:
        k = step.key
        ds = ctx.dataset(step.inputs["data"])
        feats = features(ctx.store, step.inputs["features"])
        tr = ds.indices("train")
        evals = {}
        for split in ("val", "test"):
            idx = ds.indices(split)
            if len(idx):
                evals[split] = (feats[idx], ds.labels[idx])
        if step.input("external") is not None:
            ext = ctx.dataset(step.inputs["external"])
            evals["external"] = (features(ctx.store, step.inputs["external_features"]), ext.labels)
        meter = ctx.meter(step, f"{k.head}:{k.task}", k.device)
        head_module = build_head(k.head, feats.shape[1], ds.n_classes)  # the same shape train_head builds
        n_head = sum(p.numel() for p in head_module.parameters())
        meter.set_params(n_head, n_head)
        meter.set_flops_per_image(training_flops_per_image(head_module, torch.zeros(2, feats.shape[1])))
        with meter:
            res = train_head(feats[tr], ds.labels[tr], evals, head=k.head, task_type=ds.task_type,
                             n_classes=ds.n_classes, epochs=k.epochs, lr=k.lr, batch_size=k.batch_size,
                             seed=k.seed, device=k.device, standardize=k.standardize)
            meter.add_images(len(tr) * k.epochs)
        res.metrics[res.metrics["metric"].isin(k.metrics)].to_csv(workdir / "metrics.csv", index=False)
        frames = []
        for split, probs in res.predictions.items():
            labels = evals[split][1]
            idx = np.arange(len(labels)) if split == "external" else ds.indices(split)
            frames.append(prediction_frame(split, idx, labels, probs))
        if frames:
            pd.concat(frames).to_csv(workdir / "predictions.csv", index=False)
        save_head_weights(workdir, res)  # for `medapt export --head NAME` (backbone + this head as one model)
        cost = save_cost(workdir, meter)
        last = res.metrics[res.metrics["epoch"] == res.metrics["epoch"].max()]
        final = {f"{r.split}_{r.metric}": float(r.value) for r in last.itertuples()}
        return {"final": final, "cost": cost}

    def estimate(self, step, est) -> Estimate:
        from ...evaluate import build_head as _build

        size = est.dataset(step.inputs["data"])
        if size is None:
            return Estimate()
        n_feat = est.model(step.inputs["features"].inputs["weights"], 1).num_features
        fpi = training_flops_per_image(_build(step.key.head, n_feat, size["classes"]), torch.zeros(2, n_feat))
        images = size["train"] * step.key.epochs
        return Estimate(images=images, flops=images * fpi)

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        from .evaluate import tagged_tables

        return super().tables(step, store) | tagged_tables(step, store)


def save_head_weights(workdir: Path, res) -> None:
    """``head.safetensors``: the trained MLP (``mlp.<i>.*``) and the feature standardisation it expects."""
    from safetensors.torch import save_file

    from ...atomic import atomic_path

    sd = {f"mlp.{k}": v.contiguous() for k, v in res.state_dict.items()}
    sd["feature_mean"] = torch.as_tensor(res.feature_mean, dtype=torch.float32)
    sd["feature_std"] = torch.as_tensor(res.feature_std, dtype=torch.float32)
    with atomic_path(workdir / "head.safetensors") as tmp:
        save_file(sd, str(tmp))
