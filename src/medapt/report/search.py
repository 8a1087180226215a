"""Report sections of issue 12: the cut-point search (``search.csv``) and the per-unit similarity
between the ImageNet weights and each DAPT strategy (``similarity.csv``).

Both read only their file in the run directory and are absent when it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .figures import _colours
from .html import _e, _fmt, _table
from .sections import ReportContext, section

__all__ = ["search_figure", "similarity_figure"]

_MARKERS = {"ttl": "o", "probe": "s", "svcca": "^", "lwft": "D"}


def _read(ctx: ReportContext, name: str) -> pd.DataFrame | None:
    p = ctx.rf.run_dir / name
    if not p.exists():
        return None
    try:
        return pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def search_figure(df: pd.DataFrame, title: str) -> Figure:
    """Validation metric (fine-tuned candidates) and probe score vs cut point; the kept backbone
    parameters on a second axis (log scale); the chosen cut point of each method marked."""
    fig = Figure(figsize=(8.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(df["method"]))
    colours = _colours(methods)
    for m in methods:
        g = df[df["method"] == m].sort_values("cut_point")
        ft = g[g["val_score"].notna()]
        if len(ft):
            ax.plot(ft["cut_point"], ft["val_score"], marker=_MARKERS.get(m, "o"), color=colours[m],
                    label=f"{m}: fine-tuned (validation {g['metric'].iloc[0]})")
        pr = g[g["probe_score"].notna()]
        if len(pr):
            ax.plot(pr["cut_point"], pr["probe_score"], linestyle="--", marker=".", color=colours[m], alpha=0.8,
                    label=f"{m}: linear probe (validation {g['metric'].iloc[0]})")
        ch = g[g["chosen"].astype(str).str.lower() == "true"]
        for _, r in ch.iterrows():
            y = r["val_score"] if pd.notna(r["val_score"]) else r["probe_score"]
            if pd.notna(y):
                ax.scatter([r["cut_point"]], [y], s=160, facecolors="none", edgecolors=colours[m], linewidths=2)
    ax.set_xlabel("cut point k (units 1..k kept)")
    ax.set_ylabel("validation metric")
    ax.grid(alpha=0.3)
    cost = df.iloc[0:0] if "backbone_params" not in df.columns else df.dropna(subset=["backbone_params"]).drop_duplicates("cut_point").sort_values("cut_point")
    if len(cost):
        ax2 = ax.twinx()
        ax2.step(cost["cut_point"], cost["backbone_params"], where="mid", color="grey", alpha=0.5,
                 label="kept backbone parameters")
        ax2.set_yscale("log")
        ax2.set_ylabel("kept backbone parameters (log)")
        h2, l2 = ax2.get_legend_handles_labels()
    else:
        h2, l2 = [], []
    h1, l1 = ax.get_legend_handles_labels()
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


@section("search", 27)
def search_section(ctx: ReportContext) -> str:
    df = _read(ctx, "search.csv")
    if df is None or not len(df):
        return ""
    parts = ["<h2>Cut-point search</h2>",
             '<p class="note">Where to cut the backbone for the target task (Peng et al., TruncatedTL). '
             "<b>ttl</b> fine-tunes <code>TTL@k</code> at every stage end, then inside the best stage; "
             "<b>probe</b> fits a linear probe on frozen GAP features of every cut point from one forward pass "
             "and fine-tunes the best; <b>svcca</b> fine-tunes the whole network once and cuts where its SVCCA "
             "similarity to the pretrained network falls to that of random features; <b>lwft</b> makes one more "
             "unit trainable while validation improves. Chosen on the validation split; the test split is not "
             "used. Probe scores rank how decodable the task is from frozen features, not fine-tuned accuracy. "
             "Wall time of probe rows is the one forward pass + all probes, shared by every cut point.</p>"]
    chosen = df[df["chosen"].astype(str).str.lower() == "true"]
    if len(chosen):
        rows = [{"method": r["method"], "chosen": r["candidate"], "cut point": int(r["cut_point"]),
                 "unit": r.get("unit", ""), "validation": _fmt(r["val_score"]) if pd.notna(r["val_score"]) else "—",
                 "candidates fine-tuned": int(df[(df["method"] == r["method"]) & df["val_score"].notna()].shape[0]),
                 "search wall time (s)": _fmt(_search_seconds(df[df["method"] == r["method"]]))}
                for _, r in chosen.iterrows()]
        parts.append(_table(pd.DataFrame(rows), left=("method", "chosen", "unit")))
    parts.append(ctx.figs.add_figure("search", search_figure(df, "Validation metric vs cut point"),
                              "Validation metric of each candidate vs cut point (circled: chosen); grey: "
                              "parameters of the kept units (second axis)."))
    cols = [c for c in ("method", "candidate", "role", "cut_point", "unit", "val_auroc", "val_auprc", "probe_score",
                        "params", "flops_per_image", "latency_ms_cpu_b1", "wall_seconds") if c in df.columns]
    parts.append("<details><summary>Every candidate (search.csv)</summary>"
                 + _table(df[cols], left=("method", "candidate", "role", "unit")) + "</details>")
    return "\n".join(parts)


def _search_seconds(g: pd.DataFrame) -> float:
    probe = g[g["role"].astype(str).str.startswith("probe")]["wall_seconds"]
    ft = g[g["val_score"].notna()]["wall_seconds"]
    # the probe's pass is one step shared by its rows: count it once
    total = float(ft.sum()) if len(ft) else 0.0
    if len(probe):
        total += float(g[g["role"] == "probe"]["wall_seconds"].dropna().iloc[0]) if (g["role"] == "probe").any() else 0.0
    return total


def similarity_figure(df: pd.DataFrame, method: str, order: list[str]) -> Figure:
    fig = Figure(figsize=(8.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    strategies = [s for s in order if s in set(df["strategy"])] + sorted(set(df["strategy"]) - set(order))
    colours = _colours(strategies)
    for s in strategies:
        g = df[(df["strategy"] == s) & (df["method"] == method)].groupby("cut_point")["value"].mean()
        if len(g):
            ax.plot(g.index, g.values, marker="o", color=colours[s], label=s)
    ax.set_xlabel("cut point k (unit)")
    ax.set_ylabel(f"{method} to ImageNet weights")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{method}: which units DAPT moved (1 = unchanged)", fontsize=10)
    fig.tight_layout()
    return fig


@section("similarity", 28)
def similarity_section(ctx: ReportContext) -> str:
    df = _read(ctx, "similarity.csv")
    if df is None or not len(df):
        return ""
    parts = ["<h2>What DAPT changed, unit by unit</h2>",
             '<p class="note">Similarity between each unit\'s GAP activations under the ImageNet weights and '
             "under each DAPT strategy's weights, on the target task's training + validation images "
             "(SVCCA: Raghu et al. 2017; PWCCA: Morcos et al. 2018; linear CKA: Kornblith et al. 2019; float64). "
             "1 means the unit's representation is unchanged; lower values mark the units DAPT moved. "
             "With fewer images than a unit's channels the value is computed at the rank the data supports "
             "and the note says so (SVCCA/PWCCA are then inflated).</p>"]
    for m in [x for x in ("svcca", "pwcca", "cka") if x in set(df["method"])]:
        parts.append(ctx.figs.add_figure(f"similarity_{m}", similarity_figure(df, m, ctx.order),
                                  f"{m} per unit between ImageNet and each DAPT strategy's weights."))
    wide = df.groupby(["strategy", "method", "cut_point"])["value"].mean().unstack("cut_point")
    wide.columns = [f"k={c}" for c in wide.columns]
    wide = wide.reset_index()
    parts.append(_table(wide, left=("strategy", "method"),
                        fmt={c: (lambda v: "—" if not np.isfinite(v) else f"{v:.3f}") for c in wide.columns[2:]}))
    notes = sorted({str(n) for n in df.get("note", pd.Series(dtype=str)).dropna() if str(n)})
    if notes:
        parts.append(f'<p class="note">Notes: {_e(notes[0])}{" (and others in similarity.csv)" if len(notes) > 1 else ""}</p>')
    return "\n".join(parts)
