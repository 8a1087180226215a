"""Keras-style parameter counts reproduce Mehmood et al.'s Table 1 (Keras ResNet50) exactly."""

from __future__ import annotations

import json

import pytest
from torch import nn

from medapt.cli import main
from medapt.cost.keras_params import keras_counts, keras_params_report

# Mehmood et al., Table 1 (Keras ResNet50, binary head; copied in REFERENCE.md):
# strategy: (total, trainable per phase)
TABLE_1_KERAS = {
    "DA": (23_589_761, [2_049, 23_483_521]),
    "DA_L1SB": (23_589_761, [2_049, 4_461_569]),
    "DA_L2SB": (23_589_761, [2_049, 8_921_089]),
    "DA_L1SB_PFT": (23_589_761, [2_049, 4_461_569, 23_483_521]),
    "DA_L2SB_PFT": (23_589_761, [2_049, 8_921_089, 23_483_521]),
    "DA_TF_F1B": (230_017, [257, 224_129]),
    "DA_TF_F2B": (1_460_609, [513, 1_440_385]),
    "ImageNet_TF_F1B": (229_760, []),
    "ImageNet_TF_F2B": (1_460_096, []),
}
# the same strategies counted by PyTorch (timm ResNet50; REFERENCE.md, second table)
TABLE_1_TORCH_TOTAL = {"DA": 23_510_081, "DA_TF_F1B": 225_601, "DA_TF_F2B": 1_445_441,
                       "ImageNet_TF_F1B": 225_344, "ImageNet_TF_F2B": 1_444_928}


@pytest.mark.parametrize("strategy", list(TABLE_1_KERAS))
def test_all_nine_rows_of_table_1(strategy):
    total, trainable = TABLE_1_KERAS[strategy]
    rep = keras_params_report("resnet50", strategy)
    assert rep["total"] == total
    assert [p["trainable"] for p in rep["phases"]] == trainable
    # where the difference comes from: conv biases + 2 statistics per BatchNorm channel
    assert rep["total"] == rep["torch_total"] + rep["conv_biases"] + rep["bn_statistics"]
    assert rep["bn_statistics"] == 2 * rep["conv_biases"]  # every ResNet conv is followed by one BN
    if strategy in TABLE_1_TORCH_TOTAL:
        assert rep["torch_total"] == TABLE_1_TORCH_TOTAL[strategy]
    assert rep["note"] == ""


def test_full_resnet50_differences():
    """The whole backbone: 53 convolutions with 26,560 output channels; 53,120 BN statistics."""
    rep = keras_params_report("resnet50", "DA")
    assert (rep["conv_biases"], rep["bn_statistics"]) == (26_560, 53_120)
    # phase 1: only the head trains; the statistics are never trainable
    assert rep["phases"][0]["non_trainable"] == 23_589_761 - 2_049


def test_counting_rule_on_a_small_module():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1, bias=True),
                      nn.BatchNorm2d(4, track_running_stats=False))
    m[0].weight.requires_grad_(False)
    c = keras_counts(m)
    assert c.torch_total == 216 + 16 + 36 + 8
    assert c.conv_biases == 8  # only the bias-less conv gets one
    assert c.bn_statistics == 16  # a BN without running statistics has none to count
    assert c.trainable == c.torch_trainable  # the frozen conv's added bias is frozen too
    m[0].weight.requires_grad_(True)
    assert keras_counts(m).trainable == keras_counts(m).torch_trainable + 8


def test_cli_keras_and_pytorch_notes(capsys):
    assert main(["params", "--backbone", "resnet50", "--strategy", "DA_L2SB", "--keras", "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["convention"] == "keras" and rep["total"] == 23_589_761
    assert [p["trainable"] for p in rep["phases"]] == [2_049, 8_921_089]
    assert main(["params", "--backbone", "resnet50", "--strategy", "DA_L2SB"]) == 0
    out = capsys.readouterr().out
    assert "23,510,081" in out and "Keras" in out and "--keras" in out and "biases" in out
    assert main(["params", "--backbone", "resnet50", "--strategy", "DA_L2SB", "--keras"]) == 0
    out = capsys.readouterr().out
    assert "23,589,761" in out and "8,921,089" in out and "26,560 conv biases" in out
