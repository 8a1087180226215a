"""BraTS 2020 reader on tiny NIfTI cases written with nibabel."""

from __future__ import annotations

import numpy as np
import pytest

from medapt.data import SplitSpec, inspect_source, prepare_dataset
from medapt.errors import (
    CorruptFileError,
    DataPathError,
    InvalidImageError,
    LabelError,
    MissingFieldError,
    ShapeMismatchError,
)


@pytest.fixture
def brats(tmp_path, w):
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    w.brats_case(root, "BraTS20_Training_001", tumour_slices=(2, 3, 4), seed=1)
    w.brats_case(root, "BraTS20_Training_002", tumour_slices=(5, 6), seed=2, ext=".nii")
    w.brats_case(root, "BraTS20_Training_003", tumour_slices=(1, 2, 3, 4), seed=3)
    w.brats_mapping(root, {"BraTS20_Training_001": "HGG", "BraTS20_Training_002": "LGG",
                           "BraTS20_Training_003": "HGG"})
    return root


def test_reads_tumour_slices_with_grades(brats):
    s = inspect_source({"format": "brats", "path": str(brats)})
    assert s["n_images"] == 3 + 2 + 4  # only slices with tumour voxels
    assert s["classes"] == {"LGG": 2, "HGG": 7}
    assert s["n_patients"] == 3
    assert s["image_sizes"] == {"24x24": 9}
    assert s["skipped"] == []


