"""Transfusion initialisations: Mean-Var, Gabor conv1, weight transfusion (Raghu et al. 2019)."""

import math

import pytest
import torch
from torch import nn

from medapt.errors import ConfigError, WeightsError
from medapt.models import build
from medapt.models.inits import (first_layer, gabor_bank, gabor_conv1_, gabor_layout, meanvar_, reset_,
                                 transfusion_)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def fake_pretrained(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every tensor its own mean and scale (and BN non-default statistics), like trained weights."""
    g = gen(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand((), generator=g) * 3 + 0.1).add_(torch.randn((), generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 1))  # 8×8 inputs


# --- Mean-Var ------------------------------------------------------------------------------------

def assert_matches_moments(drawn: torch.Tensor, ref: torch.Tensor) -> None:
    """Sample mean/variance of ``drawn`` vs the population mean/variance of ``ref``.

    For n i.i.d. draws from N(μ, σ²) the sample mean has standard error σ/√n and the sample
    variance σ²·√(2/(n-1)); we allow 6 standard errors (a false alarm has probability ~1e-9 per
    tensor, and the draws are seeded anyway). A one-element tensor has σ = 0: it must equal μ.
    """
    ref, drawn = ref.double(), drawn.detach().double()
    mu, var = ref.mean(), ref.var(correction=0)
    n = drawn.numel()
    if n == 1 or var == 0:
        torch.testing.assert_close(drawn, torch.full_like(drawn, float(mu)))
        return
    assert abs(drawn.mean() - mu) <= 6 * var.sqrt() / math.sqrt(n) + 1e-12
    assert abs(drawn.var(correction=1) - var) <= 6 * var * math.sqrt(2 / (n - 1)) + 1e-12


def test_meanvar_each_layer_matches_its_pretrained_moments():
    pre = fake_pretrained(build("resnet18", n_outputs=1))
    net = build("resnet18", n_outputs=1)
    state = torch.random.get_rng_state()
    meanvar_(net, pre.state_dict(), gen())
    assert torch.equal(torch.random.get_rng_state(), state)
    sd = pre.state_dict()
    for name, p in net.named_parameters():  # conv/linear weights and biases, BN γ/β (mode "sample")
        assert_matches_moments(p, sd[name])
    assert net.head.fc.bias.numel() == 1  # the σ = 0 case is exercised
    for m in net.modules():  # BN running statistics are reset, not copied
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))


def test_meanvar_keeps_scale_not_features_and_is_seeded():
    def net():
        return nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64))

    pre = fake_pretrained(net())
    a, b, c = (meanvar_(net(), pre.state_dict(), gen(s)) for s in (3, 3, 4))
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)
    # the features are gone: a Mean-Var filter bank is uncorrelated with the pretrained one
    # (36,864 weights: the correlation of independent draws has standard error 1/√n ≈ 0.005)
    r = torch.corrcoef(torch.stack([a[0].weight.detach().flatten(), pre[0].weight.detach().flatten()]))[0, 1]
    assert abs(float(r)) < 0.03


def test_meanvar_bn_reset_mode():
    pre, net = fake_pretrained(small_net()), small_net()
    meanvar_(net, pre.state_dict(), gen(), bn="reset")
    assert torch.equal(net[1].weight, torch.ones(16)) and torch.equal(net[1].bias, torch.zeros(16))
    assert_matches_moments(net[0].weight, pre[0].weight)
    with pytest.raises(ConfigError, match="bn='other'"):
        meanvar_(net, pre.state_dict(), gen(), bn="other")


def test_meanvar_missing_tensors():
    pre, net = small_net(), small_net()
    sd = {k: v for k, v in pre.state_dict().items() if not k.startswith("4.")}
    with pytest.raises(WeightsError, match="no pretrained tensor for 4.weight, 4.bias"):
        meanvar_(net, sd, gen())
    before = net[4].weight.detach().clone()
    meanvar_(net, sd, gen(), strict=False)
    assert torch.equal(net[4].weight, before)


# --- Gabor conv1 ---------------------------------------------------------------------------------

def measured_orientations(bank: torch.Tensor, pad: int = 128) -> torch.Tensor:
    """Direction (mod π) of each filter's dominant spatial frequency: the peak of |FFT| of the
    filter zero-padded to ``pad × pad`` (bin spacing 1/pad cycles/px)."""
    f = bank[:, 0].double()
    spec = torch.fft.fft2(f, s=(pad, pad)).abs().flatten(1)
    idx = spec.argmax(dim=1)
    freqs = torch.fft.fftfreq(pad, dtype=torch.float64)
    return torch.atan2(freqs[idx // pad], freqs[idx % pad]) % math.pi


def circular_clusters(angles: torch.Tensor, gap: float) -> list[float]:
    """Group angles on the circle [0, π) where consecutive sorted angles are closer than ``gap``; return centres."""
    a = sorted(float(x) for x in angles)
    groups = [[a[0]]]
    for x in a[1:]:
        (groups[-1].append(x) if x - groups[-1][-1] < gap else groups.append([x]))
    if len(groups) > 1 and groups[0][0] + math.pi - groups[-1][-1] < gap:  # wrap around π
        groups[0] = [x - math.pi for x in groups.pop()] + groups[0]
    return sorted(sum(g) / len(g) % math.pi for g in groups)


# Tolerance: with 128-point zero padding the FFT bins are 1/128 cycles/px apart; at the lowest
# carrier (1/7 cycles/px for a 7×7 kernel, λ = 7) that is an angular step of ≈ 3.2°, and the
# truncated envelope moves the peak a little more: 5° covers both (measured worst case 3.4°).
TOL = math.radians(5)


@pytest.mark.parametrize("out, k", [(64, 7), (24, 7), (16, 5), (32, 3), (96, 11)])
def test_gabor_orientations_cover_0_to_pi_evenly(out, k):
    bank = gabor_bank(out, 3, k)
    assert bank.shape == (out, 3, k, k)
    n_theta = gabor_layout(out)[0]
    centres = circular_clusters(measured_orientations(bank), gap=math.pi / n_theta / 2)
    assert len(centres) == n_theta
    spacing = [(centres[(i + 1) % n_theta] - centres[i]) % math.pi for i in range(n_theta)]
    assert all(abs(s - math.pi / n_theta) < TOL for s in spacing)
    assert min(min(c, math.pi - c) for c in centres) < TOL  # the grid starts at θ = 0


def test_gabor_bank_layout_filters_and_random_phases():
    assert gabor_layout(64) == (8, 4, 2)  # 8 orientations × 4 wavelengths × 2 phases
    bank = gabor_bank(64, 3, 7)
    torch.testing.assert_close(bank.flatten(1).norm(dim=1), torch.ones(64, dtype=bank.dtype))
    torch.testing.assert_close(bank.mean(dim=(2, 3)), torch.zeros(64, 3), atol=1e-6, rtol=0)
    assert torch.equal(bank[:, 0], bank[:, 2])  # same filter on every input channel
    assert len({tuple(f.flatten().tolist()) for f in bank[:, 0]}) == 64  # no duplicates
    r1, r2 = gabor_bank(64, 3, 7, gen(5)), gabor_bank(64, 3, 7, gen(5))
    assert torch.equal(r1, r2) and not torch.equal(r1, bank)
    centres = circular_clusters(measured_orientations(r1), gap=math.pi / 16)
    assert len(centres) == 8  # random phases keep the orientation grid


def test_gabor_conv1_scales_to_the_pretrained_norm():
    model = build("resnet18")
    ref = torch.randn(64, 3, 7, 7, generator=gen()) * 0.3
    conv = gabor_conv1_(model, ref)  # a model: its first layer is taken
    assert conv is model.units[0][0] and conv.weight.shape == (64, 3, 7, 7)
    assert math.isclose(float(conv.weight.detach().norm()), float(ref.norm()), rel_tol=1e-5)
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, float(ref.norm()) / 8))  # equal shares
    bare = gabor_conv1_(nn.Conv2d(3, 32, 5))  # no reference: He (fan-in) expected norm, bias zeroed
    assert math.isclose(float(bare.weight.detach().norm()), math.sqrt(2 * 32), rel_tol=1e-5)
    assert torch.equal(bare.bias, torch.zeros(32))


def test_gabor_conv1_needs_a_conv_first_layer():
    with pytest.raises(ConfigError, match=r"Conv2d first layer.*'0' \(BatchNorm2d\)"):
        gabor_conv1_(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 8, 3)))
    with pytest.raises(ConfigError, match="Linear"):
        first_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


# --- weight transfusion --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_pre():
    return fake_pretrained(build("resnet18"))


def test_transfusion_copies_units_1_to_k_and_redraws_the_rest(resnet18_pre):
    pre, net = resnet18_pre, build("resnet18")
    old = [{k: v.clone() for k, v in u.state_dict().items()} for u in net.units]
    state = torch.random.get_rng_state()
    transfusion_(net, pre, 5, gen(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    for i, (u, p) in enumerate(zip(net.units, pre.units)):
        if i < 5:  # pretrained weights and BN statistics
            for key, v in u.state_dict().items():
                assert torch.equal(v, p.state_dict()[key]), (i, key)
            continue
        for name, m in u.named_modules():
            if isinstance(m, nn.Conv2d):  # fresh draws: neither pretrained nor the old values
                w = m.weight
                assert not torch.equal(w, p.get_submodule(name).weight)
                assert not torch.equal(w, old[i][f"{name}.weight"]), (i, name)
            elif isinstance(m, nn.BatchNorm2d):  # PyTorch's reset: γ=1, β=0, statistics 0/1
                for t, value in ((m.weight, 1.0), (m.bias, 0.0), (m.running_mean, 0.0), (m.running_var, 1.0)):
                    assert torch.equal(t, torch.full_like(t, value)), (i, name)
    twin = transfusion_(build("resnet18"), pre, 5, gen(0))
    assert all(torch.equal(a, b) for a, b in zip(net.units.state_dict().values(), twin.units.state_dict().values()))


def test_transfusion_rejects_other_widths_and_bad_k(resnet18_pre):
    net = build("resnet18")
    with pytest.raises(ConfigError, match="5 units but 9 pretrained units"):
        transfusion_(list(net.units[:5]), resnet18_pre, 3, gen())  # a list of modules works too
    with pytest.raises(ConfigError, match="out of range 0..9"):
        transfusion_(net, resnet18_pre, 10, gen())
    narrow = net.anatomy  # an Anatomy works too
    narrow.units[0].module[0].weight.data = torch.zeros(32, 3, 7, 7)
    with pytest.raises(WeightsError, match="unit 1 does not fit"):
        transfusion_(narrow, resnet18_pre.anatomy, 1, gen())


def test_reset_refuses_modules_it_cannot_reset():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(3))

    with pytest.raises(ConfigError, match="gamma|Scale"):
        reset_(nn.Sequential(nn.Conv2d(3, 3, 1), Scale()), gen())
    with pytest.raises(ConfigError, match="torch.Generator"):
        reset_(nn.Conv2d(3, 3, 1), 0)
