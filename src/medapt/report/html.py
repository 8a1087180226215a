"""HTML building blocks of the report: page style, escaping, number formats, tables, figures."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes

def __getattr__(name):  # _CSS: the stylesheet now lives in templates/report.css
    if name == "_CSS":
        from .templating import css

        return css()
    raise AttributeError(name)


# counts the figures that rendered — an <img> that decoded (naturalWidth > 0) or an inline <svg>
# laid out with a size and drawn content — and writes it into the page, so a headless browser's
# --dump-dom shows whether every figure rendered
_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var figs = document.querySelectorAll('figure'), ok = 0;
  for (var i = 0; i < figs.length; i++) {
    var img = figs[i].querySelector('img'), svg = figs[i].querySelector('svg');
    if (img && img.complete && img.naturalWidth > 0) { ok++; continue; }
    if (svg && svg.getBoundingClientRect().width > 0 && svg.querySelector('path, use, text')) ok++;
  }
  var el = document.getElementById('render-check');
  el.setAttribute('data-loaded', ok); el.setAttribute('data-total', figs.length);
  el.textContent = ok + ' of ' + figs.length + ' figures rendered in this browser.';
});
</script>
"""


def _e(x) -> str:
    return html.escape(str(x))


def _slug(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", str(p)).strip("-") or "x" for p in parts)


def _fmt(v, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer() and abs(v) >= 1000:
            return f"{int(v):,}"
        if v == 0:
            return "0"
        if abs(v) < 10 ** -digits or abs(v) >= 1e6:
            return f"{v:.{digits}g}" if abs(v) < 1e6 else f"{v:.4g}"
        return f"{v:.{digits}f}"
    return str(v)


def _hms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "—"
    s = float(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{sec:05.2f}"


def _table(df: pd.DataFrame, left: tuple[str, ...] = (), fmt: dict | None = None, row_class=None,
           cell_class=None) -> str:
    fmt = fmt or {}
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in df.columns)
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        cls = row_class(r) if row_class else ""
        cells = []
        for c in df.columns:
            v = r[c]
            txt = fmt[c](v) if c in fmt else _e(_fmt(v))
            extra = cell_class(c, r) if cell_class else ""
            klass = " ".join(k for k in ("l" if c in left else "", extra) if k)
            cells.append(f'<td class="{klass}">{txt}</td>')
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _missing(msg: str) -> str:
    return f'<p class="missing">{_e(msg)}</p>'


class Figures:
    """Writes each PNG atomically under ``figures/`` and returns its embedded <figure>."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[Path] = []

    def add(self, name: str, png: bytes, caption: str) -> str:
        path = self.folder / f"{name}.png"
        atomic_write_bytes(path, png)
        self.written.append(path)
        data = base64.b64encode(png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}" '
                f'data-file="figures/{_e(path.name)}"><figcaption>{_e(caption)}</figcaption></figure>')


    def add_figure(self, name: str, fig, caption: str) -> str:
        """Write ``figures/<name>.png`` at :data:`medapt.report.figures.DPI` (≥ 200 dpi) and return the
        figure block with the same drawing inline as SVG (vector, no external file)."""
        from . import figures as F
        from .templating import render

        png, svg = F.png_and_svg(fig, salt=name)
        path = self.folder / f"{name}.png"
        atomic_write_bytes(path, png)
        self.written.append(path)
        return render("figure.html.j2", file=path.name, svg=svg, caption=caption, dpi=F.DPI)


def fmt_energy(kwh, sig: int = 3) -> str:
    """Energy with ``sig`` significant figures and its unit: ``1.50 kWh``, ``0.0123 kWh``, ``0.456 Wh``.

    Never ``0.00``: a small figure moves to a smaller unit instead of rounding to zero; exactly 0
    is ``0 kWh``; NaN is ``—``.
    """
    if kwh is None or kwh is pd.NA:
        return "—"
    v = float(kwh)
    if not np.isfinite(v):
        return "—"
    v = float(f"{v:.{sig}g}")  # round first, so 0.0009996 is 1.00 Wh and not 1,000 mWh
    if v == 0:
        return "0 kWh"
    # kWh down to 1 Wh (0.00100 kWh), then Wh and mWh: the unit changes only for figures that
    # would otherwise need many leading zeros
    for limit, scale, unit in ((1e-3, 1.0, "kWh"), (1e-6, 1e-3, "Wh"), (0.0, 1e-6, "mWh")):
        if abs(v) >= limit:
            x = v / scale
            digits = max(sig - 1 - int(np.floor(np.log10(abs(x)))), 0)
            return f"{x:,.{digits}f} {unit}"


def fmt_hours(seconds) -> str:
    """Seconds as hours with 3 significant figures (``0.0125 h``, ``2.50 h``); NaN is ``—``."""
    if seconds is None or seconds is pd.NA or not np.isfinite(float(seconds)):
        return "—"
    h = float(seconds) / 3600
    if h == 0:
        return "0 h"
    digits = max(2 - int(np.floor(np.log10(abs(h)))), 0)
    return f"{h:,.{digits}f} h"


def _time_cell(median, reached, n, digits) -> str:
    """Censored median time to the threshold and how many seeds reached it."""
    txt = f"{median:.{digits}f}" if np.isfinite(median) else "not reached"
    return txt if n == 1 else f"{txt}<br><span class=note>reached {int(reached)} of {int(n)} seeds</span>"


def _cell(mean, std, lo, hi, n, digits=3) -> str:
    if not np.isfinite(mean):
        return "—"
    txt = f"{mean:.{digits}f}"
    if n > 1 and np.isfinite(std):
        txt += f" ± {std:.{digits}f}"
        if np.isfinite(lo):
            txt += f"<br><span class=note>[{lo:.{digits}f}, {hi:.{digits}f}]</span>"
    return txt


def _json(v) -> str:
    import json

    return json.dumps(v, default=str)
