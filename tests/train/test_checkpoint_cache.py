"""Checkpoint frequency (engine.checkpoint_every / checkpoint_seconds) and the LRU bound on the
frozen-prefix caches (engine.cache_max_gb)."""

import logging
import os

import numpy as np
import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import build
from medapt.strategies import Phase, get
from medapt.train import EngineConfig, train_phase
from medapt.train.cache import evict_caches


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    return x, (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64)


def _model():
    torch.manual_seed(0)
    return build("resnet18", get("DA").surgery, n_outputs=1)


def _checkpoint_epochs(data, tmp_path, **cfg):
    x, y = data
    seen = []

    def record(epoch, loss):
        p = tmp_path / "run" / "checkpoint.pt"
        seen.append(int(torch.load(p, weights_only=True)["epoch"]) if p.exists() else None)

    train_phase(_model(), Phase("p", "head", 1e-3, 5), x, y, task_type="binary", workdir=tmp_path / "run",
                cfg=EngineConfig(progress=False, **cfg), on_epoch_end=record)
    return seen


def test_checkpoint_every_n_epochs(data, tmp_path):
    assert _checkpoint_epochs(data, tmp_path / "a") == [1, 2, 3, 4, 5]  # the default: every epoch
    assert _checkpoint_epochs(data, tmp_path / "b", checkpoint_every=2) == [None, 2, 2, 4, 4]
    assert _checkpoint_epochs(data, tmp_path / "c", checkpoint_every=0) == [None] * 5  # off


def test_checkpoint_by_time(data, tmp_path, monkeypatch):
    import medapt.train.engine as engine

    clock = iter(range(0, 10_000, 10))  # every perf_counter call advances 10 "seconds"
    monkeypatch.setattr(engine.time, "perf_counter", lambda: float(next(clock)))
    seen = _checkpoint_epochs(data, tmp_path, checkpoint_every=0, checkpoint_seconds=1)
    assert seen == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="checkpoint_every"):
        EngineConfig(checkpoint_every=-1)


def test_resume_from_a_sparse_checkpoint_is_exact(data, tmp_path):
    x, y = data
    phase = Phase("p", "last:2", 1e-3, 4)
    ref = _model()
    train_phase(ref, phase, x, y, task_type="binary", workdir=tmp_path / "ref", cfg=EngineConfig(progress=False))

    def crash(epoch, loss):
        if epoch == 3:
            raise KeyboardInterrupt

    cfg = EngineConfig(progress=False, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_phase(_model(), phase, x, y, task_type="binary", workdir=tmp_path / "run", cfg=cfg, on_epoch_end=crash)
    m = _model()
    r = train_phase(m, phase, x, y, task_type="binary", workdir=tmp_path / "run", cfg=cfg)
    assert r.resumed_from == 2  # epoch 3 was not checkpointed: redone
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(m.state_dict()[k], v)


def test_evict_caches_drops_least_recently_used(tmp_path, caplog):
    sizes = {"prefix-k1-a.npy": 400, "prefix-k1-b.npy": 300, "prefix-k1-c.npy": 200}
    for i, (name, n) in enumerate(sizes.items()):
        p = tmp_path / name
        p.write_bytes(b"0" * n)
        os.utime(p, (1000 + i, 1000 + i))  # a is the oldest, c the newest
    (tmp_path / "prefix-k1-a.npy.cost.json").write_text("{}")
    os.utime(tmp_path / "prefix-k1-b.npy", (500, 500))  # b: least recently used
    with caplog.at_level(logging.INFO, logger="medapt"):
        gone = evict_caches(tmp_path, max_gb=650e-9, keep=tmp_path / "prefix-k1-b.npy")
    # b is kept (the one in use); a is older than c, so a goes first and that is enough (500 <= 650)
    assert [p.name for p in gone] == ["prefix-k1-a.npy"]
    assert not (tmp_path / "prefix-k1-a.npy.cost.json").exists()
    assert "evicted" in caplog.text and "cache_max_gb" in caplog.text


def test_engine_bounds_caches_and_recomputes_evicted_ones(data, tmp_path, caplog):
    x, y = data
    cache = tmp_path / "cache"
    cfg = EngineConfig(progress=False, cache_max_gb=1e-9)  # room for one cache only
    phase = Phase("p", "head", 1e-3, 1)

    def run(xs, name):
        return train_phase(_model(), phase, xs, y, task_type="binary", workdir=tmp_path / name, cache_dir=cache, cfg=cfg)

    with caplog.at_level(logging.INFO, logger="medapt"):
        assert run(x, "a").cached
        run(x * 2, "b")  # other data: a second cache; the first is evicted
    assert "evicted" in caplog.text
    assert len(list(cache.glob("prefix-k*.npy"))) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="medapt"):
        run(x, "c")  # needs the evicted cache again: recomputed, not a hit
    assert "cache hit" not in caplog.text


