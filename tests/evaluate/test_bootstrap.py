"""The single-model bootstrap CI over test images (or patients)."""

import numpy as np
import pytest

from medapt.errors import ConfigError, ShapeMismatchError
from medapt.evaluate import bootstrap_auc_ci, delong_test, roc_auc
from medapt.evaluate.bootstrap import _multiplicities, _resample_auc


def _binary(n, rng, shift=1.0):
    y = (np.arange(n) % 2).astype(int)
    s = rng.normal(size=n) + shift * y
    p = 1 / (1 + np.exp(-s))
    return y, p


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("task_type", ["binary", "multiclass", "multilabel"])
def test_weighted_auc_equals_roc_auc_on_the_materialised_resample(task_type):
    """The fast weighted Mann–Whitney statistic is the AUC of the resample itself (ties included)."""
    rng = np.random.default_rng(0)
    n = 40
    if task_type == "binary":
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), 1)  # coarse scores: many ties
        s2 = np.stack([1 - s, s], 1)
    elif task_type == "multiclass":
        y = np.arange(n) % 3
        s2 = _softmax(np.round(rng.normal(size=(n, 3)) + 2 * np.eye(3)[y], 1))
    else:
        y = rng.integers(0, 2, (n, 3)).astype(float)
        y[rng.random((n, 3)) < 0.2] = np.nan
        s2 = np.round(rng.random((n, 3)), 1)
    strata = y if task_type != "multilabel" else None
    w = _multiplicities(np.random.default_rng(1), 20, np.arange(n), strata)
    fast = _resample_auc(np.asarray(y), s2, task_type, w)
    for b in range(len(w)):
        idx = np.repeat(np.arange(n), w[b].astype(int))
        assert fast[b] == pytest.approx(roc_auc(np.asarray(y)[idx], s2[idx], task_type), abs=1e-12)


def test_matches_delong_standard_error():
    """Bootstrap SE of a binary AUC agrees with DeLong's asymptotic SE (independent estimate)."""
    rng = np.random.default_rng(3)
    y, p = _binary(300, rng)
    r = bootstrap_auc_ci(y, p, "binary", n_boot=4000, seed=0)
    # DeLong's variance of AUC_a − AUC_b with b a constant score (AUC 0.5, no variance) is Var(AUC_a)
    d = delong_test(y, p, np.full_like(p, 0.5))
    assert r["auc"] == pytest.approx(d["auc_a"])
    assert r["se"] == pytest.approx(d["se"], rel=0.12)
    assert r["ci_low"] < r["auc"] < r["ci_high"]
    assert r["ci_high"] - r["ci_low"] == pytest.approx(2 * 1.96 * d["se"], rel=0.15)
    assert r["unit"] == "image" and r["n_units"] == 300 and r["n_valid"] == 4000


def test_coverage_of_a_known_auc():
    """Binormal scores with separation d have AUC Φ(d/√2); the 95 % interval covers it ≈ 95 %."""
    from scipy import stats

    d, n, sims = 1.0, 120, 300
    true_auc = stats.norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(11)
    hits = 0
    for i in range(sims):
        y = (np.arange(n) % 2).astype(int)
        s = rng.normal(size=n) + d * y
        r = bootstrap_auc_ci(y, 1 / (1 + np.exp(-s)), "binary", n_boot=500, seed=i)
        hits += r["ci_low"] <= true_auc <= r["ci_high"]
    # 300 intervals: binomial s.d. of the coverage ≈ 1.3 points
    assert 0.90 <= hits / sims <= 0.985


def test_patients_are_resampled_whole():
    """Each patient's 5 images are copies: resampling images pretends 5× the data, patients do not."""
    rng = np.random.default_rng(5)
    y1, p1 = _binary(60, rng)
    y, p = np.repeat(y1, 5), np.repeat(p1, 5)
    patients = np.repeat([f"P{i:03d}" for i in range(60)], 5)
    img = bootstrap_auc_ci(y, p, "binary", n_boot=2000, seed=0)
    pat = bootstrap_auc_ci(y, p, "binary", groups=patients, n_boot=2000, seed=0)
    one = bootstrap_auc_ci(y1, p1, "binary", n_boot=2000, seed=0)
    assert pat["unit"] == "patient" and pat["n_units"] == 60
    assert img["auc"] == pat["auc"] == pytest.approx(one["auc"])
    assert pat["se"] == pytest.approx(one["se"], rel=0.15)  # as wide as the 60 distinct images
    assert img["se"] < 0.6 * pat["se"]  # ≈ 1/√5 of it


def test_multiclass_and_determinism():
    rng = np.random.default_rng(2)
    y = np.arange(90) % 3
    s = _softmax(rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[y])
    a = bootstrap_auc_ci(y, s, "multiclass", n_boot=300, seed=4)
    b = bootstrap_auc_ci(y, s, "multiclass", n_boot=300, seed=4)
    assert a == b and a["n_valid"] == 300  # stratified: every resample has every class
    assert a["auc"] == pytest.approx(roc_auc(y, s, "multiclass"))
    assert a["ci_low"] < a["auc"] < a["ci_high"]
    # unstratified resamples of a tiny set can miss a class: they are dropped, with a warning
    with pytest.warns(UserWarning, match="resamples lack a class"):
        r = bootstrap_auc_ci(y[:6], s[:6], "multiclass", n_boot=300, seed=0, stratified=False)
    assert r["n_valid"] < 300


def test_bad_arguments():
    y, p = _binary(10, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_auc_ci(y, p, "binary", confidence=95)
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_auc_ci(y, p, "binary", n_boot=1)
    with pytest.raises(ShapeMismatchError, match="groups has 3 entries"):
        bootstrap_auc_ci(y, p, "binary", groups=["a", "b", "c"])
