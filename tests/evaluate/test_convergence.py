"""Convergence speed: the first epoch and seconds at a validation AUC threshold, and the speed-up."""

import math

import pandas as pd
import pytest

from medapt.errors import ConfigError
from medapt.evaluate.convergence import convergence_rows, write_convergence
from medapt.suite.experiment import experiment_from_dict


def _curve(strategy, seed, aucs, seconds_per_epoch=1.0, task="t"):
    return pd.DataFrame({"strategy": strategy, "seed": seed, "head": "own", "task": task, "split": "val",
                         "epoch": range(1, len(aucs) + 1),
                         "seconds": [seconds_per_epoch * e for e in range(1, len(aucs) + 1)],
                         "metric": "auc", "value": aucs})


def _value(rows, strategy, metric, seed=0):
    r = rows[(rows["strategy"] == strategy) & (rows["metric"] == metric) & (rows["seed"] == seed)]
    assert len(r) == 1
    return float(r["value"].iloc[0])


def test_epochs_seconds_and_speedup():
    m = pd.concat([_curve("Scratch", 0, [.5, .6, .7, .75, .82]),
                   _curve("FTL", 0, [.72, .85, .9, .9, .9], seconds_per_epoch=2.0),
                   _curve("Slow", 0, [.5, .55, .6, .6, .6]),
                   # rows that are not validation AUC curves are ignored
                   _curve("FTL", 0, [.1] * 5).assign(metric="loss")])
    rows = convergence_rows(m, [0.7, 0.8], baseline="Scratch")
    assert _value(rows, "Scratch", "epochs_to_auc@0.7") == 3 and _value(rows, "Scratch", "epochs_to_auc@0.8") == 5
    assert _value(rows, "FTL", "epochs_to_auc@0.7") == 1 and _value(rows, "FTL", "seconds_to_auc@0.8") == 4.0
    assert _value(rows, "FTL", "speedup_epochs@0.7") == 3.0  # 3 epochs for Scratch, 1 for FTL
    assert _value(rows, "FTL", "speedup_seconds@0.8") == pytest.approx(5.0 / 4.0)
    assert _value(rows, "Scratch", "speedup_epochs@0.8") == 1.0
    assert math.isnan(_value(rows, "Slow", "epochs_to_auc@0.7"))  # never reached
    assert math.isnan(_value(rows, "Slow", "speedup_epochs@0.7"))
    hit = rows[(rows["strategy"] == "FTL") & (rows["metric"] == "seconds_to_auc@0.8")]
    assert hit["epoch"].iloc[0] == 2 and hit["seconds"].iloc[0] == 4.0
    # no baseline in the run: times still there, speed-ups NaN
    rows = convergence_rows(m[m["strategy"] != "Scratch"], [0.7], baseline="Scratch")
    assert _value(rows, "FTL", "epochs_to_auc@0.7") == 1 and math.isnan(_value(rows, "FTL", "speedup_epochs@0.7"))


def test_baseline_seed_fallback_is_the_median():
    m = pd.concat([_curve("Scratch", 0, [.5, .7]), _curve("Scratch", 1, [.5, .5, .5, .7]), _curve("FTL", 2, [.7])])
    rows = convergence_rows(m, [0.7])
    assert _value(rows, "FTL", "speedup_epochs@0.7", seed=2) == 3.0  # median(2, 4) / 1


def test_write_convergence_replaces_its_rows(tmp_path):
    m = pd.concat([_curve("Scratch", 0, [.5, .7]), _curve("FTL", 0, [.75, .8])])
    m.to_csv(tmp_path / "metrics.csv", index=False)
    assert write_convergence(tmp_path, [0.7]) == 8
    assert write_convergence(tmp_path, [0.7, 0.8]) == 16  # rewritten, not appended twice
    out = pd.read_csv(tmp_path / "metrics.csv")
    assert list(out.columns) == list(m.columns) and len(out) == len(m) + 16
    assert (out["metric"] == "auc").sum() == len(m)


def test_bad_thresholds():
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        convergence_rows(_curve("A", 0, [.5]), [1.5])
    base = {"strategies": ["FTL"], "data": {"targets": {"t": {"dataset": {"format": "phantom", "task": "tumor_type"}}},
                                            "split": {"train": 0.6, "val": 0.2, "test": 0.2}}}
    with pytest.raises(ConfigError, match="convergence.thresholds"):
        experiment_from_dict(base | {"convergence": {"thresholds": [0.7, 1.5]}})
    exp = experiment_from_dict(base | {"convergence": {"thresholds": [0.7], "baseline": None}})
    assert exp.convergence.thresholds == [0.7] and exp.convergence.baseline is None
    # a learning-rate scale <= 0 names its field
    with pytest.raises(ConfigError, match=r"lr_mult.backbone must be > 0"):
        experiment_from_dict(base | {"strategies": ["LWFT@4"],
                                     "schedule": {"phases": {"finetune": {"lr_mult": {"backbone": 0}}}}}).strategy("LWFT@4")
