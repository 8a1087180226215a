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
from . import cost_sections, finetune, results  # noqa: F401  (each registers its sections)
from . import study  # noqa: F401,E402  (study and multi-label sections)
from . import search as _search_sections  # noqa: F401  (search, similarity: issue 12)
from . import projection  # noqa: F401  (projected vs actual seconds, when a dry run projected)
from ._io import load_run
from .html import _CSS, _SCRIPT, Figures, _e
from .sections import DEFAULT_THRESHOLD, SECTIONS, ReportContext, strategy_order, threshold_of

__all__ = ["build_report", "DEFAULT_THRESHOLD"]

log = logging.getLogger(__name__)


def build_report(run_dir: Path, out: Path | None = None, *, threshold: float | None = None) -> Path:
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

    Returns:
        The path of the written report. Every file is written atomically (temporary name in the
        same folder, then renamed). Figures are embedded as base64 PNG data URIs; the page loads
        no external CSS, script or image.

    Raises:
        RunDirError: ``run_dir`` is not a run directory. CorruptFileError / MissingFieldError:
        a table cannot be read or lacks columns (the message names the file).

    >>> build_report(Path("demo-run"))  # doctest: +SKIP
    PosixPath('demo-run/report.html')
    """
    rf = load_run(Path(run_dir))
    out = Path(out) if out is not None else rf.run_dir / "report.html"
    ctx = ReportContext(rf, Figures(out.parent / "figures"),
                        float(threshold) if threshold is not None else threshold_of(rf.config), strategy_order(rf))
    name = (rf.config or {}).get("name") or rf.run_dir.resolve().name
    body: list[str] = [f"<h1>medapt report — {_e(name)}</h1>",
                       f'<p class="note">Run directory <code>{_e(rf.run_dir)}</code>; report written '
                       f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}. "
                       '<span id="render-check">Figures not yet checked.</span></p>']
    if rf.missing:
        body.append(f'<p class="note">Files not in this run directory: {_e(", ".join(rf.missing))}.</p>')
    for _, sec in sorted(SECTIONS.items(), key=lambda kv: kv[1].position):
        html = sec.write(ctx)
        if html:
            body.append(html)
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>medapt report — {_e(name)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + _SCRIPT + "</body></html>\n")
    atomic_write_bytes(out, page.encode("utf-8"))
    log.info("report: %s (%d figures in %s)", out, len(ctx.figs.written), ctx.figs.folder)
    return out
