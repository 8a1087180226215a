"""What the dry run adds to the per-step projection: data that is not there yet, the resources the
study needs, and a calibrated time model (issues 15 §5–6 and 16 §5).

* **Missing data** — every dataset path of the plan that does not exist, all listed at once
  (:func:`missing_paths`); a real run refuses with the whole list, a dry run goes on with the
  declared sizes (``n_images:`` in a dataset spec) or, for the published datasets of Mehmood et
  al., the paper's image counts (:data:`KNOWN_DATASETS`), saying which it used.
* **Calibrated seconds** — a step's projected time is its FLOPs at the measured training FLOP/s
  *plus* the measured fixed costs the FLOPs miss: building/loading the model (every step that runs
  one) and the engine's per-epoch overhead (evaluation bookkeeping, checkpoint, Python) times the
  step's epochs (:class:`Calibration`).
* **Resources** — per-strategy and total hours, kWh (Green Algorithms with ``cost.hardware`` or the
  profile matching this machine), disk (prepared data, prefix caches, checkpoints, weights) and peak
  memory (:func:`resources`). Every figure is an estimate and labelled so.
* **Projected vs actual** — the dry run writes ``projection.json`` into the run directory; after
  the run :func:`write_projection_table` writes ``projection.csv`` (per step: projected and actual
  seconds) for the report's "Projection" section.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_json, atomic_write_text

__all__ = ["KNOWN_DATASETS", "declared_size", "spec_paths", "missing_paths", "missing_message", "Calibration",
           "calibrate", "step_epochs", "resources", "write_projection", "write_projection_table",
           "PROJECTION_JSON", "PROJECTION_CSV"]

log = logging.getLogger("medapt.suite")

PROJECTION_JSON = "projection.json"
PROJECTION_CSV = "projection.csv"

#: image counts per class of the published datasets (Mehmood et al., "Resource-efficient domain
#: adaptive pre-training for medical images": BraTS 2020 T1 slices with >= 1 tumour voxel, CE-MRI,
#: the Harvard HMS atlas and the Kaggle brain tumour classification set without ``no_tumor``)
KNOWN_DATASETS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("BraTS 2020 T1 slices with a tumour voxel", "brats", {"LGG": 4926, "HGG": 19496}),
    ("CE-MRI (figshare)", "cemri", {"meningioma": 708, "glioma": 1426, "pituitary": 930}),
    ("Harvard HMS atlas", "folder", {"cerebrovascular": 689, "degenerative": 370, "inflammatory": 463,
                                     "neoplastic": 868, "normal": 314}),
    ("Kaggle brain tumour classification", "folder", {"meningioma": 937, "glioma": 926, "pituitary": 901}),
)
_DEFAULT_CLASSES = {"brats": ["LGG", "HGG"], "cemri": ["meningioma", "glioma", "pituitary"]}


def declared_size(spec) -> tuple[int, int, str] | None:
    """``(images, classes, where the figure comes from)`` of a dataset that cannot be read: its
    declared ``n_images``, else the paper's size of a known dataset (same format and classes)."""
    classes = list(getattr(spec, "classes", None) or _DEFAULT_CLASSES.get(spec.format, []))
    n = getattr(spec, "n_images", None)
    if n:
        return int(n), max(len(classes), 2), "n_images declared in the dataset spec"
    for name, fmt, counts in KNOWN_DATASETS:
        if fmt == spec.format and classes and set(classes) == set(counts):
            return sum(counts[c] for c in classes), len(classes), f"the paper's size of {name}"
    return None


def spec_paths(spec) -> list[tuple[str, Path]]:
    """The paths a dataset spec reads: ``(field, path)``."""
    out = []
    for attr in ("path", "mapping_csv", "labels_csv", "image_root"):
        v = getattr(spec, attr, None)
        if v is not None:
            out.append((attr, Path(v).expanduser()))
    return out


def _specs_by_label(exp) -> dict[str, Any]:
    d = exp.data
    out = {} if d.source is None else {"source": d.source}
    for task, t in d.targets.items():
        out[task] = t.dataset
        if t.external is not None:
            out[f"{task}/external"] = t.external
    return out


