"""Content digests of the files medapt reuses: step outputs, prepared datasets, frozen-prefix caches.

An output is reused only if its recorded digest still matches (the rule DVC and Bazel follow). A
file's record is ``{"size": bytes, "mtime_ns": ..., "blake2b": hex}``; :func:`check_files`
compares a folder's files with their records and returns what is damaged.

Verification modes (``MEDAPT_VERIFY``, default ``full``; see docs/run-directory.md):

* ``full`` — every reused file is hashed again (BLAKE2b, streamed in 1 MiB blocks);
* ``stat`` — size and modification time must match; a file whose mtime changed (a copy that did
  not keep times) is hashed, so only an in-place change that also restored the mtime passes;
* ``off`` — nothing is checked (what ``benchmarks/verify.py`` compares against).

This module imports nothing of medapt but :mod:`medapt.errors`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["file_digest", "file_record", "record_files", "check_files", "combined_digest", "Damage",
           "verify_mode", "MODES", "SKIP_NAMES", "step_files", "verify_run_dir", "refuse_damaged", "TABLES_RECORD"]

MODES = ("full", "stat", "off")
#: the run directory's record of its tables' digests (metrics.csv, costs.csv, …)
TABLES_RECORD = "tables.digest.json"
#: files of a step folder that are not its outputs
SKIP_NAMES = frozenset({"step.json", "checkpoint.pt", "result.json"})
_BLOCK = 1 << 20


def verify_mode() -> str:
    """The verification mode from ``MEDAPT_VERIFY`` (``full`` when unset)."""
    mode = os.environ.get("MEDAPT_VERIFY", "full").strip().lower() or "full"
    if mode not in MODES:
        from .errors import ConfigError

        raise ConfigError(f"MEDAPT_VERIFY={mode!r} is not a verification mode; use one of {', '.join(MODES)}")
    return mode


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b (128-bit) of a file's content, read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size", "mtime_ns", "blake2b"}`` of a file."""
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "blake2b": file_digest(path)}


def step_files(folder: Path) -> dict[str, Path]:
    """The output files of a step folder, by path relative to it (step.json, checkpoints and
    temporary files are not outputs)."""
    from .atomic import is_temporary

    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name not in SKIP_NAMES and not is_temporary(p):
            out[p.relative_to(folder).as_posix()] = p
    return out


