"""``build_report``: one self-contained HTML report (plus ``figures/*.png``) from a run directory.

The report is rebuilt from the run directory's files alone (docs/run-directory.md), never by
re-running anything (DESIGN §11). It is the list of registered sections
(:data:`medapt.report.sections.SECTIONS`) in order; a section whose input file is missing says so.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

from ..atomic import atomic_write_bytes
from . import cost_sections, decision, finetune, interactive, results  # noqa: F401  (each registers its sections)
from . import study  # noqa: F401,E402  (study and multi-label sections)
from . import search as _search_sections  # noqa: F401  (search, similarity: issue 12)
from . import projection  # noqa: F401  (projected vs actual seconds, when a dry run projected)
from ._io import load_run
from .html import _SCRIPT, Figures
from .sections import DEFAULT_THRESHOLD, SECTIONS, ReportContext, strategy_order, threshold_of
from .templating import css, render

__all__ = ["build_report", "recommendation_table", "DEFAULT_THRESHOLD"]

log = logging.getLogger(__name__)


def _context(run_dir: Path, out: Path, threshold: float | None, budget, interactive: bool | None = None) -> ReportContext:
    from .recommend import budget_of

    rf = load_run(Path(run_dir))
    if interactive is None:
        rep = (rf.config or {}).get("report")
        interactive = bool(rep.get("interactive")) if isinstance(rep, dict) else False
    return ReportContext(rf, Figures(out.parent / "figures"),
                         float(threshold) if threshold is not None else threshold_of(rf.config), strategy_order(rf),
                         budget=budget_of(rf.config, budget), interactive=interactive)


def recommendation_table(run_dir: Path, budget=None, *, threshold: float | None = None):
    """The recommendation of a run directory as a DataFrame, without writing anything.

    One row per task and role (``best``, ``within budget`` or ``cheapest (no strategy fits the
    budget)``, ``cheapest not significantly worse``) with ``strategy``, ``auc`` (external, or the
    development test split for a task without an external set) and its CI, ``kwh``, ``seconds``
    (whole standalone cost, mean over seeds), ``p_vs_best``, ``n_seeds`` and the ``sentence``
    the report shows. ``budget``: ``"0.5kWh"``, ``"2h"``, … (:func:`medapt.report.recommend.parse_budget`),
    over ``report.budget_kwh`` / ``report.budget_hours`` of ``config.yaml``.

    >>> recommendation_table("demo-run", "0.5kWh")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    ctx = _context(run_dir, run_dir / "report.html", threshold, budget)
    return ctx.recommendation


def build_report(run_dir: Path, out: Path | None = None, *, threshold: float | None = None,
                 budget=None, interactive: bool | None = None) -> Path:
    """Write ``report.html`` (self-contained) and ``figures/*.png`` from a run directory.

    Args:
        run_dir: a run directory (docs/run-directory.md). Only its files are read:
            ``metrics.csv`` (or ``metrics.parquet``), ``predictions.csv``, ``costs.csv``,
            ``inference.csv``, ``config.yaml``, ``environment.json``; any may be missing, and the
            section that needs it then says so.
        out: the HTML file to write (default ``run_dir/report.html``); figures go to
            ``figures/`` beside it.
        threshold: AUC threshold for "epochs/seconds to threshold" (default: the config's
            ``evaluation.threshold`` if present, else 0.9 as in Mehmood et al.).
        budget: the user's budget per strategy, ``"0.5kWh"``, ``"2h"``, ``"1kWh,3h"`` or a
            :class:`~medapt.report.recommend.Budget` (default: ``report.budget_kwh`` /
            ``report.budget_hours`` of ``config.yaml``, else none).
        interactive: embed an interactive, offline Vega-Lite AUC-vs-energy chart (needs the
            ``interactive`` extra; default: ``report.interactive`` of ``config.yaml``, else no).

    Returns:
        The path of the written report. Every file is written atomically (temporary name in the
        same folder, then renamed). Figures are inline SVG (``figures/*.png`` at 200 dpi beside
        it); the page loads no external CSS, script or image. ``recommendation.csv`` (the
        recommendation as a table, :func:`recommendation_table`) is written beside the report.

    Raises:
        RunDirError: ``run_dir`` is not a run directory. CorruptFileError / MissingFieldError:
        a table cannot be read or lacks columns (the message names the file).

    >>> build_report(Path("demo-run"))  # doctest: +SKIP
    PosixPath('demo-run/report.html')
    """
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    ctx = _context(Path(run_dir), out, threshold, budget, interactive)
    rf = ctx.rf
    name = (rf.config or {}).get("name") or rf.run_dir.resolve().name
    sections = []
    for _, sec in sorted(SECTIONS.items(), key=lambda kv: kv[1].position):
        html = sec.write(ctx)
        if html:
            sections.append(html)
    page = render("page.html.j2", name=name, run_dir=str(rf.run_dir), css=css(), script=_SCRIPT,
                  written=_dt.datetime.now().astimezone().isoformat(timespec="seconds"), missing=rf.missing,
                  sections=sections, footnotes=[{"key": k, "html": v} for k, v in ctx.footnotes.items()])
    atomic_write_bytes(out, page.encode("utf-8"))
    # always written (header only when nothing can be recommended), so an old file never outlives its report
    atomic_write_bytes(out.parent / "recommendation.csv", ctx.recommendation.to_csv(index=False).encode("utf-8"))
    log.info("report: %s (%d figures in %s)", out, len(ctx.figs.written), ctx.figs.folder)
    return out
