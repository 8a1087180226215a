"""`medapt prepare`: the datasets of an experiment's ``data:`` section, normalised for its backbone."""

from __future__ import annotations

from pathlib import Path

from ..config import read_yaml
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..data import PreparedDataset, load_data_section, prepare_section

__all__ = ["experiment_normalisation", "prepare_experiment_data"]


def experiment_normalisation(config: str | Path, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the experiment's backbone expects, as `medapt run` prepares with; ImageNet's when
    the file names no backbone. For one channel, the average of the three (what a summed RGB stem sees)."""
    bb = read_yaml(config).get("backbone")
    if isinstance(bb, dict) and bb.get("name"):
        from ..models import normalisation

        mean, std = normalisation(str(bb["name"]))
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if channels == 1:
        return (round(sum(mean) / 3, 4),), (round(sum(std) / 3, 4),)
    return tuple(mean), tuple(std)


def prepare_experiment_data(config: str | Path, *, root: Path | None = None, mean: tuple[float, ...] | None = None,
                            std: tuple[float, ...] | None = None, progress: bool = True) -> dict[str, PreparedDataset]:
    """Prepare every dataset of ``config``'s ``data:`` section (see :func:`medapt.data.prepare_section`);
    ``mean``/``std`` default to :func:`experiment_normalisation`."""
    section = load_data_section(config)
    mean0, std0 = experiment_normalisation(config, section.channels)
    return prepare_section(section, mean=tuple(mean) if mean else mean0, std=tuple(std) if std else std0, root=root,
                           progress=progress)
