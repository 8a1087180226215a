"""The ``data:`` section of an experiment file and :func:`prepare_section`.

.. code-block:: yaml

    data:
      image_size: 64
      channels: 3
      root: .medapt-cache/data
      split: {train: 0.8, val: 0.0, test: 0.2, seed: 0}
      source: {format: phantom, task: grade, n_per_class: 100}
      targets:
        tumor_type:
          dataset:  {format: phantom, task: tumor_type, n_per_class: 60}
          external: {format: phantom, task: tumor_type, n_per_class: 40, shift: true}

The source (DAPT) dataset — optional when no strategy pre-trains — is split with ``source_split``
(default: every image trains, as Mehmood et al. pre-train on all their BraTS slices; give it a
``val`` fraction for phases that monitor the source task); each target's development dataset is
split with ``split``;
an external dataset is never split (every row ``external``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import read_yaml
from ..errors import ConfigError, DataPathError
from .prepare import IMAGENET_MEAN, IMAGENET_STD, PreparedDataset, prepare_dataset
from .readers import READERS, ReadContext
from .spec import DatasetSpec, SplitSpec, format_validation_error

__all__ = ["TargetSpec", "DataSection", "prepare_section", "load_data_section", "source_classes"]


class TargetSpec(BaseModel):
    """A downstream task: its development ``dataset`` and an optional ``external`` cohort."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: DatasetSpec
    external: DatasetSpec | None = None


class DataSection(BaseModel):
    """Everything ``medapt prepare`` needs: sizes, cache root, split, source and targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    image_size: int = Field(64, ge=8, le=4096)
    channels: int = Field(3, ge=1, le=3)
    root: Path = Path(".medapt-cache/data")
    split: SplitSpec = SplitSpec()
    source: DatasetSpec | None = None  # only strategies with source (DAPT) phases need one
    # the source task's own split: by default every image trains (Mehmood et al. pre-train on all
    # 24,422 BraTS slices); a validation fraction serves phases that monitor the source task
    source_split: SplitSpec = SplitSpec(train=1.0, val=0.0, test=0.0)
    targets: dict[str, TargetSpec] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _one_or_three(cls, v: int) -> int:
        if v not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (replicated for ImageNet backbones), got {v}")
        return v

    @field_validator("targets")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name in v:
            if name == "source" or "/" in name or not name:
                raise ValueError(f"target name {name!r} is reserved or contains '/'; rename it")
        return v


def source_classes(spec) -> list[str]:
    """Class names a source will produce, without reading its images (folder listing, CSV header)."""
    return list(READERS.get(spec.format).read(spec, ReadContext()).classes)


def check_external(name: str, target: TargetSpec) -> None:
    if target.external is None:
        return
    from ..errors import DataPathError

    try:
        a, b = source_classes(target.dataset), source_classes(target.external)
    except DataPathError:  # a missing path: the run's data check lists every one at once
        return
    if a != b:
        raise ConfigError(
            f"target {name!r}: the external set's classes {b} differ from the dataset's classes {a}; "
            "an external cohort must have the same class names in the same order — set `classes` "
            "(and `class_map`/`ignore`) on the external spec to match"
        )


def prepare_section(
    section: DataSection,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    root: Path | None = None,
    progress: bool = True,
) -> dict[str, PreparedDataset]:
    """Prepare every dataset of a ``data:`` section.

    Returns a dict with keys ``"source"`` (when there is one), ``"<task>"`` and ``"<task>/external"``. ``mean`` /
    ``std`` are the backbone's normalisation; ``root`` overrides ``section.root``. Class lists of
    each target's dataset and external set are checked to match before anything is read.
    """
    for name, target in section.targets.items():
        check_external(name, target)
    root = Path(root) if root is not None else section.root
    common = dict(image_size=section.image_size, channels=section.channels, mean=mean, std=std, progress=progress)
    out = {}
    if section.source is not None:
        out["source"] = prepare_dataset(section.source, root, split=section.source_split, **common)
    for name, target in section.targets.items():
        out[name] = prepare_dataset(target.dataset, root, split=section.split, **common)
        if target.external is not None:
            out[f"{name}/external"] = prepare_dataset(target.external, root, split=None, **common)
    return out


def load_data_section(config: Path | dict) -> DataSection:
    """Validate the ``data:`` section of an experiment YAML file (or an already parsed dict)."""
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise DataPathError(f"config file {str(path)!r} does not exist")
        doc, where = read_yaml(path), str(path)
    else:
        doc, where = config, "config"
    if not isinstance(doc, dict) or "data" not in doc:
        raise ConfigError(f"{where}: no `data:` section; see docs/data.md for its fields")
    try:
        return DataSection.model_validate(doc["data"])
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid `data:` section: {format_validation_error(exc)}") from None
