"""Reading a run directory's tables (schemas in docs/run-directory.md) and writing atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ..errors import CorruptFileError, MissingFieldError, RunDirError
from ..evaluate.summary import METRIC_COLUMNS

PREDICTION_KEYS = ("strategy", "seed", "head", "task", "split", "index", "label")
COST_COLUMNS = ("strategy", "seed", "step", "phase", "seconds", "kwh", "energy_source",
                "params_total", "params_trainable")
KNOWN_FILES = ("metrics.csv", "metrics.parquet", "predictions.csv", "costs.csv", "inference.csv",
               "config.yaml", "environment.json")


@dataclass
class RunFiles:
    """The tables of one run directory; ``None`` where the file is absent."""

    run_dir: Path
    metrics: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    costs: pd.DataFrame | None = None
    inference: pd.DataFrame | None = None
    config: dict | None = None
    config_text: str | None = None
    environment: dict | None = None
    missing: list[str] = field(default_factory=list)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path} cannot be read as CSV ({exc}); re-run the step that writes it.") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise MissingFieldError(
            f"{path} lacks column(s) {missing} (it has {list(df.columns)}); "
            "see docs/run-directory.md for the schema, or re-run `medapt run` to rewrite it."
        )
    return df


def load_run(run_dir: Path) -> RunFiles:
    """Read every known table of ``run_dir``; absent files are listed in ``missing``.

    Raises:
        RunDirError: ``run_dir`` does not exist or holds none of the run-directory files.
        CorruptFileError / MissingFieldError: a file exists but is unreadable or lacks columns.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist or is not a folder; pass the --out folder of `medapt run`.")
    if not any((run_dir / f).exists() for f in KNOWN_FILES):
        raise RunDirError(
            f"{run_dir} is not a medapt run directory: none of {', '.join(KNOWN_FILES)} is there. "
            "Pass the folder that `medapt run --out` wrote."
        )
    rf = RunFiles(run_dir=run_dir)
    if (run_dir / "metrics.csv").exists():
        rf.metrics = _read_csv(run_dir / "metrics.csv", METRIC_COLUMNS)
    elif (run_dir / "metrics.parquet").exists():
        try:
            rf.metrics = pd.read_parquet(run_dir / "metrics.parquet")
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise CorruptFileError(f"{run_dir / 'metrics.parquet'} cannot be read ({exc}).") from exc
        missing = [c for c in METRIC_COLUMNS if c not in rf.metrics.columns]
        if missing:
            raise MissingFieldError(f"{run_dir / 'metrics.parquet'} lacks column(s) {missing}.")
    else:
        rf.missing.append("metrics.csv")
    if rf.metrics is not None:
        rf.metrics["value"] = pd.to_numeric(rf.metrics["value"], errors="coerce")
        for col in ("strategy", "head", "task", "split", "metric"):
            rf.metrics[col] = rf.metrics[col].astype(str)

    for name, attr, required in (("predictions.csv", "predictions", PREDICTION_KEYS),
                                 ("costs.csv", "costs", COST_COLUMNS),
                                 ("inference.csv", "inference", ("strategy",))):
        path = run_dir / name
        if path.exists():
            df = _read_csv(path, required)
            df["strategy"] = df["strategy"].astype(str)
            setattr(rf, attr, df)
        else:
            rf.missing.append(name)
    if rf.costs is not None:
        if "shared_by" not in rf.costs.columns:
            rf.costs["shared_by"] = ""
        rf.costs["shared_by"] = rf.costs["shared_by"].fillna("").astype(str)
        for col in ("energy_source", "energy_note", "phase", "step"):
            if col in rf.costs.columns:
                rf.costs[col] = rf.costs[col].fillna("").astype(str)

    path = run_dir / "config.yaml"
    if path.exists():
        rf.config_text = path.read_text(encoding="utf-8", errors="replace")
        try:
            cfg = yaml.safe_load(rf.config_text)
        except yaml.YAMLError as exc:
            raise CorruptFileError(f"{path} is not valid YAML ({exc}).") from exc
        rf.config = cfg if isinstance(cfg, dict) else {}
    else:
        rf.missing.append("config.yaml")
    path = run_dir / "environment.json"
    if path.exists():
        try:
            env = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CorruptFileError(f"{path} is not valid JSON ({exc}).") from exc
        rf.environment = env if isinstance(env, dict) else {"value": env}
    else:
        rf.missing.append("environment.json")
    return rf


