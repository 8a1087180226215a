"""`medapt run` end to end at test size: sharing, skipping, resuming, locks, dry run."""

import json

import pandas as pd
import pytest

from medapt.cli import main
from medapt.errors import ConfigError, RunDirError, RunLockedError
from medapt.suite import load_experiment, plan_experiment, run_experiment
from medapt.suite.run import RunLock


def test_plan_shares_phase1_init_and_data(write_config):
    plan = plan_experiment(load_experiment(write_config()))
    c = plan.counts()
    # ImageNet, DA, DA_L1SB share one full-backbone init; DA_TF_F1B and ImageNet_TF_F1B another
    assert c["init"] == 2
    # DA and DA_L1SB share phase 1: 1 + DA p2 + L1SB p2 + TF p1 + TF p2
    assert c["pretrain"] == 5
    assert c["prepare"] == 3  # source, tumor_type, tumor_type/external
    # 5 strategies x (dev + external) features, each once
    assert c["extract"] == 10 and c["head"] == 5
    phase1 = [s for s in plan.steps if s.kind == "pretrain" and s.label == "phase1" and "DA" in s.users]
    assert len(phase1) == 1 and phase1[0].users == ["DA", "DA_L1SB"]


def test_run_then_rerun_reuses_every_step(write_config, tmp_path):
    cfg = write_config()
    out = tmp_path / "run"
    res = run_experiment(cfg, out=out, report=False)
    n = len(res.plan.steps)
    assert len(res.executed) == n and not res.reused
    for f in ("config.yaml", "environment.json", "metrics.csv", "costs.csv", "predictions.csv", "inference.csv", "log.txt"):
        assert (out / f).is_file(), f
    m = pd.read_csv(out / "metrics.csv")
    assert set(m.strategy) == {"ImageNet", "DA", "DA_L1SB", "DA_TF_F1B", "ImageNet_TF_F1B"}
    assert set(m.split) == {"test", "external"} and m.epoch.max() == 3
    assert m.value.between(0, 1).all()
    costs = pd.read_csv(out / "costs.csv")
    pre = costs[costs.step == "pretrain"]
    assert len(pre) == 5 and pre.energy_source.eq("none").all()  # track_energy false: said, not guessed
    shared = pre[pre.phase == "phase1"].sort_values("params_total").iloc[-1]
    assert shared.shared_by == "DA;DA_L1SB"
    # the cached phase 1 costs far fewer FLOPs per image than a full pass
    p2 = pre[(pre.strategy == "DA") & (pre.phase == "phase2")].iloc[0]
    assert shared.cached and shared.flops_per_image < p2.flops_per_image / 100
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["torch"] and env["device"] == "cpu"

    again = run_experiment(cfg, out=out, report=False)
    assert not again.executed and len(again.reused) == n
    assert "reused" in (out / "log.txt").read_text()


def test_changed_downstream_reruns_only_heads(write_config, tmp_path):
    out = tmp_path / "run"
    run_experiment(write_config(), out=out, report=False)
    res = run_experiment(write_config(**{"downstream.epochs": 2}), out=out, report=False, force=True)
    kinds = {s.split("/")[0] for s in res.executed}
    assert kinds == {"head"}


def test_different_config_is_refused_without_force(write_config, tmp_path):
    out = tmp_path / "run"
    run_experiment(write_config(), out=out, report=False, only="pretrain")
    with pytest.raises(RunDirError, match="different config.*--force"):
        run_experiment(write_config(**{"downstream.lr": 0.5}), out=out, report=False, only="pretrain")


def test_interrupted_pretrain_resumes(write_config, tmp_path, monkeypatch):
    from medapt.suite.kinds import pretrain

    out = tmp_path / "run"
    real = pretrain.train_phase
    calls = {"n": 0}

    def crash_in_second_phase(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pretrain, "train_phase", crash_in_second_phase)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(write_config(), out=out, report=False, only="pretrain")
    partial = list((out / "steps" / "pretrain").glob("*.partial"))
    assert len(partial) == 1  # the interrupted step never looks complete
    monkeypatch.setattr(pretrain, "train_phase", real)
    res = run_experiment(write_config(), out=out, report=False, only="pretrain")
    assert len(res.reused) >= 2  # prepare + init + the completed phase 1
    assert not list((out / "steps" / "pretrain").glob("*.partial"))


