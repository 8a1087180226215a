"""A study end to end at test size: sources × strategies × seeds × shots through the report, and the
multi-label path (phantom CSV → multi-label DAPT → heads → per-label report)."""

from __future__ import annotations

import pandas as pd
import pytest

from medapt.suite import run_experiment
from medapt.suite.experiment import experiment_from_dict

from .conftest import tiny_config

pytestmark = pytest.mark.slow


def test_study_runs_and_reports_cells_paired_tests_and_fewshot(tmp_path):
    cfg = tiny_config(tmp_path, strategies=["ImageNet", "FTL"], seeds=2)
    cfg["data"].pop("source")
    cfg["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    cfg["data"]["targets"] = {"tumor_type": {"dataset": {"format": "phantom", "task": "tumor_type",
                                                         "n_per_class": 10, "slices_per_patient": 1}}}
    cfg.update(sources=[{"name": "imagenet", "weights": "embedded"}, {"name": "scratch", "weights": "none"}],
               shots=[2, "full"], stats={"reference": "FTL/imagenet"}, schedule={"epochs": {"finetune": 1}})
    cfg["cost"]["inference"] = False
    res = run_experiment(experiment_from_dict(cfg), out=tmp_path / "run")
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {"method", "source", "shots", "draw"} <= set(m.columns)
    assert set(m["strategy"]) >= {"FTL/scratch/2-shot", "ImageNet/imagenet/full"}
    assert set(m["seed"]) == {0, 1}
    html = res.report.read_text()
    assert "Study: sources, seeds, shots" in html and "t-test p (Holm)" in html and "DeLong per seed" in html
    assert "Few-shot transfer" in html and (tmp_path / "run" / "figures" / "fewshot_tumor_type_model1.png").exists()
    # a 2-shot head trains on 2 images per class: the cost rows say so (the few-shot view reached the head)
    fs = [s for s in res.plan.steps if s.kind == "fewshot"]
    assert len(fs) == 2  # one per seed, shared by both sources and both strategies


def test_multilabel_end_to_end(tmp_path):
    from medapt.data.phantom_csv import PHANTOM_FINDINGS, write_phantom_csv

    src = write_phantom_csv(tmp_path / "pre", n_per_class=6, size=32, seed=1, slices_per_patient=1)
    tgt = write_phantom_csv(tmp_path / "tgt", n_per_class=8, size=32, seed=0, slices_per_patient=1)
    spec = {"format": "csv", "label_columns": PHANTOM_FINDINGS, "patient_column": "Patient", "uncertain": "ignore"}
    cfg = tiny_config(tmp_path, strategies=["DA", "FTL"], seeds=[0])
    cfg["data"]["split"] = {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0}
    cfg["data"]["source"] = {**spec, "path": str(src)}
    cfg["data"]["targets"] = {"findings": {"dataset": {**spec, "path": str(tgt)}}}
    cfg["schedule"] = {"epochs": {"phase1": 1, "phase2": 1, "finetune": 1}}
    cfg["cost"]["inference"] = False
    res = run_experiment(experiment_from_dict(cfg), out=tmp_path / "run")
    p = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert [f"label_{i}" for i in range(5)] == [c for c in p.columns if c.startswith("label_")]
    assert set(p["head"]) == {"model1", "own"}
    pre = next(s for s in res.plan.steps if s.kind == "pretrain")
    assert res.plan.steps and pre.inputs["data"].key.spec["label_columns"] == PHANTOM_FINDINGS
    html = res.report.read_text()
    assert "Multi-label tasks: per-label AUC" in html and "Inflammatory" in html
