"""Executors hand the plan's steps to something that runs them (DESIGN §9).

``local`` runs them in-process in dependency order. ``ray`` makes each step a Ray task with its
CPU/GPU needs (``ray.init()`` on a laptop, or an existing cluster started with ``ray start``; the
run directory must be on a file system every worker sees). No home-made scheduler or pool.
"""

from __future__ import annotations

import logging
import time

from ..errors import ConfigError
from ..registry import Registry

__all__ = ["EXECUTORS", "run_local", "run_ray"]

log = logging.getLogger("medapt.suite")
EXECUTORS: Registry = Registry("executor")


def _describe(step) -> str:
    who = ", ".join(step.users[:3]) + (f" +{len(step.users) - 3}" if len(step.users) > 3 else "")
    return f"{step.kind} {step.label} [{step.hash}] for {who}"


@EXECUTORS.register("local")
def run_local(steps, store, ctx) -> tuple[list[str], list[str]]:
    executed, reused = [], []
    n = len(steps)
    for i, step in enumerate(steps, 1):
        if store.done(step):
            reused.append(step.id)
            log.info("[%d/%d] reused %s: complete in %s", i, n, _describe(step), store.path(step))
            continue
        why = "resuming its partial folder" if store.partial(step).exists() else "not run before"
        log.info("[%d/%d] running %s (%s)", i, n, _describe(step), why)
        t0 = time.perf_counter()
        store.execute(step, ctx)
        executed.append(step.id)
        log.info("[%d/%d] done %s in %.1fs", i, n, step.id, time.perf_counter() - t0)
    return executed, reused


def _ray_execute(step, ctx, *_deps):
    return ctx.store.execute(step, ctx)["hash"]


@EXECUTORS.register("ray")
def run_ray(steps, store, ctx) -> tuple[list[str], list[str]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'medapt[ray]' (or use --executor local)") from None
    if not ray.is_initialized():
        ray.init(address="auto" if _cluster_running() else None, log_to_driver=False)
    refs, executed, reused = {}, [], []
    for step in steps:
        if store.done(step):
            reused.append(step.id)
            log.info("reused %s", _describe(step))
            continue
        deps = [refs[d.id] for d in step.deps if d.id in refs]
        res = dict(step.resources)
        if step.kind == "pretrain" and ctx.experiment.engine.device.startswith("cuda"):
            res["num_gpus"] = 1
        refs[step.id] = ray.remote(**res)(_ray_execute).remote(step, ctx, *deps)
        executed.append(step.id)
        log.info("submitted %s to Ray", _describe(step))
    ray.get(list(refs.values()))
    return executed, reused


def _cluster_running() -> bool:
    import os

    return bool(os.environ.get("RAY_ADDRESS"))
