"""Jinja2 templates of the report (``report/templates/``, package data): the page, one template per
section, the figure block and the stylesheet ``report.css``.

Sections render their template with :func:`render`; a section may still return an HTML string
built otherwise (the :func:`medapt.report.sections.section` API is unchanged). Autoescaping is on:
values are escaped unless a template marks them ``| safe`` (the pre-built tables and figures).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["render", "css"]


@lru_cache(maxsize=1)
def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("medapt.report", "templates"),
                              autoescape=jinja2.select_autoescape(("html", "j2")),
                              trim_blocks=False, lstrip_blocks=False, undefined=jinja2.StrictUndefined)


def render(template: str, **values) -> str:
    """Render ``templates/<template>`` (e.g. ``"recommendation.html.j2"``) with ``values``."""
    return _env().get_template(template).render(**values)


@lru_cache(maxsize=1)
def css() -> str:
    """The report's stylesheet (``templates/report.css``), inlined into the page."""
    return resources.files("medapt.report").joinpath("templates/report.css").read_text(encoding="utf-8")
