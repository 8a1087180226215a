"""Declarative data specifications (pydantic v2), validated when a config is loaded.

A dataset is described by one :data:`DatasetSpec`: a discriminated union on ``format``
(``phantom``, ``brats``, ``cemri``, ``folder``, ``csv``, ``dicom``, ``medmnist``). Every model
forbids unknown keys, so a typo in a config is a :class:`pydantic.ValidationError` at load time
rather than a silently ignored option.

Label handling shared by the readers of real data (:class:`_Labelled`):

* ``class_map`` maps the *raw* label a file carries (folder name, grade string, CSV value,
  CE-MRI code) to a class name; several raw labels may map to one class.
* ``ignore`` lists raw labels to drop (they are counted, not reported as errors).
* ``classes`` fixes the class order (index 0 = first name; for binary tasks
  ``[negative, positive]``). By default the reader's natural order, else sorted names.

A raw label that is neither mapped nor ignored is a :class:`medapt.errors.LabelError`.

Example::

    >>> from pydantic import TypeAdapter
    >>> spec = TypeAdapter(DatasetSpec).validate_python({"format": "phantom", "task": "grade"})
    >>> spec.n_per_class
    100
"""

from __future__ import annotations

import typing

import math
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator


__all__ = [
    "SplitSpec",
    "PhantomSpec",
    "BratsSpec",
    "CemriSpec",
    "FolderSpec",
    "CsvSpec",
    "DicomSpec",
    "MedmnistSpec",
    "DatasetSpec",
    "parse_dataset_spec",
    "PHANTOM_CLASSES",
    "compile_patient_regex",
    "patient_id_source",
]

#: class names of the phantom tasks, in label order (binary grade: [negative, positive])
PHANTOM_CLASSES: dict[str, list[str]] = {
    "grade": ["low_grade", "high_grade"],
    "tumor_type": ["meningioma", "glioma", "pituitary"],
    "disease": ["normal", "neoplastic", "vascular", "degenerative", "inflammatory"],
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def compile_patient_regex(pattern: str | None) -> re.Pattern | None:
    """Compile a ``patient_regex``: it must have one capture group, or a group named ``patient``.

    Raises :class:`~medapt.errors.ConfigError` (a ``ValueError``) naming the pattern otherwise.

    >>> compile_patient_regex(r"^(?P<site>[A-Z]+)_(?P<patient>[0-9]+)_").groupindex["patient"]
    2
    """
    from ..errors import ConfigError

    if pattern is None:
        return None
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"patient_regex {pattern!r} is not a valid regular expression ({exc})") from None
    if "patient" not in rx.groupindex and rx.groups != 1:
        what = "no capture group" if rx.groups == 0 else f"{rx.groups} capture groups"
        raise ConfigError(
            f"patient_regex {pattern!r} has {what}; give one group holding the patient id, e.g. "
            "'^(\\d+)_' for '0042_slice3.png', or name it: '(?P<site>[A-Z]+)_(?P<patient>\\d+)'"
        )
    return rx


def _check_patient_regex(v):
    compile_patient_regex(v)
    return v


def patient_id_source(spec: dict) -> str | None:
    """Where a dataset spec (a plain dict, e.g. from a run's ``config.yaml``) takes patient ids
    from, or ``None`` when it has none — its split is then image-level (slice-level).

    Works on dicts without validating them, so a report can read an old configuration.

    >>> patient_id_source({"format": "folder", "path": "hms"}) is None
    True
    >>> patient_id_source({"format": "folder", "path": "hms", "patient_regex": "^([0-9]+)_"})
    'patient_regex'
    """
    fmt = spec.get("format") if isinstance(spec, dict) else None
    if fmt == "folder":
        return "patient_regex" if spec.get("patient_regex") else None
    if fmt == "csv":
        return next((k for k in ("patient_column", "patient_regex") if spec.get(k)), None)
    return {"phantom": "generated patients", "brats": "case folder", "cemri": "PID",
            "dicom": "PatientID tag"}.get(fmt)


class SplitSpec(_Model):
    """Fractions of the train / validation / test splits and the seed of the assignment.

    Defaults follow Mehmood et al.: 80/20 train/test, no validation split. The fractions must
    sum to 1. Splits are class-stratified and grouped by patient (see :mod:`medapt.data.split`).
    """

    train: float = Field(0.8, gt=0.0, le=1.0)
    val: float = Field(0.0, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"split fractions must sum to 1, got train={self.train} + val={self.val} + "
                f"test={self.test} = {total:g}; adjust them (e.g. train: 0.8, test: 0.2)"
            )
        return self

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


class _Base(_Model):
    skip_bad: bool = Field(
        False,
        description="skip unreadable or invalid files (listed in the summary) instead of failing",
    )


