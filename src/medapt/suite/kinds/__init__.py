"""Step kinds: a registry of what a step can be (DESIGN §9).

Each kind lives in one module of this package and declares, in one class:

* ``Key`` — a frozen dataclass of everything besides its inputs that decides its output (hashed);
* ``inputs`` — its **named** inputs (:class:`Input`: name, accepted kinds, optional or not);
* ``run(ctx, step, workdir) -> dict`` — writes its outputs into ``workdir``; the dict lands in
  ``step.json`` as ``result``;
* resources — ``uses_accelerator`` (runs models on the runtime's device, so the Ray executor asks
  for a GPU when there is one), ``distributed`` (can run on several processes via torchrun),
  ``memory_gb``;
* ``estimate(step, est)`` — images and FLOPs for the dry run;
* a kind whose output is a dataset (``prepare``, ``fewshot``) also gives ``dataset(ctx, step)``
  (the dataset, opened), ``dataset_size(step, est)`` and ``dataset_task_type(step, est)`` (for the
  dry run);
* ``tables(step, store)`` — the rows it contributes to ``metrics.csv``, ``predictions.csv``,
  ``costs.csv``, ``inference.csv``.

Planners, executors, the dry run and the table collection iterate this registry; adding a kind
is one new module (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from ...errors import ConfigError
from ...registry import Registry

__all__ = ["KINDS", "StepKind", "Input", "Estimate", "register_kind", "TABLES"]

#: the run directory's tables: file name -> leading columns (docs/run-directory.md)
TABLES: dict[str, tuple[str, ...]] = {
    "metrics.csv": ("strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value",
                    "method", "source", "shots", "draw"),  # the last four: study runs only (medapt.suite.study)
    "predictions.csv": ("strategy", "seed", "head", "task", "split", "index", "label"),
    "costs.csv": (),  # medapt.cost.COST_COLUMNS
    "inference.csv": ("strategy", "seed"),
}


@dataclass(frozen=True)
class Input:
    """A named input of a kind: the step kinds it accepts, and whether it may be absent."""

    name: str
    kinds: tuple[str, ...]
    optional: bool = False


@dataclass
class Estimate:
    """A dry-run estimate of one step: images processed and FLOPs (``None`` = unknown).

    ``forward_flops`` is the part of ``flops`` that runs without gradients (feature extraction,
    evaluation): the dry run projects it at the measured inference throughput.
    ``seconds``: the kind's own projection from a probe it measured (heads: a few epochs of the
    real head on random features of the real shapes); ``None`` = the dry run's time model
    (FLOPs at the measured FLOP/s + model builds + engine epochs and batches, ``dryrun.Calibration``).
    """

    images: int | None = None
    flops: float = 0.0
    note: str = ""
    seconds: float | None = None
    forward_flops: float = 0.0  # the part of ``flops`` run without gradients (projected at the inference FLOP/s)


class StepKind:
    """Base class of the step kinds; subclasses set the class attributes and override ``run``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Key: ClassVar[type] = dict
    inputs: ClassVar[tuple[Input, ...]] = ()
    uses_accelerator: ClassVar[bool] = False
    distributed: ClassVar[bool] = False
    memory_gb: ClassVar[float] = 1.0
    #: the step builds a backbone and loads (or saves) its weights: the dry run adds the measured
    #: build + weights I/O time (``dryrun.Calibration.build_s``) to its projection
    builds_model: ClassVar[bool] = False

    # --- the contract ---------------------------------------------------------------------------

    def run(self, ctx, step, workdir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def estimate(self, step, est) -> Estimate:
        return Estimate()

    def artefacts(self, step, result: dict[str, Any]) -> dict[str, Path]:
        """Files the step wrote *outside* its folder (absolute path -> path), digested into its
        ``step.json`` with the folder's own files; none by default."""
        return {}

    def tables(self, step, store) -> dict[str, pd.DataFrame]:
        """Rows for the run directory's tables; by default the step's ``cost.json`` as one costs row."""
        p = store.path(step) / "cost.json"
        if not p.exists():
            return {}
        row = json.loads(p.read_text())
        row["strategy"], row["shared_by"] = (step.users[0] if step.users else "-"), ";".join(step.users)
        return {"costs.csv": pd.DataFrame([row])}

    # --- kinds whose output is a dataset (prepare, fewshot): the ``data`` input of other steps ------

    def dataset(self, ctx, step):
        """The dataset the step produced (a :class:`~medapt.data.PreparedDataset` or a view of
        one), opened for running steps; :meth:`RunContext.dataset` memoises it per step."""
        raise ConfigError(f"a {self.name!r} step produces no dataset; a step's data input must be a "
                          "prepare or fewshot step")

    def dataset_size(self, step, est) -> dict[str, int] | None:
        """Images per split (``train``, ``val``, ``test``, ``external``), ``n`` and ``classes`` of
        the dataset the step produces, for the dry run (``None``: unknown); memoised by
        :meth:`Estimator.dataset`."""
        raise ConfigError(f"a {self.name!r} step produces no dataset")

    def dataset_task_type(self, step, est) -> str:
        """``binary``, ``multiclass`` or ``multilabel``: the task of the dataset the step produces."""
        raise ConfigError(f"a {self.name!r} step produces no dataset")

    def resources(self, step, runtime) -> dict[str, float]:
        """What the step asks an executor for (Ray's ``num_cpus``, ``num_gpus``, ``memory``)."""
        gpus = 1 if self.uses_accelerator and runtime.device_type == "cuda" else 0
        return {"num_cpus": 1, "num_gpus": gpus, "memory": self.memory_gb * 2**30}

    # --- checks shared by every kind ------------------------------------------------------------

    def check_inputs(self, step) -> None:
        """The step's key is a ``Key``; its inputs match the declared names and kinds."""
        if dataclasses.is_dataclass(self.Key) and not isinstance(step.key, self.Key):
            raise ConfigError(f"step kind {self.name!r} takes a {self.Key.__name__} key, got {type(step.key).__name__}")
        declared = {i.name: i for i in self.inputs}
        extra = set(step.inputs) - set(declared)
        if extra:
            raise ConfigError(f"step kind {self.name!r} has no input(s) {sorted(extra)}; it takes {sorted(declared)}")
        for i in self.inputs:
            got = step.inputs.get(i.name)
            if got is None:
                if not i.optional:
                    raise ConfigError(f"step kind {self.name!r} needs input {i.name!r} (a {' or '.join(i.kinds)} step)")
            elif got.kind not in i.kinds:
                raise ConfigError(f"step kind {self.name!r}: input {i.name!r} must be a {' or '.join(i.kinds)} step, "
                                  f"got {got.kind}")


KINDS: Registry[StepKind] = Registry("step kind")


def register_kind(cls: type[StepKind]) -> type[StepKind]:
    """Class decorator: register one instance of the kind under ``cls.name``."""
    KINDS.register(cls.name, cls())
    return cls


# the kinds medapt ships (each module registers its kind)
from . import evaluate, extract, finetune, head, inference, init, prepare, pretrain  # noqa: E402,F401
from . import fewshot  # noqa: E402,F401
from . import search  # noqa: E402,F401  (probe, detect, search, similarity: issue 12)
