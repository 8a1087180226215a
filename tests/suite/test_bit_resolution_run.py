"""BiT-HyperRule's resolution through the planner and the run: the own head is fine-tuned and
evaluated at the rule's crop size (see tests/train/test_bit_resolution.py for the engine)."""

import pytest
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
    at 128². The rule's step count is shortened here (boundaries 1..5: 3 epochs) to keep the run small."""
    from medapt.suite import study
    from medapt.suite.experiment import experiment_from_dict
    from medapt.suite.kinds.evaluate import Evaluate
    from medapt.suite.kinds.finetune import Finetune
    from medapt.suite.run import run_experiment

    rule = study.bit_hyperrule
    monkeypatch.setattr(study, "bit_hyperrule", lambda n, size: study.dataclasses.replace(
        rule(n, size), boundaries=(1, 2, 3, 4, 5)))
    where, results = [None], {}
    spy = ShapeSpy(monkeypatch, where)
    for kind in (Finetune, Evaluate):
        def wrapped(self, ctx, step, workdir, _run=kind.run, _name=kind.name):
            where[0] = _name
            try:
                results[_name] = _run(self, ctx, step, workdir)
                return results[_name]
            finally:
                where[0] = None
        monkeypatch.setattr(kind, "run", wrapped)
    cfg = tiny_config(tmp_path, strategies=["FTL"])
    cfg["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    cfg["data"].pop("source")
    cfg["data"]["targets"]["tumor_type"]["dataset"]["n_per_class"] = 16  # a non-empty test split
    cfg["schedule"] = {"rule": "bit-hyperrule", "batch_size": 8}
    cfg["downstream"]["epochs"] = 1
    cfg["cost"]["inference"] = False
    run_experiment(experiment_from_dict(cfg), out=tmp_path / "run", report=False, progress=False)
    ft = {s for k, _, s in spy.calls if k == "finetune"}
    ev = [s for k, g, s in spy.calls if k == "evaluate"]
    assert ft == {(128, 128)} and any(g for k, g, _ in spy.calls if k == "finetune")
    assert ev and set(ev) == {(128, 128)}
    assert {"test_auc", "external_auc"} <= set(results["evaluate"]["final"])  # both scored at 128²


@pytest.mark.parametrize("size, flag, expected", [(64, True, (160, 128)), (95, True, (160, 128)), (96, True, (512, 480)),
                                                  (96, False, None)])
def test_planner_sets_the_resolution_at_the_96_squared_boundary(tmp_path, size, flag, expected):
    """Below 96² pixels resize 160 / crop 128, from 96² on 512 / 480; schedule.bit_resolution: false leaves it out
    (and the evaluate step's input is that finetune step)."""
    from medapt.suite import plan_experiment
    from medapt.suite.experiment import experiment_from_dict

    cfg = tiny_config(tmp_path, strategies=["FTL"])
    cfg["data"]["image_size"] = size
    cfg["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    cfg["data"].pop("source")
    cfg["schedule"] = {"rule": "bit-hyperrule", "batch_size": 8, "bit_resolution": flag}
    steps = plan_experiment(experiment_from_dict(cfg)).steps
    fts = [s for s in steps if s.kind == "finetune"]
    assert fts and {s.key.phase.resolution for s in fts} == {expected}
    assert all(s.inputs["weights"].key.phase.resolution == expected for s in steps if s.kind == "evaluate")
    if not flag:
        assert all("resolution" not in s.key.phase.to_dict() for s in fts)