class _Labelled(_Base):
    classes: list[str] | None = Field(None, description="class names in label order")
    # read by the dry run only, when the data is absent; not part of the prepared data's key
    n_images: int | None = Field(None, ge=1, exclude=True,
                                 description="the dataset's image count, for `--dry-run` before the data is there")
    class_map: dict[str, str] | None = Field(None, description="raw label -> class name")
    ignore: list[str] = Field(default_factory=list, description="raw labels to drop")

    @field_validator("class_map", mode="before")
    @classmethod
    def _keys_as_str(cls, v):
        # YAML turns `1: meningioma` into an int key; raw labels are compared as strings
        if isinstance(v, dict):
            return {str(k): str(val) for k, val in v.items()}
        return v

    @field_validator("ignore", mode="before")
    @classmethod
    def _ignore_as_str(cls, v):
        if isinstance(v, (list, tuple)):
            return [str(x) for x in v]
        return v

    @model_validator(mode="after")
    def _classes_cover_map(self):
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes has duplicates: {self.classes}")
            if self.class_map:
                missing = sorted(set(self.class_map.values()) - set(self.classes))
                if missing:
                    raise ValueError(
                        f"class_map maps to {missing}, which are not in classes {self.classes}; "
                        "add them to classes or fix class_map"
                    )
        return self


class PhantomSpec(_Base):
    """The built-in brain-MRI-like generator (see :mod:`medapt.data.phantom`).

    ``n_per_class`` images per class, ``slices_per_patient`` slices of one synthetic patient
    (so a patient-level split is exercised), ``shift`` produces an external-cohort variant
    (bias field, noise, contrast curve, resolution, coronal/sagittal slices). Images are
    generated directly at the prepared ``image_size``.
    """

    format: Literal["phantom"] = "phantom"
    task: Literal["grade", "tumor_type", "disease"]
    n_per_class: int = Field(100, ge=1, le=100_000)
    slices_per_patient: int = Field(4, ge=1, le=64)
    shift: bool = False
    seed: int = 0


class BratsSpec(_Labelled):
    """BraTS 2020 training layout: ``<path>/<case>/<case>_<modality>.nii[.gz]`` + ``<case>_seg``.

    Axial slices of ``modality`` with at least ``min_tumor_voxels`` tumour voxels in the
    segmentation; the grade (``LGG``/``HGG``) comes from ``name_mapping.csv``. A case whose mask
    is missing or named differently (the 2020 case shipping ``W39_1998.09.19_Segm.nii``) is an
    error naming the case unless mapped in ``seg_files`` (case -> file name) or ``skip_bad``.
    """

    format: Literal["brats"] = "brats"
    path: Path
    modality: Literal["t1", "t1ce", "t2", "flair"] = "t1"
    mapping_csv: Path | None = Field(None, description="default: <path>/name_mapping.csv")
    seg_files: dict[str, str] = Field(default_factory=dict)
    min_tumor_voxels: int = Field(1, ge=1)


class CemriSpec(_Labelled):
    """CE-MRI (Cheng et al. 2017) figshare ``.mat`` files, extracted or inside the four zips.

    The raw label is the file's numeric ``cjdata.label``; without ``class_map`` it maps
    1 → meningioma, 2 → glioma, 3 → pituitary. The patient is ``cjdata.PID``.
    """

    format: Literal["cemri"] = "cemri"
    path: Path


class FolderSpec(_Labelled):
    """One sub-folder per class (HMS, Kaggle BTTC, any ImageFolder layout).

    When every sub-folder of ``path`` is a split name (``Training``/``Testing``/``train``/
    ``val``/``test``…, case-insensitive) the classes are read inside each and the split is kept
    in the manifest (``orig_split``); ``use_published_split`` uses it instead of a fresh split.

    An ImageFolder layout has no patient ids, so without ``patient_regex`` the split is
    slice-level (slices of one patient can fall into train and test; the prepared ``meta.json``
    and the log say so). ``patient_regex`` — one capture group, or a group named ``patient`` — is
    searched (``re.search``) in the file name (``patient_regex_on: name``, default) or in the
    path relative to ``path`` (``patient_regex_on: path``, e.g. ``'/(pat[0-9]+)/'`` for one folder
    per patient). A file it does not match is an error naming the file and the regex, or, with
    ``skip_bad: true``, skipped and listed.
    ``intensity``: ``minmax`` scales each image to [0, 1]; ``dtype`` divides by the dtype maximum.
    """

    format: Literal["folder"] = "folder"
    path: Path
    use_published_split: bool = False
    patient_regex: str | None = None
    patient_regex_on: Literal["name", "path"] = "name"
    intensity: Literal["minmax", "dtype"] = "minmax"
    extensions: list[str] = Field(
        default_factory=lambda: [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]
    )

    _patient_regex = field_validator("patient_regex")(_check_patient_regex)


