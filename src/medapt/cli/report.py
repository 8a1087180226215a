"""``medapt report RUN_DIR [--out FILE]``: rebuild the HTML report from a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import add_format_option, emit_json


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html and figures/*.png from a run directory",
        description="Build one self-contained report.html (figures embedded, opens offline) and "
        "figures/*.png from the files of a run directory (metrics.csv, costs.csv, …), without "
        "re-running anything. Sections whose file is missing say so.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the folder written by `medapt run --out`")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for report.html and figures/ (default: RUN_DIR)")
    p.add_argument("--out-file", type=Path, default=None, metavar="FILE",
                   help="HTML file to write instead (figures/ goes beside it)")
    p.add_argument("--threshold", type=float, default=None,
                   help="AUC threshold for 'epochs to threshold' (default: the config's, else 0.9)")
    add_format_option(p)
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..report import build_report

    from ..errors import ConfigError

    if args.out is not None and args.out_file is not None:
        raise ConfigError("give --out DIR or --out-file FILE, not both")
    target = args.out_file
    if args.out is not None:
        # a name ending in .html is the old meaning of --out (a file); keep it working
        target = args.out if args.out.suffix.lower() in (".html", ".htm") else args.out / "report.html"
    path = build_report(args.run_dir, target, threshold=args.threshold)
    figures = sorted(str(f) for f in (path.parent / "figures").glob("*.png"))
    if args.format == "json":
        emit_json({"report": str(path), "figures": figures})
    else:
        print(f"report: {path}")
        print(f"figures: {path.parent / 'figures'} ({len(figures)} PNG)")
    return 0
