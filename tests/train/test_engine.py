"""The phase engine and its frozen-prefix cache (DESIGN §4)."""

import logging

import numpy as np
import pytest
import torch

from medapt.errors import CheckpointError, ConfigError
from medapt.models import build
from medapt.strategies import Phase, Strategy, get
from medapt.strategies.surgery import apply_phase
from medapt.train import EngineConfig, Runtime, plan_cache, train_phase


def build_for(strategy: Strategy, backbone: str, n_outputs: int = 1):
    return build(backbone, strategy.surgery, n_outputs=n_outputs)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    y = (x[:, 0, :16].mean(axis=(1, 2)) > 0).astype(np.int64)
    return x, y


def _train(strategy, x, y, tmp_path, cache, backbone="resnet18", task="binary", n_out=1, **cfg):
    torch.manual_seed(0)
    m = build_for(strategy, backbone, n_outputs=n_out)
    results = []
    for ph in strategy.phases:
        results.append(train_phase(m, ph, x, y, task_type=task, workdir=tmp_path / cache / ph.name,
                                   cfg=EngineConfig(cache=cache, progress=False, **cfg)))
    return m, results


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k].float(), sb[k].float(), rtol=0, atol=1e-5, msg=k)


def test_head_only_phase_cached_equals_uncached(data, tmp_path):
    x, y = data
    s = Strategy("probe", "test", phases=(Phase("probe", "head", 1e-4, 3),))
    a, [ra] = _train(s, x, y, tmp_path, "auto")
    b, [rb] = _train(s, x, y, tmp_path, "off")
    assert ra.cached and not rb.cached and "pooled features" in ra.cache_note
    _assert_same_weights(a, b)
    assert ra.losses == pytest.approx(rb.losses, abs=1e-6)


def test_partial_phase_da_l2sb_cached_equals_uncached(data, tmp_path):
    x, y = data
    s = get("DA_L2SB").with_epochs({"phase1": 2, "phase2": 2})
    a, ra = _train(s, x, y, tmp_path, "auto")
    b, rb = _train(s, x, y, tmp_path, "off")
    assert [r.cached for r in ra] == [True, True] and [r.cached for r in rb] == [False, False]
    assert ra[1].cut == 7  # resnet18: 9 units, the last two train
    _assert_same_weights(a, b)


def test_multiclass_and_multilabel_losses(data, tmp_path):
    x, _ = data
    s = get("DA_L1SB").with_epochs({"phase1": 1, "phase2": 1})
    y3 = np.arange(len(x)) % 3
    _, r = _train(s, x, y3, tmp_path, "auto", task="multiclass", n_out=3)
    assert all(np.isfinite(v) for res in r for v in res.losses)
    yml = np.stack([np.arange(len(x)) % 2, np.full(len(x), np.nan)], 1).astype(np.float32)
    _, r = _train(s, x, yml, tmp_path / "ml", "auto", task="multilabel", n_out=2)
    assert all(np.isfinite(v) for res in r for v in res.losses)


def test_cache_refused_with_reason_when_bn_trains_or_augmenting(data, tmp_path, caplog):
    m = build_for(get("DA_L1SB"), "resnet18")
    idx = apply_phase(m, get("DA_L1SB").phases[1], "train")
    plan = plan_cache(m, idx)
    assert not plan.use and "BatchNorm in train mode" in plan.note
    idx = apply_phase(m, get("DA_L1SB").phases[1], "frozen")
    assert plan_cache(m, idx, augment=True).note.endswith("random augmentation is applied to the input")
    assert not plan_cache(m, list(range(m.n_units))).use  # the first unit trains: nothing to cache
    x, y = data
    with caplog.at_level(logging.INFO, logger="medapt.train.engine"):
        train_phase(m, Phase("p", "last:1", 1e-5, 1), x, y, task_type="binary", workdir=tmp_path,
                    cfg=EngineConfig(bn_policy="train", progress=False))
    assert "not cached: BatchNorm in train mode" in caplog.text