class CsvSpec(_Labelled):
    """A CSV of image paths and label(s), e.g. CheXpert's ``train.csv``.

    Give ``label_column`` for one single-label column (binary/multi-class, values mapped by
    ``class_map``) or ``label_columns`` for multi-label 0/1 columns. CheXpert conventions:
    ``-1`` is *uncertain* (``uncertain``: ``zeros``, ``ones`` or ``ignore`` = NaN, excluded from
    the loss/metric), blank is *not mentioned* (``blank``: ``zeros`` or ``ignore``).
    Relative image paths are resolved against ``image_root`` (default: the CSV's folder).
    Patient ids come from ``patient_column`` or, where that is absent or empty, from
    ``patient_regex`` (one group, or a group named ``patient``) searched in the path as the CSV
    writes it; a row it does not match is an error (or skipped with ``skip_bad``). Without either,
    the split is image-level.
    ``where`` keeps rows whose column equals one of the given values
    (e.g. ``{"Frontal/Lateral": ["Frontal"]}``).
    """

    format: Literal["csv"] = "csv"
    path: Path
    image_root: Path | None = None
    path_column: str = "Path"
    label_column: str | None = None
    label_columns: list[str] | None = None
    patient_column: str | None = None
    patient_regex: str | None = None
    id_column: str | None = None
    uncertain: Literal["zeros", "ones", "ignore"] = "ignore"
    blank: Literal["zeros", "ignore"] = "zeros"
    where: dict[str, list[str]] = Field(default_factory=dict)
    intensity: Literal["minmax", "dtype"] = "minmax"

    _patient_regex = field_validator("patient_regex")(_check_patient_regex)

    @field_validator("where", mode="before")
    @classmethod
    def _where_lists(cls, v):
        if isinstance(v, dict):
            return {str(k): [str(x) for x in (val if isinstance(val, list) else [val])] for k, val in v.items()}
        return v

    @model_validator(mode="after")
    def _one_label_source(self) -> CsvSpec:
        if (self.label_column is None) == (self.label_columns is None):
            raise ValueError(
                "give exactly one of label_column (single-label) or label_columns (multi-label)"
            )
        if self.label_columns is not None and len(self.label_columns) == 0:
            raise ValueError("label_columns is empty; list the 0/1 label columns")
        return self


class DicomSpec(_Labelled):
    """A folder of DICOM files (pydicom): one image per file (per frame for multi-frame files).

    Pixel values go through the modality LUT (RescaleSlope/RescaleIntercept), then the window:
    ``window: [center, width]`` from the config if given, else the file's WindowCenter /
    WindowWidth, else the image's min–max. Labels come from the first folder level under
    ``path`` (``label_from: folder``) or from ``labels_csv`` (``label_from: csv``) whose
    ``csv_key`` column holds the file path relative to ``path``, the SOPInstanceUID or the
    PatientID, and ``csv_label`` the label. The patient is the PatientID tag.
    """

    format: Literal["dicom"] = "dicom"
    path: Path
    label_from: Literal["folder", "csv"] = "folder"
    labels_csv: Path | None = None
    csv_key: Literal["file", "SOPInstanceUID", "PatientID"] = "file"
    csv_label: str = "label"
    window: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _csv_given(self) -> DicomSpec:
        if self.label_from == "csv" and self.labels_csv is None:
            raise ValueError("label_from: csv needs labels_csv: <file>")
        if self.window is not None and self.window[1] <= 0:
            raise ValueError(f"window width must be > 0, got {self.window[1]}")
        return self


class MedmnistSpec(_Labelled):
    """A local MedMNIST ``{flag}_{size}.npz`` (keys ``train_images``, ``train_labels``, ``val_*``,
    ``test_*``). Never downloads. ``task``: ``auto`` reads (N, 1) labels as single-label and
    (N, L>1) as multi-label. ``classes`` names the label indices (default ``"0"``, ``"1"``…).
    The published splits are kept (``use_published_split``, default true)."""

    format: Literal["medmnist"] = "medmnist"
    path: Path
    task: Literal["auto", "multiclass", "multilabel"] = "auto"
    use_published_split: bool = True
    intensity: Literal["minmax", "dtype"] = "dtype"


DatasetSpec = Annotated[
    Union[PhantomSpec, BratsSpec, CemriSpec, FolderSpec, CsvSpec, DicomSpec, MedmnistSpec],
    Field(discriminator="format"),
]

_ADAPTER: TypeAdapter = TypeAdapter(DatasetSpec)

#: the data formats: one spec model per reader, each naming its ``format`` (READERS holds the readers)
FORMATS: tuple[str, ...] = tuple(m.model_fields["format"].default for m in typing.get_args(typing.get_args(DatasetSpec)[0]))


def format_validation_error(exc) -> str:
    """One line per pydantic error: ``location: message (got value)``, without the union noise."""
    lines = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if "[" not in str(x) and "function-" not in str(x))
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = e.get("msg", "").removeprefix("Value error, ")
        lines.append(f"{loc or '<root>'}: {msg}{got_s}")
    return "; ".join(lines)


def parse_dataset_spec(obj) -> BaseModel:
    """Validate a dict (e.g. a YAML ``source:`` block) into the matching spec model.

    Raises :class:`medapt.errors.UnknownNameError` for an unknown ``format`` and
    :class:`medapt.errors.ConfigError` (with pydantic's field-level message) otherwise.
    """
    from pydantic import ValidationError

    from ..errors import ConfigError, UnknownNameError

    if isinstance(obj, BaseModel):
        return obj
    if isinstance(obj, dict) and "format" in obj and obj["format"] not in FORMATS:
        raise UnknownNameError("data format", str(obj["format"]), FORMATS)
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise ConfigError(f"invalid dataset spec: {format_validation_error(exc)}") from None
