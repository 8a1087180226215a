"""TransFusion slimming (TF@k): pretrained units 1..k, later units rebuilt at half width."""

import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import build, create_backbone, dissect
from medapt.models.slim import SLIM_FAMILIES, slim_units

# Totals (backbone + GAP + linear head, 2 outputs) of the published slimmed ResNet50s,
# sun-umn/TTL@907e62e, shrink_coefficient=2. At stage ends (k = 4, 8, 14) they are the block-wise
# `slim_resnet50(load_up_to=s)` totals for s = 1, 2, 3 (REFERENCE.md, "TTL"); the others were
# computed by building the layer-wise `layer_wise_slim_resnet50(load_up_to=k - 1)` of that code
# (its load_up_to counts bottlenecks; our k counts the stem too).
PUBLISHED_SLIM_RESNET50 = {
    1: 5_904_578, 2: 6_013_250, 3: 6_057_410, 4: 6_101_570, 5: 6_608_194, 6: 6_784_578, 7: 6_960_962,
    8: 7_137_346, 9: 9_422_402, 10: 10_127_426, 11: 10_832_450, 12: 11_537_474, 13: 12_242_498,
    14: 12_947_522, 15: 17_873_986, 16: 20_693_058,
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def run(units, x):
    with torch.no_grad():
        for u in units:
            x = u.module.eval()(x)
    return x


def randomise_bn_stats(model):
    """Give every BatchNorm non-default running statistics, so 'kept' is observable."""
    g = gen(123)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)
    return model


@pytest.fixture(scope="module")
def resnet50():
    return randomise_bn_stats(build("resnet50", n_outputs=2))


@pytest.mark.parametrize("k", sorted(PUBLISHED_SLIM_RESNET50))
def test_resnet50_totals_equal_the_published_code(resnet50, k):
    units, c = slim_units(resnet50, k, gen())
    assert c == (1024 if k <= 14 else 2048)
    assert sum(u.n_params() for u in units) + c * 2 + 2 == PUBLISHED_SLIM_RESNET50[k]


def test_transfusion_slim_is_k8(resnet50):
    # Transfusion's "Slim": pretrained up to block 2 (stem, layer1, layer2), layers 3-4 at half width
    units, c = slim_units(resnet50, resnet50.anatomy.stage_end(2), gen())
    assert (c, sum(u.n_params() for u in units) + 2 * c + 2) == (1024, 7_137_346)


@pytest.mark.parametrize("k", [1, 5, 17])
def test_resnet50_kept_units_are_copies_and_the_rest_runs(resnet50, k):
    units, c = slim_units(resnet50, k, gen())
    assert [u.name for u in units] == resnet50.unit_names and [u.stage for u in units] == resnet50.unit_stages
    for u, ref in zip(units[:k], resnet50.units[:k]):
        sd, rsd = u.module.state_dict(), ref.state_dict()
        assert sd.keys() == rsd.keys()
        for key in sd:  # weights and BN running statistics
            torch.testing.assert_close(sd[key], rsd[key], rtol=0, atol=0)
        assert u.module is not ref
    x = torch.randn(2, 3, 32, 32)
    if k < 17:  # the first rebuilt unit reads the kept unit's channels
        with torch.no_grad():
            kept_out = resnet50.eval().forward_units(x, 0, k).shape[1]
        assert units[k].module.conv1.in_channels == kept_out
    assert run(units, x).shape[1] == c


def test_inside_stage_rule_keeps_the_residual_width_of_the_cut_stage(resnet50):
    # k = 5: stem + layer1 + layer2.0 kept; layer2.1-3 keep 512 outputs at bottleneck width 64;
    # layer3 and layer4 at half width (published layer-wise variant).
    units, c = slim_units(resnet50, 5, gen())
    for u in units[5:8]:
        assert u.name.startswith("layer2.")
        m = u.module
        assert (m.conv1.in_channels, m.conv1.out_channels, m.conv3.out_channels) == (512, 64, 512)
        assert m.downsample is None
    l30 = units[8].module
    assert (l30.conv1.in_channels, l30.conv1.out_channels, l30.conv3.out_channels) == (512, 128, 512)
    assert units[-1].module.conv3.out_channels == c == 1024