def test_second_run_on_a_locked_directory_refuses(write_config, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(RunLockedError, match="in use by another `medapt run`"):
            run_experiment(write_config(), out=out, report=False)


def test_external_set_with_other_classes_is_refused(write_config):
    ext = {"format": "phantom", "task": "disease", "n_per_class": 4, "shift": True}
    with pytest.raises(ConfigError, match="external set's classes"):
        plan_experiment(load_experiment(write_config(**{"data.targets.tumor_type.external": ext})))


def test_corrupt_step_is_recomputed(write_config, tmp_path):
    out = tmp_path / "run"
    res = run_experiment(write_config(), out=out, report=False, only="pretrain")
    step = next(s for s in res.plan.steps if s.kind == "init")
    (out / "steps" / step.id / "step.json").write_text("{not json")
    again = run_experiment(write_config(), out=out, report=False, only="pretrain")
    assert step.id in again.executed


def test_cli_dry_run_prints_plan_with_projection(write_config, tmp_path, capsys):
    code = main(["run", str(write_config()), "--out", str(tmp_path / "dry"), "--dry-run", "--format", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["id"] == "total" and rows[-1]["flops"] > 0 and rows[-1]["seconds"] > 0
    assert "img/s" in rows[-1]["label"]  # the measured probe behind the time estimate
    pre = [r for r in rows if r["kind"] == "pretrain"]
    shared = [r for r in pre if len(r["users"]) > 1]
    assert shared and all(r["status"] == "to run" for r in rows[:-1])
    assert all(r["flops"] > 0 for r in rows if r["kind"] in ("pretrain", "extract", "head"))
    heads = [r for r in rows if r["kind"] == "head"]
    assert all(r["images"] == 18 * 3 for r in heads)  # 18 training images (75% of 3 x 8) x 3 epochs
    # a dry run writes only its projection (for the run's projected-vs-actual table)
    assert [p.name for p in (tmp_path / "dry").iterdir()] == ["projection.json"]


def test_cli_run_writes_report(write_config, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", str(write_config()), "--out", str(out), "--format", "json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["report"] and (out / "report.html").is_file()
    assert list((out / "figures").glob("*.png"))


def test_cached_phase_costs_fewer_flops_than_the_same_phase_uncached(write_config, tmp_path):
    rows = {}
    for cache in ("auto", "off"):
        out = tmp_path / cache
        run_experiment(write_config(strategies=["DA"], **{"engine.cache": cache}), out=out, report=False, only="pretrain")
        c = pd.read_csv(out / "costs.csv")
        rows[cache] = c[(c.step == "pretrain") & (c.phase == "phase1")].iloc[0]
    on, off = rows["auto"], rows["off"]
    assert on.cached and not off.cached and on.images == off.images
    assert on.flops_per_image < off.flops_per_image / 100  # head only vs the whole backbone each epoch
    assert on.flops_total < off.flops_total / 1.5  # even counting the one cache-building forward pass


def test_cli_pretrain_writes_weights_and_phase_logs(write_config, tmp_path, capsys):
    out = tmp_path / "pre"
    assert main(["pretrain", str(write_config(strategies=["DA_L1SB"])), "--out", str(out)]) == 0
    assert "pre-training done" in capsys.readouterr().out
    steps = list((out / "steps" / "pretrain").iterdir())
    assert len(steps) == 2  # phase1, phase2
    for s in steps:
        info = json.loads((s / "step.json").read_text())
        assert (s / "weights.safetensors").is_file()
        assert len(info["result"]["phase"]["losses"]) == info["key"]["phase"]["epochs"]
    log = (out / "log.txt").read_text()
    assert "phase1: cached pooled features" in log and "phase2: cached activations after unit 16" in log  # Lite0's last block + conv_head train
    assert not (out / "metrics.csv").exists()  # pre-training only
    assert (out / "costs.csv").is_file()


def test_local_weights_file_is_part_of_the_step_identity(write_config, tmp_path):
    import torch

    from medapt.models import create_backbone

    f = tmp_path / "w.pt"
    torch.save(create_backbone("tf_efficientnet_lite0", "embedded")[0].state_dict(), f)
    cfg = write_config(strategies=["ImageNet"], **{"backbone.weights": str(f)})
    a = plan_experiment(load_experiment(cfg))
    f.write_bytes(f.read_bytes())  # the same path, rewritten: a new mtime
    b = plan_experiment(load_experiment(cfg))
    init = lambda plan: next(s for s in plan.steps if s.kind == "init")  # noqa: E731
    assert init(a).hash != init(b).hash
    with pytest.raises(ConfigError, match="neither none, embedded, imagenet nor an existing file"):
        plan_experiment(load_experiment(write_config(**{"backbone.weights": str(tmp_path / "missing.pt")})))
