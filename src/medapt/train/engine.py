"""The phase engine: train one phase of a strategy on one model (DESIGN §4).

Read top to bottom: set-up (trainable set, cache decision), data (images or cached prefix
outputs), optimizer (fresh each phase, as in Mehmood et al., one parameter group per learning-rate
multiplier), one loop over epochs — each optionally scored on a validation split, with a plateau
schedule, early stopping and the best epoch's weights kept — with an atomic checkpoint after
each epoch, so an interrupted run resumes to the same weights as an uninterrupted one.

Under DDP (a process group initialised by torchrun) every rank walks the same epoch order; each
global batch of ``batch_size`` images is split across the ranks and the loss is scaled so that
the all-reduced gradient equals the single-process gradient of the whole batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import CheckpointError, ConfigError
from ..models.model import GapHead, UnitModel
from ..strategies.catalogue import Phase
from ..strategies.surgery import BN_POLICIES, apply_phase, param_groups
from .augment import augmenter, resize_batch, resolution_augmenter
from .cache import CachePlan, build_prefix_cache, build_record, plan_cache, record_build
from .mixup import MixUp
from .runtime import Runtime
from .validate import Monitor, changing_state, predict, scores

__all__ = ["EngineConfig", "PhaseResult", "RunningPart", "PhaseFlops", "train_phase", "phase_flops", "loss_for",
           "class_weight_vector", "TASK_TYPES"]

log = logging.getLogger(__name__)
TASK_TYPES = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class EngineConfig:
    """How phases run. Every field is a config value (``engine:`` in the experiment YAML).

    Where they run (device, precision, processes) is the :class:`~medapt.train.Runtime`'s.
    """

    bn_policy: str = "frozen"  # frozen | train
    cache: str = "auto"  # auto | off
    cache_dtype: str = "float32"  # float32 | float16
    augment: bool = False  # random horizontal flips in every phase (disables the cache); see Phase.augment
    seed: int = 0
    deterministic: bool = False
    eval_batch_size: int = 64
    progress: bool | None = None  # None: a bar on a TTY, log lines elsewhere
    # checkpoints: after every N-th epoch (0: not by count) and whenever S seconds passed since the
    # last one (0: not by time); both 0: none. Resume (from the last one written) is exact either way.
    checkpoint_every: int = 1
    checkpoint_seconds: float = 0.0
    # frozen-prefix caches: at most this many GB on disk (least recently used evicted); None: no bound
    cache_max_gb: float | None = None
    # a prefix cache whose float32 copy fits in this many GB is read into memory once per phase
    cache_memory_gb: float = 4.0
    # PyTorch's fused optimizer kernels (Adam/AdamW/SGD, CPU and CUDA): a faster optimizer step
    # (the partial phase's cached epoch 1.2-1.6x faster on CPU), but the weights differ from the default
    # multi-tensor implementation by float rounding (~1e-7), so results are not bitwise those of a
    # run without it. Off by default; part of the step hashes when on.
    fused_optimizer: bool = False

    def __post_init__(self) -> None:
        if self.bn_policy not in BN_POLICIES:
            raise ConfigError(f"engine.bn_policy {self.bn_policy!r} not in {BN_POLICIES}")
        if self.cache not in ("auto", "off"):
            raise ConfigError(f"engine.cache {self.cache!r} not in auto, off")
        if self.cache_dtype not in ("float32", "float16"):
            raise ConfigError(f"engine.cache_dtype {self.cache_dtype!r} not in float32, float16")
        if self.checkpoint_every < 0 or self.checkpoint_seconds < 0:
            raise ConfigError(f"engine.checkpoint_every ({self.checkpoint_every}) and engine.checkpoint_seconds "
                              f"({self.checkpoint_seconds}) must be >= 0 (0 = off)")
        if self.cache_max_gb is not None and self.cache_max_gb <= 0:
            raise ConfigError(f"engine.cache_max_gb must be > 0 (or null: unbounded), got {self.cache_max_gb}")


@dataclass
class PhaseResult:
    """What a phase did: per-epoch losses (and validation curve), time, images, the cache decision.

    ``best_epoch`` is the epoch whose weights the model holds at the end (the best validation
    score with a monitor, else the last epoch); ``epochs_run`` may be below ``epochs`` when a
    plateau schedule or early stopping ended the phase (``stop_reason`` says why).
    """

    phase: str
    epochs: int
    losses: list[float]
    seconds: float
    images: int
    cached: bool
    cache_note: str
    cut: int
    params_total: int
    params_trainable: int
    resumed_from: int = 0
    loop_seconds: float = 0.0  # the epochs alone, without set-up and cache building
    epochs_run: int = 0
    best_epoch: int = 0
    monitor: str | None = None
    best_score: float | None = None
    stop_reason: str = ""
    augment: list[str] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # one row per epoch: epoch, seconds, lr, train_loss, val metrics

    def to_dict(self) -> dict:
        return asdict(self)


def loss_for(task_type: str, weights: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """BCE-with-logits for binary (1 logit) and multi-label (NaN labels ignored), CE for multi-class.

    ``weights``: one weight per class (binary: per label value 0/1; multi-label: per label);
    the loss is then the weighted mean (weights normalised over the batch, as ``cross_entropy``
    with ``weight=`` does).
    """
    if task_type == "multiclass":
        if weights is None:
            return lambda logits, y: nn.functional.cross_entropy(logits, y.long())
        return lambda logits, y: nn.functional.cross_entropy(logits, y.long(), weight=weights.to(logits.device))
    if task_type == "binary":
        if weights is None:
            return lambda logits, y: nn.functional.binary_cross_entropy_with_logits(logits.view(-1), y.float().view(-1))

        def weighted(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            w = weights.to(logits.device)[y.long().view(-1)]
            per = nn.functional.binary_cross_entropy_with_logits(logits.view(-1), y.float().view(-1), reduction="none")
            return (per * w).sum() / w.sum()
        return weighted
    if task_type == "multilabel":
        def masked(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            mask = ~torch.isnan(y)
            if weights is None:
                return nn.functional.binary_cross_entropy_with_logits(logits[mask], y[mask].float())
            w = weights.to(logits.device).expand_as(y)[mask]
            per = nn.functional.binary_cross_entropy_with_logits(logits[mask], y[mask].float(), reduction="none")
            return (per * w).sum() / w.sum()
        return masked
    raise ConfigError(f"task type {task_type!r} not in {TASK_TYPES}")


def class_weight_vector(spec, y: np.ndarray, task_type: str, n_classes: int) -> torch.Tensor | None:
    """The per-class loss weights of a phase's ``class_weights`` on training labels ``y``.

    ``balanced``: n / (C · n_c) as scikit-learn defines it (multi-label: per label, from the
    positive rate among non-missing values); a list: one weight per class (per label).
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        if len(spec) != n_classes:
            raise ConfigError(f"class_weights has {len(spec)} values but the task has {n_classes} classes")
        return torch.tensor(spec, dtype=torch.float32)
    if task_type == "multilabel":
        pos = np.nanmean(np.asarray(y, dtype=np.float64), axis=0)
        w = 0.5 / np.clip(pos, 1e-6, None)
        return torch.tensor(w, dtype=torch.float32)
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ConfigError(f"class_weights: balanced needs every class in the training rows; counts {counts.astype(int).tolist()}")
    return torch.tensor(len(y) / (n_classes * counts), dtype=torch.float32)


