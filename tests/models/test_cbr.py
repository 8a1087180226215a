"""CBR networks (Raghu et al.'s Transfusion; the public CBR code of Peng et al.'s TruncatedTL)."""

import pytest
import timm
import torch

from medapt.errors import ConfigError, WeightsError
from medapt.models import create_backbone, dissect
from medapt.models.anatomy import check_equivalent
from medapt.models.cbr import CBR_ARCHS, CBRNet

# Parameters (γ/β counted, BN running statistics not) of the public CBR code, sun-umn/TTL@907e62e
# utils/CBR.py, without a classifier / with a 2-output classifier (REFERENCE.md, "Transfusion").
PUBLISHED_CODE_PARAMS = {
    "cbr_large_t": (8_537_600, 8_538_626),
    "cbr_large_w": (8_441_856, 8_442_882),
    "cbr_small": (2_113_536, 2_114_050),
    "cbr_tiny": (4_308_480, 4_309_506),
}
# Sizes printed in the Transfusion paper (Raghu et al. 2019, CBR table).
PAPER_PARAMS = {"cbr_large_t": 8_532_480, "cbr_large_w": 8_432_128, "cbr_small": 2_108_672, "cbr_tiny": 1_076_480}
# smallest input each net accepts (no padding), rounded up to a multiple of 8 for the tests
TEST_SIZE = {"cbr_large_t": 224, "cbr_large_w": 128, "cbr_small": 128, "cbr_tiny": 96}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", sorted(CBR_ARCHS))
def test_parameter_counts_equal_the_published_code(name):
    no_head, two_out = PUBLISHED_CODE_PARAMS[name]
    assert n_params(timm.create_model(name, num_classes=0)) == no_head
    assert n_params(timm.create_model(name, num_classes=2)) == two_out


def _paper_convention(model: CBRNet) -> int:
    """Conv weights of every conv but the first + 5 × the last channel count (REFERENCE.md)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return sum(c.weight.numel() for c in convs[1:]) + 5 * model.num_features


@pytest.mark.parametrize("name", sorted(CBR_ARCHS))
def test_paper_sizes_are_a_counting_quirk(name):
    """The paper's table follows from the code only under an odd convention, with Tiny narrower."""
    k, chs = CBR_ARCHS[name]
    if name == "cbr_tiny":
        chs = (32, 64, 128, 256)  # the paper's Tiny is half as wide as the public code's
    assert _paper_convention(CBRNet(chs, k, num_classes=0)) == PAPER_PARAMS[name]


@pytest.mark.parametrize("name", sorted(CBR_ARCHS))
def test_dissect_units_run_like_forward_features(name):
    model, info = create_backbone(name, "none")
    a = dissect(model)
    n = len(CBR_ARCHS[name][1])
    assert a.family == "cbr" and a.n_units == n and a.stage_ends == list(range(1, n + 1))
    assert [u.name for u in a.units] == [f"CBR{i}" for i in range(1, n + 1)]
    assert [u.stage for u in a.units] == list(range(n))  # block 1 is the stem (stage 0)
    assert sum(u.n_params() for u in a.units) == PUBLISHED_CODE_PARAMS[name][0]
    assert check_equivalent(model, a, size=TEST_SIZE[name]) == 0.0
    assert info.source == "none" and info.input_size == (3, 224, 224) and info.mean == (0.485, 0.456, 0.406)
    assert model.pretrained_cfg["min_input_size"][1] <= TEST_SIZE[name]


def test_timm_interface():
    model = timm.create_model("cbr_small", num_classes=3)
    assert model.num_features == 256 and model.num_classes == 3
    x = torch.randn(2, 3, 121, 121)
    assert model(x).shape == (2, 3)
    assert model.forward_features(x).shape == (2, 256, 1, 1)
    model.reset_classifier(0)
    assert model(x).shape == (2, 256)
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5
    feats = timm.create_model("cbr_large_t", features_only=True)
    assert feats.feature_info.channels() == [32, 64, 128, 256, 512]
    with pytest.raises(ConfigError, match="at least 121"):
        model(torch.zeros(1, 3, 120, 120))


def test_state_dict_uses_the_published_module_names():
    keys = set(timm.create_model("cbr_large_t", num_classes=2).state_dict())
    expected = {f"CBR{i}.{m}.{p}" for i in range(1, 6) for m, p in
                [("conv", "weight"), ("conv", "bias"), ("bn", "weight"), ("bn", "bias"), ("bn", "running_mean"),
                 ("bn", "running_var"), ("bn", "num_batches_tracked")]} | {"fc.weight", "fc.bias"}
    assert keys == expected


def test_no_published_weights_is_a_clear_error():
    with pytest.raises(WeightsError, match="no published pretrained weights"):
        create_backbone("cbr_tiny", "imagenet")


def test_loads_a_local_state_dict(tmp_path):
    from safetensors.torch import save_file

    trained = timm.create_model("cbr_tiny", num_classes=2).eval()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1)
        trained.CBR2.bn.running_mean.fill_(0.3)
    path = tmp_path / "dapt.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items() if not k.startswith("fc.")}, str(path))
    model, info = create_backbone("cbr_tiny", path)
    assert info.source == "file" and info.path == str(path)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(x), trained.forward_features(x))
    torch.testing.assert_close(model.CBR2.bn.running_mean, torch.full((128,), 0.3))
