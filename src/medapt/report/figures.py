"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

* :func:`auc_curves` — AUC vs epoch per strategy, one panel per split (Mehmood et al., Figs 5–10).
* :func:`robustness_boxplot` — per-epoch AUC, development vs external, whiskers at the 1 % and
  99 % quantiles (Figs 11–12).
* :func:`pareto_plot` — AUC vs cost (parameters, kWh, seconds) with the Pareto front (Fig. B1).

Each returns PNG bytes (at :data:`DPI`), or with ``as_figure=True`` the matplotlib ``Figure``,
which :meth:`medapt.report.html.Figures.add_figure` writes as PNG and inlines as SVG. Colours:
one hue per strategy family, members as shades (:mod:`medapt.report.style`); legends sit outside
the axes, so they never cover data.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .costs import pareto_front

__all__ = ["auc_curves", "robustness_boxplot", "pareto_plot", "SPLIT_ORDER"]

SPLIT_ORDER = ("test", "val", "external")
SPLIT_TITLES = {"test": "development test split", "val": "validation split", "external": "external set"}
#: resolution of figures/*.png (the page itself shows the vector SVG)
DPI = 200


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def png_and_svg(fig: Figure, salt: str = "") -> tuple[bytes, str]:
    """The figure as PNG bytes at :data:`DPI` and as an inline ``<svg>`` element (text kept as text,
    ids salted with ``salt`` so several SVGs on one page never share an id)."""
    import matplotlib

    FigureCanvasAgg(fig)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    svg = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt or "medapt"}):
        fig.savefig(svg, format="svg")
    text = svg.getvalue()
    return png.getvalue(), _prefix_ids(text[text.index("<svg"):], re.sub(r"[^A-Za-z0-9_-]", "-", salt or "fig"))


