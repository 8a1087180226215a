"""``medapt verify RUN_DIR``: check every recorded digest of a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import add_format_option, emit_json


def register(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check a run directory's step outputs and caches against their recorded digests",
        description="Hash every file each completed step, prepared dataset and frozen-prefix cache wrote and "
        "compare it with the digest recorded when it was written; list what is damaged (missing, unreadable, "
        "other size or content) and steps whose input was replaced by other content. Exit code 1 when anything "
        "is damaged: `medapt run` with the same config then recomputes exactly those steps and what depends on them.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the folder written by `medapt run --out`")
    p.add_argument("--mode", choices=["full", "stat"], default="full",
                   help="full: hash every file (default); stat: trust files whose size and mtime match")
    add_format_option(p)
    p.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from ..integrity import verify_run_dir

    res = verify_run_dir(args.run_dir, mode=args.mode)
    if args.format == "json":
        emit_json(res)
    else:
        for d in res["damaged"]:
            print(f"DAMAGED {d['step']}: {d['file']}: {d['problem']}")
        what = f"{res['steps']} steps checked"
        if res["unrecorded"]:
            what += f" ({res['unrecorded']} written before digests were recorded: not checked)"
        if res["ok"]:
            print(f"ok: {what}, nothing damaged in {res['run_dir']}")
        else:
            print(f"{len(res['damaged'])} damaged file(s); {what}. Run `medapt run` with the same config and --out "
                  "to recompute them and the steps that depend on them.")
    return 0 if res["ok"] else 1
