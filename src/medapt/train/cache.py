"""The frozen-prefix cache (DESIGN §4), medapt's core speed-up.

If every unit that trains in a phase lies after cut point *k*, units 1..k are a fixed function of
the input as long as they run deterministically (no BatchNorm in train mode, no active dropout or
stochastic depth) and the input is not randomly augmented. Then their output is computed once,
stored memory-mapped on disk, and every epoch trains only units k+1.. on it. For a head-only
phase the cache holds the pooled features (N × C), so 1000 epochs cost one forward pass plus 1000
cheap head epochs. When a condition fails the engine does not cache and says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..models.model import GapHead, UnitModel

__all__ = ["CachePlan", "plan_cache", "prefix_problems", "build_prefix_cache", "state_digest", "record_build",
           "build_record", "evict_caches"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachePlan:
    """Whether a phase uses the cache, at which cut point, and why (the log line)."""

    use: bool
    cut: int  # number of frozen leading units (0 = nothing to cache)
    pooled: bool  # head-only phase: cache GAP features (N, C)
    note: str


def prefix_problems(units: list[nn.Module], augment: bool = False) -> list[str]:
    """Reasons the prefix is *not* a fixed function of the input (empty list = cacheable)."""
    reasons = []
    if augment:
        reasons.append("random augmentation is applied to the input")
    for i, unit in enumerate(units):
        for name, m in unit.named_modules():
            where = f"unit {i + 1}" + (f" ({name})" if name else "")
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
                reasons.append(f"BatchNorm in train mode in {where} (bn_policy=train)")
                break
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
                reasons.append(f"active dropout in {where}")
                break
            if type(m).__name__ == "DropPath" and m.training and getattr(m, "drop_prob", 0) > 0:
                reasons.append(f"active stochastic depth in {where}")
                break
            if any(p.requires_grad for p in m.parameters(recurse=False)):
                reasons.append(f"trainable parameters in {where}")
                break
    return reasons


def plan_cache(model: UnitModel, trainable: list[int], *, mode: str = "auto", augment: bool = False) -> CachePlan:
    """Decide the cache for a phase whose trainable unit indices are ``trainable`` (0-based)."""
    n = model.n_units
    cut = min(trainable) if trainable else n
    # a head-only phase caches pooled features, unless the head needs the feature map (flatten)
    pooled = not trainable and getattr(model.head, "accepts_pooled", True)
    if mode == "off":
        return CachePlan(False, cut, pooled, "cache off (engine.cache: off)")
    if cut == 0:
        return CachePlan(False, 0, False, "not cached: the first unit trains, so there is no frozen prefix")
    problems = prefix_problems(list(model.units[:cut]), augment)
    if problems:
        return CachePlan(False, cut, pooled, "not cached: " + "; ".join(problems))
    what = "pooled features (head-only phase)" if pooled else f"activations after unit {cut} ({model.unit_names[cut - 1]})"
    return CachePlan(True, cut, pooled, f"cached {what}: units 1..{cut} run once, not every epoch")


def state_digest(modules: list[nn.Module]) -> str:
    """A hash of the parameters and buffers of ``modules`` (the prefix's weights)."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            t = v.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            if t.numel():  # the buffer itself: no copy of the weights (same digest as hashing its bytes)
                h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:20]


