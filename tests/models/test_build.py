"""The one model builder: surgery (keep, init, head), the init and head registries, new heads, and
the parametric strategy families resolved by the registries."""

import pytest
import torch

from medapt.errors import ConfigError, UnknownNameError
from medapt.models import HEADS, INITS, GapHead, Surgery, build, new_head
from medapt.strategies import STRATEGIES, get, params_report

# ResNet50 backbone parameters kept by truncation after unit k (REFERENCE: equal to the published
# TruncatedTL code's `layerttl_resnet50 --trunc k` backbones)
RESNET50_KEPT = {1: 9_536, 2: 84_544, 4: 225_344, 5: 604_736, 8: 1_444_928, 9: 2_957_376, 13: 7_426_112,
                 14: 8_543_296, 15: 14_582_848, 17: 23_508_032}


def test_registries_list_their_names():
    assert {"pretrained", "random"} <= set(INITS.names())
    assert {"gap", "flatten"} <= set(HEADS.names())
    assert "TTL@k" in STRATEGIES.family_patterns()


@pytest.mark.parametrize("k", sorted(RESNET50_KEPT))
def test_ttl_family_keeps_the_published_truncations(k):
    rep = params_report("resnet50", f"TTL@{k}", n_outputs=2)
    channels = build("resnet50", Surgery(keep=f"cut:{k}")).num_features
    assert rep["keeps"] == k and rep["total"] == RESNET50_KEPT[k] + channels * 2 + 2  # + GAP head, 2 outputs
    ft = rep["phases"][0]
    assert ft["data"] == "target" and 0 < ft["trainable"] <= rep["total"]  # everything but frozen BN γ/β trains


def test_unknown_init_head_and_family_list_the_registered_ones():
    with pytest.raises(UnknownNameError, match="Unknown init 'pretrianed'. Did you mean 'pretrained'"):
        Surgery(init="pretrianed")
    with pytest.raises(UnknownNameError, match="Unknown model head 'flaten'. Did you mean 'flatten'"):
        Surgery(head="flaten")
    with pytest.raises(UnknownNameError, match="Unknown strategy family 'TLL'. Did you mean 'TTL'"):
        get("TLL@4")
    with pytest.raises(ConfigError, match="must be an integer, e.g. TTL@4"):
        get("TTL@x")
    with pytest.raises(ConfigError, match="the cut point k must be >= 1"):
        get("TTL@0")
    with pytest.raises(ConfigError, match="cut points 1..17"):
        params_report("resnet50", "TTL@18")


def test_build_checks_its_arguments():
    with pytest.raises(ConfigError, match="weights are a keyword argument"):
        build("resnet18", "none")
    with pytest.raises(ConfigError, match="surgery keep 'half'"):
        Surgery(keep="half")


def test_build_is_reproducible_and_truncation_gets_a_fresh_head():
    torch.manual_seed(0)
    a = build("resnet18", Surgery(keep="stages:1"), n_outputs=3)
    torch.manual_seed(0)
    b = build("resnet18", Surgery(keep="stages:1"), n_outputs=3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert a.n_units == 3 and isinstance(a.head, GapHead) and a.head.in_features == 64
    # the random init leaves no pretrained weights: two seeds differ
    torch.manual_seed(1)
    c = build("resnet18", Surgery(init="random"))
    assert not torch.equal(c.units[0][0].weight, a.units[0][0].weight)


def test_new_head_is_drawn_from_the_generator_only():
    m = build("resnet18")
    state = torch.get_rng_state()
    h1 = new_head(m, 5, generator=torch.Generator().manual_seed(3)).fc.weight.clone()
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    h2 = new_head(m, 5, generator=torch.Generator().manual_seed(3)).fc.weight
    assert torch.equal(h1, h2) and m.head.n_outputs == 5


def test_embedded_weights_are_the_pretrained_init_only():
    pre = build("tf_efficientnet_lite0", weights="embedded")
    rnd = build("tf_efficientnet_lite0", Surgery(init="random"), weights="embedded")
    assert pre.weights.source == "embedded" and rnd.weights.source == "none"
    assert not torch.equal(pre.units[0][0].weight, rnd.units[0][0].weight)
