"""The run directory's tables, gathered from the completed steps' outputs by their kinds
(schemas in docs/run-directory.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_csv
from .kinds import KINDS, TABLES

__all__ = ["collect_tables"]


def collect_tables(plan, store, run_dir: Path, costs_only: bool = False) -> dict[str, Path]:
    """Write ``metrics.csv``, ``predictions.csv``, ``costs.csv`` and ``inference.csv`` from the plan's
    completed steps (each kind says which rows it contributes); return the files written."""
    from ..cost import write_costs_csv

    parts: dict[str, list[pd.DataFrame]] = {}
    for step in plan.steps:
        if not store.path(step).is_dir():
            continue
        for name, df in KINDS.get(step.kind).tables(step, store).items():
            if costs_only and name != "costs.csv":
                continue
            parts.setdefault(name, []).append(df)
    written = {}
    for name, frames in parts.items():
        path = Path(run_dir) / name
        if name == "costs.csv":
            write_costs_csv([r for df in frames for r in df.to_dict("records")], path)
        else:
            atomic_write_csv(_ordered(pd.concat(frames, ignore_index=True), TABLES.get(name, ())), path)
        written[name] = path
    from ..atomic import atomic_write_json
    from ..integrity import TABLES_RECORD, record_files

    # the tables' digests, for `medapt verify` / `medapt report` (a re-run writes them again)
    atomic_write_json(Path(run_dir) / TABLES_RECORD, record_files(written), indent=1)
    return written


def _ordered(df: pd.DataFrame, first: tuple[str, ...]) -> pd.DataFrame:
    """The schema's leading columns first; score_* / label_* columns sorted by their number."""
    lead = [c for c in first if c in df.columns]
    numbered = sorted((c for c in df.columns if c.startswith(("score_", "label_"))),
                      key=lambda c: (c.split("_")[0], int(c.rsplit("_", 1)[1])))
    rest = [c for c in df.columns if c not in lead and c not in numbered]
    if first == TABLES["metrics.csv"]:
        rest = []  # metrics.csv is exactly its schema
    return df[lead + rest + numbered]
