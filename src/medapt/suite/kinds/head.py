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
        k = step.key
        n_feat = est.model(step.inputs["features"].inputs["weights"], 1).num_features
        n_out = size["classes"]  # two softmax outputs for a binary task, as train_head builds
        fpi = training_flops_per_image(_build(k.head, n_feat, n_out), torch.zeros(2, n_feat))
        images = size["train"] * k.epochs
        if est.store.done(step):  # nothing to project: no probe
            return Estimate(images=images, flops=images * fpi)
        evals = [size[s] for s in ("val", "test") if size.get(s)]
        if step.input("external") is not None:
            evals.append((est.dataset(step.inputs["external"]) or {}).get("n") or 0)
        task_type = est.task_type(step.inputs["data"])
        fixed, per_epoch = est.probe(("head", k.head, n_feat, n_out, task_type, size["train"], tuple(evals),
                                      k.batch_size, k.standardize),
                                     lambda: head_seconds(k.head, n_feat, n_out, task_type, size["train"], evals,
                                                          k.batch_size, k.standardize))
        return Estimate(images=images, flops=images * fpi, seconds=fixed + k.epochs * per_epoch)

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        from .evaluate import tagged_tables

        return super().tables(step, store) | tagged_tables(step, store)


def head_seconds(head: str, n_feat: int, n_out: int, task_type: str, n_train: int, evals: list[int],
                 batch_size: int | None, standardize: bool) -> tuple[float, float]:
    """Measured (fixed, per-epoch) seconds of :func:`train_head` at these shapes, on random features.

    Two short runs (1 and 3 epochs) of the real head, its optimizer and its per-epoch scoring of
    every evaluation split with every metric, after an untimed one: the difference over 2 is one
    epoch's cost, the rest the fixed cost. Features are non-negative with about two thirds
    zeros, like the GAP of ReLU outputs. The head trains on the CPU with one thread, as in the run.
    """
    import time
    import warnings

    rng = np.random.default_rng(0)

    def labels(n: int) -> np.ndarray:
        if task_type == "multilabel":
            return (np.arange(n)[:, None] + np.arange(n_out)[None, :]) % 2 * 1.0
        return np.arange(n) % (2 if task_type == "binary" else n_out)

    def feats(n: int) -> np.ndarray:
        return rng.random((n, n_feat), dtype=np.float32) * (rng.random((n, n_feat)) < 1 / 3)

    x = feats(max(1, n_train))
    ev = {f"s{i}": (feats(m), labels(m)) for i, m in enumerate(evals) if m > 0}
    t = []
    for epochs in (1, 1, 3):
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # random features: metrics may be undefined; only the time counts
            warnings.simplefilter("ignore")
            train_head(x, labels(len(x)), ev, head=head, task_type=task_type, n_classes=n_out, epochs=epochs,
                       lr=1e-4, batch_size=batch_size, seed=0, standardize=standardize)
        t.append(time.perf_counter() - t0)
    per_epoch = max(0.0, (t[2] - t[1]) / 2)
    return max(0.0, t[1] - per_epoch), per_epoch


def save_head_weights(workdir: Path, res) -> None:
    """``head.safetensors``: the trained MLP (``mlp.<i>.*``) and the feature standardisation it expects."""
    from safetensors.torch import save_file

    from ...atomic import atomic_path

    sd = {f"mlp.{k}": v.contiguous() for k, v in res.state_dict.items()}
    sd["feature_mean"] = torch.as_tensor(res.feature_mean, dtype=torch.float32)
    sd["feature_std"] = torch.as_tensor(res.feature_std, dtype=torch.float32)
    with atomic_path(workdir / "head.safetensors") as tmp:
        save_file(sd, str(tmp))
