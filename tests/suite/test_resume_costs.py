"""A phase interrupted and resumed is charged for all its epochs, and says it was resumed."""

import json

import pandas as pd
import pytest

from medapt.suite import run_experiment
from medapt.suite.kinds import pretrain


def test_resumed_phase_costs_cover_every_epoch(write_config, tmp_path, monkeypatch):
    cfg = write_config(strategies=["DA"], **{"schedule.epochs": {"phase1": 4, "phase2": 1, "phase3": 1},
                                           "engine.checkpoint_every": 1})  # a checkpoint every epoch
    out = tmp_path / "run"
    real = pretrain.train_phase
    calls = {"n": 0}

    def interrupt_after_epoch_2(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            def stop(epoch, loss):
                if epoch == 2:
                    raise KeyboardInterrupt
            k["on_epoch_end"] = stop
        return real(*a, **k)

    monkeypatch.setattr(pretrain, "train_phase", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out=out, report=False, only="pretrain")
    res = run_experiment(cfg, out=out, report=False, only="pretrain")
    costs = pd.read_csv(out / "costs.csv")
    row = costs[costs.phase == "phase1"].iloc[0]
    prep = next(s for s in res.plan.steps if s.kind == "prepare" and s.label == "source")
    n_train = json.loads((out / "steps" / prep.id / "step.json").read_text())["result"]["splits"]["train"]
    assert row.resumes == 1
    assert row.images == 4 * n_train  # all four epochs, not the two after the resume
    assert row.flops_total >= row.images * row.flops_per_image > 0
    other = costs[costs.phase != "phase1"]
    assert (other.resumes == 0).all()
    log = (out / "log.txt").read_text()
    assert "resuming after epoch 2" in log
