"""The notebook-facing API: ``medapt.run`` returning tables, ``medapt.open_run``, ``medapt.set_verbosity``.

>>> res = medapt.run("examples/quickstart.yaml", out="demo-run")     # doctest: +SKIP
>>> res.summary.head()                                               # pandas DataFrames
>>> res.costs.groupby("strategy")["kwh"].sum()
>>> medapt.open_run("demo-run").metrics                              # an earlier run, from its files

In a notebook (an IPython kernel), :func:`run` shows medapt's INFO messages (one line per step)
and progress bars (``tqdm.auto``: widgets when ipywidgets is installed, text otherwise) unless
:func:`set_verbosity` chose otherwise.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["run", "open_run", "set_verbosity", "in_notebook"]

_HANDLER_NAME = "medapt.set_verbosity"
_chosen = False  # set_verbosity was called: respect it


def open_run(run_dir: str | Path):
    """The tables of an existing run directory as DataFrames (:class:`medapt.suite.results.OpenedRun`)."""
    from .suite.results import open_run as _open

    return _open(run_dir)


def in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel (where stderr is not a terminal but output is shown)."""
    ip = sys.modules.get("IPython")
    try:
        shell = ip.get_ipython() if ip is not None else None
    except Exception:  # pragma: no cover
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def set_verbosity(level: int | str = "INFO") -> None:
    """Show medapt's log messages at ``level`` (``"DEBUG"``, ``"INFO"``, ``"WARNING"``, …) on stderr.

    Adds one handler to the ``medapt`` logger (replacing the one an earlier call added); an
    application that configures logging itself need not call it. ``"WARNING"`` quiets a run.
    """
    global _chosen
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(lvl, int):
        from .errors import ConfigError

        raise ConfigError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    log = logging.getLogger("medapt")
    for h in [h for h in log.handlers if h.get_name() == _HANDLER_NAME]:
        log.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(lvl)
    _chosen = True


def run(config: Any, *, out: str | Path | None = None, overrides: list[str] | None = None, force: bool = False,
        dry_run: bool = False, executor: str = "local", report: bool = True, progress: bool | None = None,
        tracking: str | None = None):
    """Run an experiment (a YAML path or an :class:`~medapt.suite.Experiment`) and return its result.

    Same arguments as :func:`medapt.suite.run_experiment`; the result (a
    :class:`~medapt.suite.run.RunResult`) also gives the run's tables as DataFrames (``metrics``,
    ``costs``, ``summary``, ``recommendation``, …, see :class:`RunTables`) and ``paths``.
    In a notebook, INFO messages and progress bars are shown unless :func:`set_verbosity` was called.
    ``tracking`` (``mlflow`` or ``tensorboard``) overrides the config's ``tracking``.
    """
    from .suite import run_experiment

    if in_notebook():
        if not _chosen and not logging.getLogger("medapt").handlers:
            set_verbosity("INFO")
        if progress is None:
            progress = True
    overrides = list(overrides or [])
    if tracking is not None:
        overrides.append(f"tracking={tracking}")
    return run_experiment(config, out=out, overrides=overrides, force=force, dry_run=dry_run, executor=executor,
                          report=report, progress=progress)
