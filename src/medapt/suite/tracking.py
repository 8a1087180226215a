"""Experiment tracking (optional): a run's steps as MLflow runs or TensorBoard event files.

``tracking: mlflow`` (or ``tensorboard``, or ``{backend: mlflow, uri: ..., experiment: ...}``) in
the experiment YAML makes ``medapt run`` log, once its tables are collected, one tracked run per
strategy × seed with

* parameters: the strategy (family, surgery, every phase's trainable units / lr / epochs /
  optimiser / batch size), seed, backbone and weights, image size, tasks, downstream heads;
* metrics: every row of ``metrics.csv`` for it (``<task>/<head>/<split>/<metric>`` with the epoch
  as the step) — the learning curves of the target phases and of every head;
* costs: every row of ``costs.csv`` for it (``cost/<step>/<phase>/<column>``: seconds, images,
  FLOPs, kWh, parameters, standalone figures), one per step and phase.

MLflow: ``uri`` defaults to ``$MLFLOW_TRACKING_URI`` when set, else a SQLite store in the run
directory (``sqlite:///RUN_DIR/mlflow.db``; MLflow 3 no longer writes plain file stores without
``MLFLOW_ALLOW_FILE_STORE``); ``mlflow ui --backend-store-uri <uri>`` shows them. The strategy ×
seed runs are nested under one parent run named after the experiment. TensorBoard: ``uri`` is the
log folder (default ``RUN_DIR/tensorboard``), one sub-folder per strategy/seed; ``tensorboard
--logdir <uri>``. The packages are the optional extra ``pip install 'medapt[tracking]'``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import ConfigError

__all__ = ["TrackingSpec", "log_run", "BACKENDS"]

log = logging.getLogger("medapt.suite")

BACKENDS = ("mlflow", "tensorboard")


class TrackingSpec(BaseModel):
    """``tracking:`` in the experiment YAML: a backend name, or ``{backend, uri, experiment}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["mlflow", "tensorboard"]
    uri: str | None = None  # MLflow tracking URI / TensorBoard log folder (defaults in the module doc)
    experiment: str | None = None  # MLflow experiment name (default: the experiment's name)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"backend": v} if isinstance(v, str) else v


def _params(exp, strategy: str, seed: int) -> dict[str, str]:
    s = exp.strategy(strategy)
    out = {"strategy": strategy, "seed": str(seed), "family": s.family, "backbone": exp.backbone.name,
           "backbone_weights": str(exp.backbone.weights), "image_size": str(exp.data.image_size),
           "keep": s.surgery.keep, "init": s.surgery.init, "model_head": s.surgery.head,
           "tasks": ",".join(exp.data.targets), "downstream_heads": ",".join(exp.downstream.heads),
           "experiment": exp.name}
    for p in s.phases:
        out[f"phase.{p.name}"] = (f"data={'target' if p.target else 'source'} trainable={p.trainable} lr={p.lr:g} "
                                  f"epochs={p.epochs} optimizer={p.optimizer} batch={p.batch_size}")
    return {k: v[:500] for k, v in out.items()}  # MLflow's parameter value limit is generous, but not endless


def _clean(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


def _series(run_dir: Path, strategy: str, seed: int) -> tuple[list[tuple[str, float, int]], list[tuple[str, float]]]:
    """(metrics as (key, value, epoch), costs as (key, value)) of one strategy × seed from the run's tables."""
    metrics, costs = [], []
    mpath, cpath = run_dir / "metrics.csv", run_dir / "costs.csv"
    if mpath.is_file():
        m = pd.read_csv(mpath)
        m = m[(m["strategy"] == strategy) & (m["seed"] == seed)]
        for r in m.itertuples(index=False):
            v = float(r.value)
            if math.isfinite(v):
                metrics.append((_clean(f"{r.task}/{r.head}/{r.split}/{r.metric}"), v, int(r.epoch)))
    if cpath.is_file():
        c = pd.read_csv(cpath)
        c = c[(c["strategy"] == strategy) & (c["seed"] == seed)]
        numeric = [col for col in c.columns if col not in ("seed",) and pd.api.types.is_numeric_dtype(c[col])]
        for r in c.to_dict("records"):
            for col in numeric:
                v = r[col]
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    costs.append((_clean(f"cost/{r['step']}/{r['phase']}/{col}"), float(v)))
    return metrics, costs


def _log_mlflow(spec: TrackingSpec, exp, run_dir: Path, pairs: list[tuple[str, int]]) -> str:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("tracking: mlflow needs the mlflow package: pip install 'medapt[tracking]' (or remove "
                          "`tracking:` from the config)") from None
    uri = spec.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(spec.experiment or exp.name)
        with mlflow.start_run(run_name=f"{exp.name} ({run_dir.name})") as parent:
            mlflow.set_tags({"medapt.run_dir": str(run_dir.resolve()), "medapt.config_digest": exp.digest()})
            for strategy, seed in pairs:
                metrics, costs = _series(run_dir, strategy, seed)
                with mlflow.start_run(run_name=f"{strategy} seed {seed}", nested=True):
                    mlflow.log_params(_params(exp, strategy, seed))
                    for key, value, step in metrics:
                        mlflow.log_metric(key, value, step=step)
                    if costs:
                        mlflow.log_metrics(dict(costs))
        log.info("tracking: logged %d strategy x seed runs to MLflow %s (parent run %s)", len(pairs), uri,
                 parent.info.run_id)
    finally:
        mlflow.set_tracking_uri(before)  # leave the caller's MLflow client as it was
    return uri


def _log_tensorboard(spec: TrackingSpec, exp, run_dir: Path, pairs: list[tuple[str, int]]) -> str:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tracking: tensorboard needs the tensorboard package: pip install 'medapt[tracking]' (or "
                          "remove `tracking:` from the config)") from None
    root = Path(spec.uri) if spec.uri else run_dir / "tensorboard"
    for strategy, seed in pairs:
        metrics, costs = _series(run_dir, strategy, seed)
        w = SummaryWriter(log_dir=str(root / strategy / f"seed{seed}"))
        try:
            params = _params(exp, strategy, seed)
            w.add_text("params", "\n".join(f"* **{k}**: {v}" for k, v in params.items()))
            for key, value, step in metrics:
                w.add_scalar(key, value, step)
            for key, value in costs:
                w.add_scalar(key, value, 0)
        finally:
            w.close()
    log.info("tracking: wrote TensorBoard event files for %d strategy x seed runs under %s", len(pairs), root)
    return str(root)


def log_run(exp, run_dir: str | Path) -> str | None:
    """Log the run in ``run_dir`` to ``exp.tracking``'s backend; returns where (URI or folder), or None."""
    spec = getattr(exp, "tracking", None)
    if spec is None:
        return None
    run_dir = Path(run_dir)
    pairs = [(s, seed) for s in exp.strategies for seed in exp.seeds]
    return (_log_mlflow if spec.backend == "mlflow" else _log_tensorboard)(spec, exp, run_dir, pairs)
