"""The ``similarity`` planner: per-unit similarity between the ImageNet weights and each DAPT
strategy's weights on a target task's images — which units DAPT actually moved (issue 12).

For every strategy with source (DAPT) phases and every seed: one ``similarity`` step between the
pretrained backbone (``init``, every unit) and the strategy's weights after its source phases, on
the train + validation images of ``similarity.task``. Strategies that keep fewer units (``*_TF_*``)
are compared on the units they keep. Rows: the run's ``similarity.csv``.
"""

from __future__ import annotations

from ..strategies import Strategy, Surgery
from .graph import Step
from .kinds.search import SimilarityKey
from .planners import Builder, Planner, register_planner

__all__ = ["SimilarityPlanner"]


@register_planner
class SimilarityPlanner(Planner):
    name = "similarity"
    description = "per-unit SVCCA / PWCCA / CKA between the ImageNet weights and each DAPT strategy's weights"

    def applies(self, exp) -> bool:
        return getattr(exp, "similarity", None) is not None and bool(exp.data.targets)

    def plan(self, b: Builder) -> None:
        exp, spec = b.exp, b.exp.similarity
        task = spec.task or next(iter(exp.data.targets))
        if task not in exp.data.targets:
            from ..errors import UnknownNameError

            raise UnknownNameError("target task", task, list(exp.data.targets),
                                   hint="Set similarity.task to one of data.targets.")
        dev, _ = b.target(task)
        key = SimilarityKey(task, tuple(spec.methods), spec.max_images, spec.batch_size,
                            {"device": b.runtime.device_type})
        for seed in exp.seeds:
            ref = b.init(Strategy("ImageNet", "baseline", Surgery()), seed)
            for name in exp.strategies:
                s = exp.strategy(name)
                if not s.source_phases:
                    continue
                w = b.source_weights(name, seed)
                b.plan.add(Step("similarity", key, {"a": ref, "b": w, "data": dev}, label=f"vs ImageNet on {task}"),
                           name, tag={"strategy": name, "seed": seed, "task": task})