@pytest.mark.parametrize("bn_policy", ["frozen", "train"])
def test_checkpoint_holds_only_what_the_phase_can_change(data, tmp_path, bn_policy):
    """Trainable parameters, and BatchNorm statistics only where BatchNorm runs in train mode: a
    head-only phase under frozen BN pickles the head, not every running mean of the backbone."""
    from medapt.strategies import apply_phase
    from medapt.train.validate import changing_state

    x, y = data
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    phase = Phase("p", "last:1", 1e-2, 2)
    train_phase(model, phase, x, y, task_type="binary", workdir=tmp_path / "run",
                cfg=EngineConfig(progress=False, bn_policy=bn_policy, cache="off"))
    saved = set(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"])
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed <= saved  # nothing that moved is missing from the checkpoint (resume stays exact)
    bn_stats = {k for k in saved if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    if bn_policy == "frozen":
        assert not bn_stats and saved == {n for n, p in model.named_parameters() if p.requires_grad}
    else:
        assert bn_stats and len(bn_stats) == len([k for k in before if k.endswith("running_mean")]) * 3
    apply_phase(model, phase, bn_policy)
    assert set(changing_state(model)) == saved


@pytest.mark.parametrize("phase_batch, expected", [(4, 4), (128, 8)])
def test_prefix_cache_is_built_at_the_phase_batch_size(data, tmp_path, monkeypatch, phase_batch, expected):
    """The cache's one forward pass runs at the phase's batch size, capped by eval_batch_size."""
    import medapt.train.engine as engine

    seen = []
    real = engine.build_prefix_cache

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "build_prefix_cache", spy)
    x, y = data
    res = train_phase(_model(), Phase("p", "head", 1e-3, 1, batch_size=phase_batch), x, y, task_type="binary",
                      workdir=tmp_path / "run", cfg=EngineConfig(progress=False, eval_batch_size=8))
    assert res.cached and seen == [expected]


def test_fused_optimizer_trains_to_nearly_the_same_weights(data, tmp_path):
    """engine.fused_optimizer: PyTorch's fused Adam kernel — the same update up to float rounding."""
    x, y = data
    phase = Phase("p", "last:1", 1e-3, 2, batch_size=4)
    ref, fused = _model(), _model()
    train_phase(ref, phase, x, y, task_type="binary", workdir=tmp_path / "a", cfg=EngineConfig(progress=False))
    train_phase(fused, phase, x, y, task_type="binary", workdir=tmp_path / "b",
                cfg=EngineConfig(progress=False, fused_optimizer=True))
    start = _model().state_dict()
    moved = 0
    for k, v in ref.state_dict().items():
        w = fused.state_dict()[k]
        assert torch.allclose(v, w, rtol=1e-4, atol=1e-6), k
        moved += int(not torch.equal(v, start[k]))
    assert moved > 0  # it trained
    from medapt.train.engine import _optimizer

    opt = _optimizer(phase, [{"params": [torch.nn.Parameter(torch.zeros(2))]}], fused=True)
    assert opt.defaults["fused"] is True
