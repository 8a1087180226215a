"""Throughput and peak memory of ``prepare`` on BraTS-shaped NIfTI volumes.

Generates N synthetic BraTS 2020-shaped cases (240 × 240 × 155 int16 T1 + uint8 mask, NIfTI,
a tumour ellipsoid spanning ~50 axial slices) for two sizes of N, then runs
:func:`medapt.data.prepare_dataset` on each in a fresh subprocess and records the best wall time
of ``--repeat`` runs, slices/s and the peak RSS during prepare (Linux: VmHWM after resetting it
via /proc/self/clear_refs once the imports are done). Target (issue 3): peak RSS flat in N (< 1.5 GB) and
time linear in N. Prints one JSON line.

    python benchmarks/prepare.py                 # N = 4 and 8, 240 px, 3 channels
    python benchmarks/prepare.py --sizes 8 32 --image-size 64

Not a test: nothing is asserted; numbers depend on the machine (and on gzip for .nii.gz).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_case(root: Path, case: str, seed: int, ext: str) -> None:
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (240, 240, 155)
    x, y, z = np.ogrid[:240, :240, :155]
    head = ((x - 120) / 80.0) ** 2 + ((y - 120) / 95.0) ** 2 + ((z - 75) / 70.0) ** 2 < 1
    vol = np.where(head, 400 + 300 * rng.random(shape, dtype=np.float32), 0).astype(np.int16)
    c = rng.integers(90, 150, 3)
    r = rng.uniform(15, 30, 3)
    tumour = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - (c[2] // 2 + 40)) / r[2]) ** 2 < 1
    seg = (tumour & head).astype(np.uint8) * 4
    d = root / case
    d.mkdir(parents=True)
    aff = np.diag([-1.0, -1.0, 1.0, 1.0])  # BraTS volumes are stored LPS-like
    nib.save(nib.Nifti1Image(vol, aff), str(d / f"{case}_t1{ext}"))
    nib.save(nib.Nifti1Image(seg, aff), str(d / f"{case}_seg{ext}"))


def make_dataset(root: Path, n: int, ext: str) -> None:
    import pandas as pd

    rows = []
    for i in range(n):
        case = f"BraTS20_Training_{i + 1:03d}"
        make_case(root, case, seed=i, ext=ext)
        rows.append({"Grade": "HGG" if i % 2 else "LGG", "BraTS_2020_subject_ID": case})
    pd.DataFrame(rows).to_csv(root / "name_mapping.csv", index=False)


def child(data: str, cache: str, image_size: int, channels: int, repeat: int) -> None:
    """Run prepare in this (fresh) process ``repeat`` times; print the best time and peak RSS as JSON."""
    import shutil

    from medapt.data import SplitSpec, prepare_dataset

    base_mb = _status_mb("VmRSS")
    best = None
    for _ in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        _reset_peak()  # so the peak below is the prepare's own, not the imports'
        t0 = time.perf_counter()
        ds = prepare_dataset({"format": "brats", "path": data}, Path(cache), image_size=image_size,
                             channels=channels, split=SplitSpec(), progress=False)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    peak_mb = _status_mb("VmHWM")
    if peak_mb is None:  # not Linux: the process-lifetime peak (includes the imports)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"slices": len(ds), "seconds": best, "peak_rss_mb": peak_mb,
                      "rss_after_imports_mb": base_mb}))


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    try:  # Linux >= 4.0: writing 5 resets the peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8], help="numbers of cases (default 4 8)")
    ap.add_argument("--image-size", type=int, default=240, help="prepared size (Mehmood et al.: 240)")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--ext", default=".nii.gz", choices=[".nii.gz", ".nii"])
    ap.add_argument("--repeat", type=int, default=2, help="prepare runs per size; the best time is kept")
    ap.add_argument("--child", nargs=2, metavar=("DATA", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.image_size, args.channels, args.repeat)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="medapt-bench-") as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"brats{n}"
            t0 = time.perf_counter()
            make_dataset(data, n, args.ext)
            gen_s = time.perf_counter() - t0
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(data), str(Path(tmp) / f"cache{n}"),
                 "--image-size", str(args.image_size), "--channels", str(args.channels),
                 "--repeat", str(args.repeat)],
                check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r.update(n_cases=n, slices_per_s=r["slices"] / r["seconds"], generate_seconds=gen_s)
            results.append({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    a, b = results[0], results[-1]
    print(json.dumps({
        "benchmark": "prepare-brats",
        "image_size": args.image_size, "channels": args.channels, "ext": args.ext,
        "runs": results,
        "peak_rss_ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
        "seconds_per_slice_ratio": round((b["seconds"] / b["slices"]) / (a["seconds"] / a["slices"]), 3),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
