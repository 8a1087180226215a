"""HTML building blocks of the report: page style, escaping, number formats, tables, figures."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
     padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}h3{margin-top:1.4rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;vertical-align:top;white-space:nowrap}
td.l{white-space:normal}.scroll{overflow-x:auto}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.total td{font-weight:600;background:#fafafa}
.estimate{color:#9a4d00}.measured{color:#1b6e20}.best{font-weight:700}
.missing{background:#fff4e5;border-left:4px solid #f0a020;padding:.4rem .8rem}
.note{color:#555;font-size:.85rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#444}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem}
.summary{background:#eef5ff;border-left:4px solid #3a78c2;padding:.5rem 1rem}
"""

# counts the <img> elements that decoded (naturalWidth > 0) and writes it into the page, so a
# headless browser's --dump-dom shows whether every figure rendered
_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  var el = document.getElementById('render-check');
  el.setAttribute('data-loaded', ok); el.setAttribute('data-total', imgs.length);
  el.textContent = ok + ' of ' + imgs.length + ' figures rendered in this browser.';
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
