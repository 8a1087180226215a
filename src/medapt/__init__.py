"""medapt — resource-efficient domain-adaptive pre-training for medical images.

The public API (imported lazily, so ``import medapt`` and the CLI's ``--help`` stay fast)::

    medapt.load_experiment(path, overrides=None) -> Experiment
    medapt.run(config_or_experiment, out=None, ...) -> RunResult     # tables as DataFrames: .metrics, .costs, .summary
    medapt.open_run(run_dir) -> OpenedRun                             # the same tables of an earlier run
    medapt.set_verbosity("INFO")                                      # medapt's log lines on stderr (notebooks)
    medapt.build_report(run_dir) -> Path
    medapt.models.build(backbone, weights, n_outputs=1)                # UnitModel
    medapt.strategies.get(name), medapt.strategies.params_report(...)
    medapt.search.run(config, method="probe")                         # cut-point search (docs/search.md)
    medapt.similarity.compare_models(a, b, images)                     # SVCCA / PWCCA / CKA per unit
    medapt.train.train_phase(...), medapt.data.prepare_dataset(...), medapt.cost.green_algorithms(...)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_experiment": ("medapt.suite", "load_experiment"),
    "run": ("medapt.api", "run"),
    "open_run": ("medapt.api", "open_run"),
    "set_verbosity": ("medapt.api", "set_verbosity"),
    "run_experiment": ("medapt.suite", "run_experiment"),
    "build_report": ("medapt.report", "build_report"),
}
_SUBMODULES = ("models", "strategies", "train", "data", "evaluate", "cost", "suite", "report", "analysis", "errors",
               "search", "similarity")

__all__ = ["__version__", *_LAZY, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"medapt.{name}")
    raise AttributeError(f"module 'medapt' has no attribute {name!r}")
