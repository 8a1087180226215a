"""Colours of the report's figures: one hue per strategy family, its members as shades of it.

The family comes from the strategy registry (``Strategy.family``: baseline, full DAPT, partial DAPT,
hybrid DAPT (PFT), simplified + DAPT (TF), …); a name the registry does not know (a custom strategy
of an old run directory) is placed by its spelling (``_PFT``, ``_TF_``, ``TTL``, ``DA_L``, ``DA``,
``ImageNet``), else in "other". Hues are fixed per family, so a family keeps its colour in every
figure and every report.
"""

from __future__ import annotations

import re

__all__ = ["family_of", "strategy_colours", "FAMILY_COLOURS"]

#: family → its hue (a base colour; members are lighter and darker shades of it)
FAMILY_COLOURS = {
    "baseline": "#4d4d4d",            # ImageNet: grey
    "full DAPT": "#1f77b4",           # DA: blue
    "partial DAPT": "#2ca02c",        # DA_L*SB: green
    "hybrid DAPT": "#9467bd",         # *_PFT: purple
    "simplified + DAPT": "#ff7f0e",   # DA_TF_*: orange
    "simplified baseline": "#8c564b", # ImageNet_TF_*: brown
    "TruncatedTL": "#d62728",         # TTL: red
    "fine-tuning": "#e377c2",         # FTL: pink
    "linear probe": "#17becf",        # cyan
    "scratch": "#bcbd22",             # olive
}
FAMILY_CMAPS = FAMILY_COLOURS  # the name of the first version of this table
_SPARE = ("#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def _by_spelling(name: str) -> str:
    if "PFT" in name:
        return "hybrid DAPT"
    if re.search(r"(^|_)TF(_|$)", name):
        return "simplified + DAPT" if name.startswith("DA") else "simplified baseline"
    if name.startswith("TTL"):
        return "TruncatedTL"
    if name.startswith("DA_L"):
        return "partial DAPT"
    if name.startswith("DA"):
        return "full DAPT"
    if name.startswith("ImageNet"):
        return "baseline"
    return "other"


def family_of(name: str) -> str:
    """The family of a strategy name: the registry's, else guessed from the name (see module doc)."""
    try:
        from ..strategies import STRATEGIES

        fam = str(STRATEGIES.get(name).family)
    except Exception:  # an unknown or custom name: the registry raises UnknownNameError and kin
        return _by_spelling(name)
    if fam.lower().startswith("truncated") or name.startswith("TTL"):
        return "TruncatedTL"
    return fam


def strategy_colours(strategies: list[str]) -> dict[str, tuple]:
    """Strategy → RGBA: each family one hue (:data:`FAMILY_COLOURS`), its members as shades of it from
    darker to lighter, in list order."""
    import colorsys

    from matplotlib.colors import to_rgb

    fams: dict[str, list[str]] = {}
    for s in dict.fromkeys(strategies):
        fams.setdefault(family_of(s), []).append(s)
    out, spare = {}, iter(_SPARE)
    for fam, members in fams.items():
        h, light, sat = colorsys.rgb_to_hls(*to_rgb(FAMILY_COLOURS.get(fam) or next(spare, "#7f7f7f")))
        n = len(members)
        for i, s in enumerate(members):
            # lightness spread around the base, kept readable on white (0.25 … 0.68)
            lv = light if n == 1 else min(0.68, max(0.25, light - 0.16 + 0.36 * i / (n - 1)))
            out[s] = (*colorsys.hls_to_rgb(h, lv, sat), 1.0)
    return out
