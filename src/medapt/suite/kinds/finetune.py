"""``finetune``: one target phase on a downstream task's training split, validation monitored.

The first target phase of a strategy gives the model a new head for the task (drawn from a
generator seeded by the suite seed and the task name); every epoch is scored on the task's
validation split (``monitor``), a plateau schedule and early stopping may end the phase, and the
best epoch's weights are kept. The validation curve becomes ``metrics.csv`` rows with
``head = own`` and ``split = val`` (epochs counted across the strategy's target phases).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...errors import ConfigError
from ...models import new_head
from ..context import n_outputs
from . import Input, register_kind
from .pretrain import PhaseKey, PhaseKind

__all__ = ["FinetuneKey", "chain_offset", "class_counts"]


@dataclass(frozen=True)
class FinetuneKey(PhaseKey):
    task: str = ""
    new_head: bool = True  # the first target phase on this task replaces the head


def class_counts(ds, rows: np.ndarray) -> dict[str, int]:
    """Images per class among ``rows`` (multi-label: positives per label)."""
    y = np.asarray(ds.labels[rows])
    if y.ndim == 2:
        return {c: int(np.nansum(y[:, i] == 1)) for i, c in enumerate(ds.classes)}
    return {c: int((y == i).sum()) for i, c in enumerate(ds.classes)}


def head_seed(seed: int, task: str) -> int:
    return int(hashlib.sha256(f"{seed}|{task}|head".encode()).hexdigest()[:15], 16)


def chain_offset(store, step) -> tuple[int, float]:
    """(epochs, seconds) run by the earlier target phases on the same task, before ``step``'s."""
    epochs, seconds, node = 0, 0.0, step.inputs["weights"]
    while node.kind == "finetune" and node.key.task == step.key.task:
        res = store.result(node)["phase"]
        epochs += int(res["epochs_run"])
        seconds += float(res["curve"][-1]["seconds"]) if res["curve"] else 0.0
        node = node.inputs["weights"]
    return epochs, seconds


@register_kind
class Finetune(PhaseKind):
    name = "finetune"
    description = "one target phase on a task's training split; validation monitored, best epoch kept"
    Key = FinetuneKey
    inputs = (Input("weights", ("init", "pretrain", "finetune")), Input("data", ("prepare", "fewshot")))

    def label(self, step) -> str:
        return f"{super().label(step)} on {step.key.task}"

    def run(self, ctx, step, workdir: Path) -> dict:
        k = step.key
        model = ctx.load_model(step.inputs["weights"])
        ds = ctx.dataset(step.inputs["data"])
        if k.new_head:
            gen = torch.Generator().manual_seed(head_seed(k.seed, k.task))
            size = k.phase.resolution[1] if k.phase.resolution else int(ds.images.shape[-1])  # the model sees crops
            new_head(model, n_outputs(ds.task_type, ds.n_classes), image_size=size, generator=gen)
        val = None
        if k.phase.monitor is not None:
            val = ds.indices("val")
            counts = class_counts(ds, val)
            if not len(val) or sum(1 for v in counts.values() if v > 0) < (1 if k.phase.monitor == "loss" else 2):
                raise ConfigError(
                    f"task {k.task!r}: phase {k.phase.name!r} monitors validation {k.phase.monitor}, but the 'val' split "
                    f"has {len(val)} images with class counts {counts}; it needs images of at least two classes. Set "
                    "data.split.val (e.g. 0.15), or monitor: none in schedule.phases")
        res = self.train(ctx, step, workdir, model, ds, val_rows=val, desc=self.label(step))
        if ctx.runtime.is_main:
            epoch0, seconds0 = chain_offset(ctx.store, step)
            curve = pd.DataFrame(res["phase"]["curve"])
            curve["epoch"] += epoch0
            curve["seconds"] += seconds0
            curve.to_csv(workdir / "curve.csv", index=False)
            res["selected_epoch"] = epoch0 + int(res["phase"]["best_epoch"])
            best = res["phase"]["curve"][int(res["phase"]["best_epoch"]) - 1] if res["phase"]["curve"] else {}
            res["selected_seconds"] = seconds0 + float(best.get("seconds", 0.0))
        return res

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        out = super().tables(step, store)
        path = store.path(step) / "curve.csv"
        if not path.exists():
            return out
        curve = pd.read_csv(path)
        metrics = [c for c in curve.columns if c in ("auc", "auprc", "accuracy", "loss")]
        if not metrics:  # no monitor: no validation curve
            return out
        long = curve.melt(id_vars=["epoch", "seconds"], value_vars=metrics, var_name="metric", value_name="value")
        rows = [long.assign(split="val", **tag) for tag in step.tags]
        if rows:
            out["metrics.csv"] = pd.concat(rows, ignore_index=True)
        return out
