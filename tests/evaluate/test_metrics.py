"""Metrics equal scikit-learn's to 1e-9 and are NaN (with a warning) where undefined."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from medapt.errors import LabelError, ShapeMismatchError, UnknownNameError
from medapt.evaluate import METRICS, UndefinedMetricWarning, accuracy, auprc, per_label_auc, roc_auc


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def multiclass():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 200)
    s = _softmax(rng.normal(size=(200, 5)) + 1.5 * np.eye(5)[y])
    return y, s


def test_multiclass_macro_ovr_equals_sklearn(multiclass):
    y, s = multiclass
    ref = roc_auc_score(y, s, multi_class="ovr", average="macro")
    assert abs(roc_auc(y, s, "multiclass") - ref) < 1e-9
    # and it is the mean of the per-class one-vs-rest AUCs, computed here independently
    per = [roc_auc_score(y == k, s[:, k]) for k in range(5)]
    assert abs(roc_auc(y, s, "multiclass") - np.mean(per)) < 1e-9
    assert np.allclose(per_label_auc(y, s, "multiclass"), per, atol=1e-12)
    onehot = np.eye(5)[y]
    assert abs(auprc(y, s, "multiclass") - average_precision_score(onehot, s, average="macro")) < 1e-9
    assert accuracy(y, s, "multiclass") == accuracy_score(y, s.argmax(1))


def test_binary_equals_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 150)
    p1 = 1 / (1 + np.exp(-(rng.normal(size=150) + y)))
    s = np.stack([1 - p1, p1], 1)
    assert abs(roc_auc(y, s, "binary") - roc_auc_score(y, p1)) < 1e-9
    assert abs(roc_auc(y, p1, "binary") - roc_auc_score(y, p1)) < 1e-9  # 1-D scores
    assert abs(auprc(y, s, "binary") - average_precision_score(y, p1)) < 1e-9
    assert accuracy(y, s, "binary") == accuracy_score(y, p1 > 0.5)


def test_multilabel_mean_equals_sklearn_and_ignores_nan():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (120, 4)).astype(float)
    s = 1 / (1 + np.exp(-(rng.normal(size=(120, 4)) + 2 * y)))
    assert abs(roc_auc(y, s, "multilabel") - roc_auc_score(y, s, average="macro")) < 1e-9
    assert abs(auprc(y, s, "multilabel") - average_precision_score(y, s, average="macro")) < 1e-9
    # NaN = ignore: equal to scoring each label on its labelled rows only
    y2 = y.copy()
    y2[rng.random(y.shape) < 0.2] = np.nan
    ref = np.mean([roc_auc_score(y2[~np.isnan(y2[:, j]), j], s[~np.isnan(y2[:, j]), j]) for j in range(4)])
    assert abs(roc_auc(y2, s, "multilabel") - ref) < 1e-9
    keep = ~np.isnan(y2)
    assert accuracy(y2, s, "multilabel") == pytest.approx(np.mean((s[keep] >= 0.5) == (y2[keep] == 1)))


def test_one_class_gives_nan_and_warns():
    y = np.zeros(10, int)
    s = np.tile([0.7, 0.3], (10, 1))
    for fn in (roc_auc, auprc):
        with pytest.warns(UndefinedMetricWarning, match="only class"):
            assert np.isnan(fn(y, s, "binary"))
    # a multiclass split with one class missing is undefined for one-vs-rest
    y3 = np.array([0, 1, 0, 1])
    s3 = np.full((4, 3), 1 / 3)
    with pytest.warns(UndefinedMetricWarning, match="absent"):
        assert np.isnan(roc_auc(y3, s3, "multiclass"))
    # multi-label: a label with one class is left out of the mean, with a warning
    yl = np.array([[0, 1], [1, 1], [0, 1], [1, 1]], float)
    sl = np.array([[0.1, 0.5], [0.9, 0.6], [0.2, 0.7], [0.8, 0.4]])
    with pytest.warns(UndefinedMetricWarning, match="label 1"):
        assert roc_auc(yl, sl, "multilabel") == 1.0


def test_registry_and_bad_input():
    assert set(METRICS.names()) == {"auc", "auprc", "accuracy"}
    with pytest.raises(UnknownNameError, match="Did you mean 'multiclass'"):
        roc_auc([0, 1], [[0.5, 0.5], [0.2, 0.8]], "multiclas")
    with pytest.raises(ShapeMismatchError, match="2 rows but scores have 3"):
        roc_auc([0, 1], np.full((3, 2), 0.5), "binary")
    with pytest.raises(LabelError, match=r"\[0, 3\)"):
        roc_auc([0, 1, 3], np.full((3, 3), 1 / 3), "multiclass")
    with pytest.raises(ShapeMismatchError, match="softmax"):
        roc_auc([0, 1, 2], np.eye(3) * 5, "multiclass")  # logits, not probabilities
