"""Atomic file writes: every file medapt writes goes through here.

A writer gets a temporary path *beside* the target (same folder, so the final ``os.replace`` is
atomic on POSIX file systems), writes it, and the temporary file is renamed over the target only
when the write completed; on any error it is removed. A crash therefore never leaves a
half-written file under the final name. Files are created with the process umask (usually 644),
like any other file the user creates.

This module imports nothing of medapt.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_write_csv",
           "is_temporary"]

_TMP_MARK = ".medapt-tmp-"
_UMASK_LOCK = threading.Lock()


def is_temporary(path: str | os.PathLike) -> bool:
    """True for a temporary file left by an interrupted :func:`atomic_path` (safe to delete)."""
    return _TMP_MARK in Path(path).name


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    ``suffix`` is appended to the temporary name for writers that insist on an extension
    (``np.save`` adds ``.npy`` to a name without one).

    >>> with atomic_path(Path("out/weights.safetensors")) as tmp:  # doctest: +SKIP
    ...     save_file(state, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        _umask_mode(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` gives a new file."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def _umask_mode(tmp: Path) -> None:
    """Give a temporary file the mode a plain ``open()`` would (libraries such as safetensors
    create theirs with mode 600 through ``mkstemp``-like calls)."""
    try:
        if tmp.is_file() and not tmp.is_symlink():
            os.chmod(tmp, _file_mode())
    except OSError:  # a file system without modes: keep what it has
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``. ``fsync``: flush to the disk before
    the rename (for a file whose presence marks something complete)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; return ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy / torch scalars and arrays
        return v.tolist()
    return str(v)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, fsync: bool = False) -> Path:
    """Write ``obj`` as JSON atomically (numpy scalars and arrays as numbers, other values through
    ``str``); return ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_jsonable), fsync)


def atomic_write_csv(df: Any, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV (no index) atomically; return ``path``."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)
