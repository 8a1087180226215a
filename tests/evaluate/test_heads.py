"""Heads: parameter counts, learning a separable problem, determinism per seed."""

import numpy as np
import pytest
import torch

from medapt.errors import ConfigError, LabelError, ShapeMismatchError, UnknownNameError
from medapt.evaluate import HEADS, build_head, train_head


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name, widths",
    [("model1", [64, 32]), ("model2", [512, 256, 256, 128]), ("linear", [])],  # Mehmood et al., §3.3
)
@pytest.mark.parametrize("d, c", [(1280, 3), (2048, 5), (64, 2)])
def test_head_parameter_counts(name, widths, d, c):
    # a Dense layer has in·out weights + out biases
    sizes = [d, *widths, c]
    expected = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    head = build_head(name, d, c)
    assert _n_params(head) == expected
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [*widths, c]
    assert sum(isinstance(m, torch.nn.ReLU) for m in head.modules()) == len(widths)


def test_pinned_counts():
    # Model 1 on EfficientNet-Lite0's 1280 features, 3 tumour types: 81,984 + 2,080 + 99
    assert _n_params(build_head("model1", 1280, 3)) == 84_163
    # Model 2 on ResNet50's 2048 features, 5 diseases: 1,049,088 + 131,328 + 65,792 + 32,896 + 645
    assert _n_params(build_head("model2", 2048, 5)) == 1_279_749


def test_registry_names_and_unknown():
    assert set(HEADS.names()) >= {"model1", "model2", "linear"}
    with pytest.raises(UnknownNameError, match="model1"):
        build_head("modle1", 8, 2)


