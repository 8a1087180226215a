"""``csv``: a table of image paths and labels, e.g. CheXpert's ``train.csv``.

Single-label (``label_column``): the column's values are raw labels mapped by ``class_map``.
Multi-label (``label_columns``): each column holds 1 (positive), 0 (negative), −1 (uncertain,
CheXpert) or blank (not mentioned). Policies follow Irvin et al. (CheXpert, 2019):
``uncertain: zeros`` (U-Zeros), ``ones`` (U-Ones; Hosseinzadeh Taher et al. map uncertain to
ones for training) or ``ignore`` (NaN: left out of the loss and of the metric); blanks are
``zeros`` by default. Images are PNG/JPEG (Pillow) or DICOM (``.dcm``, pydicom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CorruptFileError, DataPathError, InvalidImageError, LabelError, MissingFieldError
from ._image import load_image_file
from .folder import patient_from_regex
from .readers import LabelMapper, ReadContext, Record, Skipped, Source, check_path, reader, task_type_for
from .spec import CsvSpec, compile_patient_regex

__all__ = ["read_csv_labels"]


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CorruptFileError(f"{path}: cannot parse the CSV ({exc}); check the file") from None


def _multilabel_value(v, policy_u: str, policy_blank: str, where: str) -> float:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return 0.0 if policy_blank == "zeros" else np.nan
    try:
        x = float(v)
    except ValueError:
        raise LabelError(f"{where}: value {v!r} is not one of 1, 0, -1 or blank") from None
    if x == 1.0 or x == 0.0:
        return x
    if x == -1.0:
        return {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}[policy_u]
    raise LabelError(f"{where}: value {v!r} is not one of 1, 0, -1 (uncertain) or blank")


@reader("csv", version="2")
def read_csv_labels(spec: CsvSpec, ctx: ReadContext) -> Source:
    """One record per CSV row (after ``where``): ``id`` = ``id_column`` or the path string."""
    csv = check_path(spec.path, "label CSV", kind="file")
    df = _read_table(csv)
    needed = [spec.path_column] + ([spec.label_column] if spec.label_column else list(spec.label_columns or []))
    needed += [c for c in (spec.patient_column, spec.id_column) if c] + list(spec.where)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MissingFieldError(f"{csv}: column(s) {missing} not found; the CSV has {list(df.columns)}")
    for col, values in spec.where.items():
        df = df[df[col].isin(values)]
    image_root = Path(spec.image_root) if spec.image_root is not None else csv.parent
    rx = compile_patient_regex(spec.patient_regex)
    multilabel = spec.label_columns is not None
    if multilabel:
        classes = list(spec.classes) if spec.classes is not None else list(spec.label_columns)
        if len(classes) != len(spec.label_columns):
            raise LabelError(f"classes {classes} must name the {len(spec.label_columns)} label_columns one to one")
        for c in spec.label_columns:  # a label never given can be neither learnt nor scored
            known = df[c].dropna()
            if spec.uncertain == "ignore":
                known = known[~known.astype(str).str.strip().isin(["-1", "-1.0"])]
            if len(df) and known.empty:
                raise LabelError(f"{csv}: label column {c!r} is missing (blank{' or uncertain' if spec.uncertain == 'ignore' else ''}) "
                                 f"in all {len(df)} rows; drop it from label_columns or fill it")
        mapper = None
    else:
        found = df[spec.label_column].dropna().unique().tolist()
        mapper = LabelMapper(classes=spec.classes, class_map=spec.class_map, ignore=spec.ignore,
                             found=found, what=f"{spec.label_column!r} value")
        classes = mapper.classes

    def items():
        for i, row in enumerate(df.itertuples(index=False)):
            rowd = dict(zip(df.columns, row))
            where = f"{csv} row {i + 2}"  # 1-based, after the header
            rel = rowd[spec.path_column]
            if rel is None or (isinstance(rel, float) and np.isnan(rel)):
                yield Skipped(where, "empty path", MissingFieldError(f"{where}: empty {spec.path_column!r}"))
                continue
            try:
                if multilabel:
                    label = np.array([_multilabel_value(rowd[c], spec.uncertain, spec.blank, f"{where} column {c!r}")
                                      for c in spec.label_columns], dtype=np.float32)
                else:
                    raw = rowd[spec.label_column]
                    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
                        raise LabelError(f"{where}: empty label in {spec.label_column!r}; fill it or drop the row")
                    label = mapper(raw, where)
            except LabelError as exc:
                yield Skipped(where, "bad label", exc)
                continue
            if label is None:
                yield Skipped(where, f"label {rowd[spec.label_column]!r} ignored")
                continue
            f = Path(rel)
            f = f if f.is_absolute() else image_root / f
            if not f.is_file():
                yield Skipped(str(f), "image missing", DataPathError(
                    f"{where}: image {str(f)!r} does not exist; fix the path (relative paths start at "
                    f"image_root, default the CSV's folder) or set skip_bad: true"))
                continue
            try:
                if f.suffix.lower() == ".dcm":
                    from .dicom import read_dicom_file

                    frames = list(read_dicom_file(f, window=None))
                    image, vr = frames[0][1], frames[0][2]
                else:
                    image, vr = load_image_file(f), None
            except (CorruptFileError, InvalidImageError) as exc:
                yield Skipped(str(f), "unreadable image", exc)
                continue
            patient = rowd[spec.patient_column] if spec.patient_column else None
            if patient is not None and pd.isna(patient):  # an empty cell
                patient = None
            if patient is None and rx is not None:
                try:
                    patient = patient_from_regex(rx, str(rel), where, f"{spec.path_column!r} value")
                except MissingFieldError as exc:
                    yield Skipped(where, "no patient id (patient_regex does not match)", exc)
                    continue
            rid = rowd[spec.id_column] if spec.id_column else str(rel)
            yield Record(image=image, id=str(rid), label=label, source=str(f), patient=patient, value_range=vr)

    return Source(classes=classes, task_type=task_type_for(classes, multilabel), items=items(),
                  intensity=spec.intensity)
