"""Suite-level speed-up: the quickstart's strategies the way the reference code runs them, against
medapt (issue 15 §2).

* ``reference`` — every strategy in its own run (its own run directory: no step shared with
  another strategy) with ``engine.cache: off`` (every epoch recomputes the frozen prefix), as
  Mehmood et al.'s notebooks do;
* ``medapt`` — all strategies in one run: shared steps once, frozen-prefix caches.

Same data (prepared once, before timing, in a shared data root: preparation is excluded from both),
same seeds, same config otherwise; energy tracking, inference latency and the report are off in
both (they are not the science and only add noise). The two are interleaved after a warm-up
(``benchmarks/_method.py``). Prints JSON: median and min–max wall time of each, ``suite_speedup``,
its ideal and efficiency, and the largest absolute difference between the two runs' final
metrics (``max_metric_diff``, must be <= 1e-6: the same science).

The ideal. medapt saves two things: steps the reference runs several times (shared steps, and
each run's planning and bookkeeping), and work inside the training steps it caches. The cache has
its own bound, measured against its FLOP ideal in ``benchmarks/cache.py``; here the ideal bounds
the sharing. FLOPs cannot (a duplicated head or model build costs seconds, not FLOPs), so it is
built from measured step times (``step.json`` seconds), one repetition at a time: every distinct
step of that repetition's reference runs (equal content hash across them) once, at its fastest,
except the training steps, which count at the time they took in the medapt run of the same
repetition (the cache as it actually ran); plus one reference run's non-step time.
``ideal = reference wall / that`` for each repetition, and ``suite_ideal`` is their median — the
same statistic as the measured speed-up, and each repetition's ideal shares its reference's load
(an ideal taken from one repetition and set beside a median of five crossed it by noise alone).
It is what a medapt that ran each distinct step once, and nothing else faster than the
reference, would reach.
(Scaling the reference's training time by the FLOPs the cache saves — the first version of this
ideal — under-counts the cache at small images, where a frozen forward pass costs Python dispatch
out of proportion to its FLOPs: the full quickstart measured 1.86x against such an ideal of 1.53.)
``suite_flop_ratio`` is the plain ratio of executed FLOPs, for reference.

    python benchmarks/suite.py --quick      # 4 of the strategies scaled down (32 px, few images and epochs)
    python benchmarks/suite.py              # examples/quickstart.yaml as shipped
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _method import add_common_args, interleave, machine, pin_threads, speedup, summary  # noqa: E402

from medapt.config import read_yaml  # noqa: E402
from medapt.suite import run_experiment  # noqa: E402
from medapt.suite.experiment import experiment_from_dict  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "src" / "medapt" / "examples" / "quickstart.yaml"
KEY = ["strategy", "seed", "head", "task", "split", "metric"]


QUICK_STRATEGIES = ["ImageNet", "DA_L1SB", "DA_L1SB_PFT", "DA_TF_F1B"]


def quick(cfg: dict) -> dict:
    """The quickstart scaled down: one strategy of each kind (ImageNet, partial, partial + full,
    truncated), the tumour-type task with its external cohort, one head; 32 px, few images and epochs."""
    cfg["strategies"] = list(QUICK_STRATEGIES)
    cfg["data"]["targets"] = {"tumor_type": cfg["data"]["targets"]["tumor_type"]}
    cfg["downstream"]["heads"] = ["model1"]
    d = cfg["data"]
    d["image_size"] = 32
    d["source"]["n_per_class"] = 24
    for t in d["targets"].values():
        t["dataset"]["n_per_class"] = 12
        if t.get("external"):
            t["external"]["n_per_class"] = 8
    cfg["schedule"]["epoch_scale"] = 0.01  # phase 1: 10 epochs, phase 2: 1-2
    cfg["downstream"]["epochs"] = 10
    return cfg


def final_metrics(run_dir: Path) -> pd.DataFrame:
    m = pd.read_csv(run_dir / "metrics.csv")
    last = m.sort_values("epoch").groupby(KEY, dropna=False).tail(1)
    return last[KEY + ["value"]]


def _steps(run_dir: Path) -> list[dict]:
    """Every step a run executed: hash, kind, seconds, FLOPs (0 where not metered)."""
    out = []
    for f in sorted((run_dir / "steps").glob("*/*/step.json")):
        info = json.loads(f.read_text())
        cost = f.parent / "cost.json"
        flops = float(json.loads(cost.read_text()).get("flops_total") or 0.0) if cost.exists() else 0.0
        out.append({"hash": info["hash"], "kind": info["kind"], "seconds": float(info["seconds"]), "flops": flops})
    return out


def suite_ideal(ref_steps: list[dict], ref_runs: int, ref_wall: float, medapt_steps: list[dict]) -> dict:
    """The ideal speed-up of one medapt run over one repetition of the reference (``ref_runs`` runs
    that executed ``ref_steps`` in ``ref_wall`` seconds); see the module docstring."""
    unique: dict[str, dict] = {}
    for s in ref_steps:
        if s["hash"] not in unique or s["seconds"] < unique[s["hash"]]["seconds"]:
            unique[s["hash"]] = s
    train = ("pretrain", "finetune")
    t_steps = sum(s["seconds"] for s in ref_steps)
    t_unique = sum(s["seconds"] for s in unique.values())
    t_ref_train = sum(s["seconds"] for s in unique.values() if s["kind"] in train)
    t_med_train = sum(s["seconds"] for s in medapt_steps if s["kind"] in train)
    non_step = max(0.0, ref_wall - t_steps) / max(1, ref_runs)
    needed = t_unique - t_ref_train + t_med_train + non_step
    return {"ideal": ref_wall / needed if needed > 0 else float("nan"),
            "reference_step_seconds": t_steps, "reference_distinct_step_seconds": t_unique,
            "reference_steps": len(ref_steps), "reference_distinct_steps": len(unique),
            "reference_training_seconds": t_ref_train, "medapt_training_seconds": t_med_train,
            "reference_non_step_seconds_per_run": non_step}


def median_ideal(per_rep: list[dict]) -> dict:
    """The median of every field over the repetitions, and the ideal's min–max beside it."""
    out = {k: statistics.median(d[k] for d in per_rep) for k in per_rep[0]}
    ideals = [d["ideal"] for d in per_rep]
    return {**{k: (v if k == "ideal" else round(v, 3)) for k, v in out.items()},
            "suite_ideal_min": round(min(ideals), 3), "suite_ideal_max": round(max(ideals), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(QUICKSTART))
    ap.add_argument("--strategies", nargs="+", default=None, help="a subset of the config's strategies")
    add_common_args(ap)
    args = ap.parse_args()
    threads = pin_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    base = read_yaml(args.config)
    if args.quick:
        base = quick(base)
    if args.strategies:
        base["strategies"] = list(args.strategies)
    base["cost"] = {**base.get("cost", {}), "track_energy": False, "inference": False}
    base.setdefault("engine", {})["device"] = "cpu"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base["data"]["root"] = str(tmp / "data")
        runs = iter(range(10**6))
        ran: dict[str, list[list[Path]]] = {"reference": [], "medapt": []}  # run folders per call, warm-up first

        def medapt() -> None:
            exp = experiment_from_dict(copy.deepcopy(base), "suite-benchmark")
            out = tmp / f"medapt-{next(runs)}"
            run_experiment(exp, out=out, report=False)
            ran["medapt"].append([out])

        def reference() -> None:
            outs = []
            i = next(runs)
            for s in base["strategies"]:
                cfg = copy.deepcopy(base)
                cfg["strategies"] = [s]
                cfg["engine"]["cache"] = "off"
                out = tmp / f"reference-{i}-{s}"
                run_experiment(experiment_from_dict(cfg, "suite-benchmark"), out=out, report=False)
                outs.append(out)
            ran["reference"].append(outs)

        # prepare the data once, untimed (both variants read the same prepared arrays)
        t0 = time.perf_counter()
        run_experiment(experiment_from_dict(copy.deepcopy(base), "suite-benchmark"), out=tmp / "prepare",
                       only="pretrain", report=False)
        prep = time.perf_counter() - t0
        t = interleave({"reference": reference, "medapt": medapt}, reps=args.reps, warmup=args.warmup)
        timed = {k: v[max(0, args.warmup):] for k, v in ran.items()}  # the runs t timed, in order
        steps = {p: _steps(p) for calls in timed.values() for rep in calls for p in rep}
        ref_last, med_last = timed["reference"][-1], timed["medapt"][-1][0]
        ref = pd.concat([final_metrics(p) for p in ref_last])
        med = final_metrics(med_last)
        j = ref.merge(med, on=KEY, how="outer", suffixes=("_reference", "_medapt"), indicator=True)
        unmatched = int((j["_merge"] != "both").sum())
        diff = (j["value_reference"] - j["value_medapt"]).abs()
        flops = {p: sum(s["flops"] for s in steps[p]) for p in (*ref_last, med_last)}
        flop_ratio = sum(flops[p] for p in ref_last) / flops[med_last]
        ideal = median_ideal([suite_ideal([s for p in rep for s in steps[p]], len(rep), wall, steps[mine])
                              for rep, wall, (mine,) in zip(timed["reference"], t["reference"], timed["medapt"])])
    sp = speedup(t["reference"], t["medapt"], ideal.pop("ideal"))
    out = {"benchmark": "suite: reference-style vs medapt", "config": Path(args.config).name, "quick": args.quick,
           "strategies": base["strategies"], "seeds": base["seeds"], "image_size": base["data"]["image_size"],
           "seconds_reference": summary(t["reference"]), "seconds_medapt": summary(t["medapt"]),
           "suite_speedup": sp.pop("speedup"), **{f"suite_{k}": v for k, v in sp.items()},
           "suite_flop_ratio": round(flop_ratio, 3), **ideal,
           "max_metric_diff": float(diff.max()) if len(diff.dropna()) else None,
           "metrics_compared": int(diff.notna().sum()), "metrics_unmatched": unmatched,
           "same_science": bool(unmatched == 0 and float(diff.max()) <= 1e-6),
           "untimed_first_run_seconds": round(prep, 2), **machine(threads)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