def _optimizer(phase: Phase, groups: list[dict], fused: bool = False) -> torch.optim.Optimizer:
    # foreach: the multi-tensor implementation (CUDA's default) on every device; on CPU it is ~25%
    # faster than the per-parameter loop and gives bitwise the same weights (benchmarks/engine.py).
    # fused (EngineConfig.fused_optimizer): one kernel per step, faster again, not bitwise equal.
    impl = {"fused": True} if fused else {"foreach": True}
    if phase.optimizer == "adam":
        return torch.optim.Adam(groups, lr=phase.lr, **impl)
    if phase.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=phase.lr, **impl)
    return torch.optim.SGD(groups, lr=phase.lr, momentum=0.9, **impl)


def _epoch_generator(seed: int, phase: str, epoch: int, purpose: str) -> torch.Generator:
    """A generator that depends on (seed, phase, epoch, purpose) only, so resume is exact."""
    s = int(hashlib.sha256(f"{seed}|{phase}|{epoch}|{purpose}".encode()).hexdigest()[:15], 16)
    return torch.Generator().manual_seed(s)


def _epoch_order(n: int, seed: int, phase: str, epoch: int) -> torch.Tensor:
    """The data order of one epoch."""
    return torch.randperm(n, generator=_epoch_generator(seed, phase, epoch, "order"))


