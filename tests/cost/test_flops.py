"""FLOPs counted with FlopCounterMode against hand counts; inference cost; projection helpers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from medapt.cost import (
    PhaseMeter,
    count_flops,
    count_params,
    inference_cost,
    project_seconds,
    throughput_probe,
    training_flops_per_image,
)
from medapt.errors import CostError

H = W = 16


def conv_fwd(cin: int, cout: int, k: int = 3, h: int = H, w: int = W) -> int:
    """Forward FLOPs of a stride-1 'same' Conv2d per image: 2·Cin·Cout·k²·H·W."""
    return 2 * cin * cout * k * k * h * w


def two_convs() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, bias=False)
    )


def test_one_conv_forward_equals_hand_count():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.zeros(2, 3, H, W)
    assert count_flops(lambda: conv(x)) == 2 * conv_fwd(3, 8)


def test_linear_forward_equals_hand_count():
    lin = nn.Linear(64, 10)
    assert count_flops(lambda: lin(torch.zeros(5, 64))) == 5 * 2 * 64 * 10


def test_training_flops_hand_counts():
    x = torch.randn(4, 3, H, W)
    f1, f2 = conv_fwd(3, 8), conv_fwd(8, 4)
    net = two_convs()
    # forward f1+f2; backward: weight grads of both (f1+f2) and the input grad of conv2 (f2);
    # no grad w.r.t. the input image
    assert training_flops_per_image(net, x) == 2 * f1 + 3 * f2
    for p in net[0].parameters():
        p.requires_grad_(False)
    # frozen prefix: conv1 forward only; conv2 forward + weight grad
    assert training_flops_per_image(net, x) == f1 + 2 * f2
    for p in net.parameters():
        p.requires_grad_(False)
    assert training_flops_per_image(net, x) == f1 + f2


def test_frozen_module_costs_less_than_trainable():
    x = torch.randn(2, 3, H, W)
    trainable = two_convs()
    frozen = two_convs().requires_grad_(False)
    assert training_flops_per_image(frozen, x) < training_flops_per_image(trainable, x)


def test_callers_module_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 1)).train()
    before = copy.deepcopy(net.state_dict())
    training_flops_per_image(net, torch.randn(3, 3, H, W), loss_fn=lambda out: (out ** 2).mean())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert all(p.grad is None for p in net.parameters())
    assert net.training


def test_bad_example():
    with pytest.raises(CostError, match="shape"):
        training_flops_per_image(nn.Linear(2, 2), torch.tensor(1.0))


def test_cached_phase_flops_visibly_lower():
    """The same 5-epoch phase, uncached (prefix recomputed every epoch) vs cached (one prefix
    forward pass, then only the trainable tail runs)."""
    prefix = two_convs().requires_grad_(False)
    tail = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 1))
    x = torch.randn(8, 3, H, W)
    epochs, n = 5, 8
    full = nn.Sequential(prefix, tail)
    with PhaseMeter(strategy="S", step="pretrain", phase="phase2", track_energy=False) as unc:
        unc.set_flops_per_image(training_flops_per_image(full, x))
        unc.add_images(epochs * n)
    feats = prefix(x).detach()
    with PhaseMeter(strategy="S", step="pretrain", phase="phase2", track_energy=False) as cac:
        cac.set_cache(True, "cut point 2")
        cac.add_flops(count_flops(lambda: prefix(x)))  # the one cache-building pass
        cac.set_flops_per_image(training_flops_per_image(tail, feats))
        cac.add_images(epochs * n)
    assert cac.row()["flops_per_image"] < unc.row()["flops_per_image"]
    assert cac.row()["flops_total"] < unc.row()["flops_total"]
    f_prefix = conv_fwd(3, 8) + conv_fwd(8, 4)
    # the saving is exactly the prefix forward on all but the first epoch
    assert unc.row()["flops_total"] - cac.row()["flops_total"] == pytest.approx((epochs - 1) * n * f_prefix)


def test_count_params():
    net = two_convs()
    net[0].requires_grad_(False)
    total, trainable = count_params(net)
    assert total == 3 * 8 * 9 + 8 * 4 * 9 and trainable == 8 * 4 * 9


def test_inference_cost_keys_and_positivity():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    net.train()
    out = inference_cost(net, (3, 32, 32), device="cpu", batch_sizes=(1, 4), repeats=3)
    assert set(out) >= {"params", "params_trainable", "macs_per_image", "flops_per_image",
                        "latency_ms_cpu_b1", "latency_ms_cpu_b4"}
    assert out["params"] == 3 * 8 * 9 + 8 + 8 * 2 + 2
    assert out["macs_per_image"] == pytest.approx(3 * 8 * 9 * 32 * 32 + 8 * 2)
    assert out["latency_ms_cpu_b1"] > 0 and out["latency_ms_cpu_b4"] > 0
    assert net.training  # mode restored
    with pytest.raises(CostError):
        inference_cost(net, (32, 32), device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_inference_cost_gpu():  # pragma: no cover - no GPU in CI
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())
    out = inference_cost(net, (3, 16, 16), device="auto", batch_sizes=(1,), repeats=2)
    assert out["latency_ms_cuda_b1"] > 0 and out["latency_ms_cpu_b1"] > 0


def test_throughput_probe_and_projection():
    calls = []
    rate = throughput_probe(lambda: calls.append(sum(range(20000))), n_images=10, warmup=2, repeats=3)
    assert len(calls) == 5 and rate > 0
    assert project_seconds(1e12, 2e11) == 5.0
    with pytest.raises(CostError):
        project_seconds(1e12, 0)
    with pytest.raises(CostError):
        throughput_probe(lambda: None, n_images=0)
