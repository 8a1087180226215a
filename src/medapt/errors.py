"""One exception hierarchy for medapt.

Every error raised on purpose by medapt derives from :class:`MedaptError`, and each specific
class also derives from the matching built-in, so ``except ValueError`` keeps working
(the pattern DVC uses). Messages name the value received, what was allowed, and the fix.

This module imports nothing of medapt.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "MedaptError",
    "ConfigError",
    "UnknownNameError",
    "WeightsError",
    "CheckpointError",
    "DataError",
    "DataPathError",
    "CorruptFileError",
    "MissingFieldError",
    "ShapeMismatchError",
    "LabelError",
    "EmptyDatasetError",
    "DuplicateIdError",
    "InvalidImageError",
    "CostError",
    "RunDirError",
    "RunLockedError",
    "did_you_mean",
]


class MedaptError(Exception):
    """Base class of every error medapt raises on purpose."""


class ConfigError(MedaptError, ValueError):
    """A configuration value is missing, malformed or inconsistent."""


class UnknownNameError(ConfigError, KeyError):
    """A name (strategy, backbone, reader, metric, hardware…) is not registered."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = ""):
        self.kind, self.name = kind, name
        self.choices = sorted(choices)
        msg = f"Unknown {kind} {name!r}."
        close = did_you_mean(name, self.choices)
        if close:
            msg += " Did you mean " + ", ".join(repr(c) for c in close) + "?"
        if hint:
            msg += " " + hint
        elif len(self.choices) <= 12:
            msg += " Known: " + ", ".join(self.choices) + "."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class WeightsError(MedaptError, ValueError):
    """A weights source cannot be loaded or does not fit the architecture."""


class CheckpointError(MedaptError, ValueError):
    """A checkpoint is missing, corrupt or from another run."""


class DataError(MedaptError, ValueError):
    """Base class of data-reading errors. Messages name the file and the fix."""


class DataPathError(DataError, FileNotFoundError):
    """A data path does not exist or is not the expected kind (file/folder)."""


class CorruptFileError(DataError):
    """A file cannot be decoded (truncated or corrupt NIfTI/PNG/JPEG/DICOM/.mat)."""


class MissingFieldError(DataError, KeyError):
    """A file lacks an expected field (e.g. ``cjdata/image`` in a CE-MRI .mat)."""

    def __str__(self) -> str:
        return str(self.args[0])


class ShapeMismatchError(DataError):
    """Two arrays that must align do not (image vs segmentation)."""


class LabelError(DataError):
    """A label, grade or class is not in the mapping."""


class EmptyDatasetError(DataError):
    """A dataset, split or class folder has no usable images."""


class DuplicateIdError(DataError):
    """Two images share one id."""


class InvalidImageError(DataError):
    """Image content is unusable (constant, NaN-containing, wrong dimensionality)."""


class CostError(MedaptError, ValueError):
    """Bad input to the cost tools (runtime strings, hardware tables)."""


class RunDirError(MedaptError, RuntimeError):
    """A run directory cannot be used (from a different config, not a run directory)."""


class RunLockedError(RunDirError):
    """Another ``medapt run`` holds the run directory's lock."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The closest valid names to ``name`` (case-insensitive), best first."""
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)
    out = [lower[h] for h in hits]
    # prefix matches help with long families ("resnet" -> resnet18, resnet50…)
    for c in choices:
        if len(out) >= n:
            break
        if c.lower().startswith(name.lower()) and c not in out:
            out.append(c)
    return out
