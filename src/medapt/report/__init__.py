"""The report (DESIGN §2, issue 4): one self-contained HTML page and ``figures/*.png`` built from
a run directory's files alone.

* :func:`build_report` — AUC-vs-epoch curves, development-vs-external box plots, AUC vs cost with
  the Pareto front, the parameter table (Table 1), the time/energy table (Table B1), inference
  cost, the summary table and a plain-language summary.
* :func:`recommendation_table` — the recommendation (best by external AUC, best within the budget,
  cheapest not significantly worse) as a DataFrame; ``build_report`` also writes it as
  ``recommendation.csv``.
* :func:`pareto_front`, :func:`strategy_costs`, :func:`params_table`, :func:`time_energy_table`
  — the pieces, usable on their own.
"""

from __future__ import annotations

from ._io import RunFiles, load_run
from .build import DEFAULT_THRESHOLD, build_report, recommendation_table
from .costs import expand_shared, is_measured, params_table, pareto_front, strategy_costs, time_energy_table

__all__ = [
    "DEFAULT_THRESHOLD",
    "RunFiles",
    "build_report",
    "expand_shared",
    "is_measured",
    "load_run",
    "params_table",
    "pareto_front",
    "recommendation_table",
    "strategy_costs",
    "time_energy_table",
]
