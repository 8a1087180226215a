"""MedMNIST reader on local .npz files with MedMNIST's keys (never downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from medapt.data import SplitSpec, inspect_source, prepare_dataset
from medapt.errors import CorruptFileError, DataPathError, InvalidImageError, MissingFieldError


def test_multiclass_with_published_splits(tmp_path, w):
    p = w.write_medmnist(tmp_path / "pathmnist_28.npz", n=(9, 3, 6), n_classes=3, rgb=True)
    ds = prepare_dataset({"format": "medmnist", "path": str(p), "classes": ["adipose", "background", "debris"]},
                         tmp_path / "c", image_size=28, split=SplitSpec(), progress=False)
    assert ds.meta["split_counts"] == {"test": 6, "train": 9, "val": 3}
    assert ds.classes == ["adipose", "background", "debris"] and ds.task_type == "multiclass"
    np.testing.assert_array_equal(ds.labels[:9], np.arange(9) % 3)
    # intensity: dtype → uint8 / 255, then the ImageNet normalisation of channel 0
    raw = np.load(p)["train_images"][0]
    np.testing.assert_allclose(np.asarray(ds.images[0, 0], dtype=np.float32),
                               (raw[..., 0] / 255.0 - 0.485) / 0.229, atol=0.01)


def test_multilabel_width(tmp_path, w):
    p = w.write_medmnist(tmp_path / "chestmnist_28.npz", width=14)
    s = inspect_source({"format": "medmnist", "path": str(p)})
    assert s["task_type"] == "multilabel" and len(s["classes"]) == 14 and s["n_images"] == 22


def test_fresh_split_when_asked(tmp_path, w):
    p = w.write_medmnist(tmp_path / "x.npz", n=(10, 10, 10))
    ds = prepare_dataset({"format": "medmnist", "path": str(p), "use_published_split": False},
                         tmp_path / "c", image_size=28, split=SplitSpec(train=0.8, test=0.2), progress=False)
    counts = ds.meta["split_counts"]
    assert set(counts) == {"train", "test"} and counts["test"] in (6, 7)  # 20 % of 30, per class rounding
    assert (ds.manifest["orig_split"] != ds.manifest["split"]).any()


@pytest.mark.parametrize("make, exc, text", [
    (lambda p, w: w.write_medmnist(p, drop=("train_labels",)), MissingFieldError, "train_labels"),
    (lambda p, w: np.savez(p, images=np.zeros((2, 4, 4))), MissingFieldError, "train_images"),
    (lambda p, w: w.truncate(w.write_medmnist(p), 0.5), CorruptFileError, "x.npz"),
    (lambda p, w: np.savez(p, train_images=np.zeros((2, 4, 4, 4, 1), np.uint8),
                           train_labels=np.array([[0], [1]])), InvalidImageError, "3-D"),
])
def test_bad_npz(tmp_path, w, make, exc, text):
    p = tmp_path / "x.npz"
    make(p, w)
    with pytest.raises(exc, match=text):
        prepare_dataset({"format": "medmnist", "path": str(p)}, tmp_path / "c", image_size=8, progress=False)


def test_missing_file_never_downloads(tmp_path):
    with pytest.raises(DataPathError, match="bloodmnist_64.npz"):
        inspect_source({"format": "medmnist", "path": str(tmp_path / "bloodmnist_64.npz")})
