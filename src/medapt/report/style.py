"""Colours of the report's figures: one hue per strategy family, its members as shades of it.

The family comes from the strategy registry (``Strategy.family``: baseline, full DAPT, partial DAPT,
hybrid DAPT (PFT), simplified + DAPT (TF), …); a name the registry does not know (a custom strategy
of an old run directory) is placed by its spelling (``_PFT``, ``_TF_``, ``TTL``, ``DA_L``, ``DA``,
``ImageNet``), else in "other". Hues are fixed per family, so a family keeps its colour in every
figure and every report.
"""

from __future__ import annotations

import re

__all__ = ["family_of", "strategy_colours", "FAMILY_CMAPS"]

#: family → matplotlib sequential colormap (its hue); members are shades from light to dark
FAMILY_CMAPS = {
    "baseline": "Greys",
    "full DAPT": "Blues",
    "partial DAPT": "Greens",
    "hybrid DAPT": "Purples",
    "simplified + DAPT": "Oranges",
    "simplified baseline": "YlOrBr",
    "TruncatedTL": "Reds",
    "fine-tuning": "PuRd",
    "linear probe": "BuGn",
    "scratch": "YlGn",
}
_SPARE = ("RdPu", "GnBu", "OrRd", "PuBu", "YlGnBu")


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
    """Strategy → RGBA: each family one hue (:data:`FAMILY_CMAPS`), members as shades in list order."""
    from matplotlib import colormaps

    fams: dict[str, list[str]] = {}
    for s in dict.fromkeys(strategies):
        fams.setdefault(family_of(s), []).append(s)
    out, spare = {}, iter(_SPARE)
    for fam, members in fams.items():
        cmap = colormaps[FAMILY_CMAPS.get(fam) or next(spare, "Greys")]
        n = len(members)
        for i, s in enumerate(members):
            # shades from mid to dark: the lightest end of a sequential map is too pale on white
            out[s] = cmap(0.75 if n == 1 else 0.5 + 0.45 * i / (n - 1))
    return out