def test_rebuilt_units_are_fresh_and_drawn_from_the_generator(resnet50):
    state = torch.random.get_rng_state()
    a, _ = slim_units(resnet50, 8, gen(1))
    b, _ = slim_units(resnet50, 8, gen(1))
    d, _ = slim_units(resnet50, 8, gen(2))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is never touched
    wa, wb, wd = (u[8].module.conv1.weight for u in (a, b, d))
    assert torch.equal(wa, wb) and not torch.equal(wa, wd)
    bn = a[8].module.bn1
    assert torch.equal(bn.running_mean, torch.zeros(128)) and torch.equal(bn.running_var, torch.ones(128))
    assert torch.equal(bn.weight, torch.ones(128)) and int(bn.num_batches_tracked) == 0
    # He-normal fan-out: std = sqrt(2 / (out_channels · kh · kw)); 3×3 conv of layer3.0: 128·9 fan-out
    w = a[8].module.conv2.weight.detach()
    assert abs(float(w.std()) - (2 / (128 * 9)) ** 0.5) < 0.05 * (2 / (128 * 9)) ** 0.5


def test_source_is_not_modified(resnet50):
    before = {k: v.clone() for k, v in resnet50.state_dict().items()}
    slim_units(resnet50.anatomy, 4, gen())
    after = resnet50.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("backbone", ["resnet18", "torchvision:resnet18"])
def test_basic_blocks_and_projection_after_the_stem(backbone):
    model = build(backbone)
    units, c = slim_units(model, 1, gen())  # layer1.0: identity shortcut 64 → 32 channels needs a projection
    first = units[1].module
    assert (first.conv1.in_channels, first.conv2.out_channels) == (64, 32)
    assert first.downsample is not None and first.downsample[0].in_channels == 64
    assert c == 256 and run(units, torch.randn(2, 3, 32, 32)).shape[1] == 256
    units, c = slim_units(model, 4, gen())  # inside layer2: layer2.1 keeps 128 outputs, width 64
    assert (units[4].module.conv1.out_channels, units[4].module.conv2.out_channels) == (64, 128)
    assert run(units, torch.randn(2, 3, 32, 32)).shape[1] == c == 256


def test_efficientnet_lite0_pretrained():
    model, _ = create_backbone("tf_efficientnet_lite0", "embedded")
    a = dissect(model)
    x = torch.randn(2, 3, 32, 32)
    for k in (a.stage_end(2) + 1, a.n_units - 1, a.n_units):
        units, c = slim_units(a, k, gen())
        for u, ref in zip(units[:k], a.units[:k]):
            for key, v in ref.module.state_dict().items():
                assert torch.equal(u.module.state_dict()[key], v)
        assert run(units, x).shape[1] == c
        assert c == (1280 if k == a.n_units else 640)  # conv_head is always halved when rebuilt
    # inside stage 3 (blocks.2): blocks.2.1 keeps 40 outputs, expansion 240 → 120
    units, _ = slim_units(a, a.stage_end(2) + 1, gen())
    m = units[a.stage_end(2) + 1].module
    assert m.conv_pw.out_channels == 120 and m.conv_pwl.out_channels == 40 and m.has_skip


def test_efficientnet_b0_squeeze_excite():
    a = dissect(create_backbone("efficientnet_b0")[0])
    units, c = slim_units(a, a.stage_end(3), gen())
    m = units[a.stage_end(3)].module  # blocks.3.0: 40 → 80 channels, expansion 240 → 120
    assert (m.conv_pw.in_channels, m.conv_pw.out_channels, m.conv_pwl.out_channels) == (40, 120, 40)
    assert m.se.conv_reduce.in_channels == 120 and m.se.conv_reduce.out_channels == 5
    assert run(units, torch.randn(2, 3, 32, 32)).shape[1] == c == 640


def test_cbr_blocks_halve():
    model, _ = create_backbone("cbr_tiny")
    units, c = slim_units(dissect(model), 2, gen())
    assert [u.module[0].conv.out_channels for u in units] == [64, 128, 128, 256]
    assert c == 256 and run(units, torch.randn(1, 3, 96, 96)).shape[1] == 256


def test_unsupported_family_names_the_supported_ones():
    with pytest.raises(ConfigError, match="cbr, efficientnet, resnet.*'densenet'"):
        slim_units(dissect(create_backbone("densenet121")[0]), 3, gen())
    assert set(SLIM_FAMILIES) == {"resnet", "efficientnet", "cbr"}


def test_bad_arguments(resnet50):
    with pytest.raises(ConfigError, match="cut points 1..17"):
        slim_units(resnet50, 0, gen())
    with pytest.raises(ConfigError, match="torch.Generator"):
        slim_units(resnet50, 4, 0)
    with pytest.raises(ConfigError, match="shrink"):
        slim_units(resnet50, 4, gen(), shrink=0)
    with pytest.raises(ConfigError, match="UnitModel or an Anatomy"):
        slim_units([u for u in resnet50.anatomy.units], 4, gen())
