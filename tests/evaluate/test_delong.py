"""DeLong's test against an independent Mann–Whitney computation."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medapt.errors import LabelError
from medapt.evaluate import delong_test


def _reference_delong(y, a, b):
    """DeLong et al. (1988) written out from the Mann–Whitney kernel, O(m·n), no ranks."""
    pos, neg = y == 1, y == 0
    out = []
    for s in (a, b):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (A, v10a, v01a), (B, v10b, v01b) = out
    s10 = np.cov(np.stack([v10a, v10b]))  # 2×2 covariance over positives
    s01 = np.cov(np.stack([v01a, v01b]))
    S = s10 / pos.sum() + s01 / neg.sum()
    var = S[0, 0] + S[1, 1] - 2 * S[0, 1]
    z = (A - B) / np.sqrt(var)
    return A, B, np.sqrt(var), 2 * stats.norm.sf(abs(z))


def test_small_hand_example():
    # positives score [.35, .8] vs negatives [.1, .4]: 3 of 4 pairs ordered -> AUC 0.75
    r = delong_test([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.1, 0.2, 0.7, 0.8])
    assert r["auc_a"] == 0.75 and r["auc_b"] == 1.0 and r["diff"] == -0.25


@pytest.mark.parametrize("ties", [False, True])
def test_binary_matches_mann_whitney_reference(ties):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 120)
    a = rng.normal(size=120) + 1.2 * y
    b = 0.6 * a + rng.normal(size=120) * 0.8 + 0.3 * y  # correlated with a, as two models on one set are
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    A, B, se, p = _reference_delong(y, a, b)
    r = delong_test(y, a, b)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert r["auc_a"] == pytest.approx(A, abs=1e-12) and r["auc_b"] == pytest.approx(B, abs=1e-12)
    assert r["se"] == pytest.approx(se, rel=1e-10)
    assert r["p_value"] == pytest.approx(p, rel=1e-9)
    lo, hi = r["ci_low"], r["ci_high"]
    assert lo < r["diff"] < hi and hi - lo == pytest.approx(2 * 1.959963984540054 * se)
    # (N, 2) probability columns give the same answer as positive-class scores
    pa = 1 / (1 + np.exp(-a))
    pb = 1 / (1 + np.exp(-b))
    r2 = delong_test(y, np.stack([1 - pa, pa], 1), np.stack([1 - pb, pb], 1))
    assert r2["p_value"] == pytest.approx(delong_test(y, pa, pb)["p_value"], rel=1e-12)


def test_identical_models_p_is_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = rng.random(50)
    r = delong_test(y, s, s)
    assert r["diff"] == 0 and r["p_value"] == 1.0


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_multiclass_macro_ovr():
    rng = np.random.default_rng(3)
    n, c = 240, 3
    y = np.arange(n) % c
    za = rng.normal(size=(n, c)) + 1.0 * np.eye(c)[y]
    sa = _softmax(za)
    sb = _softmax(0.7 * za + rng.normal(size=(n, c)) * 0.7)
    r = delong_test(y, sa, sb)
    assert r["n_classes"] == 3
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, sa, multi_class="ovr"), abs=1e-12)
    assert r["auc_b"] == pytest.approx(roc_auc_score(y, sb, multi_class="ovr"), abs=1e-12)
    # the variance agrees with a bootstrap of the macro AUC difference (independent estimate)
    boot = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        if len(np.unique(y[i])) < c:
            continue
        boot.append(roc_auc_score(y[i], sa[i], multi_class="ovr") - roc_auc_score(y[i], sb[i], multi_class="ovr"))
    assert r["se"] == pytest.approx(np.std(boot, ddof=1), rel=0.25)


def test_two_class_multiclass_path_equals_binary():
    """With C=2 probability columns the C-sample formula reduces to binary DeLong exactly."""
    from medapt.evaluate.delong import _macro_ovr

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80)
    pa = 1 / (1 + np.exp(-(rng.normal(size=80) + y)))
    pb = 1 / (1 + np.exp(-(rng.normal(size=80) + 0.5 * y)))
    binary = delong_test(y, pa, pb)
    auc_a, auc_b, var = _macro_ovr(y, np.stack([1 - pa, pa], 1), np.stack([1 - pb, pb], 1))
    assert (auc_a, auc_b) == pytest.approx((binary["auc_a"], binary["auc_b"]), abs=1e-12)
    assert np.sqrt(var) == pytest.approx(binary["se"], rel=1e-10)


def test_bad_input():
    with pytest.raises(LabelError, match="absent"):
        delong_test([0, 0, 1, 1], np.full((4, 3), 1 / 3), np.full((4, 3), 1 / 3))
