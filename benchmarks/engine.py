"""Engine overhead: one training epoch of medapt's engine against a bare PyTorch loop (issue 15).

Same model (built once per variant from the same seed), same images as one float32 tensor in
memory, same optimizer (Adam, lr 1e-5, foreach), same batch size, same threads, same epoch order;
BatchNorm frozen in both (medapt's default ``bn_policy: frozen``). Variants, interleaved after an
untimed warm-up (see ``benchmarks/_method.py``):

* ``bare`` — ``for idx in batches: zero_grad; loss(model(x[idx])); backward; step``;
* ``engine`` — :func:`medapt.train.train_phase` for one epoch with the defaults (a checkpoint
  after every epoch: ``engine.checkpoint_every: 1``), its loop time (set-up excluded);
* ``engine_nockpt`` — the same with checkpoints off (``checkpoint_every: 0``), which is what
  ``engine.checkpoint_seconds`` amortises to on short epochs.

For the whole network (``keep: all``) and ResNet50 truncated after unit 8 (``cut:8``, TruncatedTL)
at 224 px; the ratio engine / bare is the overhead (ideal 1.0: both run the same FLOPs, counted and
printed). Prints one JSON object.

    python benchmarks/engine.py --quick      # 32 images at 96 px, batch 16
    python benchmarks/engine.py              # 300 images at 224 px, batch 32 (the TruncatedTL comparison)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _method import add_common_args, interleave, machine, pin_threads, speedup, summary  # noqa: E402

from medapt.models import Surgery, build  # noqa: E402
from medapt.strategies import Phase  # noqa: E402
from medapt.strategies.surgery import apply_phase  # noqa: E402
from medapt.train import EngineConfig, Runtime, train_phase  # noqa: E402
from medapt.train.engine import _epoch_order, _training_flops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--keeps", nargs="+", default=["all", "cut:8"])
    add_common_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.size, args.batch_size = 32, 96, 16
    threads = pin_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.n, 3, args.size, args.size)).astype(np.float32)
    y_np = rng.integers(0, 2, args.n)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    rt = Runtime("cpu")
    out: dict = {"benchmark": "engine vs bare loop (one epoch)", "backbone": args.backbone, "image_size": args.size,
                 "n_images": args.n, "batch_size": args.batch_size, "optimizer": "Adam lr 1e-5 foreach (both)",
                 "results": [], **machine(threads)}
    phase = Phase("epoch", "all", lr=1e-5, epochs=1, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = iter(range(10**6))

        def model_for(keep: str):
            torch.manual_seed(0)
            m = build(args.backbone, Surgery(keep, "random"), n_outputs=1, image_size=args.size)
            apply_phase(m, phase, "frozen")
            return m

        def bare(keep: str):
            def fn() -> float:
                import time

                m = model_for(keep)
                opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-5, foreach=True)
                order = _epoch_order(args.n, 0, phase.name, 1)
                t0 = time.perf_counter()
                for s in range(0, args.n, args.batch_size):
                    idx = order[s: s + args.batch_size].sort().values
                    opt.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x[idx]).view(-1), y[idx].float())
                    loss.backward()
                    opt.step()
                return time.perf_counter() - t0
            return fn

        def engine(keep: str, every: int):
            def fn() -> float:
                m = model_for(keep)
                r = train_phase(m, phase, x_np, y_np, task_type="binary", workdir=tmp / f"w{next(runs)}",
                                cfg=EngineConfig(cache="off", progress=False, checkpoint_every=every), runtime=rt)
                return r.loop_seconds
            return fn

        for keep in args.keeps:
            m = model_for(keep)
            fpi = _training_flops(m, x[:2], y[:2], "binary")
            t = interleave({"bare": bare(keep), "engine": engine(keep, 1), "engine_nockpt": engine(keep, 0)},
                           reps=args.reps, warmup=args.warmup)
            row = {"keep": keep, "params_trainable": sum(p.numel() for p in m.parameters() if p.requires_grad),
                   "training_flops_per_image": fpi,
                   **{f"seconds_{k}": summary(v) for k, v in t.items()}}
            for k in ("engine", "engine_nockpt"):
                sp = speedup(t["bare"], t[k], 1.0)  # bare/engine: the engine's efficiency against the bare loop
                row[f"ratio_{k}_over_bare"] = round(1 / sp["speedup"], 3)
                row[f"ratio_{k}_over_bare_min_max"] = [round(1 / sp["speedup_max"], 3), round(1 / sp["speedup_min"], 3)]
                if "flag" in sp:  # the engine measured faster than the bare loop on the same FLOPs
                    row[f"flag_{k}"] = sp["flag"]
            row["achieved_gflops_bare"] = round(fpi * args.n / np.median(t["bare"]) / 1e9, 2)
            out["results"].append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
