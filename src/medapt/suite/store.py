"""The run directory's content-addressed step folders, ``steps/<kind>/<hash>/``.

A step runs inside ``<hash>.partial/`` (where an interrupted training step also keeps its
checkpoint, so a re-run resumes it); when it completes, ``step.json`` is written and the folder
is renamed into place. ``step.json`` is validated when read; a corrupt entry is a miss, logged
and moved aside, as DVC's run cache does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json
from .graph import Step, key_dict

__all__ = ["StepStore", "step_seed", "seed_step"]

log = logging.getLogger("medapt.suite")


def step_seed(step: Step) -> int:
    """The seed a step runs under: its key's suite seed, else one derived from its hash."""
    seed = getattr(step.key, "seed", None)
    return int(seed) if seed is not None else int(step.hash[:8], 16)


def seed_step(step: Step, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch from the step's seed before it runs (the data order has its
    own generators), so a step's numbers never depend on what ran before it in the process; with
    ``deterministic`` also switch torch to deterministic algorithms."""
    from ..train import seed_everything

    seed_everything(step_seed(step), deterministic)


class StepStore:
    """Content-addressed step folders under ``root`` with atomic completion."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, step: Step) -> Path:
        return self.root / step.kind / step.hash

    def partial(self, step: Step) -> Path:
        return self.root / step.kind / f"{step.hash}.partial"

    def info(self, step: Step) -> dict[str, Any] | None:
        """The step's ``step.json`` if the step is complete and valid, else ``None`` (a miss)."""
        p = self.path(step)
        if not p.is_dir():
            return None
        try:
            info = json.loads((p / "step.json").read_text())
            if info.get("hash") != step.hash or info.get("kind") != step.kind:
                raise ValueError("hash/kind mismatch")
            return info
        except (OSError, ValueError) as exc:
            aside = p.with_name(f"{p.name}.corrupt-{int(time.time())}")
            log.warning("step %s is corrupt (%s); moved to %s and recomputing", step.id, exc, aside.name)
            os.replace(p, aside)
            return None

    def result(self, step: Step) -> dict[str, Any]:
        """The ``result`` a completed step returned (its ``step.json``)."""
        info = self.info(step)
        if info is None:
            raise FileNotFoundError(f"step {step.id} is not complete in {self.root}")
        return info["result"]

    def done(self, step: Step) -> bool:
        return self.info(step) is not None

    def execute(self, step: Step, ctx: Any, run: Callable[[Any, Step, Path], dict] | None = None) -> dict[str, Any]:
        """Run a step into its partial folder, then write ``step.json`` and rename it into place.

        ``run(ctx, step, workdir) -> dict`` defaults to the step kind's ``run``.
        """
        from .kinds import KINDS

        work = self.partial(step)
        work.mkdir(parents=True, exist_ok=True)
        seed_step(step, ctx.experiment.engine.deterministic)
        t0 = time.perf_counter()
        result = (run or KINDS.get(step.kind).run)(ctx, step, work) or {}
        return self.complete(step, result, time.perf_counter() - t0)

    def complete(self, step: Step, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Write ``step.json`` into the partial folder and rename it into place."""
        work = self.partial(step)
        info = {"hash": step.hash, "kind": step.kind, "key": key_dict(step.key),
                "inputs": {k: v.id for k, v in sorted(step.inputs.items())}, "label": step.label,
                "seconds": seconds, "result": result, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(work / "step.json", info)
        final = self.path(step)
        if final.exists():  # completed meanwhile by another worker: keep the first
            shutil.rmtree(work)
        else:
            os.replace(work, final)
        return info