class RunningPart(nn.Module):
    """The part of the model that runs each step: units ``start..`` then the head (the rest is cached)."""

    def __init__(self, model: UnitModel, start: int):
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_from(x, self.start)


@dataclass(frozen=True)
class PhaseFlops:
    """FLOPs per image of a phase as the engine runs it: training (forward + backward) of the running
    part, the one forward pass of a cached prefix, and a validation forward pass of the running part."""

    train: float
    prefix: float
    eval: float
    cached: bool
    cut: int
    note: str


def phase_flops(model: UnitModel, phase: Phase, *, task_type: str, input_shape: tuple[int, ...],
                bn_policy: str = "frozen", cache: str = "auto", augment: bool = False) -> PhaseFlops:
    """What one image costs in a phase on ``model``, counted on zeros (the dry run's estimate).

    Sets the phase's trainable set on ``model`` (as the engine does). The same functions count the
    FLOPs of a real phase in :func:`train_phase`.
    """
    from ..cost import count_flops

    trainable = apply_phase(model, phase, bn_policy)
    plan = plan_cache(model, trainable, mode=cache, augment=augment or bool(phase.augment) or bool(phase.resolution))
    if phase.resolution:  # the model sees crops
        input_shape = (*input_shape[:-2], phase.resolution[1], phase.resolution[1])
    x = torch.zeros(2, *input_shape)
    n_out = model.head.n_outputs
    y = torch.zeros(2, n_out) if task_type == "multilabel" else torch.zeros(2)
    prefix = 0.0
    if plan.use:
        with torch.no_grad():
            prefix = count_flops(lambda: model.forward_units(x[:1], 0, plan.cut))
            x = model.forward_units(x, 0, plan.cut)
        if plan.pooled:
            x = GapHead.pool(x)
    running = RunningPart(model, plan.cut if plan.use else 0)
    train = _training_flops(running, x, y, task_type)
    with torch.no_grad():
        ev = count_flops(lambda: running(x[:1])) if phase.monitor else 0.0
    return PhaseFlops(train, prefix, ev, plan.use, plan.cut, plan.note)


def _training_flops(running: nn.Module, x: torch.Tensor, y: torch.Tensor, task_type: str) -> float:
    from ..cost import training_flops_per_image

    loss_fn = loss_for(task_type)
    return training_flops_per_image(running, x, lambda out: loss_fn(out.float(), y))


def _fingerprint(phase: Phase, cfg: EngineConfig, rows: np.ndarray, task_type: str, val_rows: np.ndarray | None) -> str:
    d = {"phase": phase.to_dict(), "bn": cfg.bn_policy, "seed": cfg.seed, "task": task_type,
         "rows": hashlib.sha256(rows.tobytes()).hexdigest(), "augment": cfg.augment,
         "val": None if val_rows is None else hashlib.sha256(val_rows.tobytes()).hexdigest()}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
                              "delete it to restart the phase from its beginning") from exc


