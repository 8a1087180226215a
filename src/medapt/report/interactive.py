"""An interactive AUC-vs-energy chart (Vega-Lite through Altair) that works offline, embedded in the
report when asked for (``medapt report --interactive`` or ``report.interactive: true``).

The chart's page — Vega, Vega-Lite and vega-embed inlined by ``vl-convert-python`` (about 0.9 MB),
the data inline — sits in an ``<iframe srcdoc>``, so its script and style cannot touch the report's
and nothing is fetched. Needs the optional extra ``pip install medapt[interactive]`` (altair,
vl-convert-python); without it the section says how to get it.
"""

from __future__ import annotations

import html

import pandas as pd

from .html import _missing
from .sections import ReportContext, section

__all__ = ["interactive_pareto_html"]


def interactive_pareto_html(points: pd.DataFrame, colours: dict[str, tuple], budget_kwh: float | None = None) -> str:
    """A full offline HTML page with the chart: per task (drop-down), final AUC against whole energy,
    tooltips with every cost, zoom and pan, the Pareto front and the budget line.

    Args:
        points: one row per task and strategy with ``task``, ``strategy``, ``family``, ``split``
            (the split the AUC is on), ``auc``, ``kwh``, ``trainable``, ``latency_ms``, ``pareto``.
        colours: strategy → RGBA (:func:`medapt.report.style.strategy_colours`).
    """
    import altair as alt
    from matplotlib.colors import to_hex

    data = points.copy()
    domain = list(dict.fromkeys(data["strategy"]))
    scale = alt.Scale(domain=domain, range=[to_hex(colours[s]) for s in domain])
    tasks = list(dict.fromkeys(data["task"]))
    pick = alt.param(name="task", value=tasks[0], bind=alt.binding_select(options=tasks, name="task "))
    base = alt.Chart(data).transform_filter("datum.task == task")
    tip = [alt.Tooltip("strategy:N"), alt.Tooltip("family:N"), alt.Tooltip("auc:Q", format=".3f"),
           alt.Tooltip("split:N"), alt.Tooltip("kwh:Q", title="whole energy (kWh)", format=".3g"),
           alt.Tooltip("trainable:Q", title="trainable parameters", format=",.0f"),
           alt.Tooltip("latency_ms:Q", title="latency (ms/image)", format=".3g"), alt.Tooltip("pareto:N")]
    x = alt.X("kwh:Q", title="whole cost per strategy: energy (kWh)")
    y = alt.Y("auc:Q", title="final AUC (external set; development split without one)", scale=alt.Scale(zero=False))
    dots = base.mark_point(filled=True, size=90).encode(
        x=x, y=y, color=alt.Color("strategy:N", scale=scale, legend=alt.Legend(orient="right")),
        stroke=alt.condition("datum.pareto == 'yes'", alt.value("black"), alt.value(None)), tooltip=tip)
    front = base.transform_filter("datum.pareto == 'yes'").mark_line(
        interpolate="step-after", strokeDash=[5, 3], color="#333").encode(x=x, y=y)
    layers = [front, dots]
    if budget_kwh is not None:
        layers.append(alt.Chart(pd.DataFrame({"budget": [budget_kwh]})).mark_rule(color="#b22222", strokeDash=[2, 2])
                      .encode(x="budget:Q"))
    chart = alt.layer(*layers).add_params(pick).properties(width=620, height=360,
                                                           title="Final AUC vs whole energy (hover for costs; "
                                                                 "scroll to zoom, drag to pan)").interactive()
    return chart.to_html(inline=True)


@section("pareto_interactive", 51)
def interactive_section(ctx: ReportContext) -> str:
    if not getattr(ctx, "interactive", False) or ctx.rf.metrics is None or ctx.summ is None or not len(ctx.summ):
        return ""
    head = "<h3>Interactive: AUC vs energy</h3>"
    try:
        import altair  # noqa: F401
        import vl_convert  # noqa: F401
    except ImportError:
        return head + _missing("The interactive chart needs the optional extra: pip install 'medapt[interactive]' "
                               "(altair and vl-convert-python, which inline Vega so the chart works offline).")
    from .costs import pareto_front
    from .recommend import primary_head
    from .results import _front_split, _pareto_points, cost_points
    from .style import family_of, strategy_colours

    sc = cost_points(ctx)
    if sc is None or sc["kwh"].isna().all():
        return head + _missing("No energy figures in costs.csv, so there is no interactive AUC-vs-energy chart.")
    rows = []
    for task in sorted(ctx.summ["task"].unique()):
        split = _front_split(ctx.summ, task)
        pts = _pareto_points(ctx.summ, sc, task, [split], primary_head(ctx.summ, task, ctx.rf.config))
        if pts.empty:
            continue
        pts = pts.assign(task=task, split=split, auc=pts[f"auc_{split}"],
                         pareto=pd.Series(pareto_front(pts["kwh"], pts[f"auc_{split}"])).map({True: "yes", False: "no"}),
                         family=pts["strategy"].map(family_of))
        for col in ("trainable", "latency_ms"):
            if col not in pts:
                pts[col] = float("nan")
        rows.append(pts[["task", "strategy", "family", "split", "auc", "kwh", "trainable", "latency_ms", "pareto"]])
    if not rows:
        return ""
    data = pd.concat(rows, ignore_index=True)
    page = interactive_pareto_html(data, strategy_colours(list(data["strategy"])), getattr(ctx.budget, "kwh", None))
    return (head + '<p class="note">Vega-Lite (via Altair), inlined: works offline. The same points as the figure '
            "above, per task (choose below the chart).</p>"
            f'<iframe class="interactive" title="interactive AUC vs energy" sandbox="allow-scripts" '
            f'style="width:100%;height:520px;border:1px solid #eee" srcdoc="{html.escape(page, quote=True)}"></iframe>')
