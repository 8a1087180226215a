"""Model-FLOPs utilisation (MFU): achieved training FLOP/s against the machine's dense-kernel peak.

* **peak** — the faster of two dense kernels in the training dtype (fp32 on CPU; bf16 on a GPU): a
  large square ``torch.mm`` and a large 3x3 convolution (ResNet's layer1 shape), each the best of
  ``--reps`` timed calls after a warm-up (a peak is a best case by definition). Both are printed:
  on the development machine (AMD EPYC, MKL) sgemm peaks near 100 GFLOP/s while oneDNN's
  convolutions run faster, so a matmul-only peak gave an MFU above 1;
* **achieved** — FLOPs of full-network training (forward + backward, counted with
  ``torch.utils.flop_counter`` on the same step) × images / seconds, for medapt's engine (one epoch
  of :func:`medapt.train.train_phase`, loop time, checkpoints off) and a bare PyTorch loop, the
  median of ``--reps`` interleaved runs at the paper's batch size 16;
* **mfu** = achieved / peak.

    python benchmarks/mfu.py --quick     # ResNet50, 32 images at 112 px
    python benchmarks/mfu.py             # ResNet50, 64 images at 224 px, batch 16

On CUDA (``--device cuda``) training runs under bf16 autocast with channels_last, as
``engine.precision: bf16`` does, and the peak is a bf16 matmul. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _method import add_common_args, count_flops, interleave, machine, pin_threads, summary  # noqa: E402

from medapt.models import Surgery, build  # noqa: E402
from medapt.strategies import Phase  # noqa: E402
from medapt.strategies.surgery import apply_phase  # noqa: E402
from medapt.train import EngineConfig, Runtime, train_phase  # noqa: E402


def matmul_peak(n: int, dtype: torch.dtype, device: str, reps: int) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return _best_rate(lambda: torch.mm(a, b), device, reps)


def conv_peak(dtype: torch.dtype, device: str, reps: int) -> float:
    """FLOP/s of a large dense 3x3 convolution (ResNet's layer1 shape at batch 16): on CPUs where
    the BLAS's sgemm takes a slower path than oneDNN's convolutions (MKL on AMD), the convolution
    is the faster dense kernel, so a matmul alone would understate the peak (MFU above 1)."""
    x = torch.randn(16, 256, 56, 56, device=device).to(dtype)
    w = torch.randn(256, 256, 3, 3, device=device).to(dtype)
    return _best_rate(lambda: torch.nn.functional.conv2d(x, w, padding=1), device, reps)


def _best_rate(fn, device: str, reps: int) -> float:
    flops = count_flops(fn)
    best = float("inf")
    for i in range(reps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call is warm-up
            best = min(best, time.perf_counter() - t0)
    return flops / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--matmul", type=int, default=2048, help="matrix side of the peak probe (default 2048)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_common_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.size, args.matmul = 32, 112, 1536
    threads = pin_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    gpu = args.device.startswith("cuda")
    dtype = torch.bfloat16 if gpu else torch.float32
    rt = Runtime(args.device, "bf16" if gpu else "fp32")
    peaks = {"matmul": matmul_peak(args.matmul, dtype, args.device, max(5, args.reps)),
             "conv3x3": conv_peak(dtype, args.device, max(5, args.reps))}
    peak_kernel = max(peaks, key=peaks.get)
    peak = peaks[peak_kernel]  # the faster dense kernel this machine runs: a measured peak, not a datasheet's
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.n, 3, args.size, args.size)).astype(np.float32)
    y_np = rng.integers(0, 2, args.n)
    phase = Phase("epoch", "all", lr=1e-5, epochs=1, batch_size=args.batch_size)

    def model():
        torch.manual_seed(0)
        m = build(args.backbone, Surgery("all", "random"), n_outputs=1, image_size=args.size)
        rt.prepare_model(m)
        apply_phase(m, phase, "frozen")
        return m

    m = model()
    xb, yb = rt.to_device(torch.from_numpy(x_np[: args.batch_size])), torch.from_numpy(y_np[: args.batch_size]).to(rt.torch_device)

    def step(m, opt, xb, yb):
        opt.zero_grad(set_to_none=True)
        with rt.autocast():
            out = m(xb)
        torch.nn.functional.binary_cross_entropy_with_logits(out.float().view(-1), yb.float()).backward()
        opt.step()

    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    flops_per_image = count_flops(lambda: step(m, opt, xb, yb)) / args.batch_size
    x_dev = rt.to_device(torch.from_numpy(x_np))
    y_dev = torch.from_numpy(y_np).to(rt.torch_device)

    def bare() -> float:
        m = model()
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-5, foreach=True)
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, args.n, args.batch_size):
            step(m, opt, x_dev[s: s + args.batch_size], y_dev[s: s + args.batch_size])
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as d:
        runs = iter(range(10**6))

        def engine() -> float:
            r = train_phase(model(), phase, x_np, y_np, task_type="binary", workdir=Path(d) / f"w{next(runs)}",
                            cfg=EngineConfig(cache="off", progress=False, checkpoint_every=0), runtime=rt)
            return r.loop_seconds

        t = interleave({"bare": bare, "engine": engine}, reps=args.reps, warmup=args.warmup)
    out = {"benchmark": "model-FLOPs utilisation", "backbone": args.backbone, "image_size": args.size,
           "n_images": args.n, "batch_size": args.batch_size, "dtype": str(dtype).replace("torch.", ""),
           "matmul_side": args.matmul, "peak_gflops_by_kernel": {k: round(v / 1e9, 2) for k, v in peaks.items()},
           "peak_kernel": peak_kernel, "peak_flops_per_s": round(peak), "peak_gflops": round(peak / 1e9, 2),
           "training_flops_per_image": flops_per_image}
    for k, v in t.items():
        achieved = flops_per_image * args.n / statistics.median(v)
        out[f"seconds_{k}"] = summary(v)
        out[f"achieved_gflops_{k}"] = round(achieved / 1e9, 2)
        out[f"mfu_{k}"] = round(achieved / peak, 3)
        if achieved > peak * 1.02:
            out[f"mfu_{k}_flag"] = "above the measured peak: the peak probe is not this machine's fastest kernel — do not report it"
    out.update(machine(threads))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