def test_prepare_manifest_and_volume_scaling(brats, tmp_path, w):
    # case 001: slice k holds values 0..100*k, so the volume range is set by the top slice
    vol = np.zeros((24, 24, 10), dtype=np.int16)
    for k in range(10):
        vol[:, :, k] = np.linspace(0, 100 * k, 24 * 24).reshape(24, 24).astype(np.int16)
    w.write_nifti(brats / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz", vol)
    ds = prepare_dataset({"format": "brats", "path": str(brats)}, tmp_path / "cache", image_size=24,
                         channels=1, mean=(0.0,), std=(1.0,), split=SplitSpec(train=0.5, test=0.5), progress=False)
    m = ds.manifest
    assert ds.classes == ["LGG", "HGG"] and ds.task_type == "binary"
    assert set(m["patient"]) == {"BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_003"}
    assert m.loc[m["patient"] == "BraTS20_Training_002", "slice"].tolist() == [5, 6]
    assert (ds.labels[(m["patient"] == "BraTS20_Training_002").to_numpy()] == 0).all()
    # min–max over the whole volume: slices of one case share the range, none spans exactly [0, 1]
    x = np.asarray(ds.images, dtype=np.float32)
    assert x.min() >= 0.0 and x.max() <= 1.0
    rows = np.flatnonzero((m["patient"] == "BraTS20_Training_001").to_numpy())
    assert m["slice"].iloc[rows].tolist() == [2, 3, 4]
    # scaled by the volume's max (900), not per slice (which would give max 1 everywhere)
    np.testing.assert_allclose([x[i].max() for i in rows], [200 / 900, 300 / 900, 400 / 900], atol=0.01)


def test_slice_orientation_is_rot90_of_ras(tmp_path, w):
    root = tmp_path / "b"
    d = w.brats_case(root, "C1", tumour_slices=(0,), shape=(12, 10, 2))
    vol = np.zeros((12, 10, 2), dtype=np.int16)
    vol[0, 9, 0] = 1000  # x=0, y=max → after rot90 (anterior up): row 0, column 0
    vol[5, 5, :] = 10
    w.write_nifti(d / "C1_t1.nii.gz", vol)
    w.brats_mapping(root, {"C1": "LGG"})
    from medapt.data.brats import read_brats
    from medapt.data.readers import ReadContext
    from medapt.data.spec import BratsSpec

    rec = next(iter(read_brats(BratsSpec(path=root), ReadContext()).items))
    assert rec.image.shape == (10, 12)
    assert rec.image[0, 0] == 1000


def test_misnamed_mask_is_reported_by_name_not_dropped(tmp_path, w):
    root = tmp_path / "b"
    w.brats_case(root, "BraTS20_Training_001")
    w.brats_case(root, "BraTS20_Training_355", seg_name="W39_1998.09.19_Segm.nii")
    w.brats_mapping(root, {"BraTS20_Training_001": "LGG", "BraTS20_Training_355": "HGG"})
    with pytest.raises(DataPathError) as e:
        prepare_dataset({"format": "brats", "path": str(root)}, tmp_path / "c", image_size=16, progress=False)
    msg = str(e.value)
    assert "BraTS20_Training_355" in msg and "W39_1998.09.19_Segm.nii" in msg and "seg_files" in msg
    # skip_bad: the case is left out but listed
    s = inspect_source({"format": "brats", "path": str(root), "skip_bad": True})
    assert s["n_patients"] == 1
    assert any("BraTS20_Training_355" in x["file"] for x in s["skipped"])
    # explicit mapping recovers it
    ds = prepare_dataset({"format": "brats", "path": str(root),
                          "seg_files": {"BraTS20_Training_355": "W39_1998.09.19_Segm.nii"}},
                         tmp_path / "c", image_size=16, progress=False)
    assert ds.manifest["patient"].nunique() == 2


def test_modality_selection(tmp_path, w):
    root = tmp_path / "b"
    w.brats_case(root, "A", modalities=("t1", "flair"))
    w.brats_mapping(root, {"A": "LGG", "B": "HGG"})
    w.brats_case(root, "B", modalities=("t1", "flair"))
    s = inspect_source({"format": "brats", "path": str(root), "modality": "flair"})
    assert s["n_images"] == 6
    # inspect lists every problem instead of stopping; prepare stops at the first
    s = inspect_source({"format": "brats", "path": str(root), "modality": "t2"})
    assert s["n_images"] == 0 and s["n_bad"] == 2 and "A_t2.nii" in s["skipped"][0]["reason"]
    with pytest.raises(DataPathError, match="t2"):
        prepare_dataset({"format": "brats", "path": str(root), "modality": "t2"}, tmp_path / "c", image_size=16,
                        progress=False)


def _bad_truncated(root, w):
    w.truncate(root / "A" / "A_t1.nii.gz", 0.4)


def _bad_shape(root, w):
    w.write_nifti(root / "A" / "A_seg.nii.gz", np.ones((24, 24, 9), dtype=np.uint8))


def _bad_grade(root, w):
    w.brats_mapping(root, {"A": "GBM", "B": "LGG"})


def _bad_not_in_mapping(root, w):
    w.brats_mapping(root, {"B": "LGG"})


def _bad_nan(root, w):
    vol = np.ones((24, 24, 10), dtype=np.float32)
    vol[0, 0, 0] = np.nan
    w.write_nifti(root / "A" / "A_t1.nii.gz", vol)


def _bad_constant(root, w):
    w.write_nifti(root / "A" / "A_t1.nii.gz", np.full((24, 24, 10), 7, dtype=np.int16))


def _bad_missing_seg(root, w):
    (root / "A" / "A_seg.nii.gz").unlink()


@pytest.mark.parametrize("breaker, exc", [
    (_bad_truncated, CorruptFileError),
    (_bad_shape, ShapeMismatchError),
    (_bad_grade, LabelError),
    (_bad_not_in_mapping, LabelError),
    (_bad_nan, InvalidImageError),
    (_bad_constant, InvalidImageError),
    (_bad_missing_seg, DataPathError),
])
def test_bad_case_raises_naming_case_or_skips(tmp_path, w, breaker, exc):
    root = tmp_path / "b"
    w.brats_case(root, "A")
    w.brats_case(root, "B", seed=5)
    w.brats_mapping(root, {"A": "HGG", "B": "LGG"})
    breaker(root, w)
    with pytest.raises(exc) as e:
        prepare_dataset({"format": "brats", "path": str(root)}, tmp_path / "c", image_size=16, progress=False)
    assert "A" in str(e.value)
    assert not any(p.name.startswith("brats-") for p in (tmp_path / "c").iterdir())  # nothing complete left
    ds = prepare_dataset({"format": "brats", "path": str(root), "skip_bad": True}, tmp_path / "c",
                         image_size=16, progress=False)
    assert set(ds.manifest["patient"]) == {"B"}
    assert len(ds.meta["skipped"]) == 1 and ds.meta["skipped"][0]["bad"]


def test_missing_mapping_csv_and_column(tmp_path, w):
    root = tmp_path / "b"
    w.brats_case(root, "A")
    with pytest.raises(DataPathError, match="name_mapping.csv"):
        inspect_source({"format": "brats", "path": str(root)})
    (root / "name_mapping.csv").write_text("Grade,Subject\nHGG,A\n")
    with pytest.raises(MissingFieldError, match="BraTS_2020_subject_ID"):
        inspect_source({"format": "brats", "path": str(root)})
