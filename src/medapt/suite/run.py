"""`medapt run`: plan, execute (skipping completed steps), collect the tables, write the report."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, RunDirError, RunLockedError
from .executors import EXECUTORS
from .experiment import Experiment, load_experiment
from .planner import Plan, plan_experiment
from .steps import StepStore
from .tasks import RunContext

__all__ = ["RunResult", "run_experiment", "environment", "RunLock"]

log = logging.getLogger("medapt.suite")


@dataclass
class RunResult:
    run_dir: Path
    plan: Plan
    executed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    report: Path | None = None
    dry_run: list[dict[str, Any]] | None = None


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock``: a second `medapt run` on the same folder refuses."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            raise RunLockedError(f"run directory {str(self.path.parent)!r} is in use by another `medapt run` "
                                 f"(pid {other}). Wait for it to finish, or choose another --out.") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def _git_hash() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str = "auto") -> dict[str, Any]:
    """Versions, git hash and device, for ``environment.json``."""
    import torch

    from ..train import resolve_device

    pkgs = {}
    for name in ("medapt", "torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "codecarbon", "nibabel",
                 "pydicom", "h5py", "nilearn", "pydantic"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    dev = resolve_device(device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(dev), "gpu": gpu,
            "packages": pkgs, "git": _git_hash(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_run_dir(run_dir: Path, exp: Experiment, force: bool) -> None:
    cfg = run_dir / "config.yaml"
    if not cfg.exists():
        if run_dir.exists() and any(p for p in run_dir.iterdir() if p.name not in (".lock",)):
            if not (run_dir / "steps").exists() and not force:
                raise RunDirError(f"{str(run_dir)!r} exists and is not a medapt run directory; choose another --out "
                                  "or pass --force to use it anyway")
        return
    from ..config import read_yaml
    from .experiment import experiment_from_dict

    try:
        old = experiment_from_dict(read_yaml(cfg), str(cfg))
        same = old.digest() == exp.digest()
    except ConfigError:
        same = False
    if not same and not force:
        raise RunDirError(f"run directory {str(run_dir)!r} was made by a different config ({cfg}). Use another "
                          "--out, or pass --force to reuse it (steps whose inputs are unchanged are kept; "
                          "the config and tables are replaced).")


class _RunLog:
    """Send medapt's log records to RUN_DIR/log.txt for the duration of a run."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.handler.setLevel(logging.INFO)
        self.logger = logging.getLogger("medapt")

    def __enter__(self):
        self.old_level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        self.handler.close()


def run_experiment(
    config: str | Path | Experiment,
    *,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    only: str | None = None,
    dry_run: bool = False,
    executor: str = "local",
    report: bool = True,
    progress: bool | None = None,
) -> RunResult:
    """Run an experiment end to end (or only its pre-training with ``only="pretrain"``).

    Completed steps in ``out`` are reused; an interrupted training step resumes from its last
    epoch. ``dry_run`` prints nothing and executes nothing: it returns the plan with each step's
    status and projected cost.
    """
    exp = config if isinstance(config, Experiment) else load_experiment(config, overrides)
    run_dir = Path(out) if out is not None else Path("runs") / exp.name
    plan = plan_experiment(exp)
    if only == "pretrain":
        keep = {"prepare", "init", "pretrain"}
        plan.steps = [s for s in plan.steps if s.kind in keep and not (s.kind == "prepare" and s.label != "source")]
    elif only is not None:
        raise ConfigError(f"only={only!r} is not supported; use 'pretrain' or nothing")
    store = StepStore(run_dir / "steps")
    data_root = Path(exp.data.root)
    ctx = RunContext(exp, run_dir, store, data_root, progress=progress)
    if dry_run:
        from .projection import project_plan

        return RunResult(run_dir, plan, dry_run=project_plan(plan, ctx))
    EXECUTORS.get(executor)  # unknown executor: a clear error before anything is written
    if exp.cost.track_energy:
        from ..cost import prime_energy_tracker

        prime_energy_tracker()  # CodeCarbon's one-off CPU lookup, while the data is prepared
    with RunLock(run_dir):
        _check_run_dir(run_dir, exp, force)
        _write_atomic(run_dir / "config.yaml", exp.to_yaml())
        _write_atomic(run_dir / "environment.json", json.dumps(environment(exp.engine.device), indent=2))
        with _RunLog(run_dir / "log.txt"):
            log.info("run %s: %d steps planned (%s) in %s", exp.name, len(plan.steps),
                     ", ".join(f"{k} {v}" for k, v in plan.counts().items()), run_dir)
            executed, reused = EXECUTORS.get(executor)(plan.steps, store, ctx)
            result = RunResult(run_dir, plan, executed, reused)
            if only is None:
                collect_tables(plan, store, run_dir)
                if report:
                    from ..report import build_report

                    result.report = build_report(run_dir)
                    log.info("report: %s", result.report)
            else:
                collect_tables(plan, store, run_dir, costs_only=True)
    return result


def collect_tables(plan: Plan, store: StepStore, run_dir: Path, costs_only: bool = False) -> None:
    """Gather step outputs into the run directory's tables (schemas in docs/run-directory.md)."""
    from ..cost import write_costs_csv

    rows = []
    for s in plan.steps:
        p = store.path(s) / "cost.json"
        if p.exists():
            row = json.loads(p.read_text())
            row["strategy"], row["shared_by"] = s.users[0], ";".join(s.users)
            rows.append(row)
    if rows:
        write_costs_csv(rows, run_dir / "costs.csv")
    if costs_only:
        return
    metrics, preds = [], []
    for strategy, seed, head, task, step in plan.heads:
        d = store.path(step)
        m = pd.read_csv(d / "metrics.csv")
        ids = {"strategy": strategy, "seed": seed, "head": head, "task": task}
        metrics.append(m.assign(**ids))
        if (d / "predictions.csv").exists():
            preds.append(pd.read_csv(d / "predictions.csv").assign(**ids))
    cols = ["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]
    if metrics:
        _write_atomic_csv(pd.concat(metrics, ignore_index=True)[cols], run_dir / "metrics.csv")
    if preds:
        p = pd.concat(preds, ignore_index=True)
        first = ["strategy", "seed", "head", "task", "split", "index", "label"]
        p = p[[c for c in first if c in p] + sorted(c for c in p if c.startswith("score_"))]
        _write_atomic_csv(p, run_dir / "predictions.csv")
    inf = []
    for (strategy, seed), step in plan.inference.items():
        f = store.path(step) / "inference.json"
        if f.exists():
            inf.append({"strategy": strategy, "seed": seed, **json.loads(f.read_text())})
    if inf:
        _write_atomic_csv(pd.DataFrame(inf), run_dir / "inference.csv")


def _write_atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
