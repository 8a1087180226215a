"""`medapt strategies` and `medapt params` as a user runs them."""

import json

import pytest

from medapt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_strategies_json(capsys):
    code, out, _ = run(capsys, "strategies", "--format", "json")
    assert code == 0
    listing = json.loads(out)
    items = listing["strategies"]
    da = next(s for s in items if s["name"] == "DA_L1SB")
    assert da["family"] == "partial DAPT"
    assert [(p["name"], p["trainable"], p["lr"], p["epochs"]) for p in da["phases"]] == [
        ("phase1", "head", 1e-4, 1000), ("phase2", "lastblocks:1", 1e-5, 150)]
    assert {p["data"] for p in da["phases"]} == {"source"}
    ftl = next(s for s in items if s["name"] == "FTL")
    assert ftl["phases"][0]["data"] == "target" and ftl["phases"][0]["monitor"] == "auroc"
    assert [f["name"] for f in listing["families"]][:2] == ["TTL@k", "TTL-flatten@k"]
    assert {"TTL@k", "LWFT@k", "TF@k", "Transfusion@k"} <= {f["name"] for f in listing["families"]}


def test_strategies_table_lists_families(capsys):
    code, out, _ = run(capsys, "strategies")
    assert code == 0 and "finetune (target): all" in out and "TTL@k" in out and "families" in out


def test_params_of_a_family_member(capsys):
    code, out, _ = run(capsys, "params", "--backbone", "resnet50", "--strategy", "TTL@8", "--classes", "2",
                       "--format", "json")
    rep = json.loads(out)
    assert code == 0 and rep["total"] == 1_444_928 + 512 * 2 + 2  # REFERENCE: kept after unit 8, + GAP head
    code, _, err = run(capsys, "params", "--backbone", "resnet50", "--strategy", "TTL@30")
    assert code == 2 and "cut points 1..17" in err


def test_params_json_matches_table_1(capsys):
    code, out, _ = run(capsys, "params", "--backbone", "resnet50", "--strategy", "DA_L2SB", "--classes", "1", "--format", "json")
    assert code == 0
    rep = json.loads(out)
    assert rep["total"] == 23_510_081  # REFERENCE.md, timm ResNet50
    assert [(p["name"], p["trainable"]) for p in rep["phases"]] == [("phase1", 2_049), ("phase2", 8_914_945)]


def test_params_bn_train_counts_gamma_beta(capsys):
    _, out, _ = run(capsys, "params", "--backbone", "resnet50", "--strategy", "DA", "--bn", "train", "--format", "json")
    assert json.loads(out)["phases"][1]["trainable"] == 23_510_081  # everything trains under BN policy train


def test_unknown_names_exit_2_with_suggestions(capsys):
    code, _, err = run(capsys, "params", "--backbone", "resnet50", "--strategy", "DA_L3SB")
    assert code == 2 and "Did you mean 'DA_L2SB'" in err
    code, _, err = run(capsys, "params", "--backbone", "resnet5", "--strategy", "DA")
    assert code == 2 and "resnet50" in err


@pytest.mark.parametrize("cmd", [[], ["strategies"], ["params"], ["pretrain"]])
def test_help_everywhere(capsys, cmd):
    with pytest.raises(SystemExit) as exc:
        main(cmd + ["--help"])
    assert exc.value.code == 0
    assert "usage: medapt" in capsys.readouterr().out
