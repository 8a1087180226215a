"""`medapt run`: plan, execute (skipping completed steps), collect the tables, write the report."""

from __future__ import annotations

import fcntl
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

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import ConfigError, RunDirError, RunLockedError
from ..train import isolated_rng
from .context import RunContext
from .executors import EXECUTORS
from .experiment import Experiment, load_experiment
from .graph import Plan, count_kinds
from .planners import extend_plan, plan_experiment
from .store import StepStore
from .results import RunTables
from .tables import collect_tables

__all__ = ["RunResult", "run_experiment", "environment", "RunLock", "resolve_runtime"]

log = logging.getLogger("medapt.suite")


@dataclass
class RunResult(RunTables):
    """What a run returns: its folder, plan, steps run/reused, report; and (from :class:`RunTables`) its
    tables as DataFrames — ``metrics``, ``costs``, ``summary``, ``recommendation`` … — and ``paths``."""

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


def environment(runtime=None, deterministic: bool = False) -> dict[str, Any]:
    """Versions, git hash, the runtime (device, precision, processes) and the determinism settings,
    for ``environment.json``."""
    import torch

    from ..train import Runtime

    runtime = runtime if runtime is not None else Runtime()
    pkgs = {}
    for name in ("medapt", "torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "codecarbon", "nibabel",
                 "pydicom", "h5py", "nilearn", "pydantic"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    dev = runtime.torch_device
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(dev), "gpu": gpu,
            "precision": runtime.precision, "channels_last": runtime.channels_last, "nproc_per_node": runtime.nproc,
            "seeding": "Python, NumPy and torch seeded from each step's seed before it runs",
            "deterministic": {"engine.deterministic": bool(deterministic),
                              "torch.use_deterministic_algorithms": bool(deterministic),
                              "cudnn.benchmark": False if deterministic else torch.backends.cudnn.benchmark,
                              "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")
                              if deterministic else None},
            "packages": pkgs, "git": _git_hash(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _check_run_dir(run_dir: Path, exp: Experiment, force: bool) -> None:
    cfg = run_dir / "config.yaml"
    if not cfg.exists():
        if run_dir.exists() and any(p for p in run_dir.iterdir() if p.name not in (".lock", "projection.json")):
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


def resolve_runtime(exp: Experiment):
    """The run's one :class:`~medapt.train.Runtime`, resolved from ``engine`` (device, precision, processes)."""
    return exp.engine.runtime()


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
    epoch. Planning is iterative: after the planned steps ran, planners may add steps that their
    results create, which then run, until none is added. ``dry_run`` prints nothing and executes
    nothing: it returns the static plan with each step's status and projected cost, and what
    depends on results.
    """
    exp = config if isinstance(config, Experiment) else load_experiment(config, overrides)
    run_dir = Path(out) if out is not None else Path("runs") / exp.name
    runtime = resolve_runtime(exp)
    plan = plan_experiment(exp, runtime)
    if only == "pretrain":  # the source phases and what they need
        plan.steps = _with_inputs(plan.steps, [s for s in plan.steps if s.kind == "pretrain"])
    elif only is not None:
        raise ConfigError(f"only={only!r} is not supported; use 'pretrain' or nothing")
    store = StepStore(run_dir / "steps")
    ctx = RunContext(exp, run_dir, store, Path(exp.data.root), runtime, progress=progress)
    if dry_run:
        from .estimate import project_plan

        store.move_damaged = False  # a dry run changes nothing

        return RunResult(run_dir, plan, dry_run=project_plan(plan, ctx))
    from .dryrun import missing_message, missing_paths, write_projection_table

    missing = missing_paths(exp, plan, store)
    if missing:  # every missing dataset path at once, before anything runs
        from ..errors import DataPathError

        raise DataPathError(missing_message(missing))
    run = EXECUTORS.get(executor)  # unknown executor: a clear error before anything is written
    if exp.cost.track_energy:
        from ..cost import prime_energy_tracker

        prime_energy_tracker()  # CodeCarbon's one-off CPU lookup, while the data is prepared
    with RunLock(run_dir), isolated_rng(exp.engine.deterministic):
        _check_run_dir(run_dir, exp, force)
        atomic_write_text(run_dir / "config.yaml", exp.to_yaml())
        atomic_write_json(run_dir / "environment.json", environment(runtime, exp.engine.deterministic))
        with _RunLog(run_dir / "log.txt"):
            log.info("run %s: %d steps planned (%s) in %s on %s", exp.name, len(plan.steps),
                     ", ".join(f"{k} {v}" for k, v in plan.counts().items()), run_dir, _describe_runtime(runtime))
            from .study import sharing_line

            log.info("sharing: %s", sharing_line(plan))
            result = RunResult(run_dir, plan)
            steps, round_ = plan.steps, 1
            while steps:
                executed, reused = run(steps, store, ctx)
                result.executed += executed
                result.reused += reused
                if only is not None:
                    break
                steps = extend_plan(plan, store)
                if steps:
                    round_ += 1
                    log.info("planning round %d: %d steps from earlier results (%s)", round_, len(steps),
                             ", ".join(f"{k} {v}" for k, v in count_kinds(steps).items()))
            collect_tables(plan, store, run_dir, costs_only=only is not None)
            if only is None:
                from ..evaluate.convergence import write_convergence

                write_convergence(run_dir, exp.convergence.thresholds, exp.convergence.baseline)
            write_projection_table(run_dir, plan, store)  # projected (dry run) vs actual seconds, if projected
            if only is None and exp.tracking is not None:
                from .tracking import log_run

                log_run(exp, run_dir)  # MLflow / TensorBoard (optional extra)
            if only is None and report:
                from ..report import build_report

                result.report = build_report(run_dir)
                log.info("report: %s", result.report)
    return result


def _with_inputs(steps: list, wanted: list) -> list:
    """``wanted`` and every step they depend on, in plan order."""
    need: set[str] = set()
    todo = list(wanted)
    while todo:
        s = todo.pop()
        if s.id not in need:
            need.add(s.id)
            todo += s.deps
    return [s for s in steps if s.id in need]


def _describe_runtime(rt) -> str:
    what = f"{rt.torch_device}, {rt.precision}"
    return what + (f", {rt.nproc} processes per training step (torchrun)" if rt.nproc > 1 else "")
