"""TruncatedTL strategies (Peng et al.): ``TTL@k`` (GAP head) and ``TTL-flatten@k`` (no pooling)
keep units 1..k of a backbone; ``Surgery.keep: cut:K`` is the truncation they use.

Parameter counts for ResNet50 are REFERENCE's truncation table (equal to the published TruncatedTL
code's ``layerttl_resnet50 --trunc k`` backbones), for every cut point and both heads. Models are
built on the meta device (no weights allocated), so the 34 builds take about a second.
"""

import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import Surgery, build
from medapt.strategies import STRATEGIES, get, params_report

# backbone parameters kept after unit k (stem = unit 1), REFERENCE "TTL"
_KEPT = {1: 9_536, 2: 84_544, 3: 154_944, 4: 225_344, 5: 604_736, 6: 884_800, 7: 1_164_864, 8: 1_444_928}
_KEPT |= {8 + j: 2_957_376 + (j - 1) * 1_117_184 for j in range(1, 7)}  # 9..14: +1,117,184 per bottleneck
_KEPT |= {15: 14_582_848, 16: 19_045_440, 17: 23_508_032}
# the feature map after unit k at 224 px: channels, height, width
_MAP = {k: (64, 56, 56) if k == 1 else (256, 56, 56) if k <= 4 else (512, 28, 28) if k <= 8
        else (1024, 14, 14) if k <= 14 else (2048, 7, 7) for k in range(1, 18)}


def test_table_is_reference():
    assert _KEPT[13] == 7_426_112 and _KEPT[14] == 8_543_296 and len(_KEPT) == 17


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_resnet50_counts_equal_reference_for_every_k(head):
    family = "TTL" if head == "gap" else "TTL-flatten"
    n = 2
    with torch.device("meta"):
        for k in range(1, 18):
            rep = params_report("resnet50", f"{family}@{k}", n_outputs=n, image_size=224)
            c, h, w = _MAP[k]
            head_params = (c if head == "gap" else c * h * w) * n + n
            assert rep["keeps"] == k, k
            assert rep["total"] == _KEPT[k] + head_params, (family, k)
    # the worked example of REFERENCE: k = 8, flatten head, 2 outputs → 802,818 head parameters
    with torch.device("meta"):
        assert params_report("resnet50", "TTL-flatten@8", n_outputs=2)["total"] - _KEPT[8] == 802_818


def test_ttl_strategies_are_listed_and_use_the_ttl_preset():
    assert {"TTL@k", "TTL-flatten@k"} <= set(STRATEGIES.family_patterns())
    s = get("TTL-flatten@5")
    assert s.surgery == Surgery(keep="cut:5", head="flatten") and s.family == "TTL"
    (ft,) = s.phases
    assert ft.target and ft.trainable == "all" and ft.monitor == "auprc" and ft.plateau is not None
    assert get("TTL@5").surgery.head == "gap"


@pytest.mark.parametrize("name", ["TTL@18", "TTL-flatten@18", "TTL@40"])
def test_k_out_of_range_names_the_valid_range(name):
    with torch.device("meta"), pytest.raises(ConfigError, match=r"has cut points 1\.\.17"):
        params_report("resnet50", name)
    with pytest.raises(ConfigError, match="must be >= 1"):
        get(name.split("@")[0] + "@0")


def test_cut_k_keeps_exactly_units_1_to_k():
    with torch.device("meta"):
        full = build("resnet50")
        for k in (1, 4, 9, 17):
            m = build("resnet50", Surgery(keep=f"cut:{k}"), n_outputs=3)
            assert m.unit_names == full.unit_names[:k]
            assert m.n_params() - sum(p.numel() for p in m.head.parameters()) == full.anatomy.params_up_to(k) == _KEPT[k]
            assert m.head.n_outputs == 3
    with pytest.raises(ConfigError, match=r"cut points 1\.\.9"):
        build("resnet18", Surgery(keep="cut:10"))


def test_truncated_model_runs_and_keeps_the_pretrained_prefix():
    torch.manual_seed(0)
    full = build("resnet18")
    torch.manual_seed(0)
    cut = build("resnet18", Surgery(keep="cut:5", head="flatten"), image_size=32)
    for (na, a), (nb, b) in zip(full.units[:5].state_dict().items(), cut.units.state_dict().items()):
        assert na == nb and torch.equal(a, b)
    x = torch.randn(2, 3, 32, 32)
    assert cut.eval()(x).shape == (2, 1)
