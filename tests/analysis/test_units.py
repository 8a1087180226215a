"""Per-unit activations and similarity between two models, and the random-features baseline."""

import numpy as np
import pytest
import torch

from medapt.analysis import TABLE_COLUMNS, random_baseline, similarity_per_unit, unit_activations
from medapt.errors import ConfigError, UnknownNameError
from medapt.models.model import GapHead

RESNET18_CHANNELS = [64, 64, 64, 128, 128, 256, 256, 512, 512]  # stem, then 8 basic blocks


def _images(n=12, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 32, 32)).astype(np.float32)


def test_unit_activations_are_gap_after_each_unit_from_one_pass(resnet18):
    x = _images()
    calls = [0] * resnet18.n_units
    hooks = [u.register_forward_hook(lambda m, i, o, j=j: calls.__setitem__(j, calls[j] + 1))
             for j, u in enumerate(resnet18.units)]
    resnet18.train()
    try:
        acts = unit_activations(resnet18, x, batch_size=5)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [3] * 9  # one pass: ceil(12 / 5) batches, each unit once per batch
    assert resnet18.training  # the caller's mode is restored
    assert list(acts) == list(range(1, 10))
    assert [a.shape for a in acts.values()] == [(12, c) for c in RESNET18_CHANNELS]
    assert all(a.dtype == np.float64 for a in acts.values())
    resnet18.eval()
    with torch.no_grad():
        for k in (1, 5, 9):
            expected = GapHead.pool(resnet18.forward_units(torch.from_numpy(x), 0, k)).numpy()
            np.testing.assert_allclose(acts[k], expected, rtol=1e-5, atol=1e-6)


def test_unit_activations_stop_after_the_deepest_requested_unit(resnet18):
    calls = [0] * resnet18.n_units
    hooks = [u.register_forward_hook(lambda m, i, o, j=j: calls.__setitem__(j, calls[j] + 1))
             for j, u in enumerate(resnet18.units)]
    try:
        acts = unit_activations(resnet18, _images(4), units=["layer1.1", 2])
    finally:
        for h in hooks:
            h.remove()
    assert list(acts) == [2, 3] and calls == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ConfigError, match="cut points 1..9"):
        unit_activations(resnet18, _images(2), units=[10])
    with pytest.raises(UnknownNameError, match="Did you mean 'layer1.1'"):
        unit_activations(resnet18, _images(2), units=["layer1.l"])


def test_a_model_is_identical_to_itself_at_every_unit(resnet18, toys):
    other = toys.seeded_build("resnet18", 0)  # same seed: same weights, separate object
    t = similarity_per_unit(resnet18, other, _images(96), units=[1, 4, 9])
    assert list(t.columns) == TABLE_COLUMNS
    assert len(t) == 9 and sorted(set(t["method"])) == ["cka", "pwcca", "svcca"]
    assert t["cut_point"].tolist() == [1, 1, 1, 4, 4, 4, 9, 9, 9]
    assert t["unit"].tolist()[::3] == ["stem", "layer2.0", "layer4.1"]
    np.testing.assert_allclose(t["value"], 1.0, atol=1e-8)
    assert (t["n"] == 96).all()
    # 96 images cannot support 512 neurons: the table says so instead of hiding it
    deep = t[(t["cut_point"] == 9) & (t["method"] == "svcca")].iloc[0]
    assert deep["dims_a"] <= 95 and "96 datapoints support at most 95 dimensions" in deep["note"]
    assert "support at most" not in t[t["cut_point"] == 1]["note"].iloc[0]


def test_different_initialisations_are_less_similar(resnet18, toys):
    t = similarity_per_unit(resnet18, toys.seeded_build("resnet18", 1), _images(64), ["cka"], units=[1, 9])
    assert (t["value"] < 0.999).all() and (t["value"] > 0).all()


def test_models_with_different_anatomies_are_an_error_naming_both(resnet18, toys):
    lite0 = toys.seeded_build("tf_efficientnet_lite0", 0)
    with pytest.raises(ConfigError, match=r"resnet18, 9 units.*tf_efficientnet_lite0, 18 units.*unit 2: "
                                          r"'layer1.0' vs 'blocks.0.0'"):
        similarity_per_unit(resnet18, lite0, _images(4))


def test_random_baseline_compares_with_gaussian_features_of_the_same_size():
    rng = np.random.default_rng(0)
    acts = {1: rng.normal(size=(600, 4)), 3: rng.normal(size=(600, 6)) @ rng.normal(size=(6, 6))}
    t = random_baseline(acts, ["svcca", "cka"], seed=7, unit_names=["a", "b", "c"])
    assert t["cut_point"].tolist() == [1, 1, 3, 3] and t["unit"].tolist() == ["a", "a", "c", "c"]
    assert (t["dims_b"] == [4, 4, 6, 6]).all()
    # unrelated features of the same size: chance level, small when N >> D
    assert (t["value"] < 0.15).all()
    pd_equal = random_baseline(acts, ["svcca", "cka"], seed=7, unit_names=["a", "b", "c"])
    assert t.equals(pd_equal)  # deterministic for a seed
    assert not t.equals(random_baseline(acts, ["svcca", "cka"], seed=8, unit_names=["a", "b", "c"]))


def test_a_dead_unit_is_named_in_the_error():
    from medapt.analysis import DegenerateRepresentationError, similarity_table

    acts = {1: np.random.default_rng(0).normal(size=(20, 3)), 2: np.zeros((20, 3))}
    with pytest.raises(DegenerateRepresentationError, match=r"cut point 2 \(b\), svcca: .*all-zero"):
        similarity_table(acts, acts, ["svcca"], unit_names=["a", "b"])