def record_files(files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Records of ``files`` (name -> path), by name."""
    return {name: file_record(path) for name, path in sorted(files.items())}


def combined_digest(records: dict[str, dict[str, Any]] | None) -> str | None:
    """One digest for a set of file records (what a dependent step records of its input)."""
    if records is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(records):
        h.update(f"{Path(name).name}\0{records[name]['size']}\0{records[name]['blake2b']}\n".encode())
    return h.hexdigest()


@dataclass
class Damage:
    """One damaged file: where, which, and what is wrong with it."""

    file: str
    problem: str
    step: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _resolve(base: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else base / p


def check_files(records: dict[str, dict[str, Any]], base: Path, mode: str | None = None) -> list[Damage]:
    """Compare the files named in ``records`` (relative to ``base``, or absolute) with their records;
    return the damaged ones (empty: all match). ``mode``: see the module doc (default from the env)."""
    mode = verify_mode() if mode is None else mode
    if mode == "off":
        return []
    damaged = []
    for name, rec in sorted(records.items()):
        path = _resolve(Path(base), name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            damaged.append(Damage(str(path), "missing"))
            continue
        except OSError as exc:
            damaged.append(Damage(str(path), f"unreadable ({exc.strerror or exc})"))
            continue
        if st.st_size != rec.get("size"):
            damaged.append(Damage(str(path), f"size changed ({rec.get('size')} bytes recorded, {st.st_size} now)"))
            continue
        if mode == "stat" and st.st_mtime_ns == rec.get("mtime_ns"):
            continue
        try:
            digest = file_digest(path)
        except OSError as exc:
            damaged.append(Damage(str(path), f"unreadable ({exc.strerror or exc})"))
            continue
        if digest != rec.get("blake2b"):
            damaged.append(Damage(str(path), "content changed (BLAKE2b digest differs from the recorded one)"))
    return damaged


def verify_run_dir(run_dir: Path, mode: str = "full") -> dict[str, Any]:
    """Check every completed step folder of a run directory and its frozen-prefix caches.

    Returns ``{"run_dir", "ok", "steps", "unrecorded", "damaged": [Damage dicts]}``: ``damaged``
    lists files whose content differs from the digest recorded when they were written (missing,
    unreadable, other size or content), and steps whose input was replaced by different content
    after they ran (``stale``); ``unrecorded`` counts steps written before medapt recorded digests.
    """
    run_dir = Path(run_dir)
    steps_root = run_dir / "steps"
    if not run_dir.is_dir() or not steps_root.is_dir():
        from .errors import RunDirError

        raise RunDirError(f"{str(run_dir)!r} is not a medapt run directory (no steps/ folder); "
                          "give the folder `medapt run --out` wrote")
    infos: dict[str, dict] = {}
    damaged: list[Damage] = []
    unrecorded = 0
    for sj in sorted(steps_root.glob("*/*/step.json")):
        folder = sj.parent
        if folder.name.endswith(".partial") or ".corrupt-" in folder.name:
            continue
        sid = f"{folder.parent.name}/{folder.name}"
        try:
            info = json.loads(sj.read_text())
        except (OSError, ValueError) as exc:
            damaged.append(Damage(str(sj), f"unreadable step.json ({exc})", sid))
            continue
        infos[sid] = info
        if "files" not in info:
            unrecorded += 1
            continue
        for d in check_files(info["files"], folder, mode):
            d.step = sid
            damaged.append(d)
    bad = {d.step for d in damaged}
    for sid, info in infos.items():
        for name, rec in (info.get("input_digests") or {}).items():
            dep = (info.get("inputs") or {}).get(name)
            dep_info = infos.get(dep)
            if dep is None or dep in bad:
                continue
            if dep_info is None:
                damaged.append(Damage(str(steps_root / dep), f"input {name!r} ({dep}) of this step is missing", sid))
            elif combined_digest(dep_info.get("files")) != rec:
                damaged.append(Damage(str(steps_root / dep), f"stale: input {name!r} ({dep}) was replaced by "
                                      "different content after this step ran", sid))
    for d in check_caches(run_dir / "cache", mode):
        damaged.append(d)
    tables = run_dir / TABLES_RECORD
    if tables.is_file():
        try:
            recorded = json.loads(tables.read_text())
        except (OSError, ValueError) as exc:
            damaged.append(Damage(str(tables), f"unreadable ({exc})", "tables"))
        else:
            for d in check_files(recorded, run_dir, mode):
                d.step = "tables"
                damaged.append(d)
    return {"run_dir": str(run_dir), "ok": not damaged, "steps": len(infos), "unrecorded": unrecorded,
            "damaged": [d.to_dict() for d in damaged]}


def check_caches(cache_dir: Path, mode: str = "full") -> list[Damage]:
    """Frozen-prefix cache files whose content differs from the digest recorded beside them."""
    out = []
    if not Path(cache_dir).is_dir():
        return out
    for rec_path in sorted(Path(cache_dir).glob("*.npy.digest.json")):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError) as exc:
            out.append(Damage(str(rec_path), f"unreadable digest record ({exc})", "cache"))
            continue
        cache = rec_path.with_name(rec_path.name[: -len(".digest.json")])
        for d in check_files({cache.name: rec}, cache.parent, mode):
            d.step = "cache"
            out.append(d)
    return out


def refuse_damaged(run_dir: Path) -> None:
    """Raise :class:`~medapt.errors.RunDirError` when ``run_dir`` fails :func:`verify_run_dir`
    (``medapt report`` calls it unless ``--no-verify``). A folder without ``steps/`` is left alone."""
    if not (Path(run_dir) / "steps").is_dir():
        return
    res = verify_run_dir(run_dir, mode=verify_mode() if verify_mode() != "off" else "off")
    if not res["ok"]:
        from .errors import RunDirError

        d = res["damaged"][0]
        more = f" and {len(res['damaged']) - 1} more" if len(res["damaged"]) > 1 else ""
        raise RunDirError(f"run directory {str(run_dir)!r} fails verification: step {d['step']}: {d['file']}: "
                          f"{d['problem']}{more}. Its tables may not be the numbers it computed. Run `medapt run` "
                          "with the same config and --out to recompute the damaged steps, see `medapt verify "
                          f"{run_dir}`, or pass --no-verify to build the report anyway")
