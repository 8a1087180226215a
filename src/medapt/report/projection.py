"""The "Projection" section: the dry run's projected seconds per step against the actual ones.

Shown when the run directory holds ``projection.csv`` (written after a run that a ``--dry-run``
on the same directory projected); otherwise the section is left out.
"""

from __future__ import annotations

import pandas as pd

from .html import _e, _table
from .sections import ReportContext, section


@section("projection", 95)
def projection_section(ctx: ReportContext) -> str:
    path = ctx.rf.run_dir / "projection.csv"
    if not path.exists():
        return ""
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return f'<h2>Projection</h2><p class="missing">{_e(f"projection.csv cannot be read ({exc})")}</p>'
    if df.empty:
        return ""
    by_kind = (df.groupby("kind")[["projected_s", "actual_s"]].sum().reset_index()
               .assign(actual_over_projected=lambda d: d["actual_s"] / d["projected_s"]))
    proj, act = float(df["projected_s"].sum()), float(df["actual_s"].sum())
    ratio = act / proj if proj > 0 else float("nan")
    fmt = {c: "{:.2f}".format for c in ("projected_s", "actual_s", "actual_over_projected")}
    return "\n".join([
        "<h2>Projection</h2>",
        f"<p>The dry run projected {proj:.1f} s for the {len(df)} steps it ran; they took {act:.1f} s "
        f"(actual / projected = {ratio:.2f}). Projections are FLOPs at the measured training FLOP/s plus the "
        "measured model-building and per-epoch engine overheads (<code>projection.json</code>); steps "
        "reused from earlier runs are not counted.</p>",
        _table(by_kind, left=("kind",), fmt=fmt),
        "<details><summary>Per step (projection.csv)</summary>",
        _table(df, left=("step", "kind", "label"), fmt=fmt),
        "</details>",
    ])