class _Progress:
    """A tqdm bar on a TTY; plain log lines (about ten per phase) elsewhere (SLURM, CI)."""

    def __init__(self, total: int, desc: str, enabled: bool | None, initial: int = 0):
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.desc = total, desc
        self.every = max(1, total // 10)
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="ep", leave=False, dynamic_ncols=True)

    def update(self, epoch: int, loss: float, ips: float, eta: float, extra: str = "") -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}")
            self.bar.update(1)
        elif epoch % self.every == 0 or epoch == self.total:
            log.info("%s epoch %d/%d loss %.4f%s %.0f img/s ETA %.0fs", self.desc, epoch, self.total, loss, extra, ips, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_phase(
    model: UnitModel,
    phase: Phase,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task_type: str,
    cfg: EngineConfig = EngineConfig(),
    runtime: Runtime | None = None,
    workdir: Path,
    cache_dir: Path | None = None,
    meter=None,
    data_key: str | None = None,
    indices: np.ndarray | None = None,
    val_indices: np.ndarray | None = None,
    on_epoch_end: Callable[[int, float], None] | None = None,
    desc: str | None = None,
) -> PhaseResult:
    """Train ``model`` in place for one phase on images ``x`` (N, C, H, W) and labels ``y``.

    Args:
        model: the :class:`UnitModel`; its units and head are updated in place.
        phase: trainable set, optimizer, learning rate(s), epochs, batch size, monitor, schedule.
        x: float array (a float16 memmap is fine), already normalised. y: int labels (N,) for
            multi-class, {0,1} (N,) for binary, float (N, L) with NaN = ignore for multi-label.
        task_type: ``binary`` | ``multiclass`` | ``multilabel``.
        runtime: device, precision and distribution (default ``Runtime()``: auto, fp32).
        workdir: where ``checkpoint.pt`` (the last complete epoch) lives; a matching checkpoint
            there is resumed from.
        cache_dir: where frozen-prefix caches live (default ``workdir/cache``); share it between
            phases and strategies so equal prefixes are computed once.
        meter: an optional :class:`medapt.cost.PhaseMeter` that receives params, images, FLOPs
            and the cache decision.
        data_key: a content hash of ``x`` (the prepared dataset's digest) for the cache key.
        indices: the rows of ``x``/``y`` to train on (default all), so a memory-mapped dataset is
            never copied whole into memory.
        val_indices: the validation rows scored after every epoch when ``phase.monitor`` is set
            (the model keeps the best epoch's weights).
        on_epoch_end: called as ``f(epoch, mean_loss)`` after each checkpoint (tests use it to
            simulate a crash).
    """
    if task_type not in TASK_TYPES:
        raise ConfigError(f"task type {task_type!r} not in {TASK_TYPES}")
    if len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"phase {phase.name!r}: {len(x)} images but {len(y)} labels; both must be equal and > 0")
    rows = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(rows) == 0:
        raise ConfigError(f"phase {phase.name!r}: no training rows (empty split)")
    val_rows = None
    if phase.monitor is not None:
        val_rows = np.asarray(val_indices if val_indices is not None else [], dtype=np.int64)
        if len(val_rows) == 0:
            raise ConfigError(f"phase {phase.name!r} monitors validation {phase.monitor} but has no validation rows; "
                              "give the data a validation split (data.split.val > 0) or set monitor: none")
    rt = runtime or Runtime()
    desc = desc or phase.name
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / "checkpoint.pt"

    # --- set-up: which units train, and can the frozen prefix be cached? --------------------------
    rt.prepare_model(model)
    trainable = apply_phase(model, phase, cfg.bn_policy)
    augment_names = tuple(phase.augment) + (("hflip",) if cfg.augment and "hflip" not in phase.augment else ())
    # BiT-HyperRule's resolution (Phase.resolution) changes the input every epoch: no cache either
    plan: CachePlan = plan_cache(model, trainable, mode=cfg.cache, augment=bool(augment_names) or bool(phase.resolution))
    log.info("%s: %s", desc, plan.note)
    crop = phase.resolution[1] if phase.resolution else None
    if phase.resolution:
        log.info("%s: resolution: training images resized to %d and randomly cropped to %d (random horizontal flip), "
                 "validation resized to %d; the frozen-prefix cache is off", desc, phase.resolution[0], crop, crop)
    if augment_names:
        log.info("%s: augmentation %s", desc, ", ".join(augment_names))
    params_total = model.n_params()
    params_trainable = model.n_params(trainable_only=True)
    if meter is not None:
        meter.set_params(params_total, params_trainable)
        meter.set_cache(plan.use, plan.note)

    # --- data: the images, or the prefix outputs computed once ---------------------------------------
    t0 = time.perf_counter()
    val_inputs, val_in_rows = x, val_rows
    if plan.use:
        def cached(r: np.ndarray) -> np.ndarray:
            key = None if data_key is None else f"{data_key}|{hashlib.sha256(r.tobytes()).hexdigest()[:16]}"
            tb = time.perf_counter()
            # built at the phase's batch size (at most eval_batch_size): the prefix outputs are the same
            # at any batch size, and a forward pass costs no more than in an uncached epoch (on CPUs,
            # large batches of large images run slower per image: ResNet50 at 128 px, 0.92 s per 64
            # images at batch 16 vs 1.5 s at 64 on the 2-core development machine)
            arr, reused = build_prefix_cache(model, plan, x, cache_dir or workdir / "cache", runtime=rt, rows=r,
                                             batch_size=min(cfg.eval_batch_size, phase.batch_size),
                                             dtype=cfg.cache_dtype, data_key=key,
                                             max_gb=cfg.cache_max_gb)
            if meter is not None:
                flops = _forward_flops(model, plan, x, rt) * len(r)
                if not reused:  # built here: this step's cost, recorded for the steps that reuse it
                    meter.add_flops(flops)
                    record_build(arr, time.perf_counter() - tb, flops)
                else:  # built by another step: what this step would cost alone includes it
                    rec = build_record(arr) or {"seconds": 0.0, "flops": flops}
                    meter.add_reused(rec["seconds"], rec["flops"])
            return _in_memory(arr, cfg.cache_memory_gb)

        inputs = cached(rows)
        start, in_rows = plan.cut, np.arange(len(rows))  # the cache is aligned with `rows`
        if val_rows is not None:
            val_inputs = cached(val_rows)
            val_in_rows = np.arange(len(val_rows))
    else:
        inputs, start, in_rows = x, 0, rows
    running = RunningPart(model, start)
    if meter is not None and phase.epochs > 0:
        example = resize_batch(rt.to_device(_batch(inputs, in_rows[:2])), crop)
        yex = torch.as_tensor(np.asarray(y[rows[:2]])).to(rt.torch_device)
        meter.set_flops_per_image(_training_flops(running, example, yex, task_type))

    # --- optimizer: fresh state each phase; one group per learning-rate multiplier -------------------
    groups = param_groups(model, phase)
    optimizer = _optimizer(phase, groups, cfg.fused_optimizer)
    # a per-batch schedule (BiT-HyperRule's warm-up + decays); its state is checkpointed, so resume is exact
    sched = phase.lr_schedule
    scheduler = None if sched is None else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: sched.multiplier(t))
    if len(groups) > 1:
        log.info("%s: learning rates %s", desc, ", ".join(f"{g['lr']:g} (x{g['lr_mult']:g}, "
                                                         f"{sum(p.numel() for p in g['params']):,} params)" for g in groups))
    monitor = Monitor(phase, optimizer)
    step_module = rt.wrap(running)
    n_classes = model.head.n_outputs if task_type != "binary" else 2
    weights = class_weight_vector(phase.class_weights, y[rows], task_type, n_classes)
    loss_fn = loss_for(task_type, weights)
    augment = augmenter(augment_names, int(x.shape[-1])) if augment_names else None
    if phase.resolution:
        augment = resolution_augmenter(phase.resolution, augment_names)
    mixing = None
    if phase.mixup:  # MixUp mixes images; cached prefix outputs are not images, so it is off there
        if plan.use:
            log.info("%s: MixUp (alpha %g) not applied: the frozen prefix is cached (engine.cache: off applies it)",
                     desc, phase.mixup)
        else:
            mixing = MixUp(phase.mixup)
            log.info("%s: MixUp alpha %g", desc, phase.mixup)
    fp = _fingerprint(phase, cfg, rows, task_type, val_rows)

    first_epoch, losses, curve, stop_reason = 1, [], [], ""
    if ckpt_path.exists():
        state = _load_checkpoint(ckpt_path)
        if state.get("fingerprint") != fp:
            raise CheckpointError(f"checkpoint {str(ckpt_path)!r} belongs to another phase set-up; "
                                  "delete it or use another working directory")
        missing = set(state["model"]) - set(model.state_dict())
        if missing:
            raise CheckpointError(f"checkpoint {str(ckpt_path)!r} has keys this model lacks: {sorted(missing)[:5]}")
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        first_epoch, losses = int(state["epoch"]) + 1, [float(v) for v in state["losses"]]
        if state.get("monitor") is not None:
            monitor.load(state["monitor"])
        curve, stop_reason = list(state.get("curve", [])), str(state.get("stop_reason", ""))
        if meter is not None:  # the earlier sessions' cost, so the phase's row covers all its epochs
            meter.resume(state.get("meter"))
        log.info("%s: resuming after epoch %d from %s", desc, first_epoch - 1, ckpt_path)

    # --- the loop ------------------------------------------------------------------------------------------
    n, bs = len(rows), phase.batch_size
    world, rank = rt.world_size, rt.rank
    progress = _Progress(phase.epochs, desc, cfg.progress, initial=first_epoch - 1)
    images = 0
    elapsed = curve[-1]["seconds"] if curve else 0.0
    eval_flops = None  # counted once, not every epoch
    last_ckpt_epoch, last_ckpt_time = first_epoch - 1, time.perf_counter()
    t_loop = time.perf_counter()
    for epoch in range(first_epoch, phase.epochs + 1):
        if stop_reason:
            break
        order = _epoch_order(n, cfg.seed, phase.name, epoch)
        aug_gen = _epoch_generator(cfg.seed, phase.name, epoch, "augment")
        mix_gen = _epoch_generator(cfg.seed, phase.name, epoch, "mixup")
        total, count, te = 0.0, 0, time.perf_counter()
        for s in range(0, n, bs):
            pos = np.sort(order[s : s + bs].numpy())  # sorted reads from a memmap are sequential
            n_global = len(pos)
            if world > 1:  # this rank's share of the global batch
                pos = np.array_split(pos, world)[rank]
            xb = _batch(inputs, in_rows[pos])
            yb = torch.as_tensor(np.asarray(y[rows[pos]]))
            if augment is not None and len(xb):
                xb = augment(xb, aug_gen)
            xb, yb = rt.to_device(xb), yb.to(rt.torch_device)
            batch_loss = loss_fn
            if mixing is not None and len(xb) > 1:
                xb, batch_loss = mixing(xb, mix_gen, loss_fn)
            optimizer.zero_grad(set_to_none=True)
            with rt.autocast():
                logits = step_module(xb)
            if world > 1:
                # the all-reduce averages over ranks: scale each rank's mean by its share of the batch
                loss = batch_loss(logits.float(), yb) * (len(pos) * world / n_global) if len(pos) else logits.sum() * 0.0
            else:
                loss = batch_loss(logits.float(), yb)
            rt.backward_step(loss, optimizer)
            if scheduler is not None:
                scheduler.step()
            if len(pos):
                total += float(loss.detach()) * (n_global / world if world > 1 else len(pos))
            count += len(pos)
        if world > 1:
            total, count = rt.all_sum(total), int(rt.all_sum(count))
        images += count
        losses.append(total / max(count, 1))
        if not math.isfinite(losses[-1]):
            raise ConfigError(f"{desc}: loss became {losses[-1]} at epoch {epoch}; lower the learning rate "
                              f"(now {phase.lr}) or use precision fp32")
        elapsed += time.perf_counter() - te
        extra = ""
        if val_rows is not None:
            logits_v, probs_v = predict(model, val_inputs, val_in_rows, task_type=task_type, runtime=rt,
                                        batch_size=cfg.eval_batch_size, start=start, resize=crop)
            val = scores(logits_v, probs_v, y[val_rows], task_type, loss_fn)
            lr_now = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_mult", 1.0)
            stop_reason = monitor.update(epoch, val[monitor.metric], model, optimizer)
            curve.append({"epoch": epoch, "seconds": elapsed, "lr": lr_now, "train_loss": losses[-1], **val})
            extra = f" val {monitor.metric} {val[monitor.metric]:.4f}"
            if meter is not None:
                if eval_flops is None:
                    eval_flops = _eval_flops(running, val_inputs, val_in_rows, rt, crop)
                meter.add_flops(eval_flops * len(val_rows))
        else:
            curve.append({"epoch": epoch, "seconds": elapsed, "lr": optimizer.param_groups[0]["lr"],
                          "train_loss": losses[-1]})
        due = ((cfg.checkpoint_every > 0 and epoch - last_ckpt_epoch >= cfg.checkpoint_every)
               or (cfg.checkpoint_seconds > 0 and time.perf_counter() - last_ckpt_time >= cfg.checkpoint_seconds))
        if due:
            last_ckpt_epoch, last_ckpt_time = epoch, time.perf_counter()
        if due and rt.is_main:  # ranks hold the same weights under DDP; one writes
            _save_checkpoint(ckpt_path, {"model": changing_state(model), "optimizer": optimizer.state_dict(),
                                         "epoch": epoch, "losses": losses, "torch_rng": torch.get_rng_state(),
                                         "fingerprint": fp, "curve": curve, "stop_reason": stop_reason,
                                         "monitor": monitor.state() if val_rows is not None else None,
                                         "meter": meter.checkpoint(images) if meter is not None else None,
                                         "scheduler": scheduler.state_dict() if scheduler is not None else None})
        dt = time.perf_counter() - te
        progress.update(epoch, losses[-1], count / max(dt, 1e-9), dt * (phase.epochs - epoch), extra)
        if on_epoch_end is not None:
            on_epoch_end(epoch, losses[-1])
        if stop_reason:
            log.info("%s: stopping after epoch %d: %s", desc, epoch, stop_reason)
    progress.close()
    epochs_run = len(losses)
    best_epoch = epochs_run
    if val_rows is not None and monitor.best_state is not None:
        model.load_state_dict(monitor.best_state, strict=False)
        best_epoch = monitor.best_epoch
        log.info("%s: keeping epoch %d (validation %s %.4f)", desc, best_epoch, monitor.metric, monitor.best_score)
    if meter is not None:
        meter.add_images(images)
    seconds, loop_seconds = time.perf_counter() - t0, time.perf_counter() - t_loop
    log.info("%s: %d epochs in %.1fs (%.1fs in the loop)", desc, epochs_run - first_epoch + 1, seconds, loop_seconds)
    return PhaseResult(phase.name, phase.epochs, losses, seconds, images, plan.use, plan.note, plan.cut,
                       params_total, params_trainable, resumed_from=first_epoch - 1, loop_seconds=loop_seconds,
                       epochs_run=epochs_run, best_epoch=best_epoch, monitor=phase.monitor,
                       best_score=monitor.best_score if val_rows is not None else None, stop_reason=stop_reason,
                       augment=list(augment_names) + ([f"mixup({phase.mixup:g})"] if mixing is not None else [])
                       + ([f"resize({phase.resolution[0]})+crop({crop})+hflip"] if phase.resolution else []),
                       curve=curve)


