"""medapt.data: readers for medical image formats, patient-level splits, the prepared-data cache
and the offline ``phantom`` dataset.

Public surface::

    prepare_dataset(spec, root, *, image_size, channels=3, mean=..., std=..., split=None, progress=True)
    load_prepared(path) -> PreparedDataset
    inspect_source(spec) -> dict
    DataSection, TargetSpec, prepare_section(section, *, mean, std, root=None, progress=True)
    SplitSpec, DatasetSpec (+ one spec model per format), READERS

See ``docs/data.md``.
"""

from __future__ import annotations

# reader modules register themselves in READERS when imported (one module per format family)
from . import brats, cemri, csvlabels, dicom, folder, medmnist, phantom  # noqa: F401
from .inspect import inspect_source
from .prepare import PreparedDataset, dataset_key, load_prepared, prepare_dataset
from .readers import READERS, Reader, ReadContext, Record, Skipped, Source
from .section import DataSection, TargetSpec, load_data_section, prepare_section, source_classes
from .spec import (
    BratsSpec,
    CemriSpec,
    CsvSpec,
    DatasetSpec,
    DicomSpec,
    FolderSpec,
    MedmnistSpec,
    PhantomSpec,
    SplitSpec,
    parse_dataset_spec,
)
from .split import assign_splits

__all__ = [
    "prepare_dataset",
    "load_prepared",
    "inspect_source",
    "PreparedDataset",
    "dataset_key",
    "DataSection",
    "TargetSpec",
    "prepare_section",
    "load_data_section",
    "source_classes",
    "SplitSpec",
    "DatasetSpec",
    "PhantomSpec",
    "BratsSpec",
    "CemriSpec",
    "FolderSpec",
    "CsvSpec",
    "DicomSpec",
    "MedmnistSpec",
    "parse_dataset_spec",
    "assign_splits",
    "READERS",
    "Reader",
    "ReadContext",
    "Record",
    "Skipped",
    "Source",
]
