"""DICOM reader on files written with pydicom's FileDataset/dcmwrite."""

from __future__ import annotations

import numpy as np
import pytest

from medapt.data import inspect_source, prepare_dataset
from medapt.data.dicom import read_dicom_file, window_range
from medapt.errors import CorruptFileError, DuplicateIdError, LabelError


def ramp(h=8, w=8, lo=0, hi=1000, dtype=np.int16):
    return np.linspace(lo, hi, h * w).reshape(h, w).astype(dtype)


def test_rescale_slope_intercept_and_window_from_tags(tmp_path, w):
    # stored 0..1000, slope 2, intercept -1024 → HU -1024..976; window 40/400 → [-160.5, 238.5]
    p = w.write_dicom(tmp_path / "a.dcm", ramp(), slope=2, intercept=-1024, window=(40, 400))
    [(ds, img, vr, frame)] = list(read_dicom_file(p, window=None))
    assert img.min() == pytest.approx(-1024) and img.max() == pytest.approx(976)
    assert vr == window_range(40, 400) == (-160.0, 239.0) or vr == pytest.approx((-160.0, 239.0))
    assert frame is None


def test_window_from_config_overrides_tags(tmp_path, w):
    p = w.write_dicom(tmp_path / "a.dcm", ramp(), window=(40, 400))
    [(_, _, vr, _)] = list(read_dicom_file(p, window=(500.0, 1000.0)))
    assert vr == pytest.approx(window_range(500, 1000))


def test_prepared_pixels_follow_the_window(tmp_path, w):
    for cls in ("normal", "abnormal"):
        w.write_dicom(tmp_path / "d" / cls / "1.dcm", ramp(), slope=2, intercept=-1024, window=(40, 400),
                      patient=f"P-{cls}")
    ds = prepare_dataset({"format": "dicom", "path": str(tmp_path / "d")}, tmp_path / "c", image_size=8,
                         channels=1, mean=(0,), std=(1,), progress=False)
    x = np.asarray(ds.images[0, 0], dtype=np.float32)
    hu = ramp().astype(np.float32) * 2 - 1024
    lo, hi = window_range(40, 400)
    np.testing.assert_allclose(x, np.clip((hu - lo) / (hi - lo), 0, 1), atol=2e-3)
    assert ds.classes == ["abnormal", "normal"] and set(ds.manifest["patient"]) == {"P-normal", "P-abnormal"}


def test_monochrome1_is_inverted(tmp_path, w):
    p = w.write_dicom(tmp_path / "a.dcm", ramp(), photometric="MONOCHROME1")
    [(_, img, vr, _)] = list(read_dicom_file(p, window=None))
    assert vr is None and img[0, 0] == pytest.approx(1000) and img[-1, -1] == pytest.approx(0)


def test_labels_from_csv_and_non_dicom_files_counted(tmp_path, w):
    d = tmp_path / "export"
    for i in range(4):
        w.write_dicom(d / "series" / f"IM{i:04d}", ramp(hi=100 + i), patient=f"P{i % 2}", sop_uid=f"1.2.3.{i}")
    (d / "series" / "README").write_text("export notes")
    rows = ["file,label"] + [f"series/IM{i:04d},{'pos' if i % 2 else 'neg'}" for i in range(4)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    s = inspect_source({"format": "dicom", "path": str(d), "label_from": "csv",
                        "labels_csv": str(tmp_path / "labels.csv"), "classes": ["neg", "pos"]})
    assert s["classes"] == {"neg": 2, "pos": 2} and s["n_patients"] == 2
    assert [x["reason"] for x in s["skipped"]] == ["not a DICOM image file"]


def _truncated(d, w):
    w.truncate(d / "a" / "0.dcm", 0.7)


def _not_dicom(d, w):
    (d / "a" / "0.dcm").write_bytes(b"garbage" * 50)


def _dup_uid(d, w):
    w.write_dicom(d / "b" / "copy.dcm", ramp(), sop_uid="9.9.0")


def _constant(d, w):
    w.write_dicom(d / "a" / "0.dcm", np.full((8, 8), 5, dtype=np.int16), sop_uid="9.9.0")


@pytest.mark.parametrize("breaker, exc, text", [
    (_truncated, CorruptFileError, "0.dcm"),
    (_not_dicom, CorruptFileError, "0.dcm"),
    (_dup_uid, DuplicateIdError, "9.9.0"),
    (_constant, Exception, "constant"),
])
def test_bad_dicom(tmp_path, w, breaker, exc, text):
    d = tmp_path / "d"
    for cls in ("a", "b"):
        for i in range(2):
            w.write_dicom(d / cls / f"{i}.dcm", ramp(hi=500 + i), sop_uid=f"9.9.{i}" if cls == "a" else None)
    breaker(d, w)
    with pytest.raises(exc, match=text):
        prepare_dataset({"format": "dicom", "path": str(d)}, tmp_path / "c", image_size=8, progress=False)
    ds = prepare_dataset({"format": "dicom", "path": str(d), "skip_bad": True}, tmp_path / "c", image_size=8,
                         progress=False)
    assert len(ds) >= 3 and len(ds.meta["skipped"]) == 1


def test_label_missing_from_csv(tmp_path, w):
    w.write_dicom(tmp_path / "d" / "x.dcm", ramp())
    (tmp_path / "l.csv").write_text("file,label\nother.dcm,a\nz.dcm,b\n")
    with pytest.raises(LabelError, match="x.dcm"):
        prepare_dataset({"format": "dicom", "path": str(tmp_path / "d"), "label_from": "csv",
                         "labels_csv": str(tmp_path / "l.csv")}, tmp_path / "c", image_size=8, progress=False)
