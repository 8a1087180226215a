"""Frozen-prefix cache speed-up, measured in one run (issue: core engine).

Runs the same phase with ``engine.cache`` ``auto`` and ``off`` on the same data and prints one
JSON line:

* ``phase1_speedup`` — a head-only phase (Mehmood et al.'s phase 1) of ``--phase1-epochs`` epochs,
  whole-phase wall time, cache building included;
* ``partial_speedup`` — DA_L1SB's phase 2 (last bottleneck + head) on ResNet50 at 128 px, time per
  epoch once the cache exists (the one-off cache build is reported separately, and the speed-up
  over the whole phase at the paper's 150 epochs is derived from the measured figures).

Random images: the cost of a forward pass does not depend on the pixel values.
Usage: python benchmarks/cache.py [--n 32] [--phase1-epochs 50] [--partial-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medapt.models import build
from medapt.strategies import get
from medapt.train import EngineConfig, Runtime, train_phase


def _run(backbone, strategy, phase_name, epochs, x, y, cache, tmp: Path):
    s = get(strategy)
    torch.manual_seed(0)
    model = build(backbone, s.surgery, n_outputs=1)
    phase = next(p for p in s.phases if p.name == phase_name)
    phase = type(phase)(**{**phase.__dict__, "epochs": epochs})
    t0 = time.perf_counter()
    r = train_phase(model, phase, x, y, task_type="binary", workdir=tmp / f"{strategy}-{phase_name}-{cache}",
                    cfg=EngineConfig(cache=cache, progress=False), runtime=Runtime("cpu"))
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="images (default 32)")
    ap.add_argument("--size", type=int, default=128, help="image size (default 128)")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--phase1-epochs", type=int, default=50)
    ap.add_argument("--partial-epochs", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, 3, args.size, args.size)).astype(np.float16)
    y = rng.integers(0, 2, args.n)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        p1_off, _ = _run(args.backbone, "DA_L1SB", "phase1", args.phase1_epochs, x, y, "off", tmp)
        p1_on, r1 = _run(args.backbone, "DA_L1SB", "phase1", args.phase1_epochs, x, y, "auto", tmp)
        assert r1.cached
        e = args.partial_epochs
        _, off = _run(args.backbone, "DA_L1SB", "phase2", e, x, y, "off", tmp)
        _, on = _run(args.backbone, "DA_L1SB", "phase2", e, x, y, "auto", tmp)
        assert on.cached
    off_epoch, on_epoch = off.loop_seconds / e, on.loop_seconds / e
    build = on.seconds - on.loop_seconds
    paper_epochs = 150
    out = {
        "benchmark": "frozen-prefix cache",
        "backbone": args.backbone, "image_size": args.size, "n_images": args.n,
        "phase1_epochs": args.phase1_epochs,
        "phase1_seconds_uncached": round(p1_off, 3), "phase1_seconds_cached": round(p1_on, 3),
        "phase1_speedup": round(p1_off / p1_on, 2),
        "partial_epoch_seconds_uncached": round(off_epoch, 3), "partial_epoch_seconds_cached": round(on_epoch, 3),
        "partial_cache_build_seconds": round(build, 3),
        "partial_speedup": round(off_epoch / on_epoch, 2),
        "partial_speedup_150_epochs_incl_build": round(off_epoch * paper_epochs / (build + on_epoch * paper_epochs), 2),
        "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
