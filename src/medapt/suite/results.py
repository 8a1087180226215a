"""A run's tables as pandas DataFrames: :class:`RunTables` (mixed into :class:`~medapt.suite.run.RunResult`)
and :func:`open_run` for a run directory written earlier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["RunTables", "OpenedRun", "open_run"]


class RunTables:
    """The tables of a run directory as pandas DataFrames, read when first asked for (``run_dir`` needed).

    ``metrics`` (long: strategy, seed, head, task, split, epoch, seconds, metric, value),
    ``predictions``, ``costs`` (one row per step and phase: seconds, FLOPs, kWh …), ``inference``,
    ``summary`` (per strategy × head × task × split: best/final AUC, mean and t-interval over
    seeds), ``recommendation`` (from the report, when available) and ``paths``.
    """

    run_dir: Path

    def _table(self, name: str) -> pd.DataFrame:
        cache = self.__dict__.setdefault("_tables", {})
        if name not in cache:
            path = Path(self.run_dir) / f"{name}.csv"
            cache[name] = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        return cache[name]

    @property
    def metrics(self) -> pd.DataFrame:
        return self._table("metrics")

    @property
    def predictions(self) -> pd.DataFrame:
        return self._table("predictions")

    @property
    def costs(self) -> pd.DataFrame:
        return self._table("costs")

    @property
    def inference(self) -> pd.DataFrame:
        return self._table("inference")

    @property
    def summary(self) -> pd.DataFrame:
        """Best and final AUC per strategy × head × task × split, aggregated over seeds (mean, s.d., t-interval)."""
        from ..evaluate.summary import aggregate_seeds, summarize

        m = self.metrics
        if m.empty:
            return pd.DataFrame()
        s = summarize(m, threshold=self._threshold())
        if s.empty:
            return s
        return aggregate_seeds(s[["strategy", "seed", "head", "task", "split", "best_auc", "final_auc",
                                  "epoch_to_threshold", "seconds_to_threshold"]])

    @property
    def recommendation(self) -> pd.DataFrame:
        """The report's recommendation as a table (:func:`medapt.report.recommendation_table`): per
        task, the best strategy by external AUC, the best within the budget of the run's config and
        the cheapest not significantly worse, each with its cost and the report's sentence."""
        return _recommendation_provider()(Path(self.run_dir))

    @property
    def paths(self) -> dict[str, Path]:
        d = Path(self.run_dir)
        names = ("config.yaml", "environment.json", "metrics.csv", "predictions.csv", "costs.csv", "inference.csv",
                 "report.html", "log.txt")
        out = {"run_dir": d, **{n: d / n for n in names if (d / n).exists()}}
        if (d / "figures").is_dir():
            out["figures"] = d / "figures"
        return out

    def _threshold(self) -> float:
        try:
            import yaml

            cfg = yaml.safe_load((Path(self.run_dir) / "config.yaml").read_text())
            return float(cfg.get("downstream", {}).get("threshold", 0.9))
        except (OSError, ValueError, AttributeError, TypeError, ImportError):
            return 0.9

    def _repr_html_(self) -> str:  # a notebook cell's display
        s = self.summary
        head = f"<p><b>medapt run</b> {Path(self.run_dir)}</p>"
        return head + (s.to_html(max_rows=30) if not s.empty else "<p>no metrics yet</p>")


def _recommendation_provider():
    """The report's function ``run_dir -> DataFrame`` for the recommendation (medapt.report)."""
    from ..report import recommendation_table

    return recommendation_table


@dataclass
class OpenedRun(RunTables):
    """A run directory opened from its files (:func:`open_run`)."""

    run_dir: Path

    @property
    def report(self) -> Path | None:
        p = Path(self.run_dir) / "report.html"
        return p if p.exists() else None


def open_run(run_dir: str | Path) -> OpenedRun:
    """The tables of an existing run directory (written by ``medapt run``), without running anything."""
    from ..errors import RunDirError

    d = Path(run_dir)
    if not (d / "config.yaml").is_file() and not (d / "metrics.csv").is_file():
        raise RunDirError(f"{str(d)!r} is not a medapt run directory (no config.yaml or metrics.csv); give the folder "
                          "`medapt run --out` wrote")
    return OpenedRun(d)
