"""Monitored phases: validation every epoch, plateau schedule, early stopping, best epoch kept, class
weights, augmentation, per-group learning rates — and exact resume through all of it."""

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import Surgery, build
from medapt.strategies import Phase, Plateau, param_groups, phase_from_dict
from medapt.strategies.surgery import apply_phase
from medapt.train import EngineConfig, class_weight_vector, train_phase


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3, 32, 32)).astype(np.float32)
    y = (x[:, 0, :16].mean(axis=(1, 2)) > 0).astype(np.int64)
    return x, y, np.arange(28), np.arange(28, 40)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return build("resnet18", **kw)


def _train(phase, data, tmp, model=None, **kw):
    x, y, tr, va = data
    m = model or _model()
    r = train_phase(m, phase, x, y, task_type="binary", workdir=tmp, indices=tr, val_indices=va,
                    cfg=EngineConfig(progress=False), **kw)
    return m, r


def _same(a, b, atol=1e-6):
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v.float(), b.state_dict()[k].float(), rtol=0, atol=atol, msg=k)


def test_validation_curve_and_best_epoch_kept(data, tmp_path):
    phase = Phase("ft", "last:2", 3e-3, 5, data="target", monitor="loss")
    m, r = _train(phase, data, tmp_path / "a")
    losses = [c["loss"] for c in r.curve]
    assert len(r.curve) == 5 and {"auc", "auprc", "accuracy", "loss", "lr", "seconds"} <= set(r.curve[0])
    assert r.best_epoch == int(np.argmin(losses)) + 1 and r.best_score == pytest.approx(min(losses))
    # the kept weights are the best epoch's: the same phase stopped at that epoch gives them
    short, _ = _train(replace(phase, epochs=r.best_epoch), data, tmp_path / "b")
    _same(m, short)


def test_plateau_halves_the_lr_and_stops_below_min_lr(data, tmp_path):
    phase = Phase("ft", "head", 1e-2, 30, data="target", monitor="auroc",
                  plateau=Plateau(factor=0.5, patience=0, min_lr=2e-3))
    _, r = _train(phase, data, tmp_path)
    lrs = [c["lr"] for c in r.curve]
    assert lrs[0] == pytest.approx(1e-2) and min(lrs) < 1e-2
    assert all(b in (a, pytest.approx(a / 2)) for a, b in zip(lrs, lrs[1:]))  # only ever halved
    assert r.epochs_run < 30 and "fell below min_lr" in r.stop_reason


def test_early_stopping(data, tmp_path):
    phase = Phase("ft", "head", 1e-6, 40, data="target", monitor="auprc", early_stop=2)
    _, r = _train(phase, data, tmp_path)
    assert r.epochs_run < 40 and "no improvement" in r.stop_reason
    assert r.epochs_run - r.best_epoch == 2


def test_resume_of_a_monitored_augmented_phase_is_exact(data, tmp_path):
    phase = Phase("ft", "last:2", 3e-3, 5, data="target", monitor="auroc", augment=("hflip", "rrc", "rotate"),
                  plateau=Plateau(0.5, 1, 1e-9), lr_mult=(("backbone", 0.1),), class_weights="balanced")
    start = _model().state_dict()
    ref, rr = _train(phase, data, tmp_path / "ref")
    assert not rr.cached and rr.augment == ["hflip", "rrc", "rotate"]

    def crash(epoch, loss):
        if epoch == 3:
            raise KeyboardInterrupt

    m = _model()
    m.load_state_dict(start)
    with pytest.raises(KeyboardInterrupt):
        _train(phase, data, tmp_path / "run", model=m, on_epoch_end=crash)
    m2 = _model()
    m2.load_state_dict(start)
    _, r2 = _train(phase, data, tmp_path / "run", model=m2)
    assert r2.resumed_from == 3 and r2.best_epoch == rr.best_epoch
    assert [c["auc"] for c in r2.curve] == pytest.approx([c["auc"] for c in rr.curve])
    _same(m2, ref)


def test_augmentation_disables_the_cache_and_says_which(data, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="medapt.train.engine"):
        _, r = _train(Phase("ft", "last:1", 1e-3, 1, data="target", augment=("hflip",)), data, tmp_path)
    assert not r.cached and "augmentation hflip" in caplog.text and "random augmentation" in r.cache_note
    _, r = _train(Phase("ft", "last:1", 1e-3, 1, data="target"), data, tmp_path / "plain")
    assert r.cached  # no augmentation: the frozen prefix (validation rows too) is cached


