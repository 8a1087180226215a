"""Random initialisation leaves no BatchNorm γ at zero: timm's ResNets zero the last BN γ of each
residual branch (``zero_init_last``), which under the default ``bn_policy: frozen`` would keep every
residual branch at zero for good. Pretrained units are untouched, bit for bit."""

from dataclasses import replace

import numpy as np
import timm
import torch
from torch import nn

from medapt.models import Surgery, build, create_backbone
from medapt.strategies import get
from medapt.train import EngineConfig, Runtime, train_phase

_BN = nn.modules.batchnorm._BatchNorm


def _gammas(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach() for n, m in module.named_modules() if isinstance(m, _BN) and m.weight is not None}


def test_scratch_resnet_trains_its_residual_branches_with_frozen_bn(tmp_path):
    torch.manual_seed(0)
    m = build("resnet18", get("Scratch").surgery)
    assert all(bool((g != 0).all()) for g in _gammas(m).values())
    start = {k: v.clone() for k, v in m.state_dict().items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    y = (np.arange(8) % 2).astype(np.int64)
    phase = replace(get("Scratch").target_phases[0], epochs=1, batch_size=4, monitor=None)
    cfg = EngineConfig(progress=False)
    assert cfg.bn_policy == "frozen"
    train_phase(m, phase, x, y, task_type="binary", workdir=tmp_path, cfg=cfg, runtime=Runtime("cpu"))
    after = m.state_dict()
    branch_convs = [k for k in after if ".conv1.weight" in k or ".conv2.weight" in k]  # BasicBlock: conv1, conv2
    assert len(branch_convs) == 16
    assert [k for k in branch_convs if torch.equal(after[k], start[k])] == []  # every residual branch trained
    assert all(torch.equal(after[k], start[k]) for k in after if "bn" in k)  # BN frozen


def test_random_resnet_is_timms_without_zero_init_last():
    torch.manual_seed(1)
    ours, info = create_backbone("resnet50", "none")
    torch.manual_seed(1)
    ref = timm.create_model("resnet50", zero_init_last=False)
    assert info.source == "none"
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same draws, γ = 1 in every block


def test_random_lite0_is_unchanged():
    torch.manual_seed(2)
    ours, _ = create_backbone("tf_efficientnet_lite0", "none")
    torch.manual_seed(2)
    ref = timm.create_model("tf_efficientnet_lite0")
    a, b = ours.state_dict(), ref.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # timm's EfficientNet has no zero γ to begin with


def test_pretrained_units_keep_their_zero_gammas(tmp_path):
    torch.manual_seed(3)
    src, _ = create_backbone("resnet18", "none")
    with torch.no_grad():  # "pretrained" weights that do hold exact zeros in BN γ
        src.layer1[0].bn2.weight.zero_()
        src.layer4[1].bn2.weight[:7] = 0
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    pre = build("resnet18", weights=str(path))
    assert torch.equal(pre.units[1].bn2.weight, src.layer1[0].bn2.weight)  # loaded as they are, zeros too
    pre_sd = pre.state_dict()
    k = 2  # Transfusion@2 on ResNet18: the stem and layer1.0 pretrained, layer1.1.. random
    tf = build("resnet18", Surgery(init=f"transfusion@{k}"), weights=str(path),
               generator=torch.Generator().manual_seed(0))
    tf_sd = tf.state_dict()
    kept = [n for n in tf_sd if n.startswith("units.") and int(n.split(".")[1]) < k]
    assert kept and all(torch.equal(tf_sd[n], pre_sd[n]) for n in kept)  # bit for bit
    assert bool((tf.units[1].bn2.weight == 0).all())
    for unit in tf.units[k:]:
        assert all(bool((g != 0).all()) for g in _gammas(unit).values())  # the random units: no zero γ
