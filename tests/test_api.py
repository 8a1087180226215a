"""The public Python API mirrors the CLI (DESIGN §10)."""

import pytest

import medapt


def test_public_names_resolve():
    from medapt.suite import load_experiment, run_experiment

    from medapt.api import open_run, run, set_verbosity

    assert medapt.load_experiment is load_experiment and medapt.run_experiment is run_experiment
    # medapt.run wraps run_experiment with notebook defaults (INFO logging, progress bars)
    assert medapt.run is run and medapt.open_run is open_run and medapt.set_verbosity is set_verbosity
    assert medapt.strategies.get("DA_L1SB").family == "partial DAPT"
    assert callable(medapt.models.build) and callable(medapt.build_report)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        medapt.nope  # noqa: B018


def test_run_result_tables_and_open_run(tmp_path):
    import pandas as pd

    from medapt.errors import RunDirError
    from medapt.suite.results import open_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\ndownstream: {threshold: 0.5}\n")
    rows = [("DA", 0, "model1", "t", "test", e, float(e), "auc", v) for e, v in ((1, 0.4), (2, 0.7))]
    pd.DataFrame(rows, columns=["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]) \
        .to_csv(run / "metrics.csv", index=False)
    r = open_run(run)
    assert len(r.metrics) == 2 and r.costs.empty and r.paths["metrics.csv"] == run / "metrics.csv"
    s = r.summary.iloc[0]
    assert s["best_auc_mean"] == 0.7 and s["final_auc_mean"] == 0.7 and s["epoch_to_threshold_median"] == 2
    assert isinstance(r.recommendation, pd.DataFrame)
    with pytest.raises(RunDirError, match="not a medapt run directory"):
        open_run(tmp_path / "nothing")


def test_set_verbosity_adds_one_handler():
    import logging

    log = logging.getLogger("medapt")
    before, level = list(log.handlers), log.level
    try:
        medapt.set_verbosity("INFO")
        medapt.set_verbosity("DEBUG")
        ours = [h for h in log.handlers if h not in before]
        assert len(ours) == 1 and log.level == logging.DEBUG
        with pytest.raises(ValueError, match="unknown log level"):
            medapt.set_verbosity("LOUD")
    finally:
        for h in log.handlers[:]:
            if h not in before:
                log.removeHandler(h)
        log.setLevel(level)


def test_dataset_paths_are_relative_to_the_config(tmp_path, monkeypatch):
    import yaml

    from medapt.suite.paths import resolve_relative_paths

    raw = {"backbone": {"name": "resnet18", "weights": "w/model.safetensors"},
           "data": {"root": "cache", "source": {"format": "folder", "path": "scans"},
                    "targets": {"t": {"dataset": {"format": "csv", "path": "a.csv", "image_root": "/abs/img"},
                                      "external": {"format": "dicom", "path": "~/ext"}}}}}
    (tmp_path / "cfg").mkdir()
    cfg = tmp_path / "cfg" / "exp.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    out = resolve_relative_paths(raw, "cfg/exp.yaml")
    base = (tmp_path / "cfg").resolve()
    assert out["data"]["source"]["path"] == str(base / "scans")
    assert out["data"]["targets"]["t"]["dataset"] == {"format": "csv", "path": str(base / "a.csv"), "image_root": "/abs/img"}
    assert out["data"]["targets"]["t"]["external"]["path"] == "~/ext"  # home-relative: kept
    assert out["backbone"]["weights"] == str(base / "w" / "model.safetensors")
    assert out["data"]["root"] == "cache"  # the cache is an output: relative to the working folder
