"""The phase engine: train one phase of a strategy on one model (DESIGN §4).

Read top to bottom: set-up (trainable set, cache decision), data (images or cached prefix
outputs), optimizer (fresh each phase, as in Mehmood et al.), one loop over epochs with an atomic
checkpoint after each, so an interrupted run resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..models.model import UnitModel
from ..strategies.catalogue import Phase
from ..strategies.surgery import BN_POLICIES, apply_phase
from .cache import CachePlan, build_prefix_cache, plan_cache
from .runtime import Runtime

__all__ = ["EngineConfig", "PhaseResult", "RunningPart", "train_phase", "loss_for", "TASK_TYPES"]

log = logging.getLogger(__name__)
TASK_TYPES = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class EngineConfig:
    """How phases run. Every field is a config value (``engine:`` in the experiment YAML)."""

    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16
    bn_policy: str = "frozen"  # frozen | train
    cache: str = "auto"  # auto | off
    cache_dtype: str = "float32"  # float32 | float16
    augment: bool = False  # random horizontal flips (disables the cache)
    seed: int = 0
    deterministic: bool = False
    eval_batch_size: int = 64
    progress: bool | None = None  # None: a bar on a TTY, log lines elsewhere

    def __post_init__(self) -> None:
        if self.bn_policy not in BN_POLICIES:
            raise ConfigError(f"engine.bn_policy {self.bn_policy!r} not in {BN_POLICIES}")
        if self.cache not in ("auto", "off"):
            raise ConfigError(f"engine.cache {self.cache!r} not in auto, off")
        if self.cache_dtype not in ("float32", "float16"):
            raise ConfigError(f"engine.cache_dtype {self.cache_dtype!r} not in float32, float16")


@dataclass
class PhaseResult:
    """What a phase did: the per-epoch losses, time, images and the cache decision."""

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

    def to_dict(self) -> dict:
        return asdict(self)


def loss_for(task_type: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """BCE-with-logits for binary (1 logit) and multi-label (NaN labels ignored), CE for multi-class."""
    if task_type == "multiclass":
        return lambda logits, y: nn.functional.cross_entropy(logits, y.long())
    if task_type == "binary":
        return lambda logits, y: nn.functional.binary_cross_entropy_with_logits(logits.view(-1), y.float().view(-1))
    if task_type == "multilabel":
        def masked(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            mask = ~torch.isnan(y)
            return nn.functional.binary_cross_entropy_with_logits(logits[mask], y[mask].float())
        return masked
    raise ConfigError(f"task type {task_type!r} not in {TASK_TYPES}")


def _optimizer(phase: Phase, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if phase.optimizer == "adam":
        return torch.optim.Adam(params, lr=phase.lr)
    if phase.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=phase.lr)
    return torch.optim.SGD(params, lr=phase.lr, momentum=0.9)


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


def _fingerprint(phase: Phase, cfg: EngineConfig, rows: np.ndarray, task_type: str) -> str:
    d = {"phase": asdict(phase), "bn": cfg.bn_policy, "seed": cfg.seed, "task": task_type,
         "rows": hashlib.sha256(rows.tobytes()).hexdigest(),
         "precision": cfg.precision, "augment": cfg.augment}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


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

    def update(self, epoch: int, loss: float, ips: float, eta: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}")
            self.bar.update(1)
        elif epoch % self.every == 0 or epoch == self.total:
            log.info("%s epoch %d/%d loss %.4f %.0f img/s ETA %.0fs", self.desc, epoch, self.total, loss, ips, eta)

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
    workdir: Path,
    cache_dir: Path | None = None,
    meter=None,
    data_key: str | None = None,
    indices: np.ndarray | None = None,
    on_epoch_end: Callable[[int, float], None] | None = None,
    desc: str | None = None,
) -> PhaseResult:
    """Train ``model`` in place for one phase on images ``x`` (N, C, H, W) and labels ``y``.

    Args:
        model: the :class:`UnitModel`; its units and head are updated in place.
        phase: trainable set, optimizer, learning rate, epochs, batch size.
        x: float array (a float16 memmap is fine), already normalised. y: int labels (N,) for
            multi-class, {0,1} (N,) for binary, float (N, L) with NaN = ignore for multi-label.
        task_type: ``binary`` | ``multiclass`` | ``multilabel``.
        workdir: where ``checkpoint.pt`` (the last complete epoch) lives; a matching checkpoint
            there is resumed from.
        cache_dir: where frozen-prefix caches live (default ``workdir/cache``); share it between
            phases and strategies so equal prefixes are computed once.
        meter: an optional :class:`medapt.cost.PhaseMeter` that receives params, images, FLOPs
            and the cache decision.
        data_key: a content hash of ``x`` (the prepared dataset's digest) for the cache key.
        indices: the rows of ``x``/``y`` to train on (default all), so a memory-mapped dataset is
            never copied whole into memory.
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
    rt = Runtime(cfg.device, cfg.precision)
    desc = desc or phase.name
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / "checkpoint.pt"

    # --- set-up: which units train, and can the frozen prefix be cached? --------------------------
    rt.prepare_model(model)
    trainable = apply_phase(model, phase, cfg.bn_policy)
    plan: CachePlan = plan_cache(model, trainable, mode=cfg.cache, augment=cfg.augment)
    log.info("%s: %s", desc, plan.note)
    params_total = model.n_params()
    params_trainable = model.n_params(trainable_only=True)
    if meter is not None:
        meter.set_params(params_total, params_trainable)
        meter.set_cache(plan.use, plan.note)

    # --- data: the images, or the prefix outputs computed once ---------------------------------------
    t0 = time.perf_counter()
    if plan.use:
        key = None if data_key is None else f"{data_key}|{hashlib.sha256(rows.tobytes()).hexdigest()[:16]}"
        inputs, reused = build_prefix_cache(model, plan, x, cache_dir or workdir / "cache", runtime=rt, rows=rows,
                                            batch_size=cfg.eval_batch_size, dtype=cfg.cache_dtype, data_key=key)
        start, in_rows = plan.cut, np.arange(len(rows))  # the cache is aligned with `rows`
        if meter is not None and not reused:
            meter.add_flops(_forward_flops(model, plan, x, rt) * len(rows))
    else:
        inputs, start, in_rows = x, 0, rows
    running = RunningPart(model, start)
    if meter is not None and phase.epochs > 0:
        _meter_flops(meter, running, inputs[in_rows[:2]], phase, task_type, y[rows[:2]], rt)

    # --- optimizer: fresh state each phase -----------------------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(phase, params)
    step_module = rt.wrap(running)
    loss_fn = loss_for(task_type)
    fp = _fingerprint(phase, cfg, rows, task_type)

    first_epoch, losses = 1, []
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
        torch.set_rng_state(state["torch_rng"])
        first_epoch, losses = int(state["epoch"]) + 1, [float(v) for v in state["losses"]]
        log.info("%s: resuming after epoch %d from %s", desc, first_epoch - 1, ckpt_path)

    # --- the loop ------------------------------------------------------------------------------------------
    n, bs = len(rows), phase.batch_size
    progress = _Progress(phase.epochs, desc, cfg.progress, initial=first_epoch - 1)
    images = 0
    t_loop = time.perf_counter()
    for epoch in range(first_epoch, phase.epochs + 1):
        order = _epoch_order(n, cfg.seed, phase.name, epoch)
        flip_gen = _epoch_generator(cfg.seed, phase.name, epoch, "flip")
        if rt.world_size > 1:
            order = order[rt.rank :: rt.world_size]
        total, count, te = 0.0, 0, time.perf_counter()
        for s in range(0, len(order), bs):
            pos = np.sort(order[s : s + bs].numpy())  # sorted reads from a memmap are sequential
            xb = torch.as_tensor(np.asarray(inputs[in_rows[pos]], dtype=np.float32))
            yb = torch.as_tensor(np.asarray(y[rows[pos]]))
            if cfg.augment and not plan.use:
                flip = torch.rand(len(xb), generator=flip_gen) < 0.5
                xb[flip] = xb[flip].flip(-1)
            xb, yb = rt.to_device(xb), yb.to(rt.torch_device)
            optimizer.zero_grad(set_to_none=True)
            with rt.autocast():
                logits = step_module(xb)
            loss = loss_fn(logits.float(), yb)
            rt.backward_step(loss, optimizer)
            total += float(loss.detach()) * len(pos)
            count += len(pos)
        images += count
        losses.append(total / max(count, 1))
        if not math.isfinite(losses[-1]):
            raise ConfigError(f"{desc}: loss became {losses[-1]} at epoch {epoch}; lower the learning rate "
                              f"(now {phase.lr}) or use precision fp32")
        if rt.rank == 0:  # ranks hold the same weights under DDP; one writes
            _save_checkpoint(ckpt_path, {"model": _changing_state(model), "optimizer": optimizer.state_dict(),
                                         "epoch": epoch, "losses": losses, "torch_rng": torch.get_rng_state(),
                                         "fingerprint": fp})
        dt = time.perf_counter() - te
        progress.update(epoch, losses[-1], count / max(dt, 1e-9), dt * (phase.epochs - epoch))
        if on_epoch_end is not None:
            on_epoch_end(epoch, losses[-1])
    progress.close()
    if meter is not None:
        meter.add_images(images)
    seconds, loop_seconds = time.perf_counter() - t0, time.perf_counter() - t_loop
    log.info("%s: %d epochs in %.1fs (%.1fs in the loop)", desc, phase.epochs - first_epoch + 1, seconds, loop_seconds)
    return PhaseResult(phase.name, phase.epochs, losses, seconds, images, plan.use, plan.note, plan.cut,
                       params_total, params_trainable, resumed_from=first_epoch - 1, loop_seconds=loop_seconds)


def _changing_state(model: UnitModel) -> dict[str, torch.Tensor]:
    """What a phase can change: trainable parameters and the buffers (BN statistics).

    Frozen parameters are left out, so a 1000-epoch head-only phase writes kilobytes per
    epoch, not the whole backbone; they are restored from the phase's starting weights.
    """
    keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keep}


def _forward_flops(model: UnitModel, plan: CachePlan, x: np.ndarray, rt: Runtime) -> float:
    """Forward FLOPs per image of the cached prefix (the one pass that builds the cache)."""
    from ..cost import count_flops

    xb = rt.to_device(torch.as_tensor(np.asarray(x[:1], dtype=np.float32)))
    with torch.no_grad():
        return count_flops(lambda: model.forward_units(xb, 0, plan.cut))


def _meter_flops(meter, running: RunningPart, inputs: np.ndarray, phase: Phase, task_type: str, y: np.ndarray,
                 rt: Runtime) -> None:
    """Training FLOPs per image (forward + backward) of the part that actually runs each step."""
    from ..cost import training_flops_per_image

    xb = rt.to_device(torch.as_tensor(np.asarray(inputs, dtype=np.float32)))
    yb = torch.as_tensor(np.asarray(y)).to(rt.torch_device)
    loss_fn = loss_for(task_type)
    meter.set_flops_per_image(training_flops_per_image(running, xb, lambda out: loss_fn(out.float(), yb)))
