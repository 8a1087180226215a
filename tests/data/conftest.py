"""Tiny fixtures written in the real formats (nibabel, h5py with MATLAB's layout, Pillow, pydicom,
NumPy), and a ``w`` fixture exposing the writers."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest


# --------------------------------------------------------------------------- NIfTI / BraTS


def write_nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def brats_case(root: Path, case: str, *, shape=(24, 24, 10), tumour_slices=(3, 4, 5), seed=0,
               seg_name: str | None = None, ext=".nii.gz", modalities=("t1",)) -> Path:
    """A BraTS-like case: modality volumes (int16) and a seg with tumour voxels on ``tumour_slices``."""
    rng = np.random.default_rng(seed)
    d = root / case
    for m in modalities:
        vol = (rng.random(shape) * 800 + 100).astype(np.int16)
        write_nifti(d / f"{case}_{m}{ext}", vol)
    seg = np.zeros(shape, dtype=np.uint8)
    for k in tumour_slices:
        seg[8:12, 9:14, k] = 1
    write_nifti(d / (seg_name or f"{case}_seg{ext}"), seg)
    return d


def brats_mapping(root: Path, grades: dict[str, str]) -> Path:
    import pandas as pd

    rows = [{"Grade": g, "BraTS_2017_subject_ID": "", "BraTS_2018_subject_ID": "", "TCGA_TCIA_subject_ID": "",
             "BraTS_2019_subject_ID": "", "BraTS_2020_subject_ID": c} for c, g in grades.items()]
    p = root / "name_mapping.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


# --------------------------------------------------------------------------- MATLAB v7.3 / CE-MRI


def write_cemri_mat(path: Path, image: np.ndarray, label: int, pid: str, *, omit: tuple[str, ...] = ()) -> Path:
    """A CE-MRI file the way MATLAB -v7.3 writes it: HDF5 with a 512-byte user block, column-major
    arrays (so h5py sees the transpose), char arrays as uint16 code units with MATLAB_class attrs."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        g = f.create_group("cjdata")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        if "image" not in omit:
            ds = g.create_dataset("image", data=np.ascontiguousarray(image.T).astype(np.int16))
            ds.attrs["MATLAB_class"] = np.bytes_("int16")
        if "label" not in omit:
            ds = g.create_dataset("label", data=np.array([[float(label)]]))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
        if "PID" not in omit:
            ds = g.create_dataset("PID", data=np.array([[ord(c)] for c in pid], dtype=np.uint16))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
        mask = (image > image.mean()).astype(np.uint8)
        g.create_dataset("tumorMask", data=mask.T)
        g.create_dataset("tumorBorder", data=np.zeros((1, 8)))
    with open(path, "r+b") as fh:  # MATLAB's text header lives in the user block
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    return path


def asym_image(h=40, w=30, seed=0) -> np.ndarray:
    """Non-square, asymmetric int16 image: a bright block in the top-left corner."""
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w)) * 100 + 50).astype(np.int16)
    img[:6, :4] = 2000
    return img


# --------------------------------------------------------------------------- Pillow images


def write_png(path: Path, kind: str = "L", size=(20, 16), seed=0) -> Path:
    """kind: L (8-bit), I16 (16-bit), RGB, RGBA, P (palette), JPEG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    g = (rng.random((h, w)) * 200 + 20).astype(np.uint8)
    if kind == "L":
        Image.fromarray(g, mode="L").save(path)
    elif kind == "I16":
        im = Image.fromarray(g.astype(np.uint16) * 250)  # Pillow picks 16-bit mode I;16
        assert im.mode == "I;16"
        im.save(path)
    elif kind == "RGB":
        Image.fromarray(np.stack([g, g // 2, 255 - g], -1), mode="RGB").save(path)
    elif kind == "RGBA":
        Image.fromarray(np.stack([g, g, g, np.full_like(g, 128)], -1), mode="RGBA").save(path)
    elif kind == "P":
        Image.fromarray(np.stack([g, g, g], -1), mode="RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif kind == "JPEG":
        Image.fromarray(g, mode="L").save(path, format="JPEG", quality=90)
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


# --------------------------------------------------------------------------- DICOM


def write_dicom(path: Path, pixels: np.ndarray, *, patient="P1", sop_uid=None, slope=None, intercept=None,
                window=None, photometric="MONOCHROME2") -> Path:
    """A minimal but valid CT-like DICOM file written with pydicom's FileDataset/dcmwrite."""
    from pydicom import dcmwrite
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    dcmwrite(str(path), ds, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------- MedMNIST


def write_medmnist(path: Path, *, n=(12, 4, 6), size=28, width=1, n_classes=3, rgb=False, seed=0, drop=()):
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, k in zip(("train", "val", "test"), n):
        shape = (k, size, size, 3) if rgb else (k, size, size)
        arrays[f"{part}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if width == 1:
            arrays[f"{part}_labels"] = (np.arange(k) % n_classes).reshape(k, 1).astype(np.uint8)
        else:
            arrays[f"{part}_labels"] = rng.integers(0, 2, (k, width)).astype(np.uint8)
    for key in drop:
        arrays.pop(key)
    np.savez_compressed(path, **arrays)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


@pytest.fixture
def w():
    """The writers above, as ``w.brats_case(...)`` etc."""
    return types.SimpleNamespace(
        write_nifti=write_nifti, brats_case=brats_case, brats_mapping=brats_mapping,
        write_cemri_mat=write_cemri_mat, asym_image=asym_image, write_png=write_png,
        write_dicom=write_dicom, write_medmnist=write_medmnist, truncate=truncate,
    )
