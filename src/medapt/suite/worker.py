"""One step of a run on several processes: ``torchrun --nproc-per-node N -m medapt.suite.worker RUN_DIR STEP_ID``.

`medapt run` launches this for training steps when ``engine.nproc_per_node > 1`` (see
:mod:`medapt.suite.executors`). Every rank re-plans the experiment from ``RUN_DIR/config.yaml``
(planning is deterministic; steps that results create are found by extending the plan from the
completed steps), finds the step by its id, and runs it inside the process group (gloo on CPU,
NCCL on CUDA); rank 0 writes the outputs and ``result.json`` into the step's partial folder, and
the launching process completes the step.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch.distributed as dist

from ..atomic import atomic_write_json
from ..config import read_yaml
from ..errors import MedaptError
from .context import RunContext
from .experiment import experiment_from_dict
from .kinds import KINDS
from .planners import extend_plan, plan_experiment
from .store import StepStore, seed_step


def _experiment(run_dir: Path):
    return experiment_from_dict(read_yaml(run_dir / "config.yaml"), str(run_dir / "config.yaml"))


def run_step(run_dir: Path, step_id: str) -> None:
    """Run one step of the run in ``run_dir`` inside the initialised process group."""
    exp = _experiment(run_dir)
    runtime = exp.engine.runtime()
    store = StepStore(run_dir / "steps")
    plan = plan_experiment(exp, runtime)
    while step_id not in plan:
        if not extend_plan(plan, store):
            raise MedaptError(f"step {step_id} is not in the plan of {run_dir / 'config.yaml'}")
    step = plan.get(step_id)
    ctx = RunContext(exp, run_dir, store, Path(exp.data.root), runtime, progress=False)
    seed_step(step, exp.engine.deterministic)
    result = KINDS.get(step.kind).run(ctx, step, store.partial(step))
    if runtime.is_main:
        atomic_write_json(store.partial(step) / "result.json", result)


def main(argv: list[str] | None = None) -> int:
    run_dir, step_id = (argv if argv is not None else sys.argv[1:])[:2]
    device_type = _experiment(Path(run_dir)).engine.runtime().device_type
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    logger = logging.getLogger("medapt")
    logger.setLevel(logging.INFO)
    if dist.get_rank() == 0:  # one rank's lines in the run's log
        handler = logging.FileHandler(Path(run_dir) / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [rank 0/{dist.get_world_size()}]: "
                                               "%(message)s"))
        logger.addHandler(handler)
    try:
        run_step(Path(run_dir), step_id)
    except MedaptError as exc:
        print(f"medapt worker rank {dist.get_rank()}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
