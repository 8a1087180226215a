"""Summaries on a hand-made metrics table give the hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from medapt.errors import ConfigError, MissingFieldError
from medapt.evaluate import aggregate_seeds, external_dip, paired_ttest, summarize, t_interval
from medapt.evaluate.summary import censored_median


def _rows(strategy, seed, split, aucs, secs_per_epoch=2.0, head="model1", task="tumor_type"):
    out = []
    for e, v in enumerate(aucs, start=1):
        out.append((strategy, seed, head, task, split, e, e * secs_per_epoch, "auc", v))
        out.append((strategy, seed, head, task, split, e, e * secs_per_epoch, "accuracy", 0.5))
    return out


@pytest.fixture
def table():
    rows = []
    rows += _rows("DA", 0, "test", [0.80, 0.91, 0.95, 0.93])
    rows += _rows("DA", 0, "external", [0.70, 0.75, 0.85, 0.80])
    rows += _rows("DA", 1, "test", [0.85, 0.92, 0.90, 0.97])
    rows += _rows("DA", 1, "external", [0.60, 0.81, 0.79, 0.82])
    rows += _rows("ImageNet", 0, "test", [0.70, 0.80, 0.85, 0.88], secs_per_epoch=1.0)
    rows += _rows("ImageNet", 0, "external", [0.60, 0.70, 0.72, 0.71], secs_per_epoch=1.0)
    rows += _rows("ImageNet", 1, "test", [0.75, np.nan, 0.92, 0.89], secs_per_epoch=1.0)
    rows += _rows("ImageNet", 1, "external", [0.65, 0.70, 0.70, 0.74], secs_per_epoch=1.0)
    cols = ["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]
    return pd.DataFrame(rows, columns=cols).sample(frac=1, random_state=0)  # order must not matter


def _get(df, **kw):
    q = np.ones(len(df), bool)
    for k, v in kw.items():
        q &= df[k].to_numpy() == v
    assert q.sum() == 1
    return df[q].iloc[0]


def test_summarize_hand_values(table):
    s = summarize(table, threshold=0.9)
    assert len(s) == 8
    r = _get(s, strategy="DA", seed=0, split="test")
    assert (r.best_auc, r.best_epoch, r.final_auc, r.n_epochs) == (0.95, 3, 0.93, 4)
    assert (r.epoch_to_threshold, r.seconds_to_threshold) == (2, 4.0)
    r = _get(s, strategy="DA", seed=0, split="external")
    assert np.isnan(r.epoch_to_threshold) and np.isnan(r.seconds_to_threshold)
    r = _get(s, strategy="ImageNet", seed=1, split="test")  # a NaN epoch is skipped, not fatal
    assert (r.best_auc, r.best_epoch, r.final_auc, r.epoch_to_threshold, r.seconds_to_threshold) == (0.92, 3, 0.89, 3, 3.0)
    # a lower threshold is reached earlier
    assert _get(summarize(table, 0.8), strategy="DA", seed=0, split="test").epoch_to_threshold == 1


def test_external_dip_hand_values(table):
    d = external_dip(summarize(table))
    assert len(d) == 4
    r = _get(d, strategy="DA", seed=0)
    assert r.dip_best == pytest.approx(0.95 - 0.85) and r.dip_final == pytest.approx(0.93 - 0.80)
    r = _get(d, strategy="ImageNet", seed=1)
    assert r.dip_best == pytest.approx(0.92 - 0.74) and r.dip_final == pytest.approx(0.89 - 0.74)


def test_aggregate_seeds_mean_std_ci(table):
    from scipy import stats

    agg = aggregate_seeds(summarize(table))
    r = _get(agg, strategy="DA", split="test")
    assert r.n_seeds == 2
    assert r.best_auc_mean == pytest.approx((0.95 + 0.97) / 2)
    assert r.best_auc_std == pytest.approx(np.std([0.95, 0.97], ddof=1))
    # t-interval with 1 degree of freedom: mean ± t(0.975, 1) · s / √2
    half = stats.t.ppf(0.975, 1) * np.std([0.95, 0.97], ddof=1) / np.sqrt(2)
    assert (r.best_auc_ci_low, r.best_auc_ci_high) == pytest.approx((0.96 - half, 0.96 + half))
    assert r.epoch_to_threshold_n == 2 and r.epoch_to_threshold_mean == 2
    e = _get(agg, strategy="DA", split="external")
    assert e.epoch_to_threshold_n == 0 and np.isnan(e.epoch_to_threshold_mean)
    # one seed: std and CI are NaN, not zero
    one = aggregate_seeds(summarize(table[table.seed == 0]))
    assert np.isnan(one.best_auc_std).all() and np.isnan(one.best_auc_ci_low).all()
    # a 90 % interval is narrower
    r90 = _get(aggregate_seeds(summarize(table), confidence=0.9), strategy="DA", split="test")
    assert r.best_auc_ci_low < r90.best_auc_ci_low < r90.best_auc_ci_high < r.best_auc_ci_high
    # works on the dip table too
    dip = aggregate_seeds(external_dip(summarize(table)))
    assert _get(dip, strategy="DA").dip_best_mean == pytest.approx(((0.95 - 0.85) + (0.97 - 0.82)) / 2)
    with pytest.raises(ConfigError, match="confidence"):
        aggregate_seeds(summarize(table), confidence=95)


def test_ci_over_three_seeds_holds_its_level():
    """2,000 experiments of 3 seeds drawn from N(0.85, 0.02²): the 95 % interval over seeds covers
    the true mean 93–97 % of the time. (The percentile bootstrap it replaces covered it 74.7 %.)"""
    rng = np.random.default_rng(1)
    mu, n, reps = 0.85, 3, 2000
    x = rng.normal(mu, 0.02, size=(reps, n))
    summary = pd.DataFrame(dict(strategy=np.repeat([f"run{i}" for i in range(reps)], n),
                                seed=np.tile(np.arange(n), reps), best_auc=x.ravel()))
    agg = aggregate_seeds(summary)
    assert len(agg) == reps and (agg.n_seeds == 3).all()
    coverage = ((agg.best_auc_ci_low <= mu) & (mu <= agg.best_auc_ci_high)).mean()
    assert 0.93 <= coverage <= 0.97


def test_time_to_threshold_is_a_censored_median():
    """3 seeds; the threshold reached at epoch 2 by one seed only. The old summary said "mean 2"
    (over the one fast seed); the censored median says "not reached" (1 of 3 < half)."""
    rows = []
    for seed, aucs in enumerate([[0.8, 0.95, 0.96], [0.8, 0.85, 0.88], [0.7, 0.8, 0.89]]):
        rows += _rows("DA", seed, "test", aucs)
    for seed, aucs in enumerate([[0.8, 0.91, 0.9], [0.8, 0.85, 0.92], [0.7, 0.8, 0.89]]):
        rows += _rows("DA_L1SB", seed, "test", aucs)
    for seed, aucs in enumerate([[0.91, 0.9, 0.9], [0.8, 0.95, 0.9], [0.7, 0.8, 0.93]]):
        rows += _rows("ImageNet", seed, "test", aucs)
    cols = ["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]
    agg = aggregate_seeds(summarize(pd.DataFrame(rows, columns=cols)))
    da, l1, im = (_get(agg, strategy=s) for s in ("DA", "DA_L1SB", "ImageNet"))
    assert (da.epoch_to_threshold_reached, l1.epoch_to_threshold_reached, im.epoch_to_threshold_reached) == (1, 2, 3)
    assert np.isnan(da.epoch_to_threshold_median)  # 1 of 3: not reached
    assert l1.epoch_to_threshold_median == 3  # epochs 2, 3, never → by epoch 3 two of three had
    assert im.epoch_to_threshold_median == 2  # epochs 1, 2, 3 → the ordinary median
    assert l1.seconds_to_threshold_median == 6.0
    # no mean over the seeds that happened to reach it: only when all did
    assert np.isnan(da.epoch_to_threshold_mean) and np.isnan(l1.epoch_to_threshold_ci_low)
    assert im.epoch_to_threshold_mean == 2 and im.epoch_to_threshold_n == 3


def test_censored_median_definition():
    nan = float("nan")
    assert censored_median([5, 1, 3]) == 3
    assert censored_median([4, 1, 3, 2]) == 2  # even n: the lower middle (a time a seed really reached)
    assert censored_median([1, nan]) == 1  # half reached by epoch 1
    assert np.isnan(censored_median([1, nan, nan, nan]))  # 1 of 4 < half: not reached
    assert censored_median([2, 7, nan, nan]) == 7
    assert np.isnan(censored_median([]))


def test_t_interval():
    assert t_interval([0.90, 0.92, 0.94]) == pytest.approx((0.92 - 0.04968, 0.92 + 0.04968), abs=1e-5)
    assert t_interval([0.9, np.nan, 0.9]) == (0.9, 0.9)  # NaN dropped; identical values: zero width
    assert all(np.isnan(t_interval([0.9])))


def test_paired_ttest(table):
    from scipy import stats

    s = summarize(table)
    r = paired_ttest(s, "DA", "ImageNet", column="best_auc")
    ref = stats.ttest_rel([0.95, 0.97], [0.88, 0.92])
    assert r["n"] == 2 and r["t"] == pytest.approx(ref.statistic) and r["p_value"] == pytest.approx(ref.pvalue)
    assert r["mean_diff"] == pytest.approx(0.96 - 0.90)
    r = paired_ttest(s, "DA", "ImageNet", column="final_auc", split="external", paired=False)
    ref = stats.ttest_ind([0.80, 0.82], [0.71, 0.74])
    assert r["p_value"] == pytest.approx(ref.pvalue)
    with pytest.warns(UserWarning, match="need at least 2"):
        assert np.isnan(paired_ttest(summarize(table[table.seed == 0]), "DA", "ImageNet")["p_value"])
    with pytest.raises(ConfigError, match="'DA_L9SB' has no rows"):
        paired_ttest(s, "DA_L9SB", "DA")


def test_missing_columns_named():
    with pytest.raises(MissingFieldError, match=r"\['seconds'\]"):
        summarize(pd.DataFrame(columns=["strategy", "seed", "head", "task", "split", "epoch", "metric", "value"]))