def spec_of(exp, prepare_step):
    """The dataset spec (as written, with ``n_images``) of a ``prepare`` step."""
    from ..data import parse_dataset_spec

    return _specs_by_label(exp).get(prepare_step.label) or parse_dataset_spec(prepare_step.key.spec)


def missing_paths(exp, plan, store) -> list[str]:
    """One line per dataset path that a ``prepare`` step still to run needs and that does not exist."""
    lines = []
    for s in plan.steps:
        # a completed prepare step needs no data; its content is verified later, inside the run's lock
        # and log (a check here would move a damaged step aside before either exists)
        if s.kind != "prepare" or (store.path(s) / "step.json").is_file():
            continue
        spec = spec_of(exp, s)
        for attr, p in spec_paths(spec):
            if not p.exists():
                lines.append(f"{s.label} ({spec.format}) {attr}: {p}")
    return lines


def missing_message(lines: list[str]) -> str:
    return (f"{len(lines)} dataset path(s) do not exist:\n  " + "\n  ".join(lines)
            + "\nfix them in the config (relative paths start at the current directory); "
              "`medapt run CONFIG --dry-run` projects the study's cost without the data")


# --- calibrated time ---------------------------------------------------------------------------------

@dataclass
class Calibration:
    """The time model of the dry run, measured on this machine's device."""

    flops_per_s: float  # training throughput of the full backbone (the engine's own loop)
    build_s: float  # building the backbone and saving + loading its weights, once per step that runs it
    epoch_overhead_s: float  # the engine's fixed cost per epoch (FLOP-free head phase, checkpoint included)
    note: str
    batch_overhead_s: float = 0.0  # the engine's fixed cost per batch (Python, optimizer bookkeeping)
    forward_flops_per_s: float = 0.0  # inference throughput (no gradients, eval batch size); 0: as training

    def seconds(self, flops: float, *, models: int = 0, epochs: int = 0, batches: int = 0,
                forward_flops: float = 0.0) -> float:
        """Projected seconds: training FLOPs at the training FLOP/s, ``forward_flops`` (the part of
        ``flops`` that runs without gradients) at the inference FLOP/s, plus the fixed costs."""
        fwd = min(float(forward_flops), float(flops))
        fwd_rate = self.forward_flops_per_s or self.flops_per_s
        return ((float(flops) - fwd) / self.flops_per_s + fwd / fwd_rate + models * self.build_s
                + epochs * self.epoch_overhead_s + batches * self.batch_overhead_s)


def calibrate(exp, runtime) -> Calibration:
    """Measure FLOP/s (the engine's probe), the model build time and the per-epoch overhead."""
    import torch

    from safetensors.torch import load_file, save_file

    from ..models import Surgery, build
    from ..strategies import Phase
    from ..train import EngineConfig, train_phase

    # one full-size backbone serves both throughput probes: inference first (a fresh model), then training
    full = build(exp.backbone.name, n_outputs=1, image_size=exp.data.image_size)
    fwd_fps, fwd_note = _forward_flops_per_second(exp, runtime, full)
    fps, probe = _training_flops_per_second(exp, runtime, full)
    del full

    t0 = time.perf_counter()
    model = build(exp.backbone.name, Surgery("all", "random"), n_outputs=1, image_size=32)
    with tempfile.TemporaryDirectory() as d:  # each step that runs a model loads its weights (and saves new ones)
        f = str(Path(d) / "w.safetensors")
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, f)
        model.load_state_dict(load_file(f))
    build_s = time.perf_counter() - t0
    e = exp.engine
    # head-only phases on 16 tiny images cost ~0 FLOPs: their time is the engine's overhead, per epoch
    # (1 batch of 16 per epoch) and per batch (4 batches of 4 per epoch: the difference / 3)
    epochs, x, y = 8, np.zeros((16, 3, 32, 32), np.float32), np.zeros(16, np.int64)
    per_epoch = {}
    with tempfile.TemporaryDirectory() as d, torch.random.fork_rng():
        cfg = EngineConfig(bn_policy=e.bn_policy, cache="auto", progress=False, checkpoint_every=e.checkpoint_every,
                           checkpoint_seconds=e.checkpoint_seconds)
        for bs in (16, 4):
            phase = Phase("overhead", "head", lr=1e-6, epochs=epochs, batch_size=bs)
            res = train_phase(model, phase, x, y, task_type="binary", cfg=cfg, runtime=runtime,
                              workdir=Path(d) / str(bs), cache_dir=Path(d) / "cache")
            per_epoch[bs] = res.loop_seconds / epochs
    batch = max(0.0, (per_epoch[4] - per_epoch[16]) / 3)
    overhead = max(0.0, per_epoch[16] - batch)
    note = (f"{probe}; {fwd_note}; model build + weights I/O {build_s:.2f} s; engine overhead "
            f"{overhead * 1e3:.1f} ms/epoch + {batch * 1e3:.2f} ms/batch")
    return Calibration(fps, build_s, overhead, note, batch, fwd_fps)


