"""`medapt.similarity`: model pairs that share a prefix of units, weights from a medapt file, and
`medapt similarity` on the command line."""

import json

import numpy as np
import pytest
import torch

import medapt.similarity as sim
from medapt.cli import main
from medapt.errors import ConfigError
from medapt.models import Surgery, build
from medapt.suite.context import save_weights

from .conftest import seeded_build


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(48, 3, 32, 32)).astype(np.float32)


def test_a_truncated_copy_is_identical_on_the_units_it_keeps(images):
    full = seeded_build("resnet18")
    cut = build("resnet18", Surgery(keep="cut:4", init="random"))
    cut.units.load_state_dict(full.units[:4].state_dict())
    table = sim.compare_models(full, cut, images, ["cka", "svcca"])
    assert sorted(set(table["cut_point"])) == [1, 2, 3, 4]
    assert np.allclose(table["value"], 1.0, atol=1e-6)
    # a different initialisation is less similar at the deepest unit compared
    other = seeded_build("resnet18", seed=1)
    t2 = sim.compare_models(full, other, images, ["cka"])
    assert t2["value"].iloc[-1] < 0.999


def test_different_anatomies_are_an_error_naming_both(images):
    with pytest.raises(ConfigError, match=r"resnet18.*tf_efficientnet_lite0.*different anatomies"):
        sim.compare_models(seeded_build("resnet18"), build("tf_efficientnet_lite0"), images)


def test_weights_file_round_trip_and_cli(tmp_path, images, capsys):
    torch.manual_seed(0)
    m = build("resnet18", Surgery(keep="cut:3"), n_outputs=3)
    save_weights(m, tmp_path)
    loaded = sim.load_model("resnet18", tmp_path / "weights.safetensors")
    assert loaded.n_units == 3
    for a, b in zip(m.units.state_dict().values(), loaded.units.state_dict().values()):
        assert torch.equal(a, b)
    np.save(tmp_path / "x.npy", images)
    code = main(["similarity", "--backbone", "resnet18", "--a", str(tmp_path / "weights.safetensors"),
                 "--b", str(tmp_path / "weights.safetensors"), "--images", str(tmp_path / "x.npy"),
                 "--methods", "cka", "--format", "json", "--out", str(tmp_path / "sim.csv")])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["cut_point"] for r in rows] == [1, 2, 3]
    assert all(abs(r["value"] - 1) < 1e-6 for r in rows) and (tmp_path / "sim.csv").exists()
    # fewer images than channels: reduced to the rank the data supports, and the note says so
    code = main(["similarity", "--backbone", "resnet18", "--a", "random", "--b", "random", "--images",
                 str(tmp_path / "x.npy"), "--methods", "svcca", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and all(np.isfinite(r["value"]) for r in rows) and "datapoints support" in rows[-1]["note"]
    code = main(["similarity", "--backbone", "resnet18", "--a", "nope.safetensors", "--b", "random",
                 "--images", str(tmp_path / "x.npy")])
    assert code == 2 and "neither imagenet" in capsys.readouterr().err
