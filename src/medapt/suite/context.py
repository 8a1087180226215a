"""What every step receives: the experiment, the run directory, the store and the runtime."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, atomic_write_json
from ..cost import PhaseMeter
from ..data import PreparedDataset, load_prepared
from ..models import Surgery, UnitModel, architecture_surgery, build
from ..train import Runtime
from .graph import Step
from .store import StepStore

__all__ = ["RunContext", "init_step", "save_weights", "save_cost", "n_outputs"]

log = logging.getLogger("medapt.suite")


def n_outputs(task_type: str, n_classes: int) -> int:
    """Head outputs for a task: 1 logit for binary, else one per class (or label)."""
    return 1 if task_type == "binary" else n_classes


def init_step(step: Step) -> Step:
    """The ``init`` step at the start of a chain of weights steps (follows the ``weights`` inputs)."""
    node = step
    while node.kind != "init":
        node = node.inputs["weights"]
    return node


def save_weights(model: UnitModel, workdir: Path) -> None:
    with atomic_path(workdir / "weights.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def save_cost(workdir: Path, meter: PhaseMeter) -> dict:
    row = meter.row()
    atomic_write_json(workdir / "cost.json", row, indent=None)
    return row


@dataclass
class RunContext:
    """The experiment, the run directory, its store, the data root, the runtime, and small caches."""

    experiment: Any
    run_dir: Path
    store: StepStore
    data_root: Path
    runtime: Runtime
    progress: bool | None = None
    _datasets: dict[str, PreparedDataset] = field(default_factory=dict)  # per data step id
    _prepared: dict[str, PreparedDataset] = field(default_factory=dict)  # per prepared folder

    def dataset(self, data_step: Step) -> PreparedDataset:
        """The dataset a ``prepare`` or ``fewshot`` step produced (its kind opens it), once per step."""
        if data_step.id not in self._datasets:
            from .kinds import KINDS  # the kinds import this module

            self._datasets[data_step.id] = KINDS.get(data_step.kind).dataset(self, data_step)
        return self._datasets[data_step.id]

    def prepared(self, path: str | Path) -> PreparedDataset:
        """A prepared folder, opened once (images memory-mapped) however many steps name it."""
        key = str(Path(path))
        if key not in self._prepared:
            self._prepared[key] = load_prepared(Path(path))
        return self._prepared[key]

    def meter(self, step: Step, phase: str, device: str | None = None) -> PhaseMeter:
        return PhaseMeter(strategy=step.users[0] if step.users else "-", step=step.kind, phase=phase,
                          seed=int(getattr(step.key, "seed", 0)), device=device or str(self.runtime.torch_device),
                          track_energy=self.experiment.cost.track_energy,
                          energy_table=self.experiment.cost.energy_table)

    def load_model(self, weights_step: Step) -> UnitModel:
        """The model whose weights ``weights_step`` (an init, pretrain or finetune step) produced."""
        key = init_step(weights_step).key
        result = self.store.result(weights_step)
        # the architecture only: the weights come from the file (no pretrained download, no init draws)
        surgery = architecture_surgery(Surgery(keep=key.surgery["keep"], init=key.surgery["init"],
                                               head=key.surgery["head"]))
        model = build(key.backbone, surgery, n_outputs=int(result["n_outputs"]), image_size=key.image_size)
        model.load_state_dict(load_file(str(self.store.path(weights_step) / "weights.safetensors")))
        return model
