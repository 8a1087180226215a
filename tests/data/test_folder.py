"""Class-per-folder reader on Pillow-written PNG/JPEG of every common mode."""

from __future__ import annotations

import numpy as np
import pytest

from medapt.data import SplitSpec, inspect_source, parse_dataset_spec, prepare_dataset
from medapt.data._image import load_image_file
from medapt.errors import ConfigError, CorruptFileError, EmptyDatasetError, InvalidImageError, LabelError, MissingFieldError


@pytest.mark.parametrize("kind, suffix, shape, dtype", [
    ("L", ".png", (16, 20), np.uint8),
    ("I16", ".png", (16, 20), np.uint16),
    ("RGB", ".png", (16, 20, 3), np.uint8),
    ("RGBA", ".png", (16, 20, 3), np.uint8),
    ("P", ".png", (16, 20, 3), np.uint8),
    ("JPEG", ".jpg", (16, 20), np.uint8),
])
def test_decodes_every_mode(tmp_path, w, kind, suffix, shape, dtype):
    p = w.write_png(tmp_path / f"x{suffix}", kind)
    a = load_image_file(p)
    assert a.shape == shape and a.dtype == dtype
    assert a.max() > a.min()


def test_sixteen_bit_keeps_its_range(tmp_path, w):
    a = load_image_file(w.write_png(tmp_path / "x.png", "I16"))
    assert a.max() > 255  # not truncated to 8 bits


@pytest.fixture
def bttc(tmp_path, w):
    """Kaggle BTTC-like: Training/Testing × 4 classes (no_tumor to be ignored), mixed modes."""
    root = tmp_path / "bttc"
    kinds = ["L", "RGB", "JPEG", "P", "RGBA", "I16"]
    k = 0
    for split, n in (("Training", 4), ("Testing", 2)):
        for cls in ("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor"):
            for i in range(n):
                kind = kinds[k % len(kinds)]
                w.write_png(root / split / cls / f"{cls}_{i}{'.jpg' if kind == 'JPEG' else '.png'}", kind, seed=k)
                k += 1
    (root / "Training" / "glioma_tumor" / "notes.txt").write_text("not an image")
    (root / "Training" / "glioma_tumor" / ".DS_Store").write_bytes(b"\0\1")
    return root


CLASS_MAP = {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma", "pituitary_tumor": "pituitary"}


def test_split_layout_mapping_and_ignore(bttc, tmp_path):
    spec = {"format": "folder", "path": str(bttc), "class_map": CLASS_MAP, "ignore": ["no_tumor"],
            "classes": ["meningioma", "glioma", "pituitary"]}
    s = inspect_source(spec)
    assert s["classes"] == {"meningioma": 6, "glioma": 6, "pituitary": 6}
    reasons = [x["reason"] for x in s["skipped"]]
    assert sum("not an image file" in r for r in reasons) == 1  # notes.txt counted, .DS_Store hidden
    assert sum("ignored" in r for r in reasons) == 2  # no_tumor in Training and Testing
    ds = prepare_dataset({**spec, "use_published_split": True}, tmp_path / "c", image_size=16,
                         split=SplitSpec(), progress=False)
    assert ds.meta["split_counts"] == {"test": 6, "train": 12}
    assert set(ds.manifest["orig_split"]) == {"train", "test"}
    assert ds.classes == ["meningioma", "glioma", "pituitary"]
    # an external set: never split, the published split is only recorded
    ext = prepare_dataset(spec, tmp_path / "c", image_size=16, split=None, progress=False)
    assert set(ext.manifest["split"]) == {"external"} and len(ext) == 18


def test_rgb_kept_for_three_channels_and_luma_for_one(tmp_path, w):
    root = tmp_path / "f"
    from PIL import Image

    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red
    rgb[0, 0] = 0
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(rgb).save(root / cls / "x.png")
    three = prepare_dataset({"format": "folder", "path": str(root), "intensity": "dtype"}, tmp_path / "c",
                            image_size=8, channels=3, mean=(0, 0, 0), std=(1, 1, 1), progress=False)
    assert float(three.images[0, 0, 4, 4]) == 1.0 and float(three.images[0, 1, 4, 4]) == 0.0
    one = prepare_dataset({"format": "folder", "path": str(root), "intensity": "dtype"}, tmp_path / "c",
                          image_size=8, channels=1, mean=(0,), std=(1,), progress=False)
    assert abs(float(one.images[0, 0, 4, 4]) - 0.299) < 1e-3  # BT.601 luma of red


def test_patient_regex(tmp_path, w):
    root = tmp_path / "f"
    for cls in ("a", "b"):
        for p in ("pt01", "pt02"):
            for s in range(2):
                w.write_png(root / cls / f"{p}_{cls}_{s}.png", seed=s)
    s = inspect_source({"format": "folder", "path": str(root), "patient_regex": r"(pt\d+)_"})
    assert s["n_patients"] == 2


def _corrupt_png(root, w):
    w.truncate(root / "a" / "0.png", 0.5)


def _corrupt_jpeg(root, w):
    p = w.write_png(root / "a" / "9.jpg", "JPEG")
    w.truncate(p, 0.3)


def _empty_class(root, w):
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("x")


def _constant(root, w):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 3, dtype=np.uint8)).save(root / "a" / "0.png")


