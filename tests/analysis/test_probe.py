"""The one-pass cut-point probe: features at every cut point (memory or memmap files, batched over
a float16 memmap) and the linear probe ranking on synthetic data with a known answer."""

import numpy as np
import pytest
import torch

from medapt.analysis import feature_file, features_at_cut_points, probe_cut_points, unit_activations
from medapt.errors import ConfigError, EmptyDatasetError, LabelError, ShapeMismatchError, UnknownNameError

RESNET18_CHANNELS = [64, 64, 64, 128, 128, 256, 256, 512, 512]


class BatchOnlyImages:
    """An image store that refuses to be read whole and records the largest read."""

    def __init__(self, x):
        self.x, self.largest = x, 0
        self.shape, self.dtype = x.shape, x.dtype

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        out = self.x[idx]
        self.largest = max(self.largest, len(out))
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image array was converted")


def _images(n=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 32, 32)).astype(np.float32)


# --------------------------------------------------------------------------- features


def test_features_in_memory_and_on_disk_agree_and_files_are_complete(resnet18, tmp_path):
    x = _images()
    mem = features_at_cut_points(resnet18, x, batch_size=4)
    disk = features_at_cut_points(resnet18, x, batch_size=4, out_dir=tmp_path / "feats")
    assert list(mem) == list(disk) == list(range(1, 10))
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == [f"cut{k:03d}.npy" for k in range(1, 10)]
    for k in mem:
        assert mem[k].dtype == disk[k].dtype == np.float32 and mem[k].shape == (10, RESNET18_CHANNELS[k - 1])
        assert isinstance(disk[k], np.memmap) and not disk[k].flags.writeable
        np.testing.assert_array_equal(mem[k], disk[k])
        np.testing.assert_array_equal(np.load(feature_file(tmp_path / "feats", k)), mem[k])
    ref = unit_activations(resnet18, x)
    np.testing.assert_allclose(mem[9], ref[9], rtol=1e-6, atol=1e-6)


def test_float16_memmap_is_read_batch_by_batch(resnet18, tmp_path):
    x16 = _images(9).astype(np.float16)
    mm = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.float16, shape=x16.shape)
    mm[:] = x16
    mm.flush()
    del mm
    store = BatchOnlyImages(np.load(tmp_path / "images.npy", mmap_mode="r"))
    rows = np.array([8, 0, 3, 5, 1])
    f = features_at_cut_points(resnet18, store, rows, batch_size=2, cut_points=[1, 9])
    assert store.largest == 2
    expected = features_at_cut_points(resnet18, x16[rows].astype(np.float32), cut_points=[1, 9])
    for k in (1, 9):
        # float32 convolutions of batches of 2 vs one batch of 5 sum in another order: ~2e-6 apart
        np.testing.assert_allclose(f[k], expected[k], rtol=1e-5, atol=1e-5)


