"""Per-step learning-rate schedules (BiT-HyperRule's warm-up + ×0.1 decays) and MixUp in the
phase engine: the LR each optimizer step uses, exact resume mid-schedule, mixed training batches."""

import logging

import numpy as np
import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import build
from medapt.strategies import Phase, get
from medapt.strategies.catalogue import StepSchedule
from medapt.train import EngineConfig, train_phase
from medapt.train import engine as engine_mod
from medapt.train.mixup import MixUp


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    y = (x[:, 0, :16].mean(axis=(1, 2)) > 0).astype(np.int64)
    return x, y


class Spy:
    """Records, at every training forward pass, the batch and the LR the following optimizer step uses."""

    def __init__(self, monkeypatch):
        self.lrs, self.inputs, self.optimizers = [], [], []
        make, forward = engine_mod._optimizer, engine_mod.RunningPart.forward

        def optimizer(phase, groups, *args, **kwargs):
            self.optimizers.append(make(phase, groups, *args, **kwargs))
            return self.optimizers[-1]

        def spy_forward(part, x):
            if torch.is_grad_enabled():  # training steps (validation runs under no_grad)
                self.lrs.append(self.optimizers[-1].param_groups[0]["lr"])
                self.inputs.append(x.detach().clone())
            return forward(part, x)

        monkeypatch.setattr(engine_mod, "_optimizer", optimizer)
        monkeypatch.setattr(engine_mod.RunningPart, "forward", spy_forward)


BACKBONE = "resnet10t"  # small and fast; the schedule and MixUp do not depend on the backbone
SCHED = StepSchedule(warmup_steps=3, decay_steps=(5, 7), factor=0.1)


def test_step_schedule_multiplier_is_bits_get_lr():
    """bit_hyperrule.get_lr: step/warmup below the warm-up end, then /10 for each boundary s < step."""
    assert [SCHED.multiplier(t) for t in range(9)] == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1, 0.1, 0.1, 0.01])
    with pytest.raises(ConfigError, match="increasing"):
        StepSchedule(3, (7, 5))
    with pytest.raises(ConfigError, match="plateau"):
        Phase("p", "all", 0.1, 1, data="target", lr_schedule={"warmup_steps": 1}, plateau={"factor": 0.5})
    with pytest.raises(ConfigError, match="mixup"):
        Phase("p", "all", 0.1, 1, mixup=-1)


def test_phase_without_schedule_or_mixup_keeps_its_key():
    """Unset fields are left out of to_dict, so existing step hashes do not change."""
    d = Phase("p", "all", 0.1, 1).to_dict()
    assert "lr_schedule" not in d and "mixup" not in d
    p = Phase("p", "all", 0.1, 1, lr_schedule={"warmup_steps": 3, "decay_steps": [5, 7]}, mixup=0.1)
    assert Phase(**p.to_dict()) == p


def _run(x, y, workdir, phase, **kw):
    torch.manual_seed(0)
    m = build(BACKBONE, get("DA").surgery, n_outputs=1)
    r = train_phase(m, phase, x, y, task_type="binary", workdir=workdir, cfg=EngineConfig(progress=False), **kw)
    return m, r


def test_engine_steps_the_schedule_per_batch(data, tmp_path, monkeypatch):
    x, y = data
    spy = Spy(monkeypatch)
    phase = Phase("p", "all", 0.01, 3, optimizer="sgd", batch_size=4, lr_schedule=SCHED)  # 3 steps an epoch
    _, r = _run(x, y, tmp_path / "w", phase)
    assert spy.lrs == pytest.approx([0.01 * SCHED.multiplier(t) for t in range(9)])
    # the rule's values at the boundaries: warm-up end, the step at and after each decay point
    assert spy.lrs[3] == pytest.approx(0.01) and spy.lrs[5] == pytest.approx(0.01)
    assert spy.lrs[6] == pytest.approx(0.001) and spy.lrs[8] == pytest.approx(0.0001)
    assert r.curve[0]["lr"] == pytest.approx(0.01 * SCHED.multiplier(3))  # the lr after epoch 1


