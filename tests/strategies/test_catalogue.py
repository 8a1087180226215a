"""The strategy catalogue (DESIGN §3) and its parameter counts (REFERENCE.md, Table 1 of Mehmood et al.)."""

import json

import pytest

from medapt.errors import ConfigError, UnknownNameError
from medapt.models import build
from medapt.strategies import STRATEGIES, Phase, get, load_yaml, params_report

MEHMOOD_TEN = ["ImageNet", "DA", "DA_L1SB", "DA_L2SB", "DA_L1SB_PFT", "DA_L2SB_PFT", "DA_TF_F1B", "DA_TF_F2B",
               "ImageNet_TF_F1B", "ImageNet_TF_F2B"]

# timm/torchvision ResNet50 (no conv biases), binary head, BN frozen — REFERENCE.md, derived from
# Table 1 of Mehmood et al.: (total, phase1, phase2, phase3)
TIMM_RESNET50 = {
    "DA": (23_510_081, 2_049, 23_456_961, None),
    "DA_L1SB": (23_510_081, 2_049, 4_458_497, None),
    "DA_L2SB": (23_510_081, 2_049, 8_914_945, None),
    "DA_L1SB_PFT": (23_510_081, 2_049, 4_458_497, 23_456_961),
    "DA_L2SB_PFT": (23_510_081, 2_049, 8_914_945, 23_456_961),
    "DA_TF_F1B": (225_601, 257, 222_657, None),
    "DA_TF_F2B": (1_445_441, 513, 1_435_329, None),
    "ImageNet_TF_F1B": (225_344, None, None, None),
    "ImageNet_TF_F2B": (1_444_928, None, None, None),
}


def test_catalogue_has_the_paper_strategies_and_baselines():
    for name in MEHMOOD_TEN + ["FTL", "LinearProbe", "Scratch"]:
        assert name in STRATEGIES


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_builds_on_a_small_backbone(name):
    s = get(name)
    m = build("resnet18", s.surgery, n_outputs=3)
    assert m.head.n_outputs == 3
    for p in s.phases:
        assert params_report("resnet18", s, n_outputs=3)["phases"]


@pytest.mark.parametrize("name", list(TIMM_RESNET50))
def test_resnet50_parameter_counts_match_table_1(name):
    total, *phases = TIMM_RESNET50[name]
    rep = params_report("resnet50", name, n_outputs=1)
    assert rep["total"] == total
    assert [p["trainable"] for p in rep["phases"]] == [p for p in phases if p is not None]


def test_paper_defaults():
    s = get("DA_L1SB_PFT")
    assert [(p.trainable, p.lr, p.epochs) for p in s.phases] == [("head", 1e-4, 1000), ("lastblocks:1", 1e-5, 100),
                                                                 ("all", 1e-5, 50)]
    assert all(p.batch_size == 16 for p in s.phases)
    assert get("ImageNet").phases == ()


def test_overrides_and_scaling_keep_ratios():
    s = get("DA_L2SB_PFT").scaled(0.02)
    assert [p.epochs for p in s.phases] == [20, 2, 1]
    assert [p.epochs for p in get("DA").with_epochs({"phase1": 5}).phases] == [5, 150]
    with pytest.raises(ConfigError):
        get("DA").scaled(0)


def test_unknown_strategy_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'DA_L2SB'"):
        get("DA_L3SB")


def test_bad_phase_values_are_rejected():
    with pytest.raises(ConfigError, match="trainable spec"):
        Phase("p", "last:two", 1e-4, 3)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        Phase("p", "head", 0, 3)


def test_user_strategies_from_yaml(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "- name: DA_L3SB_test\n  family: partial DAPT\n  phases:\n"
        "    - {name: phase1, trainable: head, lr: 1.0e-4, epochs: 10}\n"
        "    - {name: phase2, trainable: 'last:3', lr: 1.0e-5, epochs: 5}\n"
    )
    [s] = load_yaml(f)
    assert get("DA_L3SB_test") == s
    rep = params_report("resnet18", s)
    # resnet18's last three basic blocks without BN, plus the 513-parameter head
    assert rep["phases"][1]["trainable"] > rep["phases"][0]["trainable"] == 513
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: X\n  phasez: []\n")
    with pytest.raises(ConfigError, match="unknown strategy field"):
        load_yaml(bad)


def test_strategies_serialise_to_json():
    json.dumps([s.to_dict() for _, s in STRATEGIES.items()])


def test_first_blocks_and_last_sub_blocks_by_output_stride():
    """Mehmood et al.'s ResNet words on every family: first block = stem + the units up to output
    stride 4 (ResNet's layer1), first two = up to stride 8 (layer2); last sub-block = the last block
    (and any tail layer above it, which must train too)."""
    from medapt.strategies import mapping_on

    r50 = {n: mapping_on("resnet50", n) for n in ("DA_TF_F1B", "DA_TF_F2B", "DA_L1SB", "DA_L2SB")}
    assert (r50["DA_TF_F1B"]["n_units"], r50["DA_TF_F1B"]["last_unit"]) == (4, "layer1.2")  # unchanged
    assert (r50["DA_TF_F2B"]["n_units"], r50["DA_TF_F2B"]["last_unit"]) == (8, "layer2.3")
    assert r50["DA_L1SB"]["phases"][1]["units"] == ["layer4.2"]
    assert r50["DA_L2SB"]["phases"][1]["units"] == ["layer4.1", "layer4.2"]
    lite = {n: mapping_on("tf_efficientnet_lite0", n) for n in ("DA_TF_F1B", "DA_TF_F2B", "DA_L1SB", "DA_L2SB")}
    # timm's first stage is one 16-channel block (1,824 parameters): not a "first block" in the paper's sense
    assert (lite["DA_TF_F1B"]["n_units"], lite["DA_TF_F1B"]["last_unit"], lite["DA_TF_F1B"]["output_stride"]) == (
        4, "blocks.1.1", 4)
    assert (lite["DA_TF_F2B"]["n_units"], lite["DA_TF_F2B"]["last_unit"], lite["DA_TF_F2B"]["output_stride"]) == (
        6, "blocks.2.1", 8)
    assert lite["DA_L1SB"]["phases"][1]["units"] == ["blocks.6.0", "conv_head+bn2"]
    assert lite["DA_L2SB"]["phases"][1]["units"] == ["blocks.5.3", "blocks.6.0", "conv_head+bn2"]
    assert params_report("tf_efficientnet_lite0", "ImageNet_TF_F1B")["total"] > 1_824 * 5


def test_strategies_backbone_cli_shows_the_mapping(capsys):
    from medapt.cli import main

    assert main(["strategies", "--backbone", "tf_efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "units 1..4 (stem … blocks.1.1), stride 4" in out and "blocks.6.0, conv_head+bn2 + head" in out