def _data_digest(x: np.ndarray) -> str:
    h = hashlib.sha256(str((x.shape, str(x.dtype))).encode())
    # sample rows: full hashing of a large memmap costs a pass over the data
    step = max(1, len(x) // 64)
    for i in range(0, len(x), step):
        h.update(np.ascontiguousarray(x[i]).tobytes())
    return h.hexdigest()[:20]


def _record_path(cache: np.ndarray | Path) -> Path:
    path = Path(cache.filename if isinstance(cache, np.memmap) else cache)
    return path.with_name(path.name + ".cost.json")


def record_build(cache: np.ndarray | Path, seconds: float, flops: float) -> None:
    """Store what building a prefix cache cost (beside it), so a step that reuses it can say what
    it would have cost alone."""
    from ..atomic import atomic_write_json

    atomic_write_json(_record_path(cache), {"seconds": float(seconds), "flops": float(flops)}, indent=None)


def build_record(cache: np.ndarray | Path) -> dict | None:
    """The build cost :func:`record_build` stored for a cache, or ``None`` (not recorded)."""
    import json

    p = _record_path(cache)
    try:
        return json.loads(p.read_text()) if p.exists() else None
    except (OSError, ValueError):
        return None


@torch.no_grad()
def build_prefix_cache(
    model: UnitModel,
    plan: CachePlan,
    x: np.ndarray,
    cache_dir: Path,
    *,
    runtime,
    batch_size: int = 64,
    dtype: str = "float32",
    data_key: str | None = None,
    rows: np.ndarray | None = None,
    max_gb: float | None = None,
) -> tuple[np.ndarray, bool]:
    """Compute (or reuse) the prefix outputs for the images ``x[rows]``; return a read-only memmap.

    The file is keyed by prefix weights + data + cut + dtype and written to a temporary name then
    renamed, so a crash never leaves a truncated cache that looks complete. Returns the array and
    whether it was reused. ``max_gb`` bounds the caches in ``cache_dir``: the least recently used
    ones are deleted (and recomputed if a later phase needs them again), see :func:`evict_caches`.
    """
    prefix = list(model.units[: plan.cut])
    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    if data_key is None:
        data_key = _data_digest(x) + hashlib.sha256(rows.tobytes()).hexdigest()[:16]
    key = hashlib.sha256(
        f"{state_digest(prefix)}|{data_key}|{plan.cut}|{plan.pooled}|{dtype}|{runtime.precision}".encode()
    ).hexdigest()[:24]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"prefix-k{plan.cut}-{key}.npy"
    if path.exists():
        damage = _cache_damage(path)
        if damage:
            log.warning("frozen-prefix cache %s is damaged (%s); recomputing it", path, damage)
        else:
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape[0] == len(rows):
                    log.info("frozen-prefix cache hit: %s (contents verified)", path.name)
                    _touch_last_used(path)
                    return arr, True
            except (ValueError, OSError) as exc:
                log.warning("frozen-prefix cache %s unreadable (%s); recomputing", path.name, exc)
    out = None
    with atomic_path(path) as tmp:
        for s in range(0, len(rows), batch_size):
            xb = runtime.to_device(torch.as_tensor(np.asarray(x[rows[s : s + batch_size]], dtype=np.float32)))
            with runtime.autocast():
                a = model.forward_units(xb, 0, plan.cut)
            if plan.pooled:
                a = GapHead.pool(a)
            a = a.float().cpu().numpy()
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(len(rows), *a.shape[1:]))
            out[s : s + len(a)] = a
        out.flush()
        del out
    _record_digest(path)
    if max_gb is not None:
        evict_caches(cache_dir, max_gb, keep=path)
    return np.load(path, mmap_mode="r"), False


def _digest_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".digest.json")


def _record_digest(cache: Path) -> None:
    """Record the cache file's digest beside it (checked on every hit; `medapt verify` too)."""
    from ..atomic import atomic_write_json
    from ..integrity import file_record

    atomic_write_json(_digest_path(cache), file_record(cache), indent=None)


def _cache_damage(cache: Path) -> str | None:
    """Why a cache file cannot be reused (no digest record, or it differs), or ``None``."""
    import json

    from ..integrity import check_files

    try:
        rec = json.loads(_digest_path(cache).read_text())
    except FileNotFoundError:
        return "no digest recorded beside it (written by an interrupted run or an older medapt)"
    except (OSError, ValueError) as exc:
        return f"its digest record is unreadable ({exc})"
    damaged = check_files({cache.name: rec}, cache.parent)
    return damaged[0].problem if damaged else None


def evict_caches(cache_dir: Path, max_gb: float, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used prefix caches in ``cache_dir`` until they hold at most
    ``max_gb`` GB (``keep``, the cache just built, is never deleted); return what was deleted.

    Each eviction is logged; a later phase that needs an evicted cache recomputes it (one forward
    pass of its prefix). Files open elsewhere stay readable until closed (POSIX unlink).
    """
    files = [p for p in Path(cache_dir).glob("prefix-k*.npy") if p.is_file()]
    sizes = {p: p.stat().st_size for p in files}
    total, limit = sum(sizes.values()), max_gb * 1e9
    evicted = []
    for p in sorted(files, key=_last_used):
        if total <= limit:
            break
        if keep is not None and p.resolve() == Path(keep).resolve():
            continue
        try:
            p.unlink()
            _record_path(p).unlink(missing_ok=True)
            _digest_path(p).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("frozen-prefix cache %s could not be evicted (%s)", p.name, exc)
            continue
        total -= sizes[p]
        evicted.append(p)
        log.info("frozen-prefix cache %s evicted (least recently used, %.2f GB) to stay within engine.cache_max_gb "
                 "= %g GB; it is recomputed if needed again", p.name, sizes[p] / 1e9, max_gb)
    if total > limit:
        log.warning("frozen-prefix caches in %s hold %.2f GB, above engine.cache_max_gb = %g GB: the cache in use "
                    "alone is larger", cache_dir, total / 1e9, max_gb)
    return evicted


def _touch_last_used(cache: Path) -> None:
    """Mark a cache as used now (for least-recently-used eviction) without touching the array
    itself: its digest record's mtime is the last use (the array's mtime is part of its record)."""
    try:
        os.utime(_digest_path(cache))
    except OSError:
        pass


def _last_used(cache: Path) -> float:
    rec = _digest_path(cache)
    return max(cache.stat().st_mtime, rec.stat().st_mtime if rec.exists() else 0.0)
