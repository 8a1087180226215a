"""``dicom``: a folder of DICOM files read with pydicom (one image per file, or per frame).

Stored values go through the modality LUT (RescaleSlope / RescaleIntercept, via
:func:`pydicom.pixels.apply_modality_lut`), then a linear VOI window — ``window: [center,
width]`` from the config, else the file's WindowCenter / WindowWidth (first value if several),
else the image's own min–max. The window edges follow DICOM PS3.3 C.11.2.1.2.1 (linear):
values ≤ c − 0.5 − (w − 1)/2 map to 0, values > c − 0.5 + (w − 1)/2 to 1. MONOCHROME1 images
are inverted so that bright always means high signal. Files that are not DICOM (no ``DICM``
preamble) are ignored and counted unless they end in ``.dcm``, which makes them corrupt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CorruptFileError, InvalidImageError, LabelError, MissingFieldError
from .readers import LabelMapper, ReadContext, Record, Skipped, Source, check_path, iter_files, reader, task_type_for
from .spec import DicomSpec

__all__ = ["read_dicom", "read_dicom_file", "window_range"]


class NotDicomError(Exception):
    """The file has no DICOM preamble (not a DICOM file at all)."""


def window_range(center: float, width: float) -> tuple[float, float]:
    """(lo, hi) of a linear DICOM window (PS3.3 C.11.2.1.2.1)."""
    return center - 0.5 - (width - 1) / 2.0, center - 0.5 + (width - 1) / 2.0


def _first(v) -> float | None:
    if v is None:
        return None
    try:
        return float(v[0]) if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) else float(v)
    except (TypeError, ValueError, IndexError):
        return None


def read_dicom_file(path: Path, window: tuple[float, float] | None):
    """Yield ``(dataset, image (H, W[, 3]) float, value_range | None, frame)`` for each frame.

    Raises :class:`NotDicomError` for a non-DICOM file, :class:`CorruptFileError` for a DICOM
    file whose header or pixel data cannot be decoded.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError:
        if path.suffix.lower() == ".dcm":
            raise CorruptFileError(
                f"{path}: not a valid DICOM file (no DICM preamble); it is corrupt or mis-named — "
                "re-export it or set skip_bad: true"
            ) from None
        raise NotDicomError(str(path)) from None
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise CorruptFileError(f"{path}: cannot parse the DICOM header ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        if "Rows" in ds and "Columns" in ds:  # an image header whose pixel data was cut off
            raise CorruptFileError(
                f"{path}: DICOM image header without complete pixel data (truncated file?); "
                "re-export it or set skip_bad: true"
            )
        raise NotDicomError(str(path))  # DICOMDIR, structured reports…: no image
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise CorruptFileError(
            f"{path}: cannot decode the DICOM pixel data ({type(exc).__name__}: {exc}); the file is "
            "truncated or uses a compression without an installed decoder — re-export it uncompressed "
            "or set skip_bad: true"
        ) from None
    try:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    except Exception as exc:
        raise CorruptFileError(f"{path}: cannot apply the modality LUT ({exc})") from None
    spp = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        values = values[None]
    if values.ndim != (4 if spp > 1 else 3):
        raise InvalidImageError(f"{path}: unexpected pixel array shape {arr.shape}")
    if window is not None:
        vr = window_range(*window)
    else:
        c, w = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        vr = window_range(c, w) if c is not None and w is not None and w > 0 else None
    invert = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    for k in range(values.shape[0]):
        img = values[k]
        rng = vr
        if invert:
            lo, hi = rng if rng is not None else (float(img.min()), float(img.max()))
            img = (lo + hi) - img  # maps lo <-> hi: high signal is bright
        yield ds, img, rng, (k if frames > 1 else None)


@reader("dicom", version="1")
def read_dicom(spec: DicomSpec, ctx: ReadContext) -> Source:
    """One record per file (per frame): ``id`` = SOPInstanceUID (+ ``#frame``), ``patient`` = PatientID."""
    root = check_path(spec.path, "DICOM folder", kind="dir")
    lookup: dict[str, str] | None = None
    if spec.label_from == "csv":
        csv = check_path(spec.labels_csv, "DICOM labels_csv", kind="file")
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise CorruptFileError(f"{csv}: cannot parse the CSV ({exc})") from None
        missing = [c for c in (spec.csv_key, spec.csv_label) if c not in table.columns]
        if missing:
            raise MissingFieldError(f"{csv}: column(s) {missing} not found; the CSV has {list(table.columns)}")
        lookup = dict(zip(table[spec.csv_key].astype(str), table[spec.csv_label].astype(str)))
        found = sorted(set(lookup.values()))
    else:
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    mapper = LabelMapper(classes=spec.classes, class_map=spec.class_map, ignore=spec.ignore, found=found,
                         what="label" if lookup is not None else "class folder")

    def raw_label(f: Path, ds) -> str | None:
        rel = f.relative_to(root)
        if lookup is None:
            return rel.parts[0] if len(rel.parts) > 1 else None
        key = {"file": rel.as_posix(), "SOPInstanceUID": str(ds.get("SOPInstanceUID", "")),
               "PatientID": str(ds.get("PatientID", ""))}[spec.csv_key]
        if key not in lookup:
            raise LabelError(f"{f}: {spec.csv_key} {key!r} has no row in {spec.labels_csv}; add it or set skip_bad: true")
        return lookup[key]

    def items() -> Iterator:
        for f in iter_files(root):
            if spec.labels_csv is not None and f.resolve() == Path(spec.labels_csv).resolve():
                continue
            try:
                frames = list(read_dicom_file(f, spec.window))
            except NotDicomError:
                yield Skipped(str(f), "not a DICOM image file")
                continue
            except (CorruptFileError, InvalidImageError) as exc:
                yield Skipped(str(f), "unreadable DICOM", exc)
                continue
            ds = frames[0][0]
            try:
                raw = raw_label(f, ds)
                if raw is None:
                    yield Skipped(str(f), "not inside a class folder")
                    continue
                label = mapper(raw, str(f))
            except LabelError as exc:
                yield Skipped(str(f), "label not in the mapping", exc)
                continue
            if label is None:
                yield Skipped(str(f), f"label {raw!r} ignored")
                continue
            uid = str(ds.get("SOPInstanceUID", "")) or f.relative_to(root).as_posix()
            patient = str(ds.get("PatientID", "")) or None
            for _, img, vr, frame in frames:
                yield Record(image=img, id=uid if frame is None else f"{uid}#{frame}", label=label,
                             source=str(f), patient=patient, slice=frame, value_range=vr)

    return Source(classes=mapper.classes, task_type=task_type_for(mapper.classes), items=items())