def _training_flops_per_second(exp, runtime, model) -> tuple[float, str]:
    """Training throughput of the full backbone ``model``, measured with the engine itself; in FLOP/s.

    Six epochs of 16 random images (two batches of 8 each) with the cache off; the first epoch is
    warm-up and excluded; the median of the other five is the time per epoch.
    """
    from ..strategies import Phase
    from ..train import EngineConfig, phase_flops, train_phase

    size, n = exp.data.image_size, 16
    phase = Phase("probe", "all", lr=1e-6, epochs=6, batch_size=8)
    x = np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)
    y = np.zeros(n, np.int64)
    cfg = EngineConfig(bn_policy=exp.engine.bn_policy, cache="off", progress=False)
    with tempfile.TemporaryDirectory() as d:
        res = train_phase(model, phase, x, y, task_type="binary", cfg=cfg, runtime=runtime, workdir=Path(d))
    t = np.diff([0.0] + [c["seconds"] for c in res.curve])[1:]
    ips = n / float(np.median(t))
    fpi = phase_flops(model, phase, task_type="binary", input_shape=(3, size, size), bn_policy=exp.engine.bn_policy,
                      cache="off").train
    return ips * fpi, f"{ips:.1f} img/s training {exp.backbone.name} at {size}px on {runtime.torch_device}"


