"""Step kinds of the cut-point search and the similarity analysis (issue 12; docs/search.md).

* ``probe`` — one forward pass of the frozen backbone records GAP features at every cut point
  (memory-mapped in the step folder), then a linear probe per cut point on the task's training
  split, scored on validation: the cut points ranked (:mod:`medapt.analysis.probe`).
* ``detect`` — TruncatedTL's SVCCA detection between the pretrained and the fine-tuned (FTL)
  model: the first cut point where their similarity is no better than chance
  (:mod:`medapt.analysis.detect`).
* ``search`` — the summary of one search method: every candidate's validation metrics, params,
  FLOPs, latency and wall time, and the chosen cut point; its rows are the run's ``search.csv``.
  Its inputs are the candidates (named ``cand:NAME``, ``inf:NAME``) and ``probe`` / ``detect``.
* ``similarity`` — per-unit SVCCA / PWCCA / CKA between two weights steps on a task's images;
  its rows are the run's ``similarity.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...atomic import atomic_write_csv
from ...errors import ConfigError
from ..context import save_cost
from . import Estimate, Input, StepKind, register_kind

__all__ = ["ProbeKey", "DetectKey", "SearchKey", "SimilarityKey", "SEARCH_COLUMNS", "check_validation",
           "search_rows", "val_score"]

#: columns of ``search.csv`` (one row per candidate and method)
SEARCH_COLUMNS = ("method", "candidate", "role", "cut_point", "unit", "metric", "val_score", "val_auroc",
                  "val_auprc", "probe_score", "backbone_params", "params", "flops_per_image", "latency_ms_cpu_b1", "wall_seconds",
                  "chosen", "note")


def check_validation(ds, task: str, what: str) -> np.ndarray:
    """The validation rows of a task; an empty or single-class split is an error naming its class counts."""
    from .finetune import class_counts

    val = ds.indices("val")
    counts = class_counts(ds, val)
    if not len(val) or sum(1 for v in counts.values() if v > 0) < 2:
        raise ConfigError(
            f"task {task!r}: {what} chooses on the 'val' split, which has {len(val)} images with class counts "
            f"{counts}; it needs images of at least two classes. Set data.split.val (e.g. 0.15) or use a larger "
            "dataset")
    return val


def _device_model(ctx, model):
    rt = replace(ctx.runtime, precision="fp32")
    rt.prepare_model(model)
    model.eval()
    return rt


# --- probe ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeKey:
    task: str
    metric: str
    cut_points: tuple[int, ...] | None
    batch_size: int
    runtime: dict  # the device type; features in fp32


@register_kind
class Probe(StepKind):
    name = "probe"
    description = "one frozen forward pass: GAP features at every cut point, a linear probe per cut point"
    Key = ProbeKey
    inputs = (Input("weights", ("init", "pretrain", "finetune")), Input("data", ("prepare",)))
    uses_accelerator = True
    memory_gb = 4.0

    def run(self, ctx, step, workdir: Path) -> dict:
        from ...analysis.probe import features_at_cut_points, probe_cut_points
        from ...cost import count_flops

        k = step.key
        model = ctx.load_model(step.inputs["weights"])
        ds = ctx.dataset(step.inputs["data"])
        if ds.task_type not in ("binary", "multiclass"):
            raise ConfigError(f"task {k.task!r} is {ds.task_type}; the probe search supports binary and multiclass tasks")
        train, val = ds.indices("train"), check_validation(ds, k.task, "the probe search")
        rt = _device_model(ctx, model)
        meter = ctx.meter(step, f"probe:{k.task}", str(rt.torch_device))
        rows = np.concatenate([train, val])
        with meter:
            meter.set_params(model.n_params(), 0)
            feats = features_at_cut_points(model, ds.images, rows, batch_size=k.batch_size,
                                           out_dir=workdir / "features", cut_points=k.cut_points)
            x1 = torch.as_tensor(np.asarray(ds.images[:1], dtype=np.float32)).to(rt.torch_device)
            with torch.no_grad():
                meter.set_flops_per_image(count_flops(lambda: model.features(x1)))
            meter.add_images(len(rows))
            y = np.asarray(ds.labels)
            n_tr = len(train)
            table = probe_cut_points({c: f[:n_tr] for c, f in feats.items()}, y[train],
                                     {c: f[n_tr:] for c, f in feats.items()}, y[val], ds.task_type, k.metric,
                                     unit_names=model.unit_names, n_classes=ds.n_classes)
        atomic_write_csv(table, workdir / "probe.csv")
        cost = save_cost(workdir, meter)
        return {"best": int(table["cut_point"].iloc[0]), "ranking": table.to_dict("records"),
                "n_train": int(len(train)), "n_val": int(len(val)), "cost": cost}

    def estimate(self, step, est) -> Estimate:
        size = est.dataset(step.inputs["data"])
        return Estimate(images=None if size is None else size["train"] + size["val"])


# --- detect ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DetectKey:
    task: str
    method: str
    n_draws: int
    subset_fraction: float
    seed: int
    batch_size: int
    runtime: dict


@register_kind
class Detect(StepKind):
    name = "detect"
    description = "TruncatedTL's SVCCA cut-point detection between the pretrained and the fine-tuned model"
    Key = DetectKey
    inputs = (Input("pretrained", ("init", "pretrain", "finetune")), Input("finetuned", ("finetune", "pretrain")),
              Input("data", ("prepare",)))
    uses_accelerator = True
    memory_gb = 4.0

    def run(self, ctx, step, workdir: Path) -> dict:
        from ...analysis.detect import detect_cut_point

        k = step.key
        pre = ctx.load_model(step.inputs["pretrained"])
        ft = ctx.load_model(step.inputs["finetuned"])
        ds = ctx.dataset(step.inputs["data"])
        rows = np.sort(np.concatenate([ds.indices("train"), ds.indices("val")]))  # never the test images
        rt = _device_model(ctx, pre)
        _device_model(ctx, ft)
        meter = ctx.meter(step, f"detect:{k.task}", str(rt.torch_device))
        with meter:
            images = np.asarray(ds.images[rows])
            det = detect_cut_point(pre, ft, images, method=k.method, n_draws=k.n_draws,
                                   subset_fraction=k.subset_fraction, seed=k.seed, batch_size=k.batch_size)
            meter.add_images(2 * len(rows))
        atomic_write_csv(det.overlap, workdir / "overlap.csv")
        atomic_write_csv(det.draws, workdir / "draws.csv")
        notes = sorted({str(n) for n in det.draws.get("note", pd.Series(dtype=str)).fillna("") if str(n)})
        cost = save_cost(workdir, meter)
        return {"cut_point": det.cut_point, "unit": det.unit, "n_units": pre.n_units, "n_images": int(len(rows)),
                "notes": notes[:5], "cost": cost}


# --- search summary -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchKey:
    method: str
    task: str
    seed: int
    metric: str
    chosen: str  # the chosen strategy (FAMILY@k)
    cut_point: int
    candidates: tuple[tuple[str, int, str], ...]  # (strategy, cut point, role), in search order


_INPUT = re.compile(r"^(cand|inf):.+$|^(probe|detect|pretrained)$")


def _best_row(phase: dict) -> dict:
    curve = phase.get("curve") or []
    b = int(phase.get("best_epoch") or 0)
    return curve[b - 1] if 0 < b <= len(curve) else {}


def val_score(phase: dict, metric: str) -> float | None:
    """The validation ``metric`` (``auprc`` / ``auroc``) of the epoch a target phase kept (chosen by
    the phase's own monitor; the ``ttl`` preset monitors AUPRC)."""
    v = _best_row(phase).get({"auroc": "auc"}.get(metric, metric))
    return None if v is None else float(v)


def search_rows(step, store) -> pd.DataFrame:
    """The ``search.csv`` rows of a completed ``search`` step's inputs (shared with its ``run``)."""
    k = step.key
    probe = step.inputs.get("probe")
    ranking = {}
    if probe is not None and store.done(probe):
        ranking = {int(r["cut_point"]): r for r in store.result(probe)["ranking"]}
    rows = []
    for name, cut, role in k.candidates:
        cand = step.inputs.get(f"cand:{name}")
        inf = step.inputs.get(f"inf:{name}")
        row: dict[str, Any] = {"method": k.method, "candidate": name, "role": role, "cut_point": cut,
                               "metric": k.metric, "chosen": name == k.chosen, "note": ""}
        if cand is not None and store.done(cand):
            ph = store.result(cand)["phase"]
            best = _best_row(ph)
            row |= {"val_score": val_score(ph, k.metric), "val_auroc": best.get("auc"), "val_auprc": best.get("auprc"),
                    "wall_seconds": ph.get("seconds")}
        if inf is not None and store.done(inf):
            c = store.result(inf)["inference"]
            row |= {"params": c.get("params"), "flops_per_image": c.get("flops_per_image"),
                    "latency_ms_cpu_b1": c.get("latency_ms_cpu_b1")}
        if cut in ranking:
            r = ranking[cut]
            row |= {"probe_score": r["score"], "unit": r["unit"], "note": r.get("note") or ""}
            if role == "probe":
                pc = store.result(probe).get("cost") or {}
                row["wall_seconds"] = pc.get("seconds") if row.get("wall_seconds") is None else row["wall_seconds"]
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in SEARCH_COLUMNS:
        if c not in df.columns:
            df[c] = None
    return df[list(SEARCH_COLUMNS)]


@register_kind
class Search(StepKind):
    name = "search"
    description = "one search method's candidates (metrics, params, FLOPs, latency, time) and its chosen cut point"
    Key = SearchKey
    inputs = ()

    def check_inputs(self, step) -> None:
        if not isinstance(step.key, SearchKey):
            raise ConfigError(f"step kind 'search' takes a SearchKey key, got {type(step.key).__name__}")
        bad = [n for n in step.inputs if not _INPUT.match(n)]
        if bad:
            raise ConfigError(f"step kind 'search' has no input(s) {bad}; it takes cand:NAME, inf:NAME, probe, detect")

    def run(self, ctx, step, workdir: Path) -> dict:
        from ...models import build
        from ..context import init_step

        df = search_rows(step, ctx.store)
        first = next(iter(step.inputs.values()), None)
        if first is not None:  # the kept units' parameters at every cut point (the cost axis of the figure)
            node = first.inputs.get("weights", first.inputs.get("pretrained")) if first.kind in ("probe", "detect") \
                else first if first.kind != "inference" else first.inputs["weights"]
            with torch.device("meta"):
                anatomy = build(init_step(node).key.backbone).anatomy
            df["backbone_params"] = [anatomy.params_up_to(int(c)) for c in df["cut_point"]]
            df["unit"] = [anatomy.units[int(c) - 1].name for c in df["cut_point"]]
        units = {}
        det = step.inputs.get("detect")
        if det is not None:
            units["detect"] = ctx.store.result(det)
        atomic_write_csv(df, workdir / "search.csv")
        k = step.key
        return {"method": k.method, "task": k.task, "chosen": k.chosen, "cut_point": k.cut_point,
                "candidates": len(k.candidates), **units}

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        p = store.path(step) / "search.csv"
        return {"search.csv": pd.read_csv(p)} if p.exists() else {}


# --- similarity -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimilarityKey:
    task: str
    methods: tuple[str, ...]
    max_images: int
    batch_size: int
    runtime: dict


@register_kind
class Similarity(StepKind):
    name = "similarity"
    description = "per-unit SVCCA / PWCCA / CKA between two weights steps on a task's train + validation images"
    Key = SimilarityKey
    inputs = (Input("a", ("init", "pretrain", "finetune")), Input("b", ("init", "pretrain", "finetune")),
              Input("data", ("prepare",)))
    uses_accelerator = True
    memory_gb = 4.0

    def run(self, ctx, step, workdir: Path) -> dict:
        from ...analysis.pair import similarity_of_pair

        k = step.key
        a, b = ctx.load_model(step.inputs["a"]), ctx.load_model(step.inputs["b"])
        ds = ctx.dataset(step.inputs["data"])
        rows = np.sort(np.concatenate([ds.indices("train"), ds.indices("val")]))
        if len(rows) > k.max_images:
            rows = np.sort(np.random.default_rng(0).choice(rows, k.max_images, replace=False))
        _device_model(ctx, a)
        _device_model(ctx, b)
        table = similarity_of_pair(a, b, np.asarray(ds.images[rows]), k.methods, batch_size=k.batch_size)
        atomic_write_csv(table, workdir / "similarity.csv")
        return {"rows": len(table), "n_images": int(len(rows))}

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        p = store.path(step) / "similarity.csv"
        if not p.exists():
            return {}
        df = pd.read_csv(p, keep_default_na=False, na_values=[""])
        return {"similarity.csv": pd.concat([df.assign(strategy=t["strategy"], seed=t["seed"], task=t["task"])
                                             for t in step.tags], ignore_index=True)} if step.tags else {}