def _in_memory(arr: np.ndarray, max_gb: float) -> np.ndarray | torch.Tensor:
    """The cache as one float32 tensor in memory when it fits in ``max_gb`` (read and converted
    once per phase, not in every batch of every epoch), else the memmap as it is."""
    if arr.size * 4 > max_gb * 1e9:
        return arr
    return torch.from_numpy(np.array(arr, dtype=np.float32))  # a copy in memory, not a view of the file


def _batch(inputs: np.ndarray | torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """One batch of float32 inputs: rows of a tensor in memory, or read (and converted) from an array."""
    if isinstance(inputs, torch.Tensor):
        return inputs.index_select(0, torch.from_numpy(rows))
    return torch.as_tensor(np.asarray(inputs[rows], dtype=np.float32))


def _forward_flops(model: UnitModel, plan: CachePlan, x: np.ndarray, rt: Runtime) -> float:
    """Forward FLOPs per image of the cached prefix (the one pass that builds the cache)."""
    from ..cost import count_flops

    xb = rt.to_device(torch.as_tensor(np.asarray(x[:1], dtype=np.float32)))
    with torch.no_grad():
        return count_flops(lambda: model.forward_units(xb, 0, plan.cut))


def _eval_flops(running: RunningPart, inputs: np.ndarray, rows: np.ndarray, rt: Runtime, crop: int | None = None) -> float:
    """Forward FLOPs per image of a validation pass of the running part (at ``crop``² when given)."""
    from ..cost import count_flops

    xb = resize_batch(rt.to_device(_batch(inputs, rows[:1])), crop)
    with torch.no_grad():
        return count_flops(lambda: running(xb))