def test_bn_frozen_keeps_running_stats(data, tmp_path):
    x, y = data
    m = build_for(get("DA"), "resnet18")
    before = m.units[0][1].running_mean.clone()
    train_phase(m, Phase("p", "all", 1e-3, 1), x, y, task_type="binary", workdir=tmp_path,
                cfg=EngineConfig(progress=False))
    torch.testing.assert_close(m.units[0][1].running_mean, before)
    train_phase(m, Phase("q", "all", 1e-3, 1), x, y, task_type="binary", workdir=tmp_path / "q",
                cfg=EngineConfig(progress=False, bn_policy="train"))
    assert not torch.equal(m.units[0][1].running_mean, before)


@pytest.mark.parametrize("spec, augment", [("last:2", False), ("head", False), ("last:2", True)])
def test_resume_after_a_crash_gives_the_same_weights(data, tmp_path, spec, augment):
    x, y = data
    phase = Phase("p", spec, 1e-3, 4)
    cfg = EngineConfig(progress=False, augment=augment)
    torch.manual_seed(0)
    ref = build_for(get("DA"), "resnet18")
    start = {k: v.clone() for k, v in ref.state_dict().items()}
    train_phase(ref, phase, x, y, task_type="binary", workdir=tmp_path / "ref", cfg=cfg)

    m = build_for(get("DA"), "resnet18")
    m.load_state_dict(start)

    def crash(epoch, loss):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_phase(m, phase, x, y, task_type="binary", workdir=tmp_path / "run", cfg=cfg, on_epoch_end=crash)
    # a new process: fresh model from the phase's starting weights, same working directory
    m2 = build_for(get("DA"), "resnet18")
    m2.load_state_dict(start)
    r = train_phase(m2, phase, x, y, task_type="binary", workdir=tmp_path / "run", cfg=cfg)
    assert r.resumed_from == 2 and r.cached == (not augment) and len(r.losses) == 4
    _assert_same_weights(m2, ref)


def test_checkpoint_from_another_setup_is_refused(data, tmp_path):
    x, y = data
    m = build_for(get("DA"), "resnet18")
    train_phase(m, Phase("p", "head", 1e-3, 1), x, y, task_type="binary", workdir=tmp_path, cfg=EngineConfig(progress=False))
    with pytest.raises(CheckpointError, match="another phase set-up"):
        train_phase(m, Phase("p", "head", 1e-2, 2), x, y, task_type="binary", workdir=tmp_path,
                    cfg=EngineConfig(progress=False))
    (tmp_path / "checkpoint.pt").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="delete it"):
        train_phase(m, Phase("p", "head", 1e-3, 1), x, y, task_type="binary", workdir=tmp_path,
                    cfg=EngineConfig(progress=False))


def test_bad_engine_values():
    with pytest.raises(ConfigError, match="bn_policy"):
        EngineConfig(bn_policy="sometimes")
    with pytest.raises(ConfigError, match="fp16 is not supported on CPU"):
        Runtime("cpu", "fp16")


def test_bf16_autocast_runs_on_cpu(data, tmp_path):
    x, y = data
    m = build_for(get("DA"), "resnet18")
    r = train_phase(m, Phase("p", "last:1", 1e-4, 1), x, y, task_type="binary", workdir=tmp_path,
                    cfg=EngineConfig(progress=False), runtime=Runtime("cpu", "bf16"))
    assert np.isfinite(r.losses[0])


def test_progress_off_a_tty_is_plain_log_lines(data, tmp_path, caplog):
    x, y = data
    m = build_for(get("DA"), "resnet18")
    with caplog.at_level(logging.INFO, logger="medapt.train.engine"):
        train_phase(m, Phase("warmup", "head", 1e-3, 20), x, y, task_type="binary", workdir=tmp_path,
                    cfg=EngineConfig(progress=False))
    lines = [r.getMessage() for r in caplog.records if "warmup epoch" in r.getMessage()]
    assert len(lines) == 10  # about ten lines per phase, each with loss, throughput and ETA
    assert "epoch 20/20 loss" in lines[-1] and "img/s" in lines[-1] and "ETA" in lines[-1]