def _prefix_ids(svg: str, prefix: str) -> str:
    """Prefix every element id (and each reference to it) so several inline SVGs never collide."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg
    def sub(m):
        return m.group(1) + prefix + "-" + m.group(2) + m.group(3) if m.group(2) in ids else m.group(0)
    return re.sub(r'(\bid="|href="#|url\(#)([^")]+)([")])', sub, svg)


def _colours(strategies: list[str]) -> dict[str, tuple]:
    from .style import strategy_colours

    return strategy_colours(list(strategies))


def splits_in(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["split"]))
    return [s for s in SPLIT_ORDER if s in present] + [s for s in present if s not in SPLIT_ORDER]


def auc_curves(auc: pd.DataFrame, strategies: list[str], title: str, threshold: float | None = 0.9,
               *, as_figure: bool = False):
    """AUC vs epoch: the mean over seeds per strategy, with a ±1 s.d. band when there are several seeds.

    Args:
        auc: ``metrics.csv`` rows of one task and head with ``metric == "auc"``.
        strategies: drawing order (and colour assignment).
    """
    splits = splits_in(auc)
    fig = Figure(figsize=(5.2 * len(splits) + 2.2, 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharey=True, squeeze=False)[0])
    colours = _colours(strategies)
    for ax, split in zip(axes, splits):
        d = auc[auc["split"] == split]
        for s in strategies:
            g = d[d["strategy"] == s]
            if g.empty:
                continue
            stats = g.groupby("epoch")["value"].agg(["mean", "std", "count"])
            ax.plot(stats.index, stats["mean"], color=colours[s], lw=1.4, label=s)
            if stats["count"].max() > 1:
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                color=colours[s], alpha=0.15, lw=0)
        if threshold is not None:
            ax.axhline(threshold, color="0.3", ls="--", lw=0.8)
        ax.set_title(SPLIT_TITLES.get(split, split))
        ax.set_xlabel("head-training epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROC-AUC")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # strategies drawn only on a later panel still get a legend entry
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig if as_figure else _png(fig)


def robustness_boxplot(auc: pd.DataFrame, strategies: list[str], title: str,
                       dev_split: str = "test", external_split: str = "external", *, as_figure: bool = False):
    """Per-epoch AUC of every strategy on the development and external splits, side by side.

    Each box pools every epoch of every seed; whiskers at the 1 % and 99 % quantiles
    (``boxplot(whis=(1, 99))``, as in Mehmood et al., Figs 11–12).
    """
    splits = [s for s in (dev_split, external_split) if s in set(auc["split"])]
    present = [s for s in strategies if s in set(auc["strategy"])]
    fig = Figure(figsize=(max(6.0, 0.9 * len(present) + 2.0), 4.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(splits), 1)
    face = {dev_split: "#4C72B0", external_split: "#DD8452"}
    for j, split in enumerate(splits):
        data, pos = [], []
        for i, s in enumerate(present):
            v = auc[(auc["split"] == split) & (auc["strategy"] == s)]["value"].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size:
                data.append(v)
                pos.append(i + (j - (len(splits) - 1) / 2) * width)
        if not data:
            continue
        bp = ax.boxplot(data, positions=pos, widths=width * 0.9, whis=(1, 99), patch_artist=True,
                        flierprops=dict(markersize=2, alpha=0.5), medianprops=dict(color="black"))
        for patch in bp["boxes"]:
            patch.set_facecolor(face.get(split, "0.7"))
            patch.set_alpha(0.8)
        ax.plot([], [], "s", color=face.get(split, "0.7"), label=SPLIT_TITLES.get(split, split))
    ax.set_xticks(range(len(present)), present, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("ROC-AUC per epoch")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize=8, loc="outside right center", frameon=False)
    fig.suptitle(title + " (whiskers: 1st–99th percentile)")
    return fig if as_figure else _png(fig)


#: the cost axes of the Pareto plot: (column of the points table, axis label)
COST_AXES = (("kwh", "whole cost per strategy: energy (kWh)"), ("trainable", "trainable parameters (largest phase)"),
             ("latency_ms", "inference latency per image (ms)"))


def pareto_plot(points: pd.DataFrame, title: str, splits: list[str], *, budget_kwh: float | None = None,
                axes_spec=COST_AXES, as_figure: bool = False):
    """AUC against each cost with the Pareto front (cheaper and better is up-left) and the budget.

    Args:
        points: one row per strategy with ``strategy``, the cost columns of ``axes_spec`` (default
            ``kwh``, ``trainable``, ``latency_ms``; a column that is absent or all NaN is left out)
            and one AUC column per split named ``auc_<split>``.
        splits: the splits to draw, one row of panels each (the external set first).
        budget_kwh: the user's energy budget: a vertical line on the energy panels, points right of
            it are over budget.
        as_figure: return the ``Figure`` instead of PNG bytes.
    """
    costs = [(c, lab) for c, lab in axes_spec if c in points and np.isfinite(points[c].to_numpy(float)).any()]
    fig = Figure(figsize=(4.4 * max(len(costs), 1) + 2.4, 3.6 * len(splits)), layout="constrained")
    axes = fig.subplots(len(splits), max(len(costs), 1), squeeze=False)
    colours = _colours(list(points["strategy"]))
    handles: dict[str, object] = {}
    for r, split in enumerate(splits):
        y = points[f"auc_{split}"].to_numpy(float)
        for c_i, (cost, label) in enumerate(costs):
            ax = axes[r, c_i]
            x = points[cost].to_numpy(float)
            front = pareto_front(x, y)
            for k, s in enumerate(points["strategy"]):
                if not (np.isfinite(x[k]) and np.isfinite(y[k])):
                    continue
                h = ax.scatter(x[k], y[k], color=colours[s], s=52 if front[k] else 30,
                               edgecolor="black" if front[k] else "none", linewidth=1.0, zorder=3, label=s)
                handles.setdefault(s, h)
                ax.annotate(s, (x[k], y[k]), fontsize=6, xytext=(3, 3), textcoords="offset points", color="0.25")
            if front.any():
                order = np.argsort(x[front])
                handles["Pareto front"] = ax.step(x[front][order], y[front][order], where="post", color="0.2",
                                                  lw=1, ls="--", zorder=2)[0]
            if cost == "kwh" and budget_kwh is not None and np.isfinite(budget_kwh):
                handles["budget"] = ax.axvline(budget_kwh, color="#b22222", lw=1.2, ls=":", zorder=1)
            pos = x[np.isfinite(x) & (x > 0)]
            if pos.size and pos.max() / pos.min() > 20:
                if (x[np.isfinite(x)] <= 0).any():
                    ax.set_xscale("symlog", linthresh=float(pos.min()))
                else:
                    ax.set_xscale("log")
            ax.margins(0.12)  # room for the labels of the extreme points
            ax.set_xlabel(label)
            ax.set_ylabel(f"final AUC, {SPLIT_TITLES.get(split, split)}")
            ax.grid(alpha=0.3)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=7, frameon=False)
    fig.suptitle(title)
    return fig if as_figure else _png(fig)
