"""CE-MRI reader on MATLAB v7.3 (HDF5) files written with h5py in MATLAB's column-major layout."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from medapt.data import SplitSpec, inspect_source, prepare_dataset
from medapt.data.cemri import read_mat
from medapt.errors import CorruptFileError, DuplicateIdError, LabelError, MissingFieldError


def test_orientation_undoes_matlab_transpose(tmp_path, w):
    img = w.asym_image(40, 30)
    p = w.write_cemri_mat(tmp_path / "1.mat", img, 2, "100360")
    import h5py

    with h5py.File(p) as f:  # what h5py sees is the transpose
        assert f["cjdata/image"].shape == (30, 40)
    image, label, pid = read_mat(p.read_bytes(), str(p))
    assert image.shape == (40, 30)
    np.testing.assert_array_equal(image, img)
    assert (label, pid) == ("2", "100360")


@pytest.fixture
def cemri(tmp_path, w):
    d = tmp_path / "extracted"
    k = 0
    for pid, label, n in [("P1", 1, 3), ("P2", 2, 2), ("P3", 3, 2), ("P4", 2, 3), ("P5", 1, 2), ("P6", 3, 2)]:
        for _ in range(n):
            k += 1
            w.write_cemri_mat(d / f"{k}.mat", w.asym_image(16, 16, seed=k), label, pid)
    return d


def test_folder_of_mats_patient_is_pid(cemri, tmp_path):
    s = inspect_source({"format": "cemri", "path": str(cemri)})
    assert s["classes"] == {"meningioma": 5, "glioma": 5, "pituitary": 4}
    assert s["n_patients"] == 6
    ds = prepare_dataset({"format": "cemri", "path": str(cemri)}, tmp_path / "c", image_size=16,
                         split=SplitSpec(train=0.5, test=0.5), progress=False)
    per_patient = ds.manifest.groupby("patient")["split"].nunique()
    assert (per_patient == 1).all()


def test_reads_from_the_published_zips(cemri, tmp_path):
    zdir = tmp_path / "zips"
    zdir.mkdir()
    mats = sorted(cemri.glob("*.mat"), key=lambda p: int(p.stem))
    for i, chunk in enumerate((mats[:7], mats[7:])):
        with zipfile.ZipFile(zdir / f"brainTumorDataPublic_{i}.zip", "w") as z:
            for m in chunk:
                z.write(m, m.name)
    s = inspect_source({"format": "cemri", "path": str(zdir)})
    assert s["n_images"] == 14 and s["n_patients"] == 6
    # the zip and the extracted copy side by side give duplicate ids: an error, not double counting
    for m in mats[:2]:
        (zdir / m.name).write_bytes(m.read_bytes())
    with pytest.raises(DuplicateIdError, match="'1'"):
        prepare_dataset({"format": "cemri", "path": str(zdir)}, tmp_path / "c", image_size=16, progress=False)


def test_class_map_and_ignore(cemri):
    s = inspect_source({"format": "cemri", "path": str(cemri), "ignore": [3],
                        "class_map": {1: "meningioma", 2: "glioma"}})
    assert s["classes"] == {"meningioma": 5, "glioma": 5}
    assert sum(1 for x in s["skipped"] if not x["bad"]) == 4


def _truncated(d, w):
    w.truncate(d / "1.mat", 0.6)


def _no_fields(d, w):
    w.write_cemri_mat(d / "1.mat", w.asym_image(16, 16), 1, "P1", omit=("image",))


def _not_mat(d, w):
    (d / "1.mat").write_bytes(b"this is not a MAT file at all" * 10)


def _bad_label(d, w):
    w.write_cemri_mat(d / "1.mat", w.asym_image(16, 16), 4, "P1")


def _constant(d, w):
    w.write_cemri_mat(d / "1.mat", np.full((16, 16), 5, dtype=np.int16), 1, "P1")


@pytest.mark.parametrize("breaker, exc, text", [
    (_truncated, CorruptFileError, "1.mat"),
    (_no_fields, MissingFieldError, "cjdata/image"),
    (_not_mat, CorruptFileError, "not a MATLAB file"),
    (_bad_label, LabelError, "'4'"),
    (_constant, Exception, "constant"),
])
def test_bad_mat(cemri, tmp_path, w, breaker, exc, text):
    breaker(cemri, w)
    with pytest.raises(exc, match=text):
        prepare_dataset({"format": "cemri", "path": str(cemri)}, tmp_path / "c", image_size=16, progress=False)
    ds = prepare_dataset({"format": "cemri", "path": str(cemri), "skip_bad": True}, tmp_path / "c",
                         image_size=16, progress=False)
    assert len(ds) == 13 and "1" not in set(ds.manifest["id"])
    assert [s["file"].endswith("1.mat") for s in ds.meta["skipped"]] == [True]


def test_matlab_v5_file_via_scipy(tmp_path):
    from scipy.io import savemat

    img = np.arange(12 * 10, dtype=np.int16).reshape(12, 10)
    p = tmp_path / "5.mat"
    savemat(p, {"cjdata": {"image": img, "label": 3.0, "PID": "77"}})
    image, label, pid = read_mat(p.read_bytes(), str(p))
    np.testing.assert_array_equal(image, img)
    assert (label, pid) == ("3", "77")