def test_a_crash_leaves_no_feature_files(toys, tmp_path):
    seen = []

    def fail_on_second_batch(x):
        seen.append(len(x))
        if len(seen) == 2:
            raise RuntimeError("boom")
        return x

    model = toys.toy_model(toys.fixed_conv(3, 4, 0), toys.Lambda(fail_on_second_batch))
    with pytest.raises(RuntimeError, match="boom"):
        features_at_cut_points(model, _images(6), batch_size=3, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_feature_input_errors(resnet18):
    with pytest.raises(ShapeMismatchError, match=r"\(N, C, H, W\)"):
        features_at_cut_points(resnet18, np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ConfigError, match=r"rows must lie in \[0, 4\)"):
        features_at_cut_points(resnet18, _images(4), rows=[0, 4])
    with pytest.raises(EmptyDatasetError, match="no images"):
        features_at_cut_points(resnet18, _images(4), rows=np.array([], dtype=int))


# --------------------------------------------------------------------------- probe


def _sign_data(toys, n, seed):
    """Labels = sign of channel 0's mean. Unit 1 keeps the sign, unit 2 (|x|) destroys it, unit 3
    cannot bring it back: the probe must rank cut point 1 first, near 1, and the others near chance."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 3, 4, 4)).astype(np.float32)
    x[:, 0] += np.where(y == 1, 1.0, -1.0)[:, None, None]
    return x, y


def test_probe_ranks_the_cut_point_that_keeps_the_label_first(toys):
    model = toys.toy_model(toys.Lambda(lambda x: x), toys.Lambda(torch.abs), toys.fixed_conv(3, 3, 0))
    xtr, ytr = _sign_data(toys, 120, 0)
    xva, yva = _sign_data(toys, 80, 1)
    ftr, fva = features_at_cut_points(model, xtr), features_at_cut_points(model, xva)
    for metric in ("auroc", "auprc"):
        t = probe_cut_points(ftr, ytr, fva, yva, "binary", metric, unit_names=model.unit_names)
        assert list(t.columns) == ["rank", "cut_point", "unit", "metric", "score", "n_features", "note"]
        assert t["rank"].tolist() == [1, 2, 3] and t.loc[0, "cut_point"] == 1 and t.loc[0, "unit"] == "u1"
        assert t.loc[0, "score"] > 0.95
        assert (t.loc[1:, "score"] < 0.75).all()  # chance is 0.5 (AUROC) or ~0.5 (AUPRC, balanced)
        assert (t["n_features"] == 3).all()
    assert probe_cut_points(ftr, ytr, fva, yva, "binary").equals(probe_cut_points(ftr, ytr, fva, yva, "binary"))


def test_probe_ties_rank_the_shallower_cheaper_cut_point_first(toys):
    xtr, ytr = _sign_data(toys, 60, 0)
    xva, yva = _sign_data(toys, 40, 1)
    same_tr, same_va = xtr.mean(axis=(2, 3)), xva.mean(axis=(2, 3))
    t = probe_cut_points({5: same_tr, 2: same_tr}, ytr, {5: same_va, 2: same_va}, yva, "binary")
    assert t.loc[0, "score"] == t.loc[1, "score"] and t["cut_point"].tolist() == [2, 5]


def test_probe_multiclass_on_resnet18_features(resnet18):
    # Labels set the brightness of the whole image, a low-level feature the stem sees directly.
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.normal(size=(90, 3, 32, 32)).astype(np.float32) + y[:, None, None, None].astype(np.float32)
    f = features_at_cut_points(resnet18, x, batch_size=32)
    t = probe_cut_points({k: v[:60] for k, v in f.items()}, y[:60], {k: v[60:] for k, v in f.items()}, y[60:],
                         "multiclass", "auroc", unit_names=resnet18.unit_names)
    assert len(t) == 9 and sorted(t["cut_point"]) == list(range(1, 10))
    assert t.set_index("cut_point").loc[range(1, 10), "n_features"].tolist() == RESNET18_CHANNELS
    assert t.set_index("unit").loc["stem", "score"] > 0.9
    assert t["score"].is_monotonic_decreasing


def test_probe_rejects_unusable_splits_naming_them():
    f = {1: np.random.default_rng(0).normal(size=(10, 2))}
    y = np.arange(10) % 2
    with pytest.raises(LabelError, match=r"the validation split has class counts \{0: 10, 1: 0\}"):
        probe_cut_points(f, y, f, np.zeros(10, int), "binary")
    with pytest.raises(EmptyDatasetError, match="the validation split is empty"):
        probe_cut_points(f, y, {1: np.zeros((0, 2))}, np.array([], int), "binary")
    with pytest.raises(LabelError, match=r"the train split has class counts \{0: 5, 1: 5, 2: 0\}"):
        probe_cut_points(f, y, f, np.arange(10) % 3, "multiclass")
    with pytest.raises(LabelError, match=r"validation split has class counts \{0: 5, 1: 5, 2: 0\}"):
        probe_cut_points(f, np.arange(10) % 3, f, y, "multiclass")
    with pytest.raises(ShapeMismatchError, match="train features at cut point 1 have shape \\(10, 2\\)"):
        probe_cut_points(f, np.arange(12) % 2, f, y, "binary")
    with pytest.raises(UnknownNameError, match="probe metric"):
        probe_cut_points(f, y, f, y, "binary", "auc-pr")
    with pytest.raises(UnknownNameError, match="multi-label probes are not supported"):
        probe_cut_points(f, y, f, y, "multilabel")
    with pytest.raises(ConfigError, match="different cut points"):
        probe_cut_points(f, y, {2: f[1]}, y, "binary")