def test_resume_mid_schedule_gives_the_same_lr_sequence_and_weights(data, tmp_path, monkeypatch):
    x, y = data
    # lr multipliers 0, ½, 1 in epoch 1; 1, 0.1, 0.01 in epoch 2, which the resumed run trains
    phase = Phase("p", "all", 0.01, 2, optimizer="sgd", batch_size=4, lr_schedule=StepSchedule(2, (3, 4)), mixup=0.5)
    spy = Spy(monkeypatch)
    ref, _ = _run(x, y, tmp_path / "ref", phase)
    ref_lrs, spy.lrs = list(spy.lrs), []

    def crash(epoch, loss):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(x, y, tmp_path / "run", phase, on_epoch_end=crash)
    m, r = _run(x, y, tmp_path / "run", phase)
    assert r.resumed_from == 1
    assert spy.lrs == pytest.approx(ref_lrs) == [0, 0.005, 0.01, 0.01, 0.001, 0.0001]
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(m.state_dict()[k].float(), v.float(), rtol=0, atol=1e-5, msg=k)


def test_mixup_batches_reach_the_training_step(data, tmp_path, monkeypatch):
    x, y = data
    spy = Spy(monkeypatch)
    draws = []
    draw = MixUp.draw

    def spy_draw(self, n, generator):
        draws.append(draw(self, n, generator))
        return draws[-1]

    monkeypatch.setattr(MixUp, "draw", spy_draw)
    _, r = _run(x, y, tmp_path / "w", Phase("p", "all", 1e-3, 1, batch_size=4, mixup=1.0))
    assert r.augment == ["mixup(1)"] and len(draws) == len(spy.inputs) == 3
    order = engine_mod._epoch_order(len(x), 0, "p", 1)  # the engine's batches of epoch 1
    for i, (xb, (lam, perm)) in enumerate(zip(spy.inputs, draws)):
        batch = torch.as_tensor(x[np.sort(order[4 * i : 4 * i + 4].numpy())])
        assert 0 < lam < 1 and not torch.equal(xb, batch)
        torch.testing.assert_close(xb, lam * batch + (1 - lam) * batch[perm])


def test_no_mixup_below_alpha_zero_and_none_with_a_cached_prefix(data, tmp_path, monkeypatch, caplog):
    x, y = data
    spy = Spy(monkeypatch)
    _, r = _run(x, y, tmp_path / "plain", Phase("p", "all", 1e-3, 1, batch_size=8))
    rows = torch.as_tensor(x).flatten(1)
    assert r.augment == [] and all(torch.cdist(xb.flatten(1), rows).min(dim=1).values.max() < 1e-5 for xb in spy.inputs)
    with caplog.at_level(logging.INFO, logger="medapt.train.engine"):
        _, r = _run(x, y, tmp_path / "cached", Phase("p", "head", 1e-3, 1, batch_size=8, mixup=0.1))
    assert r.cached and r.augment == [] and "MixUp (alpha 0.1) not applied" in caplog.text


@pytest.mark.parametrize("n_train, mixed", [(19_999, False), (20_000, True)])
def test_bit_hyperrule_mixes_training_batches_from_20k_images(data, tmp_path, monkeypatch, n_train, mixed):
    """BiT-HyperRule's MixUp threshold through the engine: a fine-tuning phase set by the rule for a
    training set of n_train images (here trained one epoch on the small fixture) mixes its batches
    from 20k images on, and not below."""
    import dataclasses

    from medapt.strategies import STRATEGIES
    from medapt.suite.study import bit_phase

    x, y = data
    spy = Spy(monkeypatch)
    calls = []
    call = MixUp.__call__
    monkeypatch.setattr(MixUp, "__call__", lambda self, *a: calls.append(self.alpha) or call(self, *a))
    phase = bit_phase(STRATEGIES.get("FTL").target_phases[0], n_train, 32, batch_size=4, resolution=False)
    _, r = _run(x, y, tmp_path / "w", dataclasses.replace(phase, epochs=1, monitor=None))
    assert calls == ([0.1] * 3 if mixed else []) and len(spy.inputs) == 3
    assert r.augment == (["mixup(0.1)"] if mixed else [])
    assert spy.lrs == pytest.approx([phase.lr * t / phase.lr_schedule.warmup_steps for t in range(3)])  # warming up
