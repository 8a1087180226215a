"""Integration: heads trained by medapt.evaluate → metrics.csv/predictions.csv → report."""

import re

import numpy as np
import pandas as pd

from medapt.evaluate import summarize, train_head
from medapt.report import build_report


def test_report_from_real_head_runs(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    # two "backbones": features with a strong and a weak class signal; the external set is shifted
    def features(n, signal, shift=0.0):
        y = np.arange(n) % 3
        x = signal * centres[y] + rng.normal(size=(n, 16)) + shift
        return x.astype(np.float32), y

    metrics, preds = [], []
    for strategy, signal in (("DA", 1.0), ("ImageNet", 0.3)):
        xtr, ytr = features(150, signal)
        evals = {"test": features(60, signal), "external": features(60, signal, shift=0.5)}
        for head in ("model1", "linear"):
            r = train_head(xtr, ytr, evals, head=head, task_type="multiclass", n_classes=3,
                           epochs=8, lr=3e-3, batch_size=32, seed=0)
            metrics.append(r.metrics_table(strategy=strategy, seed=0, head=head, task="tumor_type"))
            preds.append(r.predictions_table({k: v[1] for k, v in evals.items()},
                                             strategy=strategy, seed=0, head=head, task="tumor_type"))
    run = tmp_path / "run"
    run.mkdir()
    m = pd.concat(metrics)
    m.to_csv(run / "metrics.csv", index=False)
    pd.concat(preds).to_csv(run / "predictions.csv", index=False)
    assert list(m.columns) == ["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]

    html = build_report(run).read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>|data:[^\"]+", "", html, flags=re.S)))
    s = summarize(m)
    s = s[s["head"] == "model1"]  # the recommendation's head: Mehmood et al.'s model1, first in the registry
    best = s[s.split == "test"].groupby("strategy").final_auc.mean()
    ext = s[s.split == "external"].groupby("strategy").final_auc.mean()
    assert best["DA"] > best["ImageNet"] and ext["DA"] > ext["ImageNet"]  # the stronger features win, and the report says so
    assert f"on the development test split DA has the highest final AUC ({best['DA']:.3f})" in text
    assert f"DA has the highest external AUC: {ext['DA']:.3f}" in text  # the recommendation, external first
    assert "costs.csv is missing" in text
    assert "DeLong p" in text  # predictions.csv from predictions_table feeds DeLong's test
    assert len(list((run / "figures").glob("*.png"))) == 4  # 2 curves + 2 box plots, no Pareto without costs
