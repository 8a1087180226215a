"""A synthetic run directory with the exact schema of docs/run-directory.md.

The numbers are made up (smooth AUC curves plus small noise, costs chosen so the Pareto front is
known): they exercise the report, they are not results.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

# test-split AUC each strategy's curve converges to; external is 0.08 lower (0.15 for DA_L1SB)
ASYMPTOTE = {"ImageNet": 0.90, "DA": 0.95, "DA_L1SB": 0.91, "DA_TF_F1B": 0.92, "ImageNet_TF_F1B": 0.85}
# kWh per pretrain row: phase1 is shared by DA and DA_L1SB
KWH = {("DA", "phase1"): 0.5, ("DA", "phase2"): 2.0, ("DA_L1SB", "phase2"): 1.0,
       ("DA_TF_F1B", "phase1"): 0.1, ("DA_TF_F1B", "phase2"): 0.3}
# by energy on the test split: ImageNet (0 kWh) beats ImageNet_TF_F1B; DA_TF_F1B (0.4 kWh, 0.92)
# beats DA_L1SB (1.5 kWh, 0.91); DA is the most accurate
PARETO_BY_KWH = {"ImageNet", "DA_TF_F1B", "DA"}
EPOCHS = 20
TASKS = {"tumor_type": 3, "disease": 5}  # disease has no external set
HEADS = ("model1", "linear")


def make_run_dir(path: Path, seeds=(0, 1), costs=True, predictions=True, inference=True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, preds = [], []
    for strategy, top in ASYMPTOTE.items():
        for seed in seeds:
            for head in HEADS:
                for task, n_classes in TASKS.items():
                    splits = {"test": top, "external": top - (0.15 if strategy == "DA_L1SB" else 0.08)}
                    if task == "disease":
                        splits.pop("external")
                    for split, a in splits.items():
                        a = a - (0.01 if head == "linear" else 0.0)
                        for e in range(1, EPOCHS + 1):
                            auc = a - 0.3 * np.exp(-e / 4) + rng.normal(0, 0.002)
                            sec = e * (0.05 if head == "linear" else 0.08)
                            rows += [(strategy, seed, head, task, split, e, sec, "auc", auc),
                                     (strategy, seed, head, task, split, e, sec, "auprc", auc - 0.05),
                                     (strategy, seed, head, task, split, e, sec, "accuracy", auc - 0.2)]
                        n = 60
                        y = np.arange(n) % n_classes
                        z = rng.normal(size=(n, n_classes)) + (3 * a - 1.5) * np.eye(n_classes)[y]
                        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
                        for i in range(n):
                            preds.append(dict(strategy=strategy, seed=seed, head=head, task=task, split=split,
                                              index=i, label=int(y[i]),
                                              **{f"score_{k}": p[i, k] for k in range(n_classes)}))
    cols = ["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]
    pd.DataFrame(rows, columns=cols).to_csv(path / "metrics.csv", index=False)
    if predictions:
        pd.DataFrame(preds).to_csv(path / "predictions.csv", index=False)
    if costs:
        crow = []
        params = {"DA": (4_010_000, {"phase1": 1_281, "phase2": 3_960_000}),
                  "DA_L1SB": (4_010_000, {"phase1": 1_281, "phase2": 900_000}),
                  "DA_TF_F1B": (30_000, {"phase1": 33, "phase2": 28_000})}
        for seed in seeds:
            for (strategy, phase), kwh in KWH.items():
                total, trainable = params[strategy]
                shared = "DA;DA_L1SB" if (strategy, phase) == ("DA", "phase1") else ""
                source = "measured-rapl" if strategy == "DA_TF_F1B" else "estimated-green-algorithms"
                crow.append(dict(strategy=strategy, seed=seed, step="pretrain", phase=phase,
                                 seconds=kwh * 3600 / 0.2, images=1000, flops_per_image=1e9, flops_total=1e12,
                                 kwh=kwh, energy_source=source,
                                 energy_note="" if source.startswith("measured") else "RAPL not readable: permission denied",
                                 params_total=total, params_trainable=trainable[phase],
                                 cached=phase == "phase1", cache_note="k=17" if phase == "phase1" else "trains all units",
                                 shared_by=shared))
            crow.append(dict(strategy="DA", seed=seed, step="extract", phase="tumor_type", seconds=12.0, images=400,
                             flops_per_image=4e8, flops_total=1.6e11, kwh=0.001, energy_source="estimated-tdp",
                             energy_note="", params_total=4_010_000, params_trainable=0, cached=False,
                             cache_note="", shared_by=""))
        pd.DataFrame(crow).to_csv(path / "costs.csv", index=False)
    if inference:
        pd.DataFrame([dict(strategy=s, params=p, macs=p * 100, latency_ms_cpu=p / 1e5 + 1.0, device="cpu")
                      for s, p in [("ImageNet", 4_007_548), ("DA", 4_007_548), ("DA_L1SB", 4_007_548),
                                   ("DA_TF_F1B", 29_000), ("ImageNet_TF_F1B", 28_500)]]
                     ).to_csv(path / "inference.csv", index=False)
    (path / "config.yaml").write_text(
        "name: fake-suite\nstrategies: [ImageNet, DA, DA_L1SB, DA_TF_F1B, ImageNet_TF_F1B]\n"
        "evaluation:\n  threshold: 0.85\ndata:\n  reader: phantom\n", encoding="utf-8")
    (path / "environment.json").write_text(json.dumps({"medapt": "0.1.0", "torch": "2.x", "device": "cpu",
                                                        "git": "deadbeef"}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def fake():
    """The builder and the constants the tests check against (no test imports conftest)."""
    return SimpleNamespace(make=make_run_dir, KWH=KWH, PARETO_BY_KWH=PARETO_BY_KWH, EPOCHS=EPOCHS)
