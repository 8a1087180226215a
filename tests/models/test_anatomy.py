"""Anatomy: units, stages, cut points, truncation (DESIGN §1)."""

import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import Surgery, build, create_backbone, dissect
from medapt.models.anatomy import check_equivalent

# Parameters kept by truncation after unit k of a timm ResNet50 (REFERENCE.md, from Mehmood et al.'s
# Table 1 recomputed without conv biases): stem 9,536; after bottlenecks 1..3; after 7; after 8; 13..16.
RESNET50_KEPT = {1: 9_536, 2: 84_544, 3: 154_944, 4: 225_344, 5: 604_736, 8: 1_444_928, 9: 2_957_376,
                 14: 8_543_296, 15: 14_582_848, 16: 19_045_440, 17: 23_508_032}


def test_resnet50_units_and_cut_points():
    a = dissect(create_backbone("resnet50")[0])
    assert a.n_units == 17 and a.cut_points == list(range(1, 18))
    assert a.stage_ends == [1, 4, 8, 14, 17]  # stem, then stages of 3, 4, 6, 3 bottlenecks
    assert a.units[-1].name == "layer4.2"  # Keras conv5_block3
    for k, n in RESNET50_KEPT.items():
        assert a.params_up_to(k) == n, k


@pytest.mark.parametrize("name, n_units, last", [
    ("resnet18", 9, "layer4.1"), ("resnet34", 17, "layer4.2"), ("resnet101", 34, "layer4.2"),
    ("tf_efficientnet_lite0", 18, "conv_head+bn2"), ("efficientnet_b0", 18, "conv_head+bn2"),
    ("densenet121", 9, "features.norm5"),
])
def test_families_dissect_and_run_like_forward_features(name, n_units, last):
    model, _ = create_backbone(name)
    a = dissect(model)
    assert a.n_units == n_units and a.units[-1].name == last
    assert check_equivalent(model, a, size=32) == 0.0


def test_generic_timm_cnn_gets_units_from_feature_info():
    model, _ = create_backbone("convnext_atto")
    a = dissect(model)
    assert a.family == "generic" and a.n_stages >= 4
    assert check_equivalent(model, a, size=32) == 0.0


def test_efficientnet_last_unit_is_conv_head_of_last_stage():
    a = dissect(create_backbone("tf_efficientnet_lite0")[0])
    assert a.units[-1].stage == a.units[-2].stage == 7


def test_truncate_keeps_units_and_head_matches_channels():
    m = build("resnet50", Surgery(keep="cut:4"))
    assert m.n_units == 4 and m.head.in_features == 256
    assert m.n_params() == 225_344 + 257  # Table 1: DA_TF_F1B total (timm), REFERENCE.md
    out = m(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 1)


def test_cut_point_out_of_range_is_a_clear_error():
    with pytest.raises(ConfigError, match="cut points 1..9"):
        build("resnet18", Surgery(keep="cut:10"))
    with pytest.raises(ConfigError, match="stages 0..4"):
        dissect(create_backbone("resnet18")[0]).stage_end(5)


def test_forward_from_equals_full_forward():
    m = build("resnet18", n_outputs=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mid = m.forward_units(x, 0, 5)
        torch.testing.assert_close(m.forward_from(mid, 5), m(x))
        pooled = m.features(x)
        torch.testing.assert_close(m.head(pooled), m(x))
