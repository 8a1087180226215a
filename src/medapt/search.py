"""Cut-point search, the public API (``medapt.search``; docs/search.md).

::

    import medapt.search
    out = medapt.search.run("examples/search.yaml", method="probe", out="runs/search")
    out["chosen"]          # {"probe": "TTL@6"}; search.csv, report.html in out["run_dir"]

``run`` is :func:`medapt.suite.search.run_search`; the methods are :data:`METHODS` (``ttl``,
``probe``, ``svcca``, ``lwft``). The library functions behind them (features at every cut point,
the linear probe, the SVCCA detection) are in :mod:`medapt.analysis`.
"""

from __future__ import annotations

from .analysis.detect import detect_cut_point
from .analysis.probe import features_at_cut_points, probe_cut_points
from .suite.search import SEARCH_METHODS as METHODS
from .suite.search import SearchSpec, lwft_strategy, run_search

run = run_search

__all__ = ["run", "run_search", "METHODS", "SearchSpec", "lwft_strategy", "features_at_cut_points",
           "probe_cut_points", "detect_cut_point"]