def _toy(n=240, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    centres = rng.normal(size=(c, d)) * 4
    x = (centres[y] + rng.normal(size=(n, d))).astype(np.float32) * 10 + 5  # unscaled on purpose
    return x, y.astype(np.int64)


def test_learns_separable_problem_and_reports_every_epoch():
    x, y = _toy()
    xt, yt, xe, ye = x[:160], y[:160], x[160:], y[160:]
    r = train_head(xt, yt, {"test": (xe, ye), "external": (xe[:40], ye[:40])}, head="model1",
                   task_type="multiclass", n_classes=3, epochs=15, lr=1e-2, batch_size=32, seed=0, standardize=True)
    m = r.metrics
    assert list(m.columns) == ["epoch", "seconds", "split", "metric", "value"]
    assert len(m) == 15 * 2 * 3 and set(m.epoch) == set(range(1, 16))
    final = m[(m.epoch == 15) & (m.split == "test")].set_index("metric").value
    assert final["auc"] > 0.99 and final["accuracy"] > 0.95
    assert np.all(np.diff(m[(m.split == "test") & (m.metric == "auc")].seconds) > 0)
    assert r.predictions["test"].shape == (80, 3)
    assert np.allclose(r.predictions["test"].sum(1), 1, atol=1e-5)
    assert r.train_loss[-1] < r.train_loss[0]
    assert np.allclose(r.feature_mean, xt.mean(0), rtol=1e-5)
    # the final weights reproduce the final predictions
    head = build_head("model1", 12, 3)
    head.load_state_dict(r.state_dict)
    with torch.no_grad():
        p = torch.softmax(head(torch.from_numpy((xe - r.feature_mean) / r.feature_std)), 1).numpy()
    assert np.allclose(p, r.predictions["test"], atol=1e-5)


def test_deterministic_per_seed_and_global_rng_untouched():
    x, y = _toy(n=90)
    kw = dict(task_type="multiclass", n_classes=3, epochs=4, lr=1e-3, batch_size=16)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_head(x, y, {"test": (x, y)}, seed=5, **kw)
    after = torch.rand(1)
    assert torch.equal(before, after), "train_head must not consume or reseed the global RNG"
    b = train_head(x, y, {"test": (x, y)}, seed=5, **kw)
    c = train_head(x, y, {"test": (x, y)}, seed=6, **kw)
    assert np.array_equal(a.predictions["test"], b.predictions["test"])
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not np.array_equal(a.predictions["test"], c.predictions["test"])


def test_speed_settings_change_no_number(monkeypatch):
    """The multi-tensor Adam and the skipped scikit-learn argument checks are speed only: weights,
    predictions and every metric equal those of the per-tensor Adam with scikit-learn's checks on."""
    import contextlib

    from medapt.evaluate import heads as heads_mod

    x, y = _toy(n=120, d=64)
    xe, ye = _toy(n=60, d=64, seed=1)
    kw = dict(head="model2", task_type="multiclass", n_classes=3, epochs=6, lr=1e-3, batch_size=16, seed=3)
    fast = train_head(x, y, {"test": (xe, ye)}, **kw)
    adam = torch.optim.Adam
    calls = []

    def per_tensor_adam(params, **opt_kw):
        calls.append(opt_kw.get("foreach"))
        return adam(params, **{**opt_kw, "foreach": False})

    monkeypatch.setattr(heads_mod.torch.optim, "Adam", per_tensor_adam)
    monkeypatch.setattr(heads_mod.sklearn, "config_context", lambda **_: contextlib.nullcontext())
    plain = train_head(x, y, {"test": (xe, ye)}, **kw)
    assert calls == [True], "the head's Adam is built with foreach=True"
    assert all(torch.equal(fast.state_dict[k], plain.state_dict[k]) for k in fast.state_dict)
    assert np.array_equal(fast.predictions["test"], plain.predictions["test"])
    assert fast.metrics["value"].equals(plain.metrics["value"])


def test_binary_full_batch_and_multilabel_with_nan():
    x, y = _toy(c=2)
    r = train_head(x, y, {"test": (x, y)}, head="linear", task_type="binary", n_classes=2,
                   epochs=20, lr=5e-2, batch_size=None)
    assert r.predictions["test"].shape == (240, 2)
    assert r.metrics.query("epoch == 20 and metric == 'auc'").value.item() > 0.99
    rng = np.random.default_rng(0)
    yl = np.stack([(x[:, 0] > x[:, 0].mean()), (x[:, 1] > x[:, 1].mean())], 1).astype(np.float32)
    yl[rng.random(yl.shape) < 0.2] = np.nan  # ignored by the loss and the metrics
    r = train_head(x, yl, {"test": (x, yl)}, head="model1", task_type="multilabel", n_classes=2,
                   epochs=30, lr=1e-2, batch_size=64)
    assert np.isfinite(r.train_loss).all()
    assert r.metrics.query("epoch == 30 and metric == 'auc'").value.item() > 0.95


def test_bad_input_messages():
    x, y = _toy(n=30)
    kw = dict(task_type="multiclass", n_classes=3, epochs=1)
    with pytest.raises(ShapeMismatchError, match="30 feature rows but 29 labels"):
        train_head(x, y[:29], {}, **kw)
    with pytest.raises(ShapeMismatchError, match="'test' has 5 features"):
        train_head(x, y, {"test": (x[:, :5], y)}, **kw)
    with pytest.raises(LabelError, match=r"\[0, 2\)"):
        train_head(x, y, {}, task_type="multiclass", n_classes=2, epochs=1)
    with pytest.raises(ConfigError, match="n_classes must be 2"):
        train_head(x, y, {}, task_type="binary", n_classes=3, epochs=1)
    with pytest.raises(UnknownNameError):
        train_head(x, y, {}, head="model3", **kw)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ShapeMismatchError, match="NaN"):
        train_head(bad, y, {}, **kw)


def test_run_directory_tables():
    x, y = _toy(n=60)
    r = train_head(x, y, {"test": (x[:20], y[:20])}, task_type="multiclass", n_classes=3, epochs=2)
    m = r.metrics_table(strategy="DA", seed=3, head="model1", task="t")
    assert list(m.columns) == ["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]
    assert len(m) == 2 * 3 and (m.seed == 3).all()
    p = r.predictions_table({"test": y[:20]}, strategy="DA", seed=3, head="model1", task="t",
                            indices={"test": np.arange(100, 120)})
    assert list(p.columns) == ["strategy", "seed", "head", "task", "split", "index", "label",
                               "score_0", "score_1", "score_2"]
    assert p["index"].tolist() == list(range(100, 120)) and p["label"].tolist() == y[:20].tolist()
    assert np.allclose(p[["score_0", "score_1", "score_2"]].to_numpy(), r.predictions["test"])
    with pytest.raises(ShapeMismatchError, match="20 predictions but 19 labels"):
        r.predictions_table({"test": y[:19]}, strategy="DA", seed=3, head="model1", task="t")
