"""Report section on target fine-tuning: the validation curves of the target phases (``head = own``,
``split = val`` rows of ``metrics.csv``) and, per strategy, the epoch kept and its scores."""

from __future__ import annotations

import pandas as pd

from . import figures as F
from .html import _fmt, _slug, _table
from .sections import ReportContext, section
from .templating import render


@section("finetune", 25)
def finetune_section(ctx: ReportContext) -> str:
    m = ctx.rf.metrics
    if m is None or "own" not in set(m["head"]):
        return ""
    own = m[m["head"] == "own"]
    tasks = []
    for task, g in own.groupby("task", sort=True):
        figure = ""
        val = g[(g["split"] == "val") & (g["metric"] == "auc")]
        strategies = [s for s in ctx.order if s in set(g["strategy"])]
        if len(val):
            figure = (ctx.figs.add_figure(_slug("finetune_val", task),
                                      F.auc_curves(val, strategies, f"{task} — fine-tuning (validation)", ctx.threshold,
                                                   as_figure=True),
                                      f"Validation ROC-AUC per epoch of the target phases, task {task}."))
        rows = []
        for s in strategies:
            for seed, h in g[g["strategy"] == s].groupby("seed"):
                kept = h[h["split"] == "test"]["epoch"]
                row = {"strategy": s, "seed": int(seed), "epochs": int(h[h["split"] == "val"]["epoch"].max())
                       if (h["split"] == "val").any() else "—",
                       "epoch kept": int(kept.iloc[0]) if len(kept) else "—"}
                for split in ("val", "test", "external"):
                    v = h[(h["split"] == split) & (h["metric"] == "auc")]
                    if split == "val" and len(kept):
                        v = v[v["epoch"] == kept.iloc[0]]
                    row[f"AUC ({split})"] = _fmt(float(v["value"].iloc[0])) if len(v) else "—"
                rows.append(row)
        tasks.append(dict(task=task, figure=figure, table=_table(pd.DataFrame(rows), left=("strategy",))))
    return render("finetune.html.j2", tasks=tasks)


from . import convergence  # noqa: E402,F401  (registers the convergence-speed section beside this one)
