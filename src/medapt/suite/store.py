"""The run directory's content-addressed step folders, ``steps/<kind>/<hash>/``.

A step runs inside ``<hash>.partial/`` (where an interrupted training step also keeps its
checkpoint, so a re-run resumes it); when it completes, ``step.json`` is written and the folder
is renamed into place. ``step.json`` is validated when read; a corrupt entry is a miss, logged
and moved aside, as DVC's run cache does.

``step.json`` also records a digest of every file the step wrote (``files``; a ``prepare`` step's
prepared folder included) and a digest of each input's files (``input_digests``). A step is
reused only if its files still match (:mod:`medapt.integrity`, checked once per run) and its
inputs still hold the content it was computed from; otherwise it is moved aside like a corrupt
entry, with a warning naming the step and the file, and recomputed — and so, through the same
rule, is every step that depended on different content.
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
        self._verified: dict[str, dict[str, Any]] = {}  # step id -> its checked step.json, this process
        self.move_damaged = True  # False (a dry run): a damaged step is a miss, but stays where it is
        self._left: set[str] = set()  # damaged steps left in place (dry run)

    def path(self, step: Step) -> Path:
        return self.root / step.kind / step.hash

    def partial(self, step: Step) -> Path:
        return self.root / step.kind / f"{step.hash}.partial"

    def info(self, step: Step) -> dict[str, Any] | None:
        """The step's ``step.json`` if the step is complete and valid, else ``None`` (a miss).

        Valid means: readable, for this step, its files match their recorded digests and its inputs
        hold the content it was computed from (checked once per store; see the module doc)."""
        if step.id in self._left:
            return None
        if step.id in self._verified:
            if self.path(step).is_dir():
                return self._verified[step.id]
            del self._verified[step.id]
        p = self.path(step)
        if not p.is_dir():
            return None
        try:
            info = json.loads((p / "step.json").read_text())
            if info.get("hash") != step.hash or info.get("kind") != step.kind:
                raise ValueError("hash/kind mismatch")
        except (OSError, ValueError) as exc:
            self._move_aside(step, f"is corrupt ({exc})")
            return None
        problem = self._check(step, info)
        if problem:
            self._move_aside(step, problem)
            return None
        self._verified[step.id] = info
        return info

    def _check(self, step: Step, info: dict[str, Any]) -> str | None:
        """Why a complete step cannot be reused (a damaged file, an input with other content), or None."""
        from ..integrity import check_files, combined_digest

        damaged = check_files(info.get("files") or {}, self.path(step))
        if damaged:
            d = damaged[0]
            more = f" (and {len(damaged) - 1} more file(s))" if len(damaged) > 1 else ""
            return f"has a damaged output: {d.file}: {d.problem}{more}"
        for name, recorded in (info.get("input_digests") or {}).items():
            dep = step.inputs.get(name)
            if dep is None or recorded is None:
                continue
            dep_info = self.info(dep)
            if dep_info is None:  # the input is being recomputed: this step was computed from the old one
                return f"depends on {dep.id} ({name}), which is missing or damaged"
            if combined_digest(dep_info.get("files")) != recorded:
                return f"was computed from other content of its input {name!r} ({dep.id}, recomputed since)"
        return None

    def _move_aside(self, step: Step, why: str) -> None:
        p = self.path(step)
        if not self.move_damaged:
            log.warning("step %s (%s) %s; a run would move it aside and recompute it", step.id, step.label, why)
            self._left.add(step.id)
            return
        aside = p.with_name(f"{p.name}.corrupt-{int(time.time())}")
        n = 1
        while aside.exists():
            aside, n = p.with_name(f"{p.name}.corrupt-{int(time.time())}-{n}"), n + 1
        log.warning("step %s (%s) %s; moved to %s and recomputing", step.id, step.label, why, aside.name)
        os.replace(p, aside)
        self._verified.pop(step.id, None)

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
        if work.is_dir() and not (work / "checkpoint.pt").exists():
            shutil.rmtree(work)  # an interrupted try without a checkpoint: restart it from nothing
        work.mkdir(parents=True, exist_ok=True)
        seed_step(step, ctx.experiment.engine.deterministic)
        t0 = time.perf_counter()
        result = (run or KINDS.get(step.kind).run)(ctx, step, work) or {}
        return self.complete(step, result, time.perf_counter() - t0)

    def complete(self, step: Step, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Write ``step.json`` into the partial folder and rename it into place."""
        from ..integrity import combined_digest, record_files, step_files
        from .kinds import KINDS

        work = self.partial(step)
        info = {"hash": step.hash, "kind": step.kind, "key": key_dict(step.key),
                "inputs": {k: v.id for k, v in sorted(step.inputs.items())}, "label": step.label,
                "seconds": seconds, "result": result, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        kind = KINDS.get(step.kind) if step.kind in KINDS else None
        extra = kind.artefacts(step, result) if kind is not None and hasattr(kind, "artefacts") else {}
        info["files"] = record_files({**step_files(work), **extra})
        info["input_digests"] = {k: combined_digest((self.info(v) or {}).get("files"))
                                 for k, v in sorted(step.inputs.items())}
        atomic_write_json(work / "step.json", info, fsync=True)
        final = self.path(step)
        if final.exists():  # completed meanwhile by another worker: keep the first
            shutil.rmtree(work)
        else:
            os.replace(work, final)
            self._verified[step.id] = info
        return info
