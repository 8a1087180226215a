"""What each kind of step does. Each ``run_*`` takes ``(ctx, step, workdir)`` and writes its outputs
into ``workdir`` (the step's partial folder); the returned dict lands in ``step.json``.

Kinds: ``prepare`` (a dataset → prepared arrays), ``init`` (backbone + surgery + fresh head →
weights), ``pretrain`` (one phase on the source task), ``extract`` (frozen GAP features of a
dataset), ``head`` (a downstream head trained on features, metrics per epoch), ``inference``
(cost of the final backbone).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from ..cost import PhaseMeter, count_flops, inference_cost, training_flops_per_image
from ..data import PreparedDataset, load_prepared, prepare_dataset
from ..data.spec import SplitSpec, parse_dataset_spec
from ..models.model import UnitModel
from ..strategies import Phase, Strategy, Surgery, build_for
from ..train import EngineConfig, Runtime, train_phase

__all__ = ["RunContext", "run_prepare", "run_init", "run_pretrain", "run_extract", "run_head", "run_inference"]

log = logging.getLogger("medapt.suite")


@dataclass
class RunContext:
    """What every step needs: the experiment, the run directory and small caches of loaded data."""

    experiment: Any
    run_dir: Path
    store: Any
    data_root: Path
    progress: bool | None = None
    _datasets: dict[str, PreparedDataset] = field(default_factory=dict)

    def dataset(self, prepare_step) -> PreparedDataset:
        info = self.store.info(prepare_step)
        path = info["result"]["path"]
        if path not in self._datasets:
            self._datasets[path] = load_prepared(Path(path))
        return self._datasets[path]

    def meter(self, step, phase: str, device: str) -> PhaseMeter:
        return PhaseMeter(strategy=step.users[0] if step.users else "-", step=step.kind, phase=phase,
                          seed=int(step.key.get("seed", 0)), device=device,
                          track_energy=self.experiment.cost.track_energy,
                          energy_table=self.experiment.cost.energy_table)


def _save_cost(workdir: Path, meter: PhaseMeter) -> dict:
    row = meter.row()
    (workdir / "cost.json").write_text(json.dumps(row, default=float))
    return row


# --- prepare ---------------------------------------------------------------------------------------

def run_prepare(ctx: RunContext, step, workdir: Path) -> dict:
    k = step.key
    spec = parse_dataset_spec(k["spec"])
    split = SplitSpec(**k["split"]) if k["split"] is not None else None
    ds = prepare_dataset(spec, ctx.data_root, image_size=k["image_size"], channels=k["channels"],
                         mean=tuple(k["mean"]), std=tuple(k["std"]), split=split, progress=ctx.progress)
    counts = {s: int(len(ds.indices(s))) for s in ("train", "val", "test", "external")}
    return {"path": str(Path(ds.path).resolve()), "digest": ds.digest, "n": int(len(ds.labels)), "classes": list(ds.classes),
            "task_type": ds.task_type, "splits": counts}


# --- models and weights -----------------------------------------------------------------------------

def _n_outputs(task_type: str, n_classes: int) -> int:
    return 1 if task_type == "binary" else n_classes


def _model_for(key: dict, n_outputs: int, weights: str = "none") -> UnitModel:
    """The model an ``init`` key describes (backbone + surgery), with ``weights`` loaded."""
    return build_for(Strategy("-", "-", Surgery(**key["surgery"])), key["backbone"], weights, n_outputs=n_outputs)


def _init_key(step) -> dict:
    """The key of the ``init`` step at the start of a chain of weights steps (backbone, surgery)."""
    node = step
    while node.kind != "init":
        node = node.deps[0]
    return node.key


def load_model(ctx: RunContext, weights_step) -> UnitModel:
    """The model whose weights ``weights_step`` (an ``init`` or ``pretrain`` step) produced."""
    init_key = _init_key(weights_step)
    info = ctx.store.info(weights_step)
    model = _model_for(init_key, int(info["result"]["n_outputs"]))
    sd = load_file(str(ctx.store.path(weights_step) / "weights.safetensors"))
    model.load_state_dict(sd)
    return model


def _save_weights(model: UnitModel, workdir: Path) -> None:
    tmp = workdir / "weights.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(workdir / "weights.safetensors")


def run_init(ctx: RunContext, step, workdir: Path) -> dict:
    """Backbone with its configured weights, cut by the surgery, with a fresh head for the source task."""
    k = step.key
    src = ctx.dataset(step.deps[0])
    n_out = _n_outputs(src.task_type, src.n_classes)
    with torch.random.fork_rng(devices=[]):  # the head's init depends on the suite seed only
        torch.manual_seed(int(k["seed"]))
        model = _model_for(k, n_out, k["weights"])
    _save_weights(model, workdir)
    return {"n_outputs": n_out, "n_units": model.n_units, "unit_names": model.unit_names,
            "params": model.n_params(), "weights_source": model.weights.source,
            "mean": list(model.weights.mean), "std": list(model.weights.std)}


def run_pretrain(ctx: RunContext, step, workdir: Path) -> dict:
    """One phase on the source task's training split, with the frozen-prefix cache and a cost meter."""
    k = step.key
    prev, src_step = step.deps
    model = load_model(ctx, prev)
    src = ctx.dataset(src_step)
    phase = Phase(**k["phase"])
    cfg = EngineConfig(**k["engine"])
    rt = Runtime(cfg.device, cfg.precision)
    label = f"{'/'.join(step.users[:2])}{'…' if len(step.users) > 2 else ''} {phase.name}"
    meter = ctx.meter(step, phase.name, str(rt.torch_device))
    with meter:
        res = train_phase(model, phase, src.images, src.labels, task_type=src.task_type, cfg=cfg, workdir=workdir,
                          cache_dir=ctx.run_dir / "cache", meter=meter, data_key=src.digest,
                          indices=src.indices("train"), desc=label)
    _save_weights(model, workdir)
    (workdir / "checkpoint.pt").unlink(missing_ok=True)  # the final weights replace it
    cost = _save_cost(workdir, meter)
    return {"n_outputs": model.head.n_outputs, "phase": res.to_dict(), "cost": cost}