def test_param_groups_lr_multipliers():
    m = _model()
    phase = Phase("lw", "from:4", 1e-3, 1, lr_mult={"backbone": 0.1})
    apply_phase(m, phase)
    groups = param_groups(m, phase)
    assert [g["lr"] for g in groups] == [pytest.approx(1e-4), pytest.approx(1e-3)]
    head = {id(p) for p in m.head.parameters()}
    assert all(id(p) in head for p in groups[1]["params"]) and len(groups[1]["params"]) == 2
    assert sum(p.numel() for g in groups for p in g["params"]) == m.n_params(trainable_only=True)
    # a later selector wins; unselected parameters keep the base lr
    phase = Phase("lw", "all", 1e-3, 1, lr_mult={"backbone": 0.1, "last:1": 0.5})
    apply_phase(m, phase)
    assert sorted(g["lr_mult"] for g in param_groups(m, phase)) == [0.1, 0.5, 1.0]
    with pytest.raises(ConfigError, match=r"lr_mult.backbone must be > 0"):
        Phase("lw", "all", 1e-3, 1, lr_mult={"backbone": 0})
    with pytest.raises(ConfigError, match="lr_mult selector 'tail'"):
        Phase("lw", "all", 1e-3, 1, lr_mult={"tail": 0.1})


def test_optimizer_uses_the_groups(data, tmp_path):
    phase = Phase("lw", "last:2", 1e-3, 1, lr_mult={"backbone": 0.1})
    m, r = _train(phase, data, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]
    assert sorted(g["lr"] for g in state["param_groups"]) == [pytest.approx(1e-4), pytest.approx(1e-3)]


def test_class_weights():
    y = np.array([0, 0, 0, 1])
    w = class_weight_vector("balanced", y, "binary", 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])  # n / (C * n_c), scikit-learn's "balanced"
    assert class_weight_vector([1, 3], y, "binary", 2).tolist() == [1.0, 3.0]
    with pytest.raises(ConfigError, match="2 values but the task has 3 classes"):
        class_weight_vector([1, 3], y, "multiclass", 3)


def test_flatten_head_is_tied_to_the_feature_map(data, tmp_path):
    m = build("resnet50", Surgery(keep="cut:8", head="flatten"), n_outputs=2, image_size=224)
    # TruncatedTL without pooling: C·H·W·n + n = 512·28·28·2 + 2 (REFERENCE, TTL truncation table)
    assert sum(p.numel() for p in m.head.parameters()) == 802_818
    small = build("resnet18", Surgery(keep="cut:5", head="flatten"), image_size=32)
    x, y, tr, va = data
    r = train_phase(small, Phase("p", "head", 1e-3, 1), x, y, task_type="binary", workdir=tmp_path,
                    cfg=EngineConfig(progress=False))
    assert r.cached and "activations after unit 5" in r.cache_note  # a flatten head needs the map, not GAP


def test_phase_validation_and_presets():
    p = phase_from_dict({"name": "ft", "trainable": "all", "data": "target", "preset": "ttl"})
    assert (p.lr, p.batch_size, p.monitor, p.plateau, p.augment) == (1e-4, 64, "auprc", Plateau(0.5, 5, 1e-7),
                                                                     ("rrc", "rotate"))
    assert phase_from_dict({"name": "ft", "trainable": "all", "data": "target", "preset": "ttl-code"}).monitor == "loss"
    assert Phase("p", "all", 1e-3, 1).monitor is None and Phase("p", "all", 1e-3, 1, data="target").monitor == "auroc"
    with pytest.raises(ConfigError, match="monitor 'acc' not in auroc, auprc, loss"):
        Phase("p", "all", 1e-3, 1, monitor="acc")
    with pytest.raises(ConfigError, match="plateau needs a monitored validation metric"):
        Phase("p", "all", 1e-3, 1, plateau=Plateau())
    with pytest.raises(ConfigError, match="data 'sauce' not in source, target"):
        Phase("p", "all", 1e-3, 1, data="sauce")
    with pytest.raises(ConfigError, match="unknown phase field"):
        phase_from_dict({"name": "p", "trainable": "all", "lr": 1e-3, "epochs": 1, "monitr": "loss"})
    with pytest.raises(ConfigError, match="Unknown phase preset 'tll'"):
        phase_from_dict({"name": "p", "trainable": "all", "preset": "tll"})


def test_monitor_without_validation_rows_is_refused(data, tmp_path):
    x, y, tr, _ = data
    with pytest.raises(ConfigError, match="monitors validation auroc but has no validation rows"):
        train_phase(_model(), Phase("ft", "head", 1e-3, 1, data="target"), x, y, task_type="binary",
                    workdir=tmp_path, indices=tr, cfg=EngineConfig(progress=False))


def test_target_finetuning_of_a_truncated_resnet50_uses_the_cache(data, tmp_path):
    """No augmentation, BN frozen, the first units frozen: the prefix is computed once (train and val rows)."""
    torch.manual_seed(0)
    m = build("resnet50", Surgery(keep="cut:8"), n_outputs=1)
    _, r = _train(Phase("ft", "last:2", 1e-3, 2, data="target", monitor="auroc"), data, tmp_path, model=m)
    assert r.cached and r.cut == 6 and "activations after unit 6" in r.cache_note
    assert len(r.curve) == 2 and r.best_epoch in (1, 2)
