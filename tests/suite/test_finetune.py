"""Target-task fine-tuning end to end: own-head rows beside the frozen heads, validation monitoring,
bad input named (issue: foundation — target fine-tuning)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from medapt.errors import ConfigError
from medapt.suite import load_experiment, plan_experiment, run_experiment

DA_FT = {"name": "DA_FT", "family": "full DAPT + fine-tuning",
         "phases": [{"name": "phase1", "trainable": "head", "lr": 1e-3, "epochs": 2},
                    {"name": "phase2", "trainable": "all", "lr": 1e-4, "epochs": 1},
                    {"name": "finetune", "trainable": "all", "data": "target", "lr": 1e-3, "epochs": 3}]}


def finetune_config(write_config, **changes):
    base = {"strategies": ["FTL", "DA_FT", "ImageNet"], "custom_strategies": [DA_FT],
            "data.split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0},
            "data.targets.tumor_type.dataset.n_per_class": 16,
            "schedule": {"epochs": {"phase1": 2, "phase2": 1, "finetune": 3}}}
    return write_config(**(base | changes))


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    from .conftest import tiny_config

    tmp = tmp_path_factory.mktemp("ft")
    cfg = tiny_config(tmp)
    cfg["strategies"] = ["FTL", "DA_FT", "ImageNet"]
    cfg["custom_strategies"] = [DA_FT]
    cfg["data"]["split"] = {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0}
    cfg["data"]["targets"]["tumor_type"]["dataset"]["n_per_class"] = 16  # 12 patients: every split gets each class
    cfg["schedule"] = {"epochs": {"phase1": 2, "phase2": 1, "finetune": 3}}
    path = tmp / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / "run"
    res = run_experiment(path, out=out)
    return path, out, res


def test_plan_has_named_finetune_and_evaluate_steps(write_config):
    plan = plan_experiment(load_experiment(finetune_config(write_config)))
    c = plan.counts()
    assert c["finetune"] == 2 and c["evaluate"] == 2  # FTL and DA_FT on the one task
    ft = [s for s in plan.steps if s.kind == "finetune"]
    assert all(set(s.inputs) == {"weights", "data"} and s.key.new_head for s in ft)
    by_user = {s.users[0]: s for s in ft}
    assert by_user["FTL"].inputs["weights"].kind == "init"  # FTL fine-tunes the pretrained backbone directly
    assert by_user["DA_FT"].inputs["weights"].kind == "pretrain"  # DA_FT after its DAPT phases
    ev = next(s for s in plan.steps if s.kind == "evaluate")
    assert set(ev.inputs) == {"weights", "data", "external"}
    # the frozen-feature heads stay available for every strategy, on the fine-tuned weights for FTL
    heads = [s for s in plan.steps if s.kind == "head"]
    assert {s.users[0] for s in heads} == {"FTL", "DA_FT", "ImageNet"}
    ftl_head = next(s for s in heads if s.users == ["FTL"])
    assert ftl_head.inputs["features"].inputs["weights"] is by_user["FTL"]


def test_own_head_rows_beside_frozen_heads(finetune_run):
    _, out, res = finetune_run
    m = pd.read_csv(out / "metrics.csv")
    own = m[m["head"] == "own"]
    assert set(own.strategy) == {"FTL", "DA_FT"}
    # per-epoch validation curve, then test and external scored once, at the kept epoch
    val = own[(own.split == "val") & (own.metric == "auc")]
    assert sorted(val[val.strategy == "FTL"].epoch) == [1, 2, 3]
    for s in ("FTL", "DA_FT"):
        t = own[(own.strategy == s) & (own.split == "test") & (own.metric == "auc")]
        e = own[(own.strategy == s) & (own.split == "external") & (own.metric == "auc")]
        assert len(t) == 1 and len(e) == 1 and t.epoch.iloc[0] == e.epoch.iloc[0]
        v = val[val.strategy == s]
        assert t.epoch.iloc[0] == v.loc[v.value.idxmax(), "epoch"]  # the best validation epoch is the one kept
    assert {"model1"} <= set(m[m.strategy == "FTL"]["head"])
    p = pd.read_csv(out / "predictions.csv")
    assert {"test", "external"} == set(p[p["head"] == "own"].split)
    costs = pd.read_csv(out / "costs.csv")
    assert set(costs[costs.step == "finetune"].strategy) == {"FTL", "DA_FT"}
    assert (costs[costs.step == "finetune"].phase == "finetune").all()
    assert "evaluate" in set(costs.step)


def test_own_head_in_the_report(finetune_run):
    _, out, _ = finetune_run
    html = (out / "report.html").read_text()
    assert "head own" in html


def test_finetuned_weights_are_the_best_validation_epoch(finetune_run):
    _, out, res = finetune_run
    step = next(s for s in res.plan.steps if s.kind == "finetune" and s.users == ["FTL"])
    info = json.loads((out / "steps" / step.id / "step.json").read_text())
    phase = info["result"]["phase"]
    aucs = [c["auc"] for c in phase["curve"]]
    assert phase["best_epoch"] == int(np.argmax(aucs)) + 1 and phase["monitor"] == "auroc"
    assert info["result"]["selected_epoch"] == phase["best_epoch"]


def test_rerun_reuses_finetune_steps(finetune_run):
    path, out, res = finetune_run
    again = run_experiment(path, out=out, report=False)
    assert not again.executed and len(again.reused) == len(res.plan.steps)


def test_dry_run_estimates_finetune_steps(finetune_run, tmp_path):
    path, _, _ = finetune_run
    rows = run_experiment(path, out=tmp_path / "dry", dry_run=True).dry_run
    ft = [r for r in rows if r["kind"] == "finetune"]
    assert ft and all(r["flops"] > 0 and r["images"] == 24 * 3 for r in ft)  # 24 training images x 3 epochs
    assert all(r["flops"] > 0 for r in rows if r["kind"] == "evaluate")


def test_target_phase_without_targets_names_the_strategy(write_config):
    with pytest.raises(ConfigError, match=r"strategy 'FTL' has target phases.*data.targets is empty"):
        load_experiment(finetune_config(write_config, **{"data.targets": {}}))


def test_source_phase_without_source_names_the_strategy(write_config):
    with pytest.raises(ConfigError, match=r"strategy 'DA_FT' has source \(DAPT\) phases.*data.source is not set"):
        load_experiment(finetune_config(write_config, **{"data.source": None}))
    # fine-tuning only: no source needed
    exp = load_experiment(finetune_config(write_config, strategies=["FTL"], **{"data.source": None}))
    init = next(s for s in plan_experiment(exp).steps if s.kind == "init")
    assert init.inputs == {}


def test_monitor_without_a_validation_split_is_a_config_error(write_config):
    with pytest.raises(ConfigError, match=r"'FTL'.*monitors validation auroc on task\(s\) 'tumor_type'.*'val' split "
                                          r"is absent"):
        load_experiment(finetune_config(write_config, **{"data.split": {"train": 0.75, "val": 0.0, "test": 0.25}}))
    exp = load_experiment(finetune_config(write_config, strategies=["FTL"],
                                          **{"data.split": {"train": 0.75, "val": 0.0, "test": 0.25},
                                             "schedule.phases": {"finetune": {"monitor": "none"}}}))
    assert exp.strategy("FTL").phases[0].monitor is None


def test_single_class_validation_split_names_task_split_and_counts(write_config, tmp_path, monkeypatch):
    from medapt.suite.kinds import finetune

    real = finetune.class_counts

    def one_class(ds, rows):
        counts = real(ds, rows)
        return {c: (n if i == 0 else 0) for i, (c, n) in enumerate(counts.items())}

    monkeypatch.setattr(finetune, "class_counts", one_class)
    cfg = finetune_config(write_config, strategies=["FTL"])
    with pytest.raises(ConfigError, match=r"task 'tumor_type'.*'val' split has 12 images with class counts "
                                          r"\{'meningioma': 4, 'glioma': 0, 'pituitary': 0\}"):
        run_experiment(cfg, out=tmp_path / "run", report=False)


def test_unknown_augmentation_and_family_are_named(write_config):
    with pytest.raises(ConfigError, match="Unknown augmentation 'hflp'. Did you mean 'hflip'"):
        load_experiment(finetune_config(write_config, strategies=["FTL"],
                                        **{"schedule.phases": {"finetune": {"augment": ["hflp"]}}}))
    with pytest.raises(ConfigError, match="Unknown strategy family 'TLL'. Did you mean 'TTL'"):
        load_experiment(finetune_config(write_config, strategies=["TLL@4"]))
