"""The measuring method every benchmark in this folder shares (issue 15).

* **threads pinned and stated**: :func:`pin_threads` sets torch's intra-op threads (default: the
  machine's cores, or ``--threads``) before anything runs and the JSON says how many;
* **warm-up excluded**: every variant runs ``warmup`` times untimed first (allocator, kernels,
  page cache);
* **interleaved**: the compared variants alternate A, B, A, B … for ``reps`` (≥ 5) repetitions,
  so a change of machine load hits both alike;
* **median and min–max** of the repetitions are reported, never a single run;
* **FLOP-ideal beside every speed-up**: the ratio of the FLOPs the two variants execute (counted
  with :class:`torch.utils.flop_counter.FlopCounterMode` on the same parts that are timed) is
  the speed-up a perfect implementation would reach; ``efficiency = measured / ideal``. FLOPs
  count matrix products and convolutions only, so a measured speed-up *above* the ideal means the
  measurement is wrong (warm-up or load inside the timing, too few repetitions) — it is flagged.

Not a test: nothing is asserted; the numbers belong to the machine they were measured on.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["pin_threads", "interleave", "summary", "speedup", "count_flops", "machine", "add_common_args"]

#: a measured speed-up may exceed the FLOP ideal by this factor before it is flagged (the ideal
#: leaves out element-wise work, which both variants do in roughly the same proportion)
TOLERANCE = 1.02


def add_common_args(ap, reps: int = 5) -> None:
    """``--threads``, ``--reps``, ``--warmup`` and ``--quick`` for every benchmark."""
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--reps", type=int, default=reps, help=f"interleaved repetitions per variant (default {reps}, min 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per variant before timing (default 1)")
    ap.add_argument("--quick", action="store_true", help="small sizes: finishes in a few minutes on 2 CPU cores")


def pin_threads(n: int | None = None) -> int:
    """Fix torch's intra-op (and, where still possible, inter-op) threads; return the count."""
    n = int(n or os.cpu_count() or 1)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process (parallel work started)
        pass
    return torch.get_num_threads()


def _time(fn: Callable[[], Any]) -> float:
    """Seconds of one call; a callable that returns a float reports its own timed part."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fn()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else dt


def interleave(variants: dict[str, Callable[[], Any]], reps: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Run each variant ``warmup`` times untimed, then A, B, A, B … ``reps`` times; seconds per run.

    The order inside a round alternates (A B, B A, …) so neither variant always runs second.
    """
    reps = max(5, int(reps))
    for _ in range(max(0, warmup)):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(_time(variants[name]))
    return times


def summary(ts: list[float], digits: int = 5) -> dict[str, Any]:
    """Median, min, max and the number of repetitions of a list of seconds."""
    return {"median": round(statistics.median(ts), digits), "min": round(min(ts), digits),
            "max": round(max(ts), digits), "reps": len(ts)}


def speedup(slow: list[float], fast: list[float], ideal: float | None) -> dict[str, Any]:
    """The speed-up of ``fast`` over ``slow`` (median ratio, and the min–max range of the
    pairwise ratios of the interleaved runs) beside its FLOP ideal and the efficiency."""
    med = statistics.median(slow) / statistics.median(fast)
    pairs = [a / b for a, b in zip(slow, fast)]
    out: dict[str, Any] = {"speedup": round(med, 3), "speedup_min": round(min(pairs), 3),
                           "speedup_max": round(max(pairs), 3)}
    if ideal is not None and ideal > 0:
        out["ideal"] = round(ideal, 3)
        out["efficiency"] = round(med / ideal, 3)
        if med > ideal * TOLERANCE:
            out["flag"] = ("measured speed-up above its ideal: a measuring error (warm-up or load inside "
                           "the timing, too few repetitions) — do not report it")
    return out


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs (matmuls and convolutions, forward and backward) that ``fn()`` executes."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def machine(threads: int) -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux/macOS
        load = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "load_avg_1min": None if load is None else round(load, 2),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")}
