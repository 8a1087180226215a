"""Steps: cacheable units of work identified by a hash of everything that determines their output.

A step's output lands in ``steps/<kind>/<hash>/``. It is written into ``<hash>.partial/`` (where
an interrupted training step also keeps its checkpoint, so a re-run resumes it) and renamed when
complete, with a ``step.json`` that is validated when read; a corrupt entry is a miss and is
logged, as DVC's run cache does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["Step", "StepStore", "canonical", "STEP_FORMAT"]

log = logging.getLogger(__name__)

# bump when a step's output format or semantics change, so old outputs are not reused
STEP_FORMAT = 1


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, so equal inputs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(eq=False)
class Step:
    """One node of the plan. ``run(ctx, step, workdir) -> dict`` writes its outputs into ``workdir``."""

    kind: str
    key: dict[str, Any]
    deps: list[Step]
    run: Callable[..., dict[str, Any]]
    label: str = ""
    users: list[str] = field(default_factory=list)  # strategies that need this step
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1})

    @cached_property
    def hash(self) -> str:
        payload = canonical({"kind": self.kind, "key": self.key, "deps": [d.hash for d in self.deps], "format": STEP_FORMAT})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.hash}"

    def add_user(self, name: str) -> None:
        if name not in self.users:
            self.users.append(name)


class StepStore:
    """Content-addressed step folders under ``root`` with atomic completion."""

    def __init__(self, root: Path):
        self.root = root

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

    def done(self, step: Step) -> bool:
        return self.info(step) is not None

    def execute(self, step: Step, ctx: Any) -> dict[str, Any]:
        """Run a step into its partial folder, then write ``step.json`` and rename it into place."""
        work = self.partial(step)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        result = step.run(ctx, step, work) or {}
        info = {"hash": step.hash, "kind": step.kind, "key": step.key, "deps": [d.id for d in step.deps],
                "label": step.label, "seconds": time.perf_counter() - t0, "result": result,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = work / "step.json.tmp"
        tmp.write_text(json.dumps(info, indent=2, default=str))
        os.replace(tmp, work / "step.json")
        final = self.path(step)
        if final.exists():  # completed meanwhile by another worker: keep the first
            shutil.rmtree(work)
        else:
            os.replace(work, final)
        return info
