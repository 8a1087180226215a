"""What verifying reused outputs costs: a fully reused `medapt run` re-run with and without it.

Runs an experiment once (the quickstart demo by default, or ``--quick``: a small version of it),
then re-runs it — every step reused — as a user would (``medapt run CONFIG --out DIR``,
a fresh process each time, report included), alternating ``MEDAPT_VERIFY=off``, ``full`` (the
default) and ``stat``, ``--repeats`` times each. Prints one JSON object:

* ``rerun_seconds`` — median wall time of the re-run per mode;
* ``ratio_full``, ``ratio_stat`` — re-run time with verification / without (target <= 1.2 for full);
* ``verify_seconds`` — `medapt verify`'s own time over the run directory (full hashing), and the
  ``bytes`` it hashed (step outputs, prepared datasets, frozen-prefix caches).

Usage:
    python benchmarks/verify.py --quick            # small config, about 2 min on an idle 2-core machine
    python benchmarks/verify.py                    # the quickstart demo (its first run takes long)
    python benchmarks/verify.py --run-dir demo-run # reuse a finished demo run directory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _method import speedup  # noqa: E402

QUICK = {  # the quickstart's pipeline at a size that runs in about a minute on two cores
    "strategies": ["ImageNet", "DA", "DA_L1SB", "DA_TF_F1B"],
    "schedule.epoch_scale": 0.01,
    "data.image_size": 32,
    "data.source": {"format": "phantom", "task": "grade", "n_per_class": 24},
    "data.targets": {"tumor_type": {"dataset": {"format": "phantom", "task": "tumor_type", "n_per_class": 16},
                                    "external": {"format": "phantom", "task": "tumor_type", "n_per_class": 8,
                                                 "shift": True}}},
    "downstream.heads": ["model1"],
    "downstream.epochs": 5,
    "cost.track_energy": False,
    "cost.inference_repeats": 1,
    "engine.device": "cpu",
}


def _set(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _medapt(args: list[str], mode: str | None = None) -> float:
    env = dict(os.environ)
    if mode is not None:
        env["MEDAPT_VERIFY"] = mode
    t0 = time.perf_counter()
    entry = "import sys; from medapt.cli import main; sys.exit(main(sys.argv[1:]))"  # the `medapt` command
    proc = subprocess.run([sys.executable, "-c", entry, *args], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"medapt {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small version of the quickstart (< 3 min on 2 cores)")
    ap.add_argument("--config", type=Path, default=None, help="another experiment YAML (default: the quickstart)")
    ap.add_argument("--run-dir", type=Path, default=None,
                    help="an existing, complete run directory to re-run (its config.yaml); nothing is run first")
    ap.add_argument("--repeats", type=int, default=None,
                    help="re-runs per mode (default 3, with --quick 2; medians are reported)")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)

    from medapt.cli.suite import QUICKSTART
    from medapt.integrity import verify_run_dir

    with tempfile.TemporaryDirectory(prefix="medapt-verify-bench-") as d:
        tmp = Path(d)
        first = None
        if args.run_dir is not None:
            run_dir, config = args.run_dir, args.run_dir / "config.yaml"
        else:
            cfg = yaml.safe_load((args.config or QUICKSTART).read_text())
            _set(cfg, "data.root", str(tmp / "data"))
            if args.quick:
                for k, v in QUICK.items():
                    _set(cfg, k, v)
            config, run_dir = tmp / "exp.yaml", tmp / "run"
            config.write_text(yaml.safe_dump(cfg))
            first = _medapt(["run", str(config), "--out", str(run_dir)])
        cmd = ["run", str(config), "--out", str(run_dir)]
        if first is None:
            _medapt(cmd, "off")  # warm the page cache and the imports once (the first run did otherwise)
        times: dict[str, list[float]] = {"off": [], "full": [], "stat": []}
        for _ in range(repeats):
            for mode in times:
                times[mode].append(_medapt(cmd, mode))
        t0 = time.perf_counter()
        res = verify_run_dir(run_dir, mode="full")
        verify_seconds = time.perf_counter() - t0
        n_bytes = 0
        for sj in (run_dir / "steps").glob("*/*/step.json"):
            n_bytes += sum(r["size"] for r in json.loads(sj.read_text()).get("files", {}).values())
        n_bytes += sum(p.stat().st_size for p in (run_dir / "cache").glob("*.npy")) if (run_dir / "cache").is_dir() else 0
        med = {m: statistics.median(v) for m, v in times.items()}
        print(json.dumps({
            "config": "quick" if args.quick else str(args.run_dir or args.config or "quickstart"),
            "first_run_seconds": None if first is None else round(first, 2),
            "steps": res["steps"], "ok": res["ok"], "bytes": n_bytes,
            "rerun_seconds": {m: round(v, 3) for m, v in med.items()},
            "rerun_all": {m: [round(x, 3) for x in v] for m, v in times.items()},
            "ratio_full": round(med["full"] / med["off"], 3),
            "ratio_stat": round(med["stat"] / med["off"], 3),
            "target_ratio_full": 1.2,
            # verification only adds work: a re-run measured faster with it is noise, flagged as the method does
            **{f"flag_{m}": sp["flag"] for m in ("full", "stat")
               if "flag" in (sp := speedup(times["off"], times[m], 1.0))},
            "verify_seconds": round(verify_seconds, 3),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version()},
        }, indent=1))


if __name__ == "__main__":
    main()
