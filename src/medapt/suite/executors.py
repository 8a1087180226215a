"""Executors hand the plan's steps to something that runs them (DESIGN §9).

``local`` runs them in-process in dependency order; a training step of a run with
``engine.nproc_per_node > 1`` is launched with **torchrun** (``python -m torch.distributed.run``)
on that many processes, which run it with DDP while this process waits; rank 0 writes its outputs.
``ray`` makes each step a Ray task with the resources its kind declares (``ray.init()`` on a
laptop, or an existing cluster started with ``ray start``; the run directory must be on a file
system every worker sees). No home-made scheduler or pool.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from ..errors import ConfigError, MedaptError
from ..registry import Registry

__all__ = ["EXECUTORS", "run_local", "run_ray", "describe"]

log = logging.getLogger("medapt.suite")
EXECUTORS: Registry = Registry("executor")


def describe(step) -> str:
    who = ", ".join(step.users[:3]) + (f" +{len(step.users) - 3}" if len(step.users) > 3 else "")
    return f"{step.kind} {step.label} [{step.hash}] for {who}"


def _torchrun(ctx, step, workdir) -> dict:
    """Run ``step`` on ``nproc`` processes with torchrun; return the result rank 0 wrote."""
    n = ctx.runtime.nproc
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "-m", "medapt.suite.worker", str(ctx.run_dir), step.id]
    log.info("launching %s on %d processes: %s", step.id, n, " ".join(cmd[1:]))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n))))
    proc = subprocess.run(cmd, env=env)
    result = workdir / "result.json"
    if proc.returncode != 0 or not result.exists():
        raise MedaptError(f"step {step.id} failed under torchrun (exit code {proc.returncode}); its log lines are above "
                          f"and its partial folder is {workdir}. Re-run to resume it, or set engine.nproc_per_node: 1")
    out = json.loads(result.read_text())
    result.unlink()
    return out


def _runner(step, ctx):
    """The function that runs ``step``: torchrun for a distributed kind on several processes."""
    from .kinds import KINDS

    if ctx.runtime.nproc > 1 and KINDS.get(step.kind).distributed and not ctx.runtime.distributed:
        return _torchrun
    return None


@EXECUTORS.register("local")
def run_local(steps, store, ctx) -> tuple[list[str], list[str]]:
    executed, reused = [], []
    n = len(steps)
    for i, step in enumerate(steps, 1):
        if store.done(step):
            reused.append(step.id)
            log.info("[%d/%d] reused %s: complete in %s", i, n, describe(step), store.path(step))
            continue
        why = ("resuming from its checkpoint" if (store.partial(step) / "checkpoint.pt").exists() else
               "restarting: an earlier try was interrupted before a checkpoint" if store.partial(step).exists()
               else "not run before")
        log.info("[%d/%d] running %s (%s)", i, n, describe(step), why)
        t0 = time.perf_counter()
        store.execute(step, ctx, _runner(step, ctx))
        executed.append(step.id)
        log.info("[%d/%d] done %s in %.1fs", i, n, step.id, time.perf_counter() - t0)
    return executed, reused


def _ray_execute(step, ctx, *_deps):
    return ctx.store.execute(step, ctx, _runner(step, ctx))["hash"]


@EXECUTORS.register("ray")
def run_ray(steps, store, ctx) -> tuple[list[str], list[str]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'medapt[ray]' (or use --executor local)") from None
    if not ray.is_initialized():
        ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, log_to_driver=False)
    from .kinds import KINDS

    refs, executed, reused = {}, [], []
    for step in steps:
        if store.done(step):
            reused.append(step.id)
            log.info("reused %s", describe(step))
            continue
        deps = [refs[d.id] for d in step.deps if d.id in refs]
        res = KINDS.get(step.kind).resources(step, ctx.runtime)
        if step.kind in KINDS and KINDS.get(step.kind).distributed and ctx.runtime.nproc > 1:
            res["num_gpus"] = res["num_gpus"] * ctx.runtime.nproc
        refs[step.id] = ray.remote(**res)(_ray_execute).remote(step, ctx, *deps)
        executed.append(step.id)
        log.info("submitted %s to Ray (%s)", describe(step), ", ".join(f"{k} {v:g}" for k, v in res.items()))
    ray.get(list(refs.values()))
    return executed, reused
