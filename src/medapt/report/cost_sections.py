"""Report sections on cost: parameters per phase (Table 1), time and energy (Table B1), inference."""

from __future__ import annotations

import pandas as pd

from .costs import TRAINING_STEPS, is_measured, params_table, suite_cost, time_energy_table
from .html import _e, _fmt, _hms, _table, fmt_energy
from .decision import energy_footnote
from .sections import _table_sentence, section
from .templating import render


@section("params", 70)
def params_section(ctx) -> str:
    rf = ctx.rf
    if rf.costs is None and rf.inference is None:
        return render("params.html.j2", message="costs.csv is missing from the run directory, so the parameter "
                      "table is not shown.", table="")
    pt = params_table(rf.costs, rf.inference, ctx.order)
    if not len(pt):
        return render("params.html.j2", message="No training rows in costs.csv.", table="")
    return render("params.html.j2", message="", table=_table(pt, left=("strategy", "note")))


def _kwh_or_none(costs: pd.DataFrame, kwh: float) -> str:
    return fmt_energy(kwh) if pd.to_numeric(costs["kwh"], errors="coerce").notna().any() else "energy not recorded"


def _source_label(x: str) -> str:
    """An energy source in words: measured, estimate, or not recorded (``none``)."""
    if x in ("none", "", "nan"):
        return '<span class="note">not recorded (none)</span>'
    return (f'<span class="{"measured" if is_measured(x) else "estimate"}">{_e(x)}'
            f'{"" if is_measured(x) else " (estimate)"}</span>')


@section("time_energy", 80)
def time_energy_section(ctx) -> str:
    rf = ctx.rf
    if rf.costs is None:
        return render("time_energy.html.j2", message="costs.csv is missing from the run directory, so time and "
                      "energy are not shown.")
    te = time_energy_table(rf.costs, ctx.order)
    training = suite_cost(rf.costs[rf.costs["step"].astype(str).isin(TRAINING_STEPS)])
    whole = suite_cost(rf.costs)
    table = ""
    if len(te):
        te = te.copy()
        te.insert(3, "h:mm:ss", te["seconds"].map(_hms))
        te = te.rename(columns={"n_sharing": "shared by"}).drop(columns=["energy_note"])  # once, as a footnote

        def src(v):
            parts = [x for x in str(v).split(";") if x]
            return ", ".join(_source_label(x) for x in parts) or "—"

        table = _table(te, left=("strategy", "phase", "energy_source"),
                       fmt={"energy_source": src, "kwh": lambda v: _e(fmt_energy(v)),
                            "seconds": lambda v: _e(_fmt(v, 2))},
                       row_class=lambda r: "total" if r["phase"] == "total" else "")
    other = rf.costs[~rf.costs["step"].astype(str).isin(TRAINING_STEPS)]
    other_html = ""
    if len(other):
        o = other.groupby("step")[["seconds", "kwh"]].sum(numeric_only=True, min_count=1).reset_index()
        other_html = _table(o, left=("step",), fmt={"kwh": lambda v: _e(fmt_energy(v))})
    return render("time_energy.html.j2", message="", training_time=_hms(training["seconds"]),
                  training_energy=_kwh_or_none(rf.costs, training["kwh"]), whole_time=_hms(whole["seconds"]),
                  whole_energy=_kwh_or_none(rf.costs, whole["kwh"]), marker=energy_footnote(ctx),
                  table_sentence=_table_sentence(rf), table=table, other=other_html)


@section("inference", 90)
def inference_section(ctx) -> str:
    rf = ctx.rf
    if rf.inference is None:
        return render("inference.html.j2", message="inference.csv is missing from the run directory, so the "
                      "inference cost table is not shown.", table="")
    inf = rf.inference.copy()
    inf["_o"] = inf["strategy"].map({s: i for i, s in enumerate(ctx.order)})
    inf = inf.sort_values("_o", kind="stable").drop(columns="_o")
    return render("inference.html.j2", message="", table=_table(
        inf, left=tuple(c for c in inf.columns if not pd.api.types.is_numeric_dtype(inf[c]))))