def _unmapped(root, w):
    w.write_png(root / "d" / "0.png")


def _nan_tiff(root, w):
    from PIL import Image

    a = np.ones((8, 8), dtype=np.float32)
    a[2, 2] = np.nan
    Image.fromarray(a, mode="F").save(root / "a" / "0.tif")


@pytest.mark.parametrize("breaker, exc, text, extra", [
    (_corrupt_png, CorruptFileError, "0.png", {}),
    (_corrupt_jpeg, CorruptFileError, "9.jpg", {}),
    (_empty_class, EmptyDatasetError, "'c'", {}),
    (_constant, InvalidImageError, "constant", {}),
    (_unmapped, LabelError, "'d'", {"class_map": {"a": "a", "b": "b"}}),
    (_nan_tiff, InvalidImageError, "NaN", {}),
])
def test_bad_files(tmp_path, w, breaker, exc, text, extra):
    root = tmp_path / "f"
    for cls in ("a", "b"):
        for i in range(3):
            w.write_png(root / cls / f"{i}.png", seed=i)
    breaker(root, w)
    spec = {"format": "folder", "path": str(root), **extra}
    with pytest.raises(exc, match=text):
        prepare_dataset(spec, tmp_path / "c", image_size=8, progress=False)
    ds = prepare_dataset({**spec, "skip_bad": True}, tmp_path / "c", image_size=8, progress=False)
    assert len(ds.meta["skipped"]) >= 1 and any(s["bad"] for s in ds.meta["skipped"])
    assert ds.classes[:2] == ["a", "b"]


# ----------------------------------------------------------------------------- patient ids of a folder


def _hms_like(root, w, names=("0042_slice{}.png", "0043_slice{}.png", "0051_slice{}.png", "0052_slice{}.png")):
    """HMS / Kaggle-BTTC-like: one folder per class, several slices per patient as separate files."""
    k = 0
    for cls in ("glioma", "meningioma"):
        for name in names:
            for s in range(3):
                w.write_png(root / cls / name.format(s), seed=k)
                k += 1
    return root


def test_folder_without_patient_ids_is_a_slice_level_split(tmp_path, w, caplog):
    import logging

    root = _hms_like(tmp_path / "hms", w)
    with caplog.at_level(logging.WARNING, logger="medapt.data.prepare"):
        ds = prepare_dataset({"format": "folder", "path": str(root)}, tmp_path / "c", image_size=8,
                             split=SplitSpec(train=0.5, test=0.5), progress=False)
    assert ds.meta["split_level"] == "image" and ds.meta["n_without_patient"] == 24 and ds.meta["n_patients"] is None
    assert "image-level (slice-level)" in caplog.text and "patient_regex" in caplog.text
    # an external set is not split: nothing to warn about
    ext = prepare_dataset({"format": "folder", "path": str(root)}, tmp_path / "c", image_size=8, split=None,
                          progress=False)
    assert ext.meta["split_level"] == "none"


