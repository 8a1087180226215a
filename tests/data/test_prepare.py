"""The prepared-data cache: layout, normalisation, reuse, atomicity, streaming."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from medapt.data import SplitSpec, load_prepared, prepare_dataset
from medapt.data import prepare as prep_mod
from medapt.data.readers import READERS, Reader, Record, Source
from medapt.errors import ConfigError, DataError, DataPathError, EmptyDatasetError

PHANTOM = {"format": "phantom", "task": "grade", "n_per_class": 6, "slices_per_patient": 2}


def test_layout_dtypes_and_normalisation(tmp_path):
    ds = prepare_dataset(PHANTOM, tmp_path, image_size=32, split=SplitSpec(), progress=False)
    assert ds.path.parent == tmp_path and ds.path.name.startswith("phantom-")
    assert isinstance(ds.images, np.memmap) and ds.images.dtype == np.float16
    assert ds.images.shape == (12, 3, 32, 32)
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (12,)
    assert ds.classes == ["low_grade", "high_grade"] and ds.n_classes == 2 and ds.task_type == "binary"
    assert {"id", "patient", "label", "class", "split", "source", "slice"} <= set(ds.manifest.columns)
    # grayscale replicated, then each channel normalised with its own ImageNet mean/std
    x = np.asarray(ds.images, dtype=np.float32)
    g0 = x[:, 0] * 0.229 + 0.485
    g1 = x[:, 1] * 0.224 + 0.456
    np.testing.assert_allclose(g0, g1, atol=2e-3)
    assert g0.min() >= -2e-3 and g0.max() <= 1 + 2e-3
    # the raw npy is what np.load sees (header patched with the final N)
    assert np.load(ds.path / "images.npy", mmap_mode="r").shape == (12, 3, 32, 32)


def test_reuse_and_keys(tmp_path):
    a = prepare_dataset(PHANTOM, tmp_path, image_size=32, split=SplitSpec(), progress=False)
    mtime = (a.path / "meta.json").stat().st_mtime_ns
    b = prepare_dataset(PHANTOM, tmp_path, image_size=32, split=SplitSpec(), progress=False)
    assert b.path == a.path and b.digest == a.digest
    assert (b.path / "meta.json").stat().st_mtime_ns == mtime  # not rewritten
    c = prepare_dataset(PHANTOM, tmp_path, image_size=32, split=SplitSpec(), mean=(0.5,) * 3, progress=False)
    d = prepare_dataset(PHANTOM, tmp_path, image_size=32, split=SplitSpec(seed=1), progress=False)
    e = prepare_dataset(PHANTOM, tmp_path, image_size=32, split=None, progress=False)
    assert len({a.path, c.path, d.path, e.path}) == 4
    assert c.digest != a.digest
    assert set(e.manifest["split"]) == {"external"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_input_files_enter_the_key(tmp_path, w):
    root = tmp_path / "f"
    for cls in ("a", "b"):
        w.write_png(root / cls / "0.png", seed=0)
    a = prepare_dataset({"format": "folder", "path": str(root)}, tmp_path / "c", image_size=8, progress=False)
    w.write_png(root / "a" / "1.png", seed=1)
    b = prepare_dataset({"format": "folder", "path": str(root)}, tmp_path / "c", image_size=8, progress=False)
    assert a.path != b.path and len(b) == 3


def _failing_reader(after: int, exc: BaseException):
    def read(spec, ctx):
        def items():
            for i in range(100):
                if i == after:
                    raise exc
                yield Record(image=np.random.default_rng(i).random((8, 8)), id=str(i), label=i % 2, source="mem")
        return Source(classes=["a", "b"], task_type="binary", items=items())
    return read


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_prepare_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, exc):
    real = READERS.get("phantom")
    monkeypatch.setitem(READERS._items, "phantom", Reader("phantom", _failing_reader(5, exc), real.version))
    with pytest.raises(type(exc)):
        prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    assert list(tmp_path.iterdir()) == []  # no final folder, temporary folder removed
    monkeypatch.setitem(READERS._items, "phantom", real)
    ds = prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    assert len(ds) == 12


def test_killed_prepare_leftovers_are_ignored_and_cleaned(tmp_path):
    ds = prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    name = ds.path.name
    import shutil

    shutil.rmtree(ds.path)
    # a process killed mid-write (pid that no longer exists) left a partial temporary folder
    dead = tmp_path / f".tmp-{name}-999999999-abcd1234"
    dead.mkdir()
    (dead / "images.npy").write_bytes(b"partial")
    again = prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    assert again.path.name == name and len(again) == 12 and not dead.exists()


def test_incomplete_or_corrupt_folder_is_rebuilt(tmp_path):
    ds = prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    (ds.path / "meta.json").unlink()
    with pytest.raises(DataError, match="no meta.json"):
        load_prepared(ds.path)
    again = prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    assert again.digest == ds.digest
    # a meta.json that disagrees with the arrays
    meta = json.loads((again.path / "meta.json").read_text())
    meta["n"] = 99
    (again.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="inconsistent"):
        load_prepared(again.path)
    with pytest.raises(DataPathError):
        load_prepared(tmp_path / "nope")


def test_digest_is_content(tmp_path):
    a = prepare_dataset(PHANTOM, tmp_path / "a", image_size=8, progress=False)
    b = prepare_dataset(PHANTOM, tmp_path / "b", image_size=8, progress=False)
    c = prepare_dataset({**PHANTOM, "seed": 1}, tmp_path / "a", image_size=8, progress=False)
    assert a.digest == b.digest != c.digest


def test_streaming_grows_the_array_without_knowing_n(tmp_path, monkeypatch):
    # the appender writes one image at a time; N is only known at the end
    appended = []
    real_append = prep_mod._NpyAppender.append

    def spy(self, arr):
        appended.append(self.n)
        return real_append(self, arr)

    monkeypatch.setattr(prep_mod._NpyAppender, "append", spy)
    ds = prepare_dataset(PHANTOM, tmp_path, image_size=8, progress=False)
    assert appended == list(range(12)) and len(ds) == 12


@pytest.mark.parametrize("kwargs, text", [
    ({"channels": 2}, "channels"),
    ({"mean": (0.1, 0.2)}, "mean"),
    ({"std": (0.0, 1.0, 1.0)}, "std"),
    ({"image_size": 4}, "image_size"),
])
def test_bad_settings(tmp_path, kwargs, text):
    with pytest.raises(ConfigError, match=text):
        prepare_dataset(PHANTOM, tmp_path, **{"image_size": 8, "progress": False, **kwargs})


def test_all_skipped_is_an_empty_dataset(tmp_path, w):
    root = tmp_path / "f"
    for cls in ("a", "b"):
        w.truncate(w.write_png(root / cls / "0.png"), 0.3)
    with pytest.raises(EmptyDatasetError, match="no usable images"):
        prepare_dataset({"format": "folder", "path": str(root), "skip_bad": True}, tmp_path / "c",
                        image_size=8, progress=False)
    assert not [p for p in (tmp_path / "c").iterdir()]


@pytest.mark.parametrize("fmt, extra", [
    ("brats", {}), ("cemri", {}), ("folder", {}), ("csv", {"label_column": "y"}), ("dicom", {}),
    ("medmnist", {}),
])
def test_missing_path_names_it(tmp_path, fmt, extra):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataPathError, match="does-not-exist") as e:
        prepare_dataset({"format": fmt, "path": str(missing), **extra}, tmp_path / "c", image_size=8,
                        progress=False)
    assert "fix the path" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)  # medapt errors subclass the matching built-in
    assert not os.path.exists(tmp_path / "c") or not list((tmp_path / "c").iterdir())