# --- downstream -----------------------------------------------------------------------------------------

def run_extract(ctx: RunContext, step, workdir: Path) -> dict:
    """GAP features of the last kept unit for every image of a dataset (float32, N × C)."""
    weights_step, data_step = step.deps
    model = load_model(ctx, weights_step)
    ds = ctx.dataset(data_step)
    rt = Runtime(step.key["device"], "fp32")
    rt.prepare_model(model)
    model.eval()
    bs = int(step.key["batch_size"])
    meter = ctx.meter(step, f"features:{step.key['dataset']}", str(rt.torch_device))
    with meter:
        meter.set_params(model.n_params(), 0)
        tmp = workdir / "features.npy.tmp.npy"
        out = None
        with torch.no_grad():
            for s in range(0, len(ds.labels), bs):
                xb = rt.to_device(torch.as_tensor(np.asarray(ds.images[s:s + bs], dtype=np.float32)))
                f = model.features(xb).float().cpu().numpy()
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(ds.labels), f.shape[1]))
                out[s:s + len(f)] = f
            xb = rt.to_device(torch.as_tensor(np.asarray(ds.images[:1], dtype=np.float32)))
            meter.set_flops_per_image(count_flops(lambda: model.features(xb)))
        out.flush()
        del out
        tmp.replace(workdir / "features.npy")
        meter.add_images(len(ds.labels))
    cost = _save_cost(workdir, meter)
    return {"shape": [len(ds.labels), model.num_features], "cost": cost}


def _features(ctx: RunContext, extract_step) -> np.ndarray:
    return np.load(ctx.store.path(extract_step) / "features.npy")


def run_head(ctx: RunContext, step, workdir: Path) -> dict:
    """A downstream head on frozen features; metrics after every epoch on test (+ val) and external."""
    from ..evaluate import build_head, train_head

    k = step.key
    fx_step, ds_step = step.deps[0], step.deps[1]
    ds = ctx.dataset(ds_step)
    feats = _features(ctx, fx_step)
    tr = ds.indices("train")
    evals = {}
    for split in ("val", "test"):
        idx = ds.indices(split)
        if len(idx):
            evals[split] = (feats[idx], ds.labels[idx])
    if len(step.deps) > 2:
        ext_fx, ext_ds_step = step.deps[2], step.deps[3]
        ext = ctx.dataset(ext_ds_step)
        evals["external"] = (_features(ctx, ext_fx), ext.labels)
    meter = ctx.meter(step, f"{k['head']}:{k['task']}", k["device"])
    head_module = build_head(k["head"], feats.shape[1], ds.n_classes)  # the same shape train_head builds
    n_head = sum(p.numel() for p in head_module.parameters())
    meter.set_params(n_head, n_head)
    meter.set_flops_per_image(training_flops_per_image(head_module, torch.zeros(2, feats.shape[1])))
    with meter:
        res = train_head(feats[tr], ds.labels[tr], evals, head=k["head"], task_type=ds.task_type,
                         n_classes=ds.n_classes, epochs=k["epochs"], lr=k["lr"], batch_size=k["batch_size"],
                         seed=k["seed"], device=k["device"])
        meter.add_images(len(tr) * k["epochs"])
    res.metrics[res.metrics["metric"].isin(k["metrics"])].to_csv(workdir / "metrics.csv", index=False)
    rows = []
    for split, probs in res.predictions.items():
        labels = evals[split][1]
        idx = np.arange(len(labels)) if split == "external" else ds.indices(split)
        df = pd.DataFrame(np.asarray(probs), columns=[f"score_{i}" for i in range(np.asarray(probs).shape[1])])
        df.insert(0, "split", split)
        df.insert(1, "index", idx)
        if np.asarray(labels).ndim == 1:
            df.insert(2, "label", np.asarray(labels))
        rows.append(df)
    if rows:
        pd.concat(rows).to_csv(workdir / "predictions.csv", index=False)
    cost = _save_cost(workdir, meter)
    last = res.metrics[res.metrics["epoch"] == res.metrics["epoch"].max()]
    final = {f"{r.split}_{r.metric}": float(r.value) for r in last.itertuples()}
    return {"final": final, "cost": cost}


def run_inference(ctx: RunContext, step, workdir: Path) -> dict:
    """Inference cost of the final backbone (features model: units + GAP): params, MACs, latency."""
    model = load_model(ctx, step.deps[0])
    model.eval()
    k = step.key

    class _Features(torch.nn.Module):
        def __init__(self, m: UnitModel):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.features(x)

    cost = inference_cost(_Features(model), (3, k["image_size"], k["image_size"]), device=k["device"],
                          batch_sizes=(1, 32), repeats=k["repeats"])
    (workdir / "inference.json").write_text(json.dumps(cost, default=float))
    return {"inference": cost}
