"""The report as a list of sections, each built from the run directory's tables.

:class:`ReportContext` holds what several sections need — the run's files, the strategy order,
the AUC threshold, the summaries of ``metrics.csv`` and the per-strategy costs — computed once.
A section is a function ``(ctx) -> html`` registered with :func:`section` under a position; a
new step kind that writes new rows adds its own section module without touching the others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from ..registry import Registry
from ._io import RunFiles
from .html import Figures, _e, _json, _table

__all__ = ["ReportContext", "SECTIONS", "Section", "section", "DEFAULT_THRESHOLD"]

log = logging.getLogger("medapt.report")
DEFAULT_THRESHOLD = 0.9  # Mehmood et al.


@dataclass(frozen=True)
class Section:
    """A report section: its position on the page (ascending) and the function that writes it."""

    position: int
    write: Callable[["ReportContext"], str]


#: the report's sections by name; the page shows them by ``position``
SECTIONS: Registry[Section] = Registry("report section")


def section(name: str, position: int):
    """Decorator: register ``fn(ctx) -> html`` as the section ``name`` at ``position``."""
    def deco(fn):
        SECTIONS.register(name, Section(position, fn))
        return fn
    return deco


def threshold_of(config: dict | None) -> float:
    for section in ("evaluation", "downstream", "evaluate"):
        sec = (config or {}).get(section)
        if isinstance(sec, dict) and isinstance(sec.get("threshold"), (int, float)):
            return float(sec["threshold"])
    t = (config or {}).get("threshold")
    return float(t) if isinstance(t, (int, float)) else DEFAULT_THRESHOLD


def _energy_table(rf: RunFiles) -> tuple[str | None, str]:
    """The Green Algorithms constant table of the run's estimates, and where that was read.

    From ``cost.energy_table`` in ``config.yaml``; for a run directory written before that
    setting existed, from the ``(table …)`` its ``energy_note`` names.
    """
    cost = (rf.config or {}).get("cost")
    if isinstance(cost, dict) and cost.get("energy_table"):
        return str(cost["energy_table"]), "cost.energy_table in config.yaml"
    if rf.costs is not None and "energy_note" in rf.costs:
        found = sorted({m for n in rf.costs["energy_note"].astype(str) for m in re.findall(r"\(table ([\w.]+)\)", n)})
        if found:
            return ", ".join(found), "energy_note in costs.csv"
    return None, ""


def _table_sentence(rf: RunFiles) -> str:
    table, where = _energy_table(rf)
    if table is None:
        return "The Green Algorithms constant table of any estimate is not recorded in this run directory."
    paper = {"v1.1": " (the constants of Mehmood et al.'s Table B1)",
             "latest": " (the calculator's later constants, not those of Mehmood et al.'s Table B1)"}.get(table, "")
    return (f"Green Algorithms estimates (<code>estimated-green-algorithms</code>) use constant table "
            f"<b>{_e(table)}</b>{paper}, from {_e(where)}.")


def _slice_level_datasets(config: dict | None) -> list[str]:
    """Datasets of the run's ``config.yaml`` that are split without patient ids, in words.

    Only the datasets that get a train/test split (the source and each target's ``dataset``; an
    external set is never split). A MedMNIST file keeps its published split by default.
    """
    from ..data.spec import patient_id_source

    data = (config or {}).get("data")
    if not isinstance(data, dict):
        return []
    named = [("source", data.get("source"))]
    targets = data.get("targets")
    if isinstance(targets, dict):
        named += [(str(task), t.get("dataset")) for task, t in targets.items() if isinstance(t, dict)]
    out = []
    for name, spec in named:
        if not isinstance(spec, dict) or patient_id_source(spec) is not None:
            continue
        fmt = spec.get("format")
        if fmt == "medmnist" and spec.get("use_published_split", True):
            continue
        if fmt == "folder" and spec.get("use_published_split"):
            out.append(f"dataset <b>{_e(name)}</b> (format folder) keeps its published split, and has no patient ids "
                       "(no <code>patient_regex</code>) to check that the split does not put one patient's slices "
                       "on both sides.")
            continue
        fix = {"folder": "patient_regex", "csv": "patient_column or patient_regex"}.get(fmt)
        out.append(f"dataset <b>{_e(name)}</b> (format {_e(fmt)}) has no patient ids"
                   + (f" (no <code>{_e(fix)}</code> in config.yaml)" if fix else "")
                   + ": its train/test split is slice-level, so slices of one patient can be in both, and its test "
                     "AUCs may be optimistic.")
    return out


def feature_protocol(config: dict | None) -> str:
    """How the frozen-feature heads saw their features, from ``downstream.standardize`` in ``config.yaml``."""
    down = (config or {}).get("downstream")
    if not isinstance(down, dict) or "standardize" not in down:
        return ("Heads were trained on z-scored GAP features (this run directory predates "
                "<code>downstream.standardize</code>; medapt always standardised then).")
    if down["standardize"]:
        return ("Heads were trained on GAP features z-scored with the training split's mean and standard deviation "
                "(<code>downstream.standardize: true</code>; Mehmood et al. use the raw features).")
    return ("Heads were trained on the raw GAP features, as Mehmood et al. feed them "
            "(<code>downstream.standardize: false</code>).")


def strategy_order(rf: RunFiles) -> list[str]:
    names: list[str] = []
    cfg_strats = (rf.config or {}).get("strategies")
    if isinstance(cfg_strats, list):
        names += [s if isinstance(s, str) else str(s.get("name", "")) if isinstance(s, dict) else str(s) for s in cfg_strats]
    for df in (rf.metrics, rf.costs, rf.inference):
        if df is not None and "strategy" in df:
            names += list(df["strategy"].astype(str))
    return [n for n in dict.fromkeys(names) if n]



@dataclass
class ReportContext:
    """What the sections share: the run's files, the figures folder, order, threshold, summaries."""

    rf: RunFiles
    figs: Figures
    threshold: float
    order: list[str] = field(default_factory=list)
    #: the user's budget (:class:`medapt.report.recommend.Budget`; ``None``: none)
    budget: object = None
    #: embed the interactive (Vega-Lite) Pareto chart (``--interactive`` / ``report.interactive``)
    interactive: bool = False
    #: footnotes of the page, key → html, numbered in order of first use (:meth:`footnote`)
    footnotes: dict = field(default_factory=dict)

    def footnote(self, key: str, html: str) -> str:
        """Register a note shown once at the end of the page; returns its marker (``<sup>n</sup>``)."""
        self.footnotes.setdefault(key, html)
        n = list(self.footnotes).index(key) + 1
        return f'<sup class="fn"><a href="#fn-{_e(key)}">{n}</a></sup>'

    @cached_property
    def whole_costs(self) -> pd.DataFrame | None:
        """:func:`medapt.report.whole_cost.whole_costs` of ``costs.csv`` — ``None`` without it."""
        from .whole_cost import whole_costs

        return None if self.rf.costs is None else whole_costs(self.rf.costs, self.order)

    @cached_property
    def ranking(self) -> pd.DataFrame:
        """:func:`medapt.report.recommend.ranking`: strategies by external AUC, per task."""
        from .recommend import ranking

        if self.summ is None or not len(self.summ):
            from .recommend import RANK_COLUMNS

            return pd.DataFrame(columns=RANK_COLUMNS)
        return ranking(self.summ, self.whole_costs, self.rf.predictions, self.rf.config, self.budget)

    @cached_property
    def recommendation(self) -> pd.DataFrame:
        """:func:`medapt.report.recommend.recommendation` of :attr:`ranking` under :attr:`budget`."""
        from .recommend import recommendation

        return recommendation(self.ranking, self.budget)

    @cached_property
    def results(self):
        """(summary tables html, summarize() table, aggregated over seeds) — ``None`` without metrics."""
        from .results import summary_tables

        return None if self.rf.metrics is None else summary_tables(self.rf, self.order, self.threshold)

    @property
    def summ(self) -> pd.DataFrame | None:
        return None if self.results is None else self.results[1]

    @property
    def agg(self) -> pd.DataFrame | None:
        return None if self.results is None else self.results[2]

    @cached_property
    def dip(self) -> pd.DataFrame:
        from ..evaluate.summary import external_dip

        return external_dip(self.summ) if self.summ is not None and len(self.summ) else pd.DataFrame()

    @cached_property
    def strategy_costs(self) -> pd.DataFrame | None:
        from .costs import strategy_costs

        return None if self.rf.costs is None else strategy_costs(self.rf.costs, self.rf.inference, self.order)


@section("run", 100)
def run_section(ctx: ReportContext) -> str:
    from .templating import render

    rf = ctx.rf
    env_table = ""
    if rf.environment is not None:
        env = pd.DataFrame([(k, v if not isinstance(v, (dict, list)) else _json(v)) for k, v in rf.environment.items()],
                           columns=["key", "value"])
        env_table = _table(env, left=("key", "value"))
    return render("run.html.j2", env_table=env_table, config_text=rf.config_text)
