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
    "FileSystemError",
    "filesystem_error",
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


class FileSystemError(MedaptError, OSError):
    """A file or folder medapt must write or read cannot be (permission, read-only, not a folder,
    name too long, disk full): the message names the path and the fix."""

    def __init__(self, message: str, errno_: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.message, self.errno, self.filename = message, errno_, filename

    def __str__(self) -> str:
        return self.message


def filesystem_error(exc: OSError, what: str = "") -> FileSystemError:
    """A :class:`FileSystemError` for an ``OSError`` of the file system, naming its path and the fix
    (``what``: what was being written, e.g. "the run directory")."""
    import errno

    path = exc.filename if exc.filename is not None else "?"
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    where = f" ({what})" if what else ""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        msg = (f"permission denied: {path}{where}. Make the folder writable for this user (ls -ld; chmod u+w), "
               "or choose another --out / data.root")
    elif code == errno.EROFS:
        msg = f"read-only file system: {path}{where}. Choose an --out (or data.root) on a writable disk"
    elif code == errno.ENOTDIR:
        msg = (f"not a directory: {path}{where}: a part of this path is a file, not a folder. Choose an --out "
               "(or data.root) whose parents are folders")
    elif code == errno.EEXIST:
        msg = f"{path} exists and is a file, not a folder{where}; choose another --out or move the file"
    elif code == errno.EISDIR:
        msg = f"{path} is a folder where a file was expected{where}; move it or choose another path"
    elif code == errno.ENAMETOOLONG:
        msg = (f"file name too long: {path}{where} (a name may have at most 255 bytes on most file systems); "
               "use a shorter experiment name or --out")
    elif code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        msg = (f"disk full while writing {path}{where}: nothing half-written was left under a final name. Free "
               "space (df -h) or write to another disk, then run the same command again: completed steps are "
               "kept and an interrupted training step resumes from its last epoch")
    else:
        msg = f"{exc.strerror or exc}: {path}{where}"
    return FileSystemError(msg, code, exc.filename)


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
