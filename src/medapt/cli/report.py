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
    p.add_argument("--no-verify", action="store_true",
                   help="build the report even if the run directory fails `medapt verify` (damaged outputs)")
    p.add_argument("--budget", default=None, metavar="BUDGET",
                   help="your budget per strategy (whole cost, mean over seeds): 0.5kWh, 500Wh, 2h, 90min, 2:30 or "
                        "both as 1kWh,3h; the report recommends the best strategy by external AUC within it "
                        "(default: report.budget_kwh / report.budget_hours of the run's config.yaml)")
    p.add_argument("--interactive", action="store_true", default=None,
                   help="also embed an interactive AUC-vs-energy chart (Vega-Lite, works offline; needs "
                        "pip install 'medapt[interactive]')")
    add_format_option(p)
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..report import build_report

    if not args.no_verify:
        from ..integrity import refuse_damaged

        refuse_damaged(args.run_dir)
    from ..errors import ConfigError
    from ..report.recommend import parse_budget

    if args.out is not None and args.out_file is not None:
        raise ConfigError("give --out DIR or --out-file FILE, not both")
    target = args.out_file
    if args.out is not None:
        # a name ending in .html is the old meaning of --out (a file); keep it working
        target = args.out if args.out.suffix.lower() in (".html", ".htm") else args.out / "report.html"
    budget = parse_budget(args.budget)  # a malformed budget fails here, before any work
    path = build_report(args.run_dir, target, threshold=args.threshold, budget=budget, interactive=args.interactive)
    figures = sorted(str(f) for f in (path.parent / "figures").glob("*.png"))
    rec = path.parent / "recommendation.csv"
    if args.format == "json":
        emit_json({"report": str(path), "figures": figures, "recommendation": str(rec) if rec.exists() else None})
    else:
        print(f"report: {path}")
        if rec.exists():
            import pandas as pd

            for sentence in pd.read_csv(rec)["sentence"]:
                print(f"  {sentence}")
        print(f"figures: {path.parent / 'figures'} ({len(figures)} PNG)")
    return 0