def _forward_flops_per_second(exp, runtime, model) -> tuple[float, str]:
    """Inference throughput of the full backbone ``model``: forward passes without gradients at the
    engine's evaluation batch size (capped at 32 images), the first excluded, median of three; in FLOP/s."""
    import torch

    from ..cost import count_flops

    size, n = exp.data.image_size, min(32, int(exp.engine.eval_batch_size))
    model.eval()
    runtime.prepare_model(model)
    x = runtime.to_device(torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        fpi = count_flops(lambda: model.features(x[:1]))
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            model.features(x)
            if runtime.device_type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    ips = n / float(np.median(times[1:]))
    return ips * fpi, f"{ips:.0f} img/s inference"


def step_epochs(step) -> int:
    """Epochs a step trains (0 for steps that do not train)."""
    phase = getattr(step.key, "phase", None)
    if phase is not None:
        return int(phase.epochs)
    return 0  # heads train in their own small loop (not the engine): FLOPs only


def step_batches(step, images: int | None) -> int:
    """Batches a training step runs (images over the phase's batch size; 0 when unknown)."""
    phase = getattr(step.key, "phase", None)
    if phase is None or not images:
        return 0
    return int(math.ceil(images / max(1, phase.batch_size)))


def step_models(step) -> int:
    """Backbones a step builds (its kind's ``builds_model``)."""
    from .kinds import KINDS

    return 1 if KINDS.get(step.kind).builds_model else 0


# --- resources ----------------------------------------------------------------------------------------

def _activation_bytes(model, size: int) -> float:
    """Bytes of the outputs of every leaf module for one image (what training keeps for backward)."""
    import torch

    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * 4

    leaves = [m for m in model.modules() if not list(m.children())]
    hs = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in hs:
            h.remove()
    return float(total[0])


def resources(exp, plan, est, rows: list[dict[str, Any]], hardware: str | None, runtime) -> dict[str, Any]:
    """Per-strategy and total time, kWh, disk and peak memory of the plan (estimates)."""
    import torch

    from ..cost import green_algorithms
    from ..cost.green import match_cpu_profile, match_gpu_profile
    from ..train.cache import plan_cache
    from ..strategies.surgery import apply_phase

    by_id = {r["id"]: r for r in rows}
    steps = [s for s in plan.steps if s.id in by_id]
    size, ch = exp.data.image_size, exp.data.channels
    disk: dict[str, float] = {"prepared data": 0.0, "prefix caches": 0.0, "checkpoints": 0.0, "weights": 0.0}
    caches: dict[tuple, float] = {}
    acts_of: dict[int, float] = {}  # per model: one forward pass each, not one per step
    cut_shape: dict[tuple, tuple] = {}
    peak_model = 0.0
    for s in steps:
        if s.kind == "prepare":
            n = by_id[s.id]["images"] or 0
            disk["prepared data"] += n * ch * size * size * 2  # float16 arrays
        phase = getattr(s.key, "phase", None)
        if phase is None or "weights" not in s.inputs or "data" not in s.inputs:
            continue
        model = est.model(s.inputs["weights"], est.n_outputs(s))
        trainable = apply_phase(model, phase, s.key.engine["bn_policy"])
        params = model.n_params()
        n_train = model.n_params(trainable_only=True)
        disk["weights"] += params * 4
        checkpoint = (n_train * 3 + (params - n_train) * 0) * 4  # trainable weights + Adam's two moments
        disk["checkpoints"] = max(disk["checkpoints"], checkpoint)  # one at a time: deleted when the step ends
        if id(model) not in acts_of:
            acts_of[id(model)] = _activation_bytes(model, size)
        acts = acts_of[id(model)]
        peak_model = max(peak_model, params * 4 + n_train * 12 + acts * phase.batch_size)
        cp = plan_cache(model, trainable, mode=s.key.engine["cache"], augment=bool(s.key.engine["augment"] or phase.augment))
        if cp.use:
            if (id(model), cp.cut) not in cut_shape:
                with torch.no_grad():
                    cut_shape[(id(model), cp.cut)] = tuple(model.forward_units(torch.zeros(1, 3, size, size), 0, cp.cut).shape)
            shape = cut_shape[(id(model), cp.cut)]
            per = (shape[1] if cp.pooled else int(np.prod(shape[1:]))) * (2 if s.key.engine["cache_dtype"] == "float16" else 4)
            size_info = est.dataset(s.inputs["data"]) or {}
            n = size_info.get("train", 0) + (size_info.get("val", 0) if phase.monitor else 0)
            caches[(s.inputs["data"].id, s.inputs["weights"].id if cp.cut == model.n_units else "", cp.cut,
                    cp.pooled)] = n * per
    disk["prefix caches"] = sum(caches.values())
    if exp.engine.cache_max_gb is not None:
        disk["prefix caches"] = min(disk["prefix caches"], exp.engine.cache_max_gb * 1e9)
    largest_cache = max(caches.values(), default=0.0)
    in_memory = largest_cache * (4 / 2 if exp.engine.cache_dtype == "float16" else 1)
    peak = peak_model + (in_memory if in_memory <= 4e9 else 0.0)
    # time: per strategy (every step it uses, as if run alone) and the suite's (each step once)
    per_strategy: dict[str, float] = {}
    for r in rows:
        if r["kind"] in ("pending", ""):
            continue
        for u in r["users"]:
            per_strategy[u] = per_strategy.get(u, 0.0) + r["seconds"]
    total_s = float(sum(r["seconds"] for r in rows if r["id"] != "total"))
    if hardware:
        profile, hw_note = hardware, f"hardware profile {hardware} (cost.hardware)"
        count = 1
    elif runtime.device_type == "cuda":
        p, hw_note = match_gpu_profile(torch.cuda.get_device_name(runtime.torch_device), exp.cost.energy_table)
        profile, count = p.name, 1
    else:
        from ..cost.energy import _cpu_model

        p, hw_note = match_cpu_profile(_cpu_model(), exp.cost.energy_table)
        profile, count = p.name, max(1, torch.get_num_threads())
    mem_gb = max(1.0, peak / 1e9)

    def kwh(seconds: float) -> float:
        return green_algorithms(seconds / 3600, hardware=profile, count=count, memory_gb=mem_gb,
                                table=exp.cost.energy_table).kwh

    return {"total_seconds": total_s, "total_kwh": kwh(total_s),
            "strategies": {k: {"seconds": v, "kwh": kwh(v)} for k, v in per_strategy.items()},
            "energy_note": f"Green Algorithms (table {exp.cost.energy_table}), {count} x {profile}, "
                           f"{mem_gb:.1f} GB memory: {hw_note}",
            "disk_gb": {k: v / 1e9 for k, v in disk.items()}, "disk_total_gb": sum(disk.values()) / 1e9,
            "peak_memory_gb": peak / 1e9,
            "memory_note": "model + gradients + Adam state + activations of one batch of the largest training "
                           "step, + the largest prefix cache read into memory"}


def format_resources(res: dict[str, Any], missing: list[str], sizes: list[str]) -> str:
    """The dry run's resource lines for the terminal."""
    lines = []
    if missing:
        lines.append(f"{len(missing)} dataset path(s) do not exist yet (projected with declared or paper sizes):")
        lines += [f"  {m}" for m in missing]
    lines += [f"  {s}" for s in sizes]
    if res is None:
        return "\n".join(lines)
    lines.append("per strategy (every step it uses, as if run alone):")
    for k, v in sorted(res["strategies"].items(), key=lambda kv: -kv[1]["seconds"]):
        lines.append(f"  {k:<20} {v['seconds'] / 3600:10.2f} h  {_sig(v['kwh'])} kWh")
    lines.append(f"suite total (shared steps once): {res['total_seconds'] / 3600:.2f} h, {_sig(res['total_kwh'])} kWh "
                 f"({res['energy_note']})")
    d = res["disk_gb"]
    lines.append(f"disk: {res['disk_total_gb']:.3g} GB (" + ", ".join(f"{k} {v:.3g} GB" for k, v in d.items()) + ")")
    lines.append(f"peak memory: {res['peak_memory_gb']:.3g} GB ({res['memory_note']})")
    return "\n".join(lines)


def _sig(v: float) -> str:
    return f"{v:.3g}"


# --- projected vs actual ------------------------------------------------------------------------------

def write_projection(run_dir: Path, rows: list[dict[str, Any]], calibration: Calibration | None) -> Path:
    """``projection.json``: the dry run's projected seconds per step (by step hash), for the run."""
    out = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "calibration": None if calibration is None else asdict(calibration),
           "steps": {r["hash"]: {"id": r["id"], "kind": r["kind"], "label": r["label"], "seconds": r["seconds"]}
                     for r in rows if r.get("hash")}}
    return atomic_write_json(Path(run_dir) / PROJECTION_JSON, out)


def write_projection_table(run_dir: Path, plan, store) -> Path | None:
    """``projection.csv`` (step, kind, label, projected_s, actual_s, ratio) when a dry run left a
    ``projection.json``; ``None`` otherwise."""
    p = Path(run_dir) / PROJECTION_JSON
    if not p.exists():
        return None
    try:
        proj = json.loads(p.read_text())["steps"]
    except (OSError, ValueError, KeyError) as exc:
        log.warning("projection.json unreadable (%s); no projection.csv", exc)
        return None
    lines = ["step,kind,label,projected_s,actual_s,actual_over_projected"]
    for s in plan.steps:
        info = store.info(s)
        if info is None or s.hash not in proj:
            continue
        pr, ac = float(proj[s.hash]["seconds"]), float(info.get("seconds", math.nan))
        ratio = ac / pr if pr > 0 else math.nan
        label = s.label.replace('"', "'")
        lines.append(f'{s.id},{s.kind},"{label}",{pr:.4f},{ac:.4f},{ratio:.4f}')
    return atomic_write_text(Path(run_dir) / PROJECTION_CSV, "\n".join(lines) + "\n")
