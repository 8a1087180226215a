"""The reader contract and registry.

A reader turns a :data:`~medapt.data.spec.DatasetSpec` into a :class:`Source`: the class
names, the task type and a *lazy* iterator of items. Each item is either a :class:`Record`
(one 2-D image and its manifest row) or a :class:`Skipped` (a file that was not used and why).
Readers open one file or volume at a time, so :func:`medapt.data.prepare_dataset` streams.

Per-file problems are yielded as ``Skipped(file, reason, error)``: the consumer raises
``error`` unless the spec sets ``skip_bad`` (``prepare``), or lists it (``inspect-data``).
``Skipped`` with ``error=None`` is a file that is ignored by design (a non-image file in a
class folder, an ignored class) and is only counted.

Adding a format touches one module::

    @reader("myformat", version="1")
    def read_myformat(spec, ctx) -> Source: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataPathError, LabelError
from ..registry import Registry

__all__ = [
    "Record",
    "Skipped",
    "Source",
    "ReadContext",
    "Reader",
    "READERS",
    "reader",
    "LabelMapper",
    "check_path",
    "task_type_for",
]


@dataclass
class Record:
    """One image and its manifest row.

    ``image``: (H, W) or (H, W, 3) array of any real dtype. ``value_range``: the (lo, hi)
    that maps to [0, 1] (a volume's min–max, a DICOM window); ``None`` = this image's min–max
    (or the dtype range when ``intensity: dtype``). ``label``: class index, or a float32 (L,)
    vector (NaN = ignore) for multi-label. ``split``: the published split, if the source has one.
    """

    image: np.ndarray
    id: str
    label: int | np.ndarray
    source: str
    patient: str | None = None
    slice: int | None = None
    value_range: tuple[float, float] | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Skipped:
    """A file (or case) that was not used: ``error`` set = bad input, ``None`` = ignored by design."""

    file: str
    reason: str
    error: Exception | None = None

    def as_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason, "bad": self.error is not None}


@dataclass
class Source:
    """What a reader returns: classes, task type and a lazy stream of items."""

    classes: list[str]
    task_type: str  # "binary" | "multiclass" | "multilabel"
    items: Iterable[Record | Skipped]
    intensity: str = "minmax"  # "minmax" | "dtype": how images without value_range are scaled
    use_published_split: bool = False


@dataclass(frozen=True)
class ReadContext:
    """Settings a reader may need: the prepared image size (the phantom renders at it)."""

    image_size: int = 64


@dataclass(frozen=True)
class Reader:
    """A registered reader: ``read(spec, ctx) -> Source`` plus a version that enters cache keys."""

    name: str
    read: Callable[..., Source]
    version: str


READERS: Registry[Reader] = Registry("data format", hint="Known: " + ", ".join(
    ("phantom", "brats", "cemri", "folder", "csv", "dicom", "medmnist")) + ".")


def reader(name: str, version: str) -> Callable:
    """Register ``fn(spec, ctx) -> Source`` as the reader of format ``name``.

    Bump ``version`` whenever the reader's output changes: it is part of the prepared folder's key.
    """

    def deco(fn: Callable[..., Source]) -> Callable[..., Source]:
        READERS.register(name, Reader(name=name, read=fn, version=version))
        return fn

    return deco


def task_type_for(classes: Sequence[str], multilabel: bool = False) -> str:
    if multilabel:
        return "multilabel"
    if len(classes) < 2:
        raise LabelError(
            f"only {len(classes)} class ({list(classes)}) found; a classification task needs at "
            "least 2. Check the data path, class_map and ignore."
        )
    return "binary" if len(classes) == 2 else "multiclass"


def check_path(path: Path, what: str, *, kind: str = "any") -> Path:
    """Raise :class:`DataPathError` naming ``what`` unless ``path`` exists (as a file/dir)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataPathError(
            f"{what} {str(p)!r} does not exist; fix the path in the config "
            "(relative paths are taken from the current directory)"
        )
    if kind == "dir" and not p.is_dir():
        raise DataPathError(f"{what} {str(p)!r} is a file; expected a folder")
    if kind == "file" and not p.is_file():
        raise DataPathError(f"{what} {str(p)!r} is a folder; expected a file")
    return p


class LabelMapper:
    """Raw labels (strings) -> class indices, following ``class_map`` / ``ignore`` / ``classes``.

    ``natural``: the reader's default class order when neither ``classes`` nor ``class_map``
    says otherwise; ``found``: the raw labels present in the data, when known up front
    (folder names, CSV values) — used for the default order and for early errors.
    """

    def __init__(
        self,
        *,
        classes: Sequence[str] | None,
        class_map: dict[str, str] | None,
        ignore: Sequence[str] = (),
        natural: Sequence[str] | None = None,
        found: Iterable[str] | None = None,
        what: str = "label",
    ):
        self.ignore = {str(x) for x in ignore}
        self.class_map = dict(class_map) if class_map else None
        self.what = what
        if classes is not None:
            order = list(classes)
        elif self.class_map is not None:
            order = _unique(self.class_map.values())
            if natural is not None:
                order = [c for c in natural if c in order] + sorted(c for c in order if c not in natural)
            else:
                order = sorted(order)
        elif natural is not None:
            order = list(natural)
        elif found is not None:
            order = sorted({str(f) for f in found} - self.ignore)
        else:
            raise ValueError("LabelMapper needs classes, class_map, natural or found")
        self.classes: list[str] = order
        self._index = {c: i for i, c in enumerate(order)}

    def known_raw(self) -> list[str]:
        return sorted(self.class_map) if self.class_map is not None else list(self.classes)

    def __call__(self, raw, file: str) -> int | None:
        """Class index of ``raw``; ``None`` if ignored; :class:`LabelError` if unmapped."""
        raw = str(raw)
        if raw in self.ignore:
            return None
        name = self.class_map.get(raw) if self.class_map is not None else raw
        if name is None or name not in self._index:
            raise LabelError(
                f"{file}: {self.what} {raw!r} is not in the mapping (known: "
                f"{', '.join(self.known_raw())}). Add it to class_map/classes, list it under "
                "ignore, or fix the file."
            )
        return self._index[name]


def _unique(xs: Iterable[str]) -> list[str]:
    out: list[str] = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


def iter_files(root: Path, *, hidden: bool = False) -> Iterator[Path]:
    """Files under ``root`` in sorted order (deterministic across file systems)."""
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if not hidden and any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        yield p
