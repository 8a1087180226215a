"""Paired study statistics: Holm, t-tests over seeds against a reference, per-seed DeLong,
per-label multi-label AUC (medapt.evaluate.paired, medapt.evaluate.multilabel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medapt.errors import ConfigError
from medapt.evaluate.multilabel import per_label_table
from medapt.evaluate.paired import cell_table, delong_per_seed, holm, paired_tests, replicates


def test_holm_matches_the_step_down_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    reject, adj = holm(p, 0.05)
    # sorted 0.01, 0.03, 0.04 × (3, 2, 1) = 0.03, 0.06, 0.04 → monotone: 0.03, 0.06, 0.06
    np.testing.assert_allclose(adj[:3], [0.03, 0.06, 0.06])
    assert reject.tolist() == [True, False, False, False] and np.isnan(adj[3])


def _metrics(values: dict, epochs=(1, 2)) -> pd.DataFrame:
    rows = []
    for (method, source, shots), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            for e in epochs:
                rows.append(dict(strategy=f"{method}/{source}/{shots}", seed=seed, head="linear", task="t",
                                 split="test", epoch=e, seconds=e, metric="auc", value=v - 0.1 * (e != epochs[-1]),
                                 method=method, source=source, shots=shots, draw=0))
    return pd.DataFrame(rows)


def test_paired_t_test_marks_a_consistent_win_and_compares_at_the_same_shot_level():
    rng = np.random.default_rng(0)
    base = 0.7 + 0.02 * rng.standard_normal(10)
    m = _metrics({("FTL", "imagenet", "full"): base, ("FTL", "cxr", "full"): base + 0.05,
                  ("FTL", "scratch", "full"): base + 0.001 * rng.standard_normal(10),
                  ("FTL", "imagenet", "5"): base - 0.2, ("FTL", "cxr", "5"): base - 0.3})
    rep = replicates(m, "final_auc")
    assert len(rep) == 50 and rep["value"].max() <= 0.8  # the last epoch's value
    t = paired_tests(rep, "FTL/imagenet").set_index(["source", "shots"])
    assert t.loc[("cxr", "full"), "verdict"] == "win" and t.loc[("cxr", "full"), "n"] == 10
    assert t.loc[("cxr", "5"), "verdict"] == "loss"  # against the reference's 5-shot cell, not its full one
    assert t.loc[("scratch", "full"), "verdict"] == "—"
    assert (t["p_holm"] >= t["p"]).all()
    cells = cell_table(rep).set_index(["source", "shots"])
    assert cells.loc[("cxr", "full"), "ci_low"] < cells.loc[("cxr", "full"), "mean"] < cells.loc[("cxr", "full"), "ci_high"]
    with pytest.raises(ConfigError, match="stats.reference 'DA'"):
        paired_tests(rep, "DA")


def test_delong_per_seed_on_the_same_test_images():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 100)
    rows = []
    for seed in range(2):
        good = y + 0.3 * rng.standard_normal(200)
        bad = rng.standard_normal(200)
        for source, s in (("imagenet", bad), ("cxr", good)):
            p1 = 1 / (1 + np.exp(-s))
            rows.append(pd.DataFrame(dict(strategy=f"FTL/{source}", seed=seed, head="own", task="t", split="test",
                                          index=np.arange(200), label=y, method="FTL", source=source, shots="full",
                                          draw=0, score_0=1 - p1, score_1=p1)))
    d = delong_per_seed(pd.concat(rows), "FTL/imagenet")
    assert len(d) == 2 and (d["verdict"] == "win").all() and (d["auc"] > d["auc_ref"]).all()


def test_per_label_auc_ignores_unknown_labels_and_gives_label_wise_intervals():
    rng = np.random.default_rng(2)
    frames = []
    for seed in range(3):
        y = rng.integers(0, 2, size=(80, 2)).astype(float)
        s = np.column_stack([y[:, 0] + 0.5 * rng.standard_normal(80), rng.standard_normal(80)])
        y[:5, 1] = np.nan  # ignored (uncertain) labels
        frames.append(pd.DataFrame(dict(strategy="FTL", seed=seed, head="own", task="cxr", split="test",
                                        index=np.arange(80), label=np.nan, label_0=y[:, 0], label_1=y[:, 1],
                                        score_0=s[:, 0], score_1=s[:, 1])))
    tab = per_label_table(pd.concat(frames), ["Edema", "Cardiomegaly"]).set_index("label")
    assert list(tab.index) == ["Edema", "Cardiomegaly", "mean"]
    assert tab.loc["Edema", "auc"] > 0.8 and abs(tab.loc["Cardiomegaly", "auc"] - 0.5) < 0.2
    assert tab.loc["mean", "auc"] == pytest.approx((tab.loc["Edema", "auc"] + tab.loc["Cardiomegaly", "auc"]) / 2)
    assert (tab["ci"] == "t over seeds").all() and (tab["ci_low"] < tab["auc"]).all()
