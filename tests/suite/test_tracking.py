"""`tracking: mlflow | tensorboard`: every strategy x seed's metrics, parameters and costs in a local store."""

import pytest

from medapt.suite import run_experiment
from medapt.suite.experiment import load_experiment
from medapt.suite.tracking import log_run

from .conftest import tiny_config


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tiny run (one strategy, one head, two head epochs) with ``tracking: tensorboard``."""
    import yaml

    pytest.importorskip("tensorboard")
    tmp = tmp_path_factory.mktemp("tracking")
    cfg = tiny_config(tmp, strategies=["DA"], tracking="tensorboard", **{"downstream.epochs": 2})
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, run_experiment(path, out=tmp / "run", report=False, progress=False)


def test_mlflow_local_store(tracked_run, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    cfg, res = tracked_run
    exp = load_experiment(cfg, [f"tracking={{backend: mlflow, uri: '{uri}', experiment: medapt-test}}"])
    assert log_run(exp, res.run_dir) == uri  # what `medapt run` calls once the tables are collected
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["medapt-test"])
    child = runs[runs["tags.mlflow.runName"] == "DA seed 0"].iloc[0]
    assert child["params.strategy"] == "DA" and child["params.backbone"] == "tf_efficientnet_lite0"
    assert "trainable=all" in child["params.phase.phase2"]
    m = res.metrics
    last = m[(m["head"] == "model1") & (m["split"] == "test") & (m["metric"] == "auc")].sort_values("epoch").iloc[-1]
    assert child["metrics.tumor_type/model1/test/auc"] == pytest.approx(last["value"])  # the last epoch's value
    history = mlflow.MlflowClient().get_metric_history(child["run_id"], "tumor_type/model1/test/auc")
    assert sorted(h.step for h in history) == [1, 2]
    costs = res.costs
    seconds = costs[(costs["strategy"] == "DA") & (costs["phase"] == "phase2")]["seconds"].iloc[0]
    assert child["metrics.cost/pretrain/phase2/seconds"] == pytest.approx(seconds)


def test_tensorboard_event_files(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, res = tracked_run
    acc = EventAccumulator(str(res.run_dir / "tensorboard" / "DA" / "seed0"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "tumor_type/model1/test/auc" in tags and "cost/pretrain/phase1/seconds" in tags
    assert [e.step for e in acc.Scalars("tumor_type/model1/test/auc")] == [1, 2]


def test_tracking_spec_validation(write_config):
    assert load_experiment(write_config(tracking="mlflow")).tracking.backend == "mlflow"
    with pytest.raises(Exception, match="mlflow"):
        load_experiment(write_config(tracking="wandb"))
    # tracking does not make another run: the run directory's config check ignores it
    assert load_experiment(write_config(tracking="tensorboard")).digest() == load_experiment(write_config()).digest()
