"""`medapt run` and `medapt demo`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._output import add_experiment_args, add_format_option, add_set_option, emit_json, emit_table, registry_choices

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"


def register(sub) -> None:
    p = sub.add_parser("run", help="run an experiment: pre-train, evaluate downstream, report",
                       description="Plan every step of the experiment in CONFIG (strategies x seeds x heads x tasks), "
                       "run each step once (shared steps once, completed steps reused, interrupted training resumed: re-running "
                       "the same command on the same --out continues a run), "
                       "collect metrics.csv / costs.csv and write report.html in the run directory.")
    add_experiment_args(p, "experiment YAML (examples/quickstart.yaml, examples/mehmood2023.yaml)")
    p.add_argument("--executor", default="local", choices=registry_choices("medapt.suite.executors", "EXECUTORS", "executor"),
                   metavar="NAME", help="where steps run: %(choices)s (default local)")
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="run each training step on N processes with torchrun + DDP (GPUs, or CPU cores with gloo); "
                   "only rank 0 writes. Same as -o engine.nproc_per_node=N")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (steps, sharing, what is done) with projected FLOPs and time; run nothing")
    p.add_argument("--no-report", action="store_true", help="skip report.html (`medapt report DIR` builds it later)")
    add_format_option(p)
    p.set_defaults(func=_run, log_info=True)

    p = sub.add_parser("demo", help="the whole pipeline offline on phantom data in minutes",
                       description="Run examples/quickstart.yaml: phantom brain-MRI-like data, the embedded ImageNet "
                       "EfficientNet-Lite0, the ten Mehmood strategies, both heads, the tumour-type task with its "
                       "external shift and the disease task. Prints where the report is.")
    p.add_argument("--out", default="demo-run", help="run directory (default: demo-run)")
    add_set_option(p)
    p.add_argument("--force", action="store_true", help="reuse a run directory made by a different config")
    p.set_defaults(func=_demo, log_info=True)


def _print_plan(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        emit_json(rows)
        return
    table = []
    for r in rows[:-1]:
        users = r["users"]
        shared = f"{len(users)} ({', '.join(users[:2])}{'…' if len(users) > 2 else ''})"
        table.append([r["id"], r["label"], shared, r["status"], "" if r["images"] is None else r["images"],
                      f"{r['flops']:.3g}" if r["flops"] else "", f"{r['seconds']:.1f}" if r["seconds"] else ""])
    emit_table(table, ["step", "what", "used by", "status", "images", "FLOPs", "est. s"])
    tot = rows[-1]
    steps = [r for r in rows[:-1] if r["kind"] != "pending"]
    todo = sum(1 for r in steps if r["status"] != "done")
    shared = sum(1 for r in steps if len(r["users"]) > 1)
    later = [r for r in rows[:-1] if r["kind"] == "pending"]
    print(f"\n{len(steps)} steps ({shared} shared by several strategies), {todo} to run"
          + (f", and {len(later)} group(s) of steps that depend on results (upper bounds included)" if later else "")
          + f"; total {tot['flops']:.3g} FLOPs, about {tot['seconds']:.0f} s projected from a measured probe: "
          f"{tot['label']}")
    if tot.get("resources") or tot.get("missing"):
        from ..suite.dryrun import format_resources

        print(format_resources(tot.get("resources"), tot.get("missing", []), tot.get("sizes", [])))


def _run(args: argparse.Namespace) -> int:
    from ..suite import run_experiment

    t0 = time.perf_counter()
    overrides = list(args.override)
    if args.nproc_per_node is not None:
        overrides.append(f"engine.nproc_per_node={args.nproc_per_node}")
    res = run_experiment(args.config, out=args.out, overrides=overrides, force=args.force, dry_run=args.dry_run,
                         executor=args.executor, report=not args.no_report)
    if args.dry_run:
        _print_plan(res.dry_run, args.format)
        if args.format != "json":
            from ..suite.study import sharing_line

            print(sharing_line(res.plan))
        return 0
    summary = {"run_dir": str(res.run_dir), "executed": len(res.executed), "reused": len(res.reused),
               "report": str(res.report) if res.report else None, "seconds": round(time.perf_counter() - t0, 1)}
    if args.format == "json":
        emit_json(summary)
    else:
        print(f"{summary['executed']} steps run, {summary['reused']} reused, in {summary['seconds']} s; "
              f"run directory: {res.run_dir}")
        if res.report:
            print(f"report: {res.report}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..suite import run_experiment

    if not QUICKSTART.is_file():  # pragma: no cover - packaging error
        print(f"medapt: error: the quickstart config is missing from the package ({QUICKSTART})", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    print(f"medapt demo: {QUICKSTART.name} -> {args.out} (phantom data, embedded EfficientNet-Lite0, offline)",
          file=sys.stderr)
    res = run_experiment(QUICKSTART, out=args.out, overrides=args.override, force=args.force)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s: {len(res.executed)} steps run, {len(res.reused)} reused")
    print(f"report: {res.report}")
    return 0
