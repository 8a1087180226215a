"""``brats``: BraTS 2020 training volumes (NIfTI) → axial tumour slices labelled LGG/HGG.

Layout (as published)::

    MICCAI_BraTS2020_TrainingData/
        name_mapping.csv                       Grade, …, BraTS_2020_subject_ID
        BraTS20_Training_001/
            BraTS20_Training_001_t1.nii[.gz]   (t1ce, t2, flair)
            BraTS20_Training_001_seg.nii[.gz]

Mehmood et al. use the T1 axial slices that contain at least one tumour voxel, min–max scaled
per volume (LGG 4,926, HGG 19,496 slices). One 2020 case ships its mask as
``W39_1998.09.19_Segm.nii``: a reader that globs ``*_seg.nii*`` silently loses it. Here a
missing or differently named mask is an error naming the case and the candidate files; map it
with ``seg_files: {BraTS20_Training_355: W39_1998.09.19_Segm.nii}`` or skip it with ``skip_bad``.

Volumes are read one at a time (about 35 MB each as float32), so memory stays flat.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import (
    CorruptFileError,
    DataPathError,
    InvalidImageError,
    LabelError,
    MissingFieldError,
    ShapeMismatchError,
)
from .readers import LabelMapper, ReadContext, Record, Skipped, Source, check_path, reader, task_type_for
from .spec import BratsSpec

__all__ = ["read_brats"]

_MODALITIES = ("t1", "t1ce", "t2", "flair", "seg")
_ID_COLUMN = "BraTS_2020_subject_ID"
_GRADE_COLUMN = "Grade"


def _find(case_dir: Path, case: str, suffix: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        p = case_dir / f"{case}_{suffix}{ext}"
        if p.is_file():
            return p
    return None


def _load(path: Path, what: str, *, dtype=np.float32):
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))  # RAS: axis 2 runs inferior → superior
        if dtype is None:
            return np.asanyarray(img.dataobj)
        return img.get_fdata(dtype=dtype)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise CorruptFileError(
            f"{path}: cannot read the {what} NIfTI ({type(exc).__name__}: {exc}); the file is truncated "
            "or corrupt — download the case again, or set skip_bad: true to skip it"
        ) from None


def _grades(spec: BratsSpec) -> dict[str, str]:
    csv = spec.mapping_csv or (Path(spec.path) / "name_mapping.csv")
    check_path(csv, "BraTS name_mapping.csv", kind="file")
    try:
        df = pd.read_csv(csv, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CorruptFileError(f"{csv}: cannot parse the name mapping CSV ({exc})") from None
    missing = [c for c in (_ID_COLUMN, _GRADE_COLUMN) if c not in df.columns]
    if missing:
        raise MissingFieldError(
            f"{csv}: missing column(s) {missing} (found {list(df.columns)}); BraTS 2020's "
            f"name_mapping.csv has {_GRADE_COLUMN!r} and {_ID_COLUMN!r}"
        )
    return dict(zip(df[_ID_COLUMN].str.strip(), df[_GRADE_COLUMN].str.strip()))


@reader("brats", version="1")
def read_brats(spec: BratsSpec, ctx: ReadContext) -> Source:
    """Axial slices with ≥ ``min_tumor_voxels`` tumour voxels; one record per slice.

    Manifest: ``id`` = ``<case>_<slice:03d>``, ``patient`` = case, ``slice`` = axial index
    (RAS), ``source`` = the modality file. Slices are rotated to radiological display
    (anterior up). Intensities: min–max of the whole volume (``value_range``).
    """
    root = check_path(spec.path, "BraTS folder", kind="dir")
    grades = _grades(spec)
    mapper = LabelMapper(classes=spec.classes, class_map=spec.class_map, ignore=spec.ignore,
                         natural=["LGG", "HGG"], what="grade")
    cases = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown_seg = sorted(set(spec.seg_files) - {c.name for c in cases})
    if unknown_seg:
        raise DataPathError(f"seg_files names cases that are not folders under {root}: {unknown_seg}")

    def items():
        for case_dir in cases:
            yield from _case(case_dir)

    def _case(case_dir: Path):
        case = case_dir.name
        img_path = _find(case_dir, case, spec.modality)
        if img_path is None:
            yield Skipped(str(case_dir), f"no {spec.modality} volume", DataPathError(
                f"case {case}: {case}_{spec.modality}.nii[.gz] not found in {case_dir}; "
                "choose another modality or set skip_bad: true"))
            return
        if case in spec.seg_files:
            seg_path = case_dir / spec.seg_files[case]
            if not seg_path.is_file():
                yield Skipped(str(case_dir), "mapped mask missing", DataPathError(
                    f"case {case}: seg_files maps to {seg_path.name!r}, which is not in {case_dir}"))
                return
        else:
            seg_path = _find(case_dir, case, "seg")
        if seg_path is None:
            known = {f"{case}_{m}{e}" for m in _MODALITIES for e in (".nii", ".nii.gz")}
            cands = sorted(p.name for p in case_dir.iterdir()
                           if p.name.lower().endswith((".nii", ".nii.gz")) and p.name not in known)
            hint = (f"the folder has {cands}; if that is the mask, map it with "
                    f"seg_files: {{{case}: {cands[0]}}}" if cands else "the folder has no other NIfTI file")
            yield Skipped(str(case_dir), "segmentation missing or named differently", DataPathError(
                f"case {case}: segmentation {case}_seg.nii[.gz] not found; {hint} — or set skip_bad: "
                "true to leave the case out (it will be listed)"))
            return
        if case not in grades:
            yield Skipped(str(case_dir), "case not in name_mapping.csv", LabelError(
                f"case {case}: not listed in name_mapping.csv ({_ID_COLUMN}); add its grade or set skip_bad: true"))
            return
        try:
            label = mapper(grades[case], f"case {case} (name_mapping.csv)")
        except LabelError as exc:
            yield Skipped(str(case_dir), "grade not in the mapping", exc)
            return
        if label is None:
            yield Skipped(str(case_dir), f"grade {grades[case]!r} ignored")
            return
        try:
            vol = _load(img_path, spec.modality)
            seg = _load(seg_path, "segmentation", dtype=None)
        except CorruptFileError as exc:
            yield Skipped(str(case_dir), "unreadable NIfTI", exc)
            return
        if vol.shape != seg.shape:
            yield Skipped(str(case_dir), "image/mask shape mismatch", ShapeMismatchError(
                f"case {case}: {img_path.name} has shape {vol.shape} but {seg_path.name} has {seg.shape}; "
                "the mask must be voxel-aligned with the image — fix or remove the case"))
            return
        if vol.ndim != 3:
            yield Skipped(str(case_dir), "not a 3-D volume", InvalidImageError(
                f"{img_path}: expected a 3-D volume, got shape {vol.shape}"))
            return
        if not np.isfinite(vol).all():
            yield Skipped(str(case_dir), "NaN in volume", InvalidImageError(
                f"{img_path}: volume contains NaN or infinite values; fix the file or set skip_bad: true"))
            return
        lo, hi = float(vol.min()), float(vol.max())
        if hi <= lo:
            yield Skipped(str(case_dir), "constant volume", InvalidImageError(
                f"{img_path}: volume is constant ({lo:g}); fix the file or set skip_bad: true"))
            return
        tumour = (np.asarray(seg) > 0).sum(axis=(0, 1))
        for k in np.flatnonzero(tumour >= spec.min_tumor_voxels):
            yield Record(
                image=np.rot90(vol[:, :, k]).copy(), id=f"{case}_{int(k):03d}", label=label,
                source=str(img_path), patient=case, slice=int(k), value_range=(lo, hi),
            )
        del vol, seg

    return Source(classes=mapper.classes, task_type=task_type_for(mapper.classes), items=items())
