"""`medapt run --dry-run`: each step's status, FLOPs and a time estimate before anything runs.

Every kind estimates its own steps (images and FLOPs, counted with ``FlopCounterMode`` on the part
of the model that will actually run — a cached prefix costs one forward pass, not one per
epoch). Seconds come from a short *measured* throughput probe on this machine's device (a few
epochs of the real engine on random images, the first excluded), converted to FLOP/s and applied
to every step: a projection, labelled as such, not a measurement. Steps that exist only after
earlier results are shown as ``pending`` with the planners' upper bounds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cost import project_seconds
from ..models import Surgery, UnitModel, build
from .context import init_step, n_outputs
from .kinds import KINDS
from .planners import pending

__all__ = ["project_plan", "Estimator"]

log = logging.getLogger("medapt.suite")


@dataclass
class Estimator:
    """What the kinds' ``estimate`` methods need: dataset sizes and model architectures, memoised."""

    exp: Any
    store: Any
    data_root: Path | None = None  # where prepared datasets live (a prepared one is reused, not timed)
    _sizes: dict[str, Any] = field(default_factory=dict)
    _models: dict[tuple, UnitModel] = field(default_factory=dict)
    size_notes: list[str] = field(default_factory=list)  # datasets sized from declared/paper counts
    _probes: dict[tuple, Any] = field(default_factory=dict)

    def probe(self, key: tuple, measure) -> Any:
        """``measure()`` once per ``key``: kinds time a short real run once per distinct shape."""
        if key not in self._probes:
            self._probes[key] = measure()
        return self._probes[key]

    @property
    def image_size(self) -> int:
        return self.exp.data.image_size

    def dataset(self, data_step) -> dict[str, int] | None:
        """Images per split (+ ``n``, ``classes``) of the dataset a ``prepare`` or ``fewshot`` step
        produces (its kind sizes it); once per step (sizing may read a real source)."""
        if data_step.id not in self._sizes:
            self._sizes[data_step.id] = KINDS.get(data_step.kind).dataset_size(data_step, self)
        return self._sizes[data_step.id]

    def task_type(self, data_step) -> str:
        return KINDS.get(data_step.kind).dataset_task_type(data_step, self)

    def n_outputs(self, step) -> int:
        """Head outputs of a step's model: those of the task of its ``data`` input."""
        data = step.inputs["data"]
        return n_outputs(self.task_type(data), (self.dataset(data) or {}).get("classes") or 2)

    def model(self, weights_step, n_out: int) -> UnitModel:
        """The architecture of a weights step's model (random weights: FLOPs do not depend on them)."""
        k = init_step(weights_step).key
        key = (k.backbone, k.surgery["keep"], k.surgery["head"], k.image_size, n_out)
        if key not in self._models:
            self._models[key] = build(k.backbone, Surgery(k.surgery["keep"], "random", k.surgery["head"]),
                                      n_outputs=n_out, image_size=k.image_size)
        return self._models[key]


def project_plan(plan, ctx) -> list[dict[str, Any]]:
    """One row per step (id, kind, label, users, status, images, FLOPs, projected seconds), one per
    pending group of result-dependent steps, and a total."""
    from .dryrun import calibrate, missing_paths, resources, step_batches, step_epochs, step_models, write_projection

    t0 = time.perf_counter()
    cal = calibrate(ctx.experiment, ctx.runtime)
    flops_per_s, probe = cal.flops_per_s, cal.note
    log.info("dry run: calibration %s (%.1fs)", probe, time.perf_counter() - t0)
    est = Estimator(ctx.experiment, ctx.store, ctx.data_root)
    rows = []
    for s in plan.steps:
        status = "done" if ctx.store.done(s) else ("partial" if ctx.store.partial(s).exists() else "to run")
        e = KINDS.get(s.kind).estimate(s, est)
        seconds = 0.0
        if status != "done" and e.seconds is not None:  # the kind's own measured probe
            seconds = e.seconds
        elif status != "done" and (e.flops or step_models(s) or step_epochs(s)):
            seconds = cal.seconds(e.flops or 0.0, models=step_models(s), epochs=step_epochs(s),
                                  batches=step_batches(s, e.images), forward_flops=e.forward_flops)
        rows.append({"id": s.id, "kind": s.kind, "label": s.label, "users": list(s.users), "status": status,
                     "images": e.images, "flops": e.flops, "seconds": seconds, "hash": s.hash})
    for p in pending(plan):
        rows.append({"id": f"pending/{p.planner}", "kind": "pending", "label": p.label, "users": [],
                     "status": f"depends on results (at most {p.steps} steps)", "images": None, "flops": p.flops,
                     "seconds": project_seconds(p.flops, flops_per_s) if p.flops else 0.0})
    total = {"id": "total", "kind": "", "label": probe, "users": [], "status": "",
             "images": None, "flops": float(np.nansum([r["flops"] for r in rows])),
             "seconds": float(np.nansum([r["seconds"] for r in rows]))}
    total["missing"] = missing_paths(ctx.experiment, plan, ctx.store)
    total["sizes"] = list(est.size_notes)
    try:
        total["resources"] = resources(ctx.experiment, plan, est, rows, getattr(ctx.experiment.cost, "hardware", None),
                                       ctx.runtime)
    except Exception as exc:  # the resource estimate must not hide the plan
        log.warning("dry run: resources not estimated (%s: %s)", type(exc).__name__, exc)
        total["resources"] = None
    rows.append(total)
    try:
        write_projection(ctx.run_dir, rows, cal)
    except OSError as exc:
        log.warning("dry run: projection.json not written (%s)", exc)
    return rows
