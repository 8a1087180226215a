"""Report sections on cost: parameters per phase (Table 1), time and energy (Table B1), inference."""

from __future__ import annotations

import pandas as pd

from .costs import TRAINING_STEPS, is_measured, params_table, suite_cost, time_energy_table
from .html import _e, _fmt, _hms, _missing, _table, fmt_energy
from .decision import energy_footnote
from .sections import _table_sentence, section


@section("params", 70)
def params_section(ctx) -> str:
    rf = ctx.rf
    body = ["<h2>Parameters per phase (Table 1)</h2>"]
    if rf.costs is None and rf.inference is None:
        body.append(_missing("costs.csv is missing from the run directory, so the parameter table is not shown."))
        return "\n".join(body)
    pt = params_table(rf.costs, rf.inference, ctx.order)
    body.append('<p class="note">Total and trainable parameters of the model in each training phase '
                "(cf. Mehmood et al., Table 1). Strategies without training show their total only. "
                "Counted by PyTorch: the paper counts Keras's ResNet50, whose convolutions have biases and whose "
                "BatchNorm moving statistics count as non-trainable parameters, so its figures are larger "
                "(`medapt params --keras` counts that way).</p>")
    body.append(_table(pt, left=("strategy", "note")) if len(pt) else _missing("No training rows in costs.csv."))
    return "\n".join(body)


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
    body = ["<h2>Time and energy per phase (Table B1)</h2>"]
    if rf.costs is None:
        body.append(_missing("costs.csv is missing from the run directory, so time and energy are not shown."))
        return "\n".join(body)
    te = time_energy_table(rf.costs, ctx.order)
    training = suite_cost(rf.costs[rf.costs["step"].astype(str).isin(TRAINING_STEPS)])
    whole = suite_cost(rf.costs)
    body.append('<p class="note">Mean over seeds. <b>Each strategy\'s figures are its standalone cost</b>: what it '
                "would cost run alone — every training step it uses, also those it shares with other strategies "
                "(shared by &gt; 1: they ran once), and the building of any frozen-prefix cache it reused from "
                "another step — so the ranking does not depend on the order of the strategies. "
                f"<b>This run as executed</b> (each step and cache once, all seeds): training "
                f"{_hms(training['seconds'])} and {_kwh_or_none(rf.costs, training['kwh'])}; every step (training, "
                f"features, heads, …) {_hms(whole['seconds'])} and {_kwh_or_none(rf.costs, whole['kwh'])} "
                '(the <a href="#sec-whole_cost">whole cost per strategy</a> adds features, heads and fine-tuning). '
                'Energy source: <span class="measured">measured</span> or '
                '<span class="estimate">estimate</span>' + energy_footnote(ctx) + ". " + _table_sentence(rf) + "</p>")
    if len(te):
        te = te.copy()
        te.insert(3, "h:mm:ss", te["seconds"].map(_hms))
        te = te.rename(columns={"n_sharing": "shared by"}).drop(columns=["energy_note"])  # once, as a footnote

        def src(v):
            parts = [x for x in str(v).split(";") if x]
            return ", ".join(_source_label(x) for x in parts) or "—"

        body.append(_table(te, left=("strategy", "phase", "energy_source"),
                           fmt={"energy_source": src, "kwh": lambda v: _e(fmt_energy(v)),
                                "seconds": lambda v: _e(_fmt(v, 2))},
                           row_class=lambda r: "total" if r["phase"] == "total" else ""))
    else:
        body.append(_missing("costs.csv has no training rows (no strategy in this run trains)."))
    other = rf.costs[~rf.costs["step"].astype(str).isin(TRAINING_STEPS)]
    if len(other):
        o = other.groupby("step")[["seconds", "kwh"]].sum(numeric_only=True).reset_index()
        body.append('<p class="note">Other steps (feature extraction, heads, …), summed over the run:</p>'
                    + _table(o, left=("step",), fmt={"kwh": lambda v: _e(fmt_energy(v))}))
    return "\n".join(body)


@section("inference", 90)
def inference_section(ctx) -> str:
    rf = ctx.rf
    if rf.inference is None:
        return "<h2>Inference cost</h2>" + _missing(
            "inference.csv is missing from the run directory, so the inference cost table is not shown.")
    inf = rf.inference.copy()
    inf["_o"] = inf["strategy"].map({s: i for i, s in enumerate(ctx.order)})
    inf = inf.sort_values("_o", kind="stable").drop(columns="_o")
    return "<h2>Inference cost</h2>" + _table(
        inf, left=tuple(c for c in inf.columns if not pd.api.types.is_numeric_dtype(inf[c])))
