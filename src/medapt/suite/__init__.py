"""The experiment suite: config, step kinds, planners, executors, and `medapt run` (docs/architecture.md).

Imported lazily (like :mod:`medapt`), so the CLI can read the executor registry without loading
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Experiment": "experiment", "experiment_from_dict": "experiment", "load_experiment": "experiment",
    "Plan": "graph", "Step": "graph",
    "KINDS": "kinds", "StepKind": "kinds",
    "PLANNERS": "planners", "Planner": "planners", "extend_plan": "planners", "plan_experiment": "planners",
    "RunResult": "run", "environment": "run", "resolve_runtime": "run", "run_experiment": "run",
    "StepStore": "store",
    "collect_tables": "tables",
    "EXECUTORS": "executors",
    "run_search": "search", "SEARCH_METHODS": "search",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
