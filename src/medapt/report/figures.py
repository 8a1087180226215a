"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

* :func:`auc_curves` — AUC vs epoch per strategy, one panel per split (Mehmood et al., Figs 5–10).
* :func:`robustness_boxplot` — per-epoch AUC, development vs external, whiskers at the 1 % and
  99 % quantiles (Figs 11–12).
* :func:`pareto_plot` — AUC vs cost (parameters, kWh, seconds) with the Pareto front (Fig. B1).

Each returns PNG bytes.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .costs import pareto_front

__all__ = ["auc_curves", "robustness_boxplot", "pareto_plot", "SPLIT_ORDER"]

SPLIT_ORDER = ("test", "val", "external")
SPLIT_TITLES = {"test": "development test split", "val": "validation split", "external": "external set"}
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _colours(strategies: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(strategies) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(strategies)}


def splits_in(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["split"]))
    return [s for s in SPLIT_ORDER if s in present] + [s for s in present if s not in SPLIT_ORDER]


def auc_curves(auc: pd.DataFrame, strategies: list[str], title: str, threshold: float | None = 0.9) -> bytes:
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
    return _png(fig)


def robustness_boxplot(auc: pd.DataFrame, strategies: list[str], title: str,
                       dev_split: str = "test", external_split: str = "external") -> bytes:
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
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title + " (whiskers: 1st–99th percentile)")
    return _png(fig)


COST_AXES = (("params", "parameters of the final model"), ("kwh", "pre-training energy (kWh)"),
             ("seconds", "pre-training time (s)"))


def pareto_plot(points: pd.DataFrame, title: str, splits: list[str]) -> bytes:
    """AUC against each cost with the Pareto front (cheaper and better is up-left).

    Args:
        points: one row per strategy with ``strategy``, cost columns ``params``, ``kwh``,
            ``seconds`` and one AUC column per split named ``auc_<split>``.
        splits: the splits to draw, one row of panels each.
    """
    costs = [(c, lab) for c, lab in COST_AXES if c in points and np.isfinite(points[c].to_numpy(float)).any()]
    fig = Figure(figsize=(4.6 * max(len(costs), 1), 3.8 * len(splits)), layout="constrained")
    axes = fig.subplots(len(splits), max(len(costs), 1), squeeze=False)
    colours = _colours(list(points["strategy"]))
    for r, split in enumerate(splits):
        y = points[f"auc_{split}"].to_numpy(float)
        for c_i, (cost, label) in enumerate(costs):
            ax = axes[r, c_i]
            x = points[cost].to_numpy(float)
            front = pareto_front(x, y)
            for k, s in enumerate(points["strategy"]):
                if not (np.isfinite(x[k]) and np.isfinite(y[k])):
                    continue
                ax.scatter(x[k], y[k], color=colours[s], s=46 if front[k] else 26,
                           edgecolor="black" if front[k] else "none", zorder=3)
                ax.annotate(s, (x[k], y[k]), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
            if front.any():
                order = np.argsort(x[front])
                ax.step(x[front][order], y[front][order], where="post", color="0.2", lw=1, ls="--", zorder=2,
                        label="Pareto front")
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
            if r == 0 and c_i == 0 and front.any():
                ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    return _png(fig)