@pytest.mark.parametrize("extra", [
    {"patient_regex": r"^(\d+)_"},
    {"patient_regex": r"^(?P<site>\d\d)(?P<patient>\d\d)_"},  # a named group among several
    {"patient_regex": r"/(\d+)_slice", "patient_regex_on": "path"},
])
def test_folder_patient_regex_gives_a_patient_level_split(tmp_path, w, extra):
    root = _hms_like(tmp_path / "hms", w)
    ds = prepare_dataset({"format": "folder", "path": str(root), **extra}, tmp_path / "c", image_size=8,
                         split=SplitSpec(train=0.5, test=0.5), progress=False)
    m = ds.manifest
    assert ds.meta["split_level"] == "patient" and ds.meta["n_without_patient"] == 0
    assert m["patient"].nunique() == 4  # the same patient ids in both class folders
    assert m.groupby("patient")["split"].nunique().max() == 1
    assert set(m["patient"]) in ({"0042", "0043", "0051", "0052"}, {"42", "43", "51", "52"})


def test_folder_file_without_a_patient_id(tmp_path, w):
    root = _hms_like(tmp_path / "hms", w)
    w.write_png(root / "glioma" / "scan_extra.png")
    spec = {"format": "folder", "path": str(root), "patient_regex": r"^(\d+)_"}
    with pytest.raises(MissingFieldError) as e:
        prepare_dataset(spec, tmp_path / "c", image_size=8, split=SplitSpec(), progress=False)
    msg = str(e.value)
    assert "scan_extra.png" in msg and r"'^(\\d+)_'" in msg and "skip_bad" in msg
    ds = prepare_dataset({**spec, "skip_bad": True}, tmp_path / "c", image_size=8, split=SplitSpec(), progress=False)
    assert len(ds) == 24 and ds.meta["split_level"] == "patient"
    assert [s["file"].endswith("scan_extra.png") and s["bad"] for s in ds.meta["skipped"]] == [True]
    assert ds.meta["skipped"][0]["reason"] == "no patient id (patient_regex does not match)"


@pytest.mark.parametrize("regex, text", [(r"\d+", "no capture group"), (r"(\d+)_(\d+)", "2 capture groups"),
                                         (r"(\d+", "not a valid regular expression")])
def test_bad_patient_regex_is_a_config_error(tmp_path, regex, text):
    with pytest.raises(ConfigError, match=text):
        parse_dataset_spec({"format": "folder", "path": str(tmp_path), "patient_regex": regex})
    with pytest.raises(ConfigError, match=text):
        parse_dataset_spec({"format": "csv", "path": str(tmp_path), "label_column": "y", "patient_regex": regex})


def test_csv_patient_regex_no_match_names_the_row(tmp_path, w):
    names = ["p1_0.png", "p1_1.png", "odd.png", "p2_0.png"]
    rows = ["file,dx"] + [f"img/{name},{'ab'[i % 2]}" for i, name in enumerate(names)]
    for i, name in enumerate(names):
        w.write_png(tmp_path / "img" / name, seed=i)
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    spec = {"format": "csv", "path": str(tmp_path / "l.csv"), "path_column": "file", "label_column": "dx",
            "patient_regex": r"/(p\d+)_"}
    with pytest.raises(MissingFieldError) as e:
        prepare_dataset(spec, tmp_path / "c", image_size=8, split=SplitSpec(), progress=False)
    assert "row 4" in str(e.value) and "'img/odd.png'" in str(e.value) and "/(p\\\\d+)_" in str(e.value)
    s = inspect_source(spec)  # lists it instead of stopping
    assert s["n_images"] == 3 and s["n_patients"] == 2 and s["n_bad"] == 1
