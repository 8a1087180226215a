"""The suite's shape: step kinds as a registry with typed keys and named inputs, planners (iterative
planning), one runtime in the hashes, executors reading the kinds' resources (docs/architecture.md)."""

import dataclasses
import json

import pandas as pd
import pytest

from medapt.errors import ConfigError
from medapt.suite import KINDS, PLANNERS, Planner, Step, load_experiment, plan_experiment, run_experiment
from medapt.suite.kinds.head import HeadKey
from medapt.suite.planners import Pending
from medapt.train import Runtime


def test_every_kind_declares_the_contract():
    assert {"prepare", "init", "pretrain", "finetune", "evaluate", "extract", "head", "inference"} <= set(KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name and kind.description
        assert dataclasses.is_dataclass(kind.Key) and kind.Key.__dataclass_params__.frozen
        assert len({i.name for i in kind.inputs}) == len(kind.inputs)
        res = kind.resources(None, Runtime("cpu"))
        assert res["num_cpus"] >= 1 and res["num_gpus"] == 0  # no GPU asked for on a CPU runtime


def test_named_inputs_are_checked():
    prep = KINDS.get("prepare").Key({"format": "phantom"}, None, 32, 3, (0.5,) * 3, (0.5,) * 3)
    data = Step("prepare", prep)
    key = HeadKey("model1", "t", 1, 1e-3, 16, 0, ("auc",))
    with pytest.raises(ConfigError, match="step kind 'head' needs input 'features'"):
        Step("head", key, {"data": data})
    with pytest.raises(ConfigError, match="input 'features' must be a extract step, got prepare"):
        Step("head", key, {"features": data, "data": data})
    with pytest.raises(ConfigError, match="has no input"):
        Step("prepare", prep, {"weights": data})
    with pytest.raises(ConfigError, match="takes a HeadKey key"):
        Step("head", {"head": "model1"}, {})


def test_data_inputs_are_opened_and_sized_by_their_kind(monkeypatch, tmp_path):
    """A step's ``data`` input is opened (run) and sized (dry run) by its own kind — prepare or
    fewshot — not by kind-name checks in the run context and the estimator."""
    from medapt.suite.context import RunContext
    from medapt.suite.estimate import Estimator
    from medapt.suite.kinds import StepKind
    from medapt.suite.kinds.fewshot import FewshotKey

    makers = {name for name, kind in KINDS.items() if type(kind).dataset is not StepKind.dataset}
    assert makers == {"prepare", "fewshot"}
    prepare = KINDS.get("prepare")
    data = Step("prepare", prepare.Key({"format": "phantom"}, None, 32, 3, (0.5,) * 3, (0.5,) * 3))
    shots = Step("fewshot", FewshotKey("t", 2, 0, 0), {"data": data})
    sized = []

    def size(step, est):
        sized.append(step.id)
        return {"n": 100, "classes": 3, "train": 60, "val": 20, "test": 20, "external": 0}

    monkeypatch.setattr(prepare, "dataset_size", size)
    monkeypatch.setattr(prepare, "dataset_task_type", lambda step, est: "multiclass")
    est = Estimator(exp=None, store=None)
    assert est.dataset(shots) == {"n": 100, "classes": 3, "train": 6, "val": 20, "test": 20, "external": 0}
    assert est.dataset(data)["train"] == 60 and sized == [data.id]  # sized once, memoised
    assert est.task_type(shots) == "multiclass"

    opened = []
    monkeypatch.setattr(prepare, "dataset", lambda ctx, step: opened.append(step.id) or "the prepared data")
    ctx = RunContext(experiment=None, run_dir=tmp_path, store=None, data_root=tmp_path, runtime=None)
    assert ctx.dataset(data) == "the prepared data" and ctx.dataset(data) == "the prepared data"
    assert opened == [data.id]  # opened once per step
    with pytest.raises(ConfigError, match="a 'extract' step produces no dataset"):
        KINDS.get("extract").dataset(ctx, data)


def test_hash_covers_key_and_named_inputs():
    K = KINDS.get("prepare").Key
    a = Step("prepare", K({"format": "phantom"}, None, 32, 3, (0.5,) * 3, (0.5,) * 3))
    b = Step("prepare", K({"format": "phantom"}, None, 64, 3, (0.5,) * 3, (0.5,) * 3))
    assert a.hash != b.hash
    key = HeadKey("model1", "t", 1, 1e-3, 16, 0, ("auc",))
    ex = KINDS.get("extract").Key(64, {"device": "cpu"})
    init = Step("init", KINDS.get("init").Key("resnet18", "none", None, {"keep": "all", "init": "random", "head": "gap"},
                                              0, 32))
    fa, fb = Step("extract", ex, {"weights": init, "data": a}), Step("extract", ex, {"weights": init, "data": b})
    h1 = Step("head", key, {"features": fa, "data": a})
    h2 = Step("head", key, {"features": fb, "data": a})
    assert h1.hash != h2.hash and h1.hash == Step("head", key, {"data": a, "features": fa}).hash


def test_device_enters_the_hash_only_as_what_changes_the_numbers(write_config):
    exp = load_experiment(write_config(strategies=["DA"]))
    auto = plan_experiment(exp, Runtime("auto"))
    cpu = plan_experiment(exp, Runtime("cpu"))
    assert [s.hash for s in auto.steps] == [s.hash for s in cpu.steps]  # auto resolves to the CPU here
    bf16 = plan_experiment(exp, Runtime("cpu", "bf16"))
    changed = {s.kind for a, s in zip(cpu.steps, bf16.steps) if a.hash != s.hash}
    assert "pretrain" in changed and not changed & {"prepare", "init"}
    p = next(s for s in cpu.steps if s.kind == "pretrain")
    assert p.key.runtime == {"device": "cpu", "precision": "fp32", "nproc": 1}
    h = next(s for s in cpu.steps if s.kind == "head")
    assert h.key.device == "cpu"  # heads always train on the CPU


def test_nproc_beyond_the_devices_present_is_named(write_config):
    with pytest.raises(ConfigError, match=r"--nproc-per-node 99 .*found \d+ CPU core\(s\) for device 'cpu'"):
        Runtime("cpu", nproc=99)
    with pytest.raises(ConfigError, match="found"):
        run_experiment(write_config(), overrides=["engine.nproc_per_node=99"], dry_run=True)


class _BestGetsLinear(Planner):
    """A planner whose steps depend on results: a linear head for the strategy whose model1 head
    reached the best final test AUC (the shape of a search that picks the best candidate)."""

    name = "test-best"
    description = "test planner"

    def plan(self, b):
        pass

    def _heads(self, b):
        return [s for s in b.plan.steps if s.kind == "head" and s.key.head == "model1"]

    def extend(self, b, store):
        done = [(store.result(s)["final"]["test_auc"], s) for s in self._heads(b) if store.done(s)]
        if not done:
            return
        _, best = max(done, key=lambda t: t[0])
        tag = best.tags[0]
        key = dataclasses.replace(best.key, head="linear")
        b.plan.add(Step("head", key, dict(best.inputs), label="linear (best)"), tag["strategy"],
                   tag={**tag, "head": "linear"})

    def pending(self, b):
        return [Pending(self.name, "a linear head for the best strategy", steps=1)]


@pytest.fixture
def extra_planner():
    PLANNERS.register("test-best", _BestGetsLinear())
    yield
    PLANNERS._items.pop("test-best")


def test_iterative_planning_runs_steps_that_results_create(extra_planner, write_config, tmp_path):
    cfg = write_config(strategies=["ImageNet", "ImageNet_TF_F1B"])
    rows = run_experiment(cfg, out=tmp_path / "dry", dry_run=True).dry_run
    pend = [r for r in rows if r["kind"] == "pending"]
    assert len(pend) == 1 and pend[0]["status"].startswith("depends on results")
    res = run_experiment(cfg, out=tmp_path / "run", report=False)
    linear = [s for s in res.plan.steps if s.kind == "head" and s.key.head == "linear"]
    assert len(linear) == 1 and linear[0].id in res.executed
    assert "planning round 2: 1 steps from earlier results" in (tmp_path / "run" / "log.txt").read_text()
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert set(m["head"]) == {"model1", "linear"}
    again = run_experiment(cfg, out=tmp_path / "run", report=False)  # a re-run replans and reuses both rounds
    assert not again.executed and linear[0].id in again.reused


def test_planners_share_steps_across_sections(write_config):
    plan = plan_experiment(load_experiment(write_config(strategies=["DA", "FTL"],
                                                        **{"data.split": {"train": 0.5, "val": 0.25, "test": 0.25}})))
    inits = [s for s in plan.steps if s.kind == "init"]
    assert len(inits) == 1 and inits[0].users == ["DA", "FTL"]  # one backbone, one init for both sections
    assert {p for p, _ in PLANNERS.items()} >= {"dapt", "finetune", "downstream"}


def test_kinds_estimate_and_step_json_record_named_inputs(write_config, tmp_path):
    res = run_experiment(write_config(strategies=["DA"]), out=tmp_path / "run", report=False, only="pretrain")
    step = next(s for s in res.plan.steps if s.kind == "pretrain")
    info = json.loads((tmp_path / "run" / "steps" / step.id / "step.json").read_text())
    assert set(info["inputs"]) == {"weights", "data"} and info["inputs"]["data"].startswith("prepare/")
    assert info["key"]["runtime"]["device"] == "cpu"


def test_ray_executor_asks_for_the_kinds_resources(monkeypatch, write_config):
    from medapt.suite.kinds.pretrain import Pretrain

    gpu = Runtime("cpu")
    monkeypatch.setattr(type(gpu), "device_type", property(lambda self: "cuda"))
    assert Pretrain().resources(None, gpu)["num_gpus"] == 1
    assert KINDS.get("head").resources(None, gpu)["num_gpus"] == 0  # heads are CPU work
    assert KINDS.get("prepare").resources(None, gpu)["num_gpus"] == 0


def test_fused_optimizer_enters_the_hash_only_when_on(write_config):
    """engine.fused_optimizer changes the numbers when on; off (the default) keeps every earlier hash."""
    default = plan_experiment(load_experiment(write_config(strategies=["DA_L1SB"])), Runtime("cpu"))
    off = plan_experiment(load_experiment(write_config("off.yaml", strategies=["DA_L1SB"],
                                                       **{"engine.fused_optimizer": False})), Runtime("cpu"))
    on = plan_experiment(load_experiment(write_config("on.yaml", strategies=["DA_L1SB"],
                                                      **{"engine.fused_optimizer": True})), Runtime("cpu"))
    assert [s.hash for s in default.steps] == [s.hash for s in off.steps]
    assert "fused_optimizer" not in next(s for s in default.steps if s.kind == "pretrain").key.engine
    changed = {s.kind for a, s in zip(default.steps, on.steps) if a.hash != s.hash}
    assert "pretrain" in changed and not changed & {"prepare", "init"}
