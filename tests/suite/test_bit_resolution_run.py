"""BiT-HyperRule's resolution through the planner and the run: the own head is fine-tuned and
evaluated at the rule's crop size (see tests/train/test_bit_resolution.py for the engine)."""

import torch

from medapt.models.model import UnitModel

from .conftest import tiny_config


class ShapeSpy:
    """Records (step kind, grad enabled, input H×W) at every UnitModel.forward_from call."""

    def __init__(self, monkeypatch, where):
        self.calls = []
        forward = UnitModel.forward_from

        def spy(model, x, start):
            self.calls.append((where[0], torch.is_grad_enabled(), tuple(x.shape[-2:])))
            return forward(model, x, start)

        monkeypatch.setattr(UnitModel, "forward_from", spy)


def test_study_run_fine_tunes_and_evaluates_the_own_head_at_the_crop_size(tmp_path, monkeypatch):
    """Through the planner (schedule.rule: bit-hyperrule on 32-px images → resize 160, crop 128): the
    finetune steps train and validate on 128² inputs and the evaluate step scores test and external
    at 128². The rule's step count is shortened here (boundaries 1..3) to keep the run small."""
    from medapt.suite import study
    from medapt.suite.experiment import experiment_from_dict
    from medapt.suite.kinds.evaluate import Evaluate
    from medapt.suite.kinds.finetune import Finetune
    from medapt.suite.run import run_experiment

    rule = study.bit_hyperrule
    monkeypatch.setattr(study, "bit_hyperrule", lambda n, size: study.dataclasses.replace(
        rule(n, size), boundaries=(1, 1, 2, 2, 3)))
    where = [None]
    spy = ShapeSpy(monkeypatch, where)
    for kind in (Finetune, Evaluate):
        def wrapped(self, ctx, step, workdir, _run=kind.run, _name=kind.name):
            where[0] = _name
            try:
                return _run(self, ctx, step, workdir)
            finally:
                where[0] = None
        monkeypatch.setattr(kind, "run", wrapped)
    cfg = tiny_config(tmp_path, strategies=["FTL"])
    cfg["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    cfg["data"].pop("source")
    cfg["schedule"] = {"rule": "bit-hyperrule", "batch_size": 8}
    cfg["downstream"]["heads"] = []
    cfg["cost"]["inference"] = False
    run_experiment(experiment_from_dict(cfg), out=tmp_path / "run", report=False, progress=False)
    ft = {s for k, _, s in spy.calls if k == "finetune"}
    ev = [s for k, g, s in spy.calls if k == "evaluate"]
    assert ft == {(128, 128)} and any(g for k, g, _ in spy.calls if k == "finetune")
    assert ev and set(ev) == {(128, 128)}
