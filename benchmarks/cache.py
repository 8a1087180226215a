"""Frozen-prefix cache speed-up against its FLOP ideal (issues 5 and 15).

Runs the same phase of DA_L1SB with ``engine.cache`` ``off`` and ``auto`` on the same images,
interleaved (off, auto, auto, off …) after an untimed warm-up, ``--reps`` times, at each batch
size of ``--batch-sizes`` (the paper's 16 and a larger one), and prints one JSON object:

* ``phase1`` — the head-only phase (Mehmood et al.'s phase 1) of ``--phase1-epochs`` epochs, whole
  phase wall time, cache building included (a fresh cache every repetition);
* ``partial`` — phase 2 (last bottleneck + head trains), seconds per epoch once the cache exists
  (built during the warm-up; its one-off build time is reported separately).

Both variants run with the engine settings of ``medapt run`` (``EngineSpec``'s defaults: a
checkpoint at most every 5 minutes, so none in these short phases); ``--checkpoint-every-epoch``
writes one after every epoch in both instead (``train_phase``'s own default), a fixed cost per
epoch that the FLOP ideal does not count.

Every speed-up stands beside its FLOP ideal — the FLOPs of the uncached phase over those of the
cached one, counted with ``torch.utils.flop_counter`` on the parts each variant runs — and the
efficiency = measured / ideal (see ``benchmarks/_method.py``). Random images: a forward pass costs
the same whatever the pixel values.

    python benchmarks/cache.py --quick        # 32 images at 64 px: a couple of minutes on 2 cores
    python benchmarks/cache.py                # 64 images at 128 px, batch 16 and 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _method import add_common_args, interleave, machine, pin_threads, speedup, summary  # noqa: E402

from medapt.models import build  # noqa: E402
from medapt.strategies import get  # noqa: E402
from medapt.suite.experiment import EngineSpec  # noqa: E402
from medapt.train import EngineConfig, Runtime, phase_flops, train_phase  # noqa: E402


def _phase(strategy: str, name: str, epochs: int, batch: int):
    p = next(p for p in get(strategy).phases if p.name == name)
    return dataclasses.replace(p, epochs=epochs, batch_size=batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="images (default 64)")
    ap.add_argument("--size", type=int, default=128, help="image size (default 128)")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--strategy", default="DA_L1SB")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--phase1-epochs", type=int, default=50)
    ap.add_argument("--partial-epochs", type=int, default=2)
    ap.add_argument("--only", choices=["phase1", "partial"], default=None, help="measure one of the two phases")
    ap.add_argument("--checkpoint-every-epoch", action="store_true",
                    help="both variants write a checkpoint after every epoch (default: as `medapt run`, "
                         "at most one per engine.checkpoint_seconds)")
    ap.add_argument("--fused-optimizer", action="store_true",
                    help="both variants with engine.fused_optimizer (fused Adam kernels; not bitwise equal)")
    add_common_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.size, args.phase1_epochs, args.partial_epochs = 32, 64, 10, 2
        args.batch_sizes = [16, 32]
    threads = pin_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, 3, args.size, args.size)).astype(np.float16)  # as prepared data is stored
    y = rng.integers(0, 2, args.n)
    s = get(args.strategy)
    rt = Runtime("cpu")
    spec = EngineSpec()  # what `medapt run` uses unless the experiment says otherwise
    ckpt = ({"checkpoint_every": 1, "checkpoint_seconds": 0.0} if args.checkpoint_every_epoch
            else {"checkpoint_every": spec.checkpoint_every, "checkpoint_seconds": spec.checkpoint_seconds})
    out: dict = {"benchmark": "frozen-prefix cache", "backbone": args.backbone, "strategy": args.strategy,
                 "image_size": args.size, "n_images": args.n, "phase1_epochs": args.phase1_epochs,
                 "partial_epochs": args.partial_epochs, "fused_optimizer": args.fused_optimizer, "checkpoints": ckpt,
                 "results": [], **machine(threads)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        counter = iter(range(10**6))

        def run(phase, cache: str, shared_cache: bool, per_epoch: bool):
            def fn() -> float:
                torch.manual_seed(0)
                model = build(args.backbone, s.surgery, n_outputs=1, image_size=args.size)
                i = next(counter)
                cdir = tmp / ("cache" if shared_cache else f"cache-{i}")
                cfg = EngineConfig(cache=cache, progress=False, fused_optimizer=args.fused_optimizer, **ckpt)
                r = train_phase(model, phase, x, y, task_type="binary", workdir=tmp / f"w{i}", cache_dir=cdir,
                                cfg=cfg, runtime=rt)
                assert r.cached == (cache == "auto"), r.cache_note
                return r.loop_seconds / phase.epochs if per_epoch else r.seconds
            return fn

        for bs in args.batch_sizes:
            row: dict = {"batch_size": bs}
            if args.only != "partial":
                row["phase1"] = _phase1(args, s, bs, run)
            if args.only != "phase1":
                row["partial"] = _partial(args, s, bs, run)
            out["results"].append(row)
    print(json.dumps(out))


def _phase1(args, s, bs, run) -> dict:
    """The head-only phase, whole: the cache built anew in every repetition."""
    p1 = _phase(args.strategy, "phase1", args.phase1_epochs, bs)
    f_off = _flops(args, s, p1, "off")
    f_on = _flops(args, s, p1, "auto")
    e = p1.epochs
    ideal = e * f_off.train / (f_on.prefix + e * f_on.train)
    t = interleave({"off": run(p1, "off", False, False), "auto": run(p1, "auto", False, False)},
                   reps=args.reps, warmup=args.warmup)
    return {"seconds_uncached": summary(t["off"]), "seconds_cached": summary(t["auto"]),
            **speedup(t["off"], t["auto"], ideal)}


def _partial(args, s, bs, run) -> dict:
    """The partial phase, seconds per epoch once the cache exists."""
    p2 = _phase(args.strategy, "phase2", args.partial_epochs, bs)
    f_off = _flops(args, s, p2, "off")
    f_on = _flops(args, s, p2, "auto")
    tb = time.perf_counter()
    run(p2, "auto", True, False)()  # builds the shared cache (also the warm-up of "auto")
    build_s = time.perf_counter() - tb
    t = interleave({"off": run(p2, "off", True, True), "auto": run(p2, "auto", True, True)},
                   reps=args.reps, warmup=args.warmup)
    return {"epoch_seconds_uncached": summary(t["off"]), "epoch_seconds_cached": summary(t["auto"]),
            "first_run_seconds_incl_cache_build": round(build_s, 3),
            "flops_per_image_uncached": f_off.train, "flops_per_image_cached": f_on.train,
            **speedup(t["off"], t["auto"], f_off.train / f_on.train)}


def _flops(args, s, phase, cache):
    model = build(args.backbone, s.surgery, n_outputs=1, image_size=args.size)
    return phase_flops(model, phase, task_type="binary", input_shape=(3, args.size, args.size), cache=cache)


if __name__ == "__main__":
    main()
