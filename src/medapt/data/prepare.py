"""Preprocess once, stream always: the prepared-dataset cache.

:func:`prepare_dataset` reads a source with its reader, one image (or volume) at a time, and
writes a content-addressed folder ``root/<format>-<key>/``::

    images.npy      float16 (N, C, H, W), normalised with the backbone's mean/std (np.load mmap)
    labels.npy      int64 (N,) or float32 (N, L) multi-label (NaN = ignore)
    manifest.parquet  one row per image: id, patient, label(s), class, split, source, slice, …
    meta.json       spec, settings, classes, task type, counts, skipped files, digest (written last)

``key`` hashes the spec, the settings (size, channels, mean/std, split), the reader's version and
a fingerprint of the input files (names, sizes, mtimes), so a re-run with the same inputs reuses
the folder and any change prepares a new one. The folder is built under a temporary name in
``root`` and renamed when complete: an interrupted run never leaves anything that looks done.
Peak memory does not grow with the dataset: images are appended to ``images.npy`` as they come
(the ``.npy`` header is patched with the final N at the end).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..atomic import atomic_write_json
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError, DataError, DuplicateIdError, EmptyDatasetError
from ._image import dtype_range, preprocess
from .readers import READERS, ReadContext, Record, Skipped, Source
from .spec import SplitSpec
from .split import assign_splits, normalize_patient_ids

__all__ = [
    "PreparedDataset",
    "prepare_dataset",
    "load_prepared",
    "dataset_key",
    "iter_checked",
    "LAYOUT_VERSION",
    "PREPARED_FILES",
    "verify_prepared",
    "time_preparation",
    "prepared_folder",
]

log = logging.getLogger(__name__)

#: version of the prepared-folder layout and split rules; part of every key
#: (2: patient ids grouped after normalisation, so a folder prepared with version 1 is not reused)
LAYOUT_VERSION = "2"
#: the data files of a prepared folder, digested into its meta.json ("files")
PREPARED_FILES = ("images.npy", "labels.npy", "manifest.parquet")


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared dataset, memory-mapped.

    Attributes:
        path: the prepared folder.
        images: float16 memmap (N, C, H, W), already normalised with the mean/std it was prepared with.
        labels: int64 (N,) class indices (binary/multiclass) or float32 (N, L) (multilabel; NaN = ignore).
        manifest: one row per image (id, patient, label(s), class, split, source, slice, …).
        classes: class names in label order (binary: ``[negative, positive]``).
        task_type: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        digest: sha256 of the prepared images, labels and manifest (a cache key for later steps).
        meta: the parsed ``meta.json``.
    """

    path: Path
    images: np.ndarray
    labels: np.ndarray
    manifest: pd.DataFrame
    classes: list[str]
    task_type: str
    digest: str
    meta: dict

    def indices(self, split: str) -> np.ndarray:
        """Row indices (int64, ascending) of ``"train"``, ``"val"``, ``"test"`` or ``"external"``."""
        return np.flatnonzero(self.manifest["split"].to_numpy() == split).astype(np.int64)

    @property
    def n_classes(self) -> int:
        """Number of classes (2 for binary) or of labels (multi-label)."""
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        counts = self.manifest["split"].value_counts().to_dict()
        return (f"PreparedDataset({self.path.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, "
                f"task={self.task_type}, classes={self.classes}, splits={counts})")


# --------------------------------------------------------------------------- keys


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _spec_paths(spec: BaseModel) -> list[tuple[str, Path]]:
    return [(name, Path(v)) for name, v in spec if isinstance(v, Path)]


def _fingerprint(spec: BaseModel) -> str:
    """sha256 of (relative name, size, mtime) of every input file named by the spec's paths."""
    h = hashlib.sha256()
    for name, p in _spec_paths(spec):
        p = p.expanduser()
        if not p.exists():
            from ..errors import DataPathError

            raise DataPathError(
                f"{spec.format} dataset: {name} {str(p)!r} does not exist; fix the path in the "
                "config (relative paths are taken from the current directory)"
            )
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        h.update(name.encode())
        for f in files:
            st = f.stat()
            rel = f.name if f == p else str(f.relative_to(p))
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _spec_json(spec: BaseModel) -> dict:
    d = spec.model_dump(mode="json")
    for name, p in _spec_paths(spec):
        d[name] = str(p.expanduser().resolve())
    return d


def dataset_key(spec: BaseModel, settings: dict) -> str:
    """The content key of a prepared dataset: spec + settings + reader/layout version + inputs."""
    rd = READERS.get(spec.format)
    payload = {
        "layout": LAYOUT_VERSION,
        "reader": rd.version,
        "spec": _spec_json(spec),
        "settings": settings,
        "inputs": _fingerprint(spec),
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


# --------------------------------------------------------------------------- .npy appender


class _NpyAppender:
    """Append equally shaped arrays to a ``.npy`` file without holding them in memory.

    A fixed-size (128-byte) version-1.0 header is written first with a placeholder shape and
    patched with the real N on :meth:`close`; ``np.load(..., mmap_mode="r")`` reads the result.
    """

    HEADER_BYTES = 128

    def __init__(self, path: Path, item_shape: tuple[int, ...], dtype=np.float16):
        self.path, self.item_shape, self.dtype = path, tuple(item_shape), np.dtype(dtype)
        self.n = 0
        self._f = open(path, "wb")
        self._f.write(self._header(0))

    def _header(self, n: int) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (n, *self.item_shape)}
        body = repr(d).encode("latin1")
        pad = self.HEADER_BYTES - 10 - len(body) - 1
        if pad < 0:
            raise ValueError("array header too long")  # pragma: no cover - shapes are small
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", self.HEADER_BYTES - 10) + body + b" " * pad + b"\n"

    def append(self, arr: np.ndarray) -> bytes:
        a = np.ascontiguousarray(arr, dtype=self.dtype)
        if a.shape != self.item_shape:
            raise ValueError(f"shape {a.shape} != {self.item_shape}")  # pragma: no cover
        b = a.tobytes()
        self._f.write(b)
        self.n += 1
        return b

    def close(self) -> None:
        self._f.seek(0)
        self._f.write(self._header(self.n))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()


# --------------------------------------------------------------------------- streaming


def iter_checked(source: Source, *, skip_bad: bool, skipped: list[dict]) -> Iterator[Record]:
    """Records of ``source``; bad inputs raise (or are appended to ``skipped`` if ``skip_bad``)."""
    seen: set[str] = set()
    for item in source.items:
        if isinstance(item, Skipped):
            if item.error is not None and not skip_bad:
                raise item.error
            skipped.append(item.as_dict())
            continue
        if item.id in seen:
            err = DuplicateIdError(
                f"{item.source}: image id {item.id!r} occurs twice; ids must be unique — remove the "
                "duplicate file/row or set skip_bad: true to keep the first"
            )
            if not skip_bad:
                raise err
            skipped.append({"file": item.source, "reason": str(err), "bad": True})
            continue
        seen.add(item.id)
        yield item


def _norm_stats(mean, std, channels: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean, dtype=np.float32).ravel()
    std = np.asarray(std, dtype=np.float32).ravel()
    if mean.size == 1:
        mean = np.repeat(mean, channels)
    if std.size == 1:
        std = np.repeat(std, channels)
    if mean.size != channels or std.size != channels:
        raise ConfigError(
            f"mean {mean.tolist()} / std {std.tolist()} must have {channels} values (channels={channels}) "
            "or one value; pass the backbone's own normalisation"
        )
    if (std <= 0).any():
        raise ConfigError(f"std must be > 0, got {std.tolist()}")
    return mean, std


def _destination(spec, root: Path, image_size: int, channels: int, mean, std, split) -> tuple[Path, dict, str]:
    """Where ``spec`` prepared with these settings lives (``root/<format>-<key>``), the settings, the key."""
    if image_size < 8 or image_size > 4096:
        raise ConfigError(f"image_size must be in [8, 4096], got {image_size}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    mean_a, std_a = _norm_stats(mean, std, channels)
    settings = {
        "image_size": int(image_size), "channels": int(channels),
        "mean": [round(float(x), 8) for x in mean_a], "std": [round(float(x), 8) for x in std_a],
        "split": split.model_dump() if split is not None else None,
    }
    key = dataset_key(spec, settings)
    return Path(root) / f"{spec.format}-{key[:16]}", settings, key


def prepared_folder(spec, root: Path, *, image_size: int, channels: int = 3, mean: tuple[float, ...] = IMAGENET_MEAN,
                    std: tuple[float, ...] = IMAGENET_STD, split: SplitSpec | None = None) -> Path:
    """The folder :func:`prepare_dataset` would write (or reuse) for these arguments; nothing is read."""
    from .spec import parse_dataset_spec

    return _destination(parse_dataset_spec(spec), root, image_size, channels, mean, std, split)[0]


def prepare_dataset(
    spec: BaseModel,
    root: Path,
    *,
    image_size: int,
    channels: int = 3,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    split: SplitSpec | None = None,
    progress: bool = True,
) -> PreparedDataset:
    """Read ``spec``'s source once into ``root/<format>-<key>/`` and return it memory-mapped.

    Args:
        spec: a :data:`~medapt.data.spec.DatasetSpec` (or a dict that validates as one).
        root: folder of prepared datasets (created if missing).
        image_size: side of the square images (Mehmood et al. use 240/256; the demo 64).
        channels: 3 replicates grayscale for ImageNet backbones; 1 keeps (or converts to) grayscale.
        mean, std: the backbone's normalisation, applied to [0, 1] intensities (default ImageNet).
        split: fractions and seed of the patient-level split; ``None`` = never split
            (an external set: every row gets ``split="external"``).
        progress: show a tqdm bar (plain log lines when not on a TTY are tqdm's business).

    Returns:
        The :class:`PreparedDataset`. A complete folder with the same key is reused as is.

    Raises:
        DataError subclasses naming the file, what is wrong and the fix (see ``docs/data.md``).

    Example:
        >>> ds = prepare_dataset({"format": "phantom", "task": "grade", "n_per_class": 20},
        ...                      Path(".medapt-cache/data"), image_size=64, split=SplitSpec())
        >>> ds.images.shape, ds.classes
        ((40, 3, 64, 64), ['low_grade', 'high_grade'])
    """
    from .spec import parse_dataset_spec

    spec = parse_dataset_spec(spec)
    final, settings, key = _destination(spec, root, image_size, channels, mean, std, split)
    mean_a, std_a = _norm_stats(mean, std, channels)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    if final.exists():
        try:
            ds = load_prepared(final)
            verify_prepared(ds)
            log.info("reusing prepared dataset %s (same spec, settings and inputs; contents verified)", final)
            return ds
        except DataError as exc:
            log.warning("prepared folder %s is unusable (%s); preparing it again", final, exc)
            _remove(final)

    _clean_stale_tmp(root, final.name)
    tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _build(tmp, spec, settings, key, mean_a, std_a, split, progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if final.exists():  # another process finished the same dataset first
                log.info("%s was completed by another process; using it", final)
                return load_prepared(final)
            raise
    finally:
        if tmp.exists():
            _remove(tmp)
    log.info("prepared %s", final)
    return load_prepared(final)


def _preprocess_record(rec: Record, source: Source, size: int, channels: int, mean, std) -> np.ndarray:
    """One record as it is stored: its value range (declared, or its dtype's when the source says
    so), resized, channel-converted and normalised; errors name the file (and slice)."""
    vr = rec.value_range
    if vr is None and source.intensity == "dtype":
        vr = dtype_range(rec.image)
    return preprocess(rec.image, value_range=vr, size=size, channels=channels, mean=mean, std=std,
                      name=rec.source if rec.slice is None else f"{rec.source} (slice {rec.slice})")


def time_preparation(spec, *, image_size: int, channels: int = 3, mean: tuple[float, ...] = IMAGENET_MEAN,
                     std: tuple[float, ...] = IMAGENET_STD, warmup: int = 4,
                     sample: int = 16) -> tuple[float, float] | None:
    """Measured (fixed, per-image) seconds of preparing ``spec``: open the source, then read,
    decode, preprocess and hash its first ``warmup + sample`` images (written nowhere); the
    per-image time comes from the last ``sample`` (the first ones carry one-off costs, counted
    as fixed). ``None`` when the source cannot be read yet or has no image.
    """
    from .spec import parse_dataset_spec

    try:
        spec = parse_dataset_spec(spec)
        mean_a, std_a = _norm_stats(mean, std, channels)
        t0 = time.perf_counter()
        source = READERS.get(spec.format).read(spec, ReadContext(image_size=int(image_size)))
        items = iter_checked(source, skip_bad=True, skipped=[])
        t1 = time.perf_counter()
        n, t_warm = 0, None
        for rec in items:
            arr = _preprocess_record(rec, source, int(image_size), channels, mean_a, std_a)
            hashlib.sha256(np.ascontiguousarray(arr).tobytes()).digest()
            n += 1
            if n == warmup:
                t_warm = time.perf_counter()
            if n >= warmup + sample:
                break
        t2 = time.perf_counter()
    except Exception as exc:  # a dry run must not fail on a source it cannot read yet
        log.debug("preparation not timed (%s: %s)", type(exc).__name__, exc)
        return None
    if n == 0:
        return None
    if t_warm is None or n == warmup:  # fewer images than the warm-up: all of them count
        per_image = (t2 - t1) / n
        return t1 - t0, per_image
    per_image = (t2 - t_warm) / (n - warmup)
    return (t1 - t0) + max(0.0, (t_warm - t1) - warmup * per_image), per_image


def _build(tmp: Path, spec, settings: dict, key: str, mean, std, split, progress: bool) -> None:
    t0 = time.perf_counter()
    size, channels = settings["image_size"], settings["channels"]
    rd = READERS.get(spec.format)
    source = rd.read(spec, ReadContext(image_size=size))
    multilabel = source.task_type == "multilabel"
    skipped: list[dict] = []
    writer = _NpyAppender(tmp / "images.npy", (channels, size, size))
    hasher = hashlib.sha256()
    rows: list[dict] = []
    labels: list = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"prepare {spec.format}", unit="img", leave=False)
    try:
        for rec in iter_checked(source, skip_bad=spec.skip_bad, skipped=skipped):
            try:
                arr = _preprocess_record(rec, source, size, channels, mean, std)
            except DataError as exc:
                if not spec.skip_bad:
                    raise
                skipped.append({"file": rec.source, "reason": str(exc), "bad": True})
                continue
            hasher.update(writer.append(arr))
            rows.append(_row(rec, source.classes, multilabel))
            labels.append(rec.label)
            if bar is not None:
                bar.update(1)
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    writer.close()
    if not rows:
        raise EmptyDatasetError(
            f"{spec.format} dataset: no usable images"
            + (f" ({len(skipped)} files skipped: {skipped[0]['reason']} …)" if skipped else "")
            + "; check the path and the class options"
        )

    manifest = pd.DataFrame(rows)
    # one patient written two ways ("007" and 7, "P01" and "p01") is one patient: the colliding
    # spellings are replaced by their normalised form, so the manifest groups as the split does
    keys, collisions = normalize_patient_ids(manifest["patient"], f"{spec.format} dataset")
    if collisions:
        collided = np.isin(keys.astype(str), list(collisions)) & pd.notna(keys)
        manifest.loc[collided, "patient"] = keys[collided]
    if multilabel:
        y = np.stack([np.asarray(lab, dtype=np.float32) for lab in labels])
    else:
        y = np.asarray(labels, dtype=np.int64)
    manifest["split"] = _splits(manifest, y, split, source)
    n_without = int(sum(k is None for k in keys))
    split_level = _split_level(spec, split, source, manifest, n_without)
    bad = [s for s in skipped if s.get("bad")]
    if bad:
        log.warning("%s dataset: skipped %d bad file(s) (skip_bad: true), e.g. %s: %s; all are listed in meta.json "
                    "'skipped'", spec.format, len(bad), bad[0]["file"], bad[0]["reason"])
    np.save(tmp / "labels.npy", y)
    _write_parquet(manifest, tmp / "manifest.parquet")
    hasher.update(y.tobytes())
    hasher.update(pd.util.hash_pandas_object(manifest.astype(str), index=True).to_numpy().tobytes())
    digest = hasher.hexdigest()
    counts = _class_counts(y, source.classes, multilabel)
    from ..integrity import record_files

    meta = {
        "files": record_files({name: tmp / name for name in PREPARED_FILES}),
        "layout": LAYOUT_VERSION,
        "format": spec.format,
        "reader_version": READERS.get(spec.format).version,
        "key": key,
        "digest": digest,
        "spec": _spec_json(spec),
        "settings": settings,
        "classes": list(source.classes),
        "task_type": source.task_type,
        "n": int(len(y)),
        "shape": [int(len(y)), channels, size, size],
        "class_counts": counts,
        "split_counts": {str(k): int(v) for k, v in manifest["split"].value_counts().sort_index().items()},
        "n_patients": len({k for k in keys if k is not None}) or None,
        "split_level": split_level,
        "n_without_patient": n_without,
        "patient_ids": {
            "compared_as": "strings, stripped, case-folded, numeric ids without leading zeros",
            "collisions": collisions,  # normalised id -> the spellings (repr) that collapsed onto it
        },
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(tmp / "meta.json", meta, indent=1, fsync=True)  # last: its presence marks the folder complete


def _row(rec: Record, classes: list[str], multilabel: bool) -> dict:
    row = {"id": rec.id, "patient": rec.patient}
    if multilabel:
        vec = np.asarray(rec.label, dtype=np.float32)
        for c, v in zip(classes, vec):
            row[f"label_{c}"] = float(v)
    else:
        row["label"] = int(rec.label)
        row["class"] = classes[int(rec.label)]
    row["source"] = rec.source
    row["slice"] = rec.slice
    row["orig_split"] = rec.split
    h, w = rec.image.shape[:2]
    row["orig_height"], row["orig_width"] = int(h), int(w)
    row.update(rec.extra)
    return row


def _splits(manifest: pd.DataFrame, y: np.ndarray, split: SplitSpec | None, source: Source) -> np.ndarray:
    if split is None:
        return np.full(len(manifest), "external", dtype=object)
    if source.use_published_split and manifest["orig_split"].notna().all():
        out = manifest["orig_split"].to_numpy(dtype=object)
        pats = manifest["patient"]
        if pats.notna().any():
            per = manifest[pats.notna()].groupby("patient")["orig_split"].nunique()
            if (per > 1).any():
                log.warning("the published split puts %d patients in more than one split", int((per > 1).sum()))
        return out
    return assign_splits(y, manifest["patient"].to_numpy(dtype=object), split)


#: what to set so that a format gets patient ids
_PATIENT_HINT = {
    "folder": "set patient_regex (a regex whose group finds the patient id in the file name or, with "
              "patient_regex_on: path, in the relative path)",
    "csv": "set patient_column, or patient_regex (a group in the image path)",
    "medmnist": "MedMNIST has no patient ids; use_published_split: true keeps its published split",
}


def _split_level(spec, split: SplitSpec | None, source: Source, manifest: pd.DataFrame, n_without: int) -> str:
    """How the dataset was split, for meta.json and the log.

    ``patient`` (every image has a patient id), ``image`` (none has: a slice-level split, where
    slices of one patient can be in train and test), ``mixed`` (some have none: each of those is
    its own group), ``published`` (the source's own split kept) or ``none`` (not split: an
    external set).
    """
    if split is None:
        return "none"
    if source.use_published_split and manifest["orig_split"].notna().all():
        return "published"
    n = len(manifest)
    if n_without == 0:
        return "patient"
    hint = _PATIENT_HINT.get(spec.format, "give the images patient ids")
    if n_without == n:
        log.warning("%s dataset: no image has a patient id, so its train/test split is image-level (slice-level): "
                    "slices of one patient can fall into both train and test, which makes test AUCs optimistic. "
                    "To split by patient, %s. meta.json records split_level: image.", spec.format, hint)
        return "image"
    log.warning("%s dataset: %d of %d images have no patient id; each of them is split on its own (image-level), "
                "the others by patient. To split all by patient, %s.", spec.format, n_without, n, hint)
    return "mixed"


def _class_counts(y: np.ndarray, classes: list[str], multilabel: bool) -> dict[str, int]:
    if multilabel:
        return {c: int(np.nansum(y[:, i] > 0.5)) for i, c in enumerate(classes)}
    cnt = Counter(y.tolist())
    return {c: int(cnt.get(i, 0)) for i, c in enumerate(classes)}


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    df = df.copy()
    for col in ("patient", "orig_split", "id", "source"):
        if col in df:
            df[col] = df[col].astype("string")
    if "slice" in df:
        df["slice"] = df["slice"].astype("Int64")
    df.to_parquet(path, index=False)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _clean_stale_tmp(root: Path, name: str) -> None:
    """Delete temporary folders of ``name`` left by processes that no longer run."""
    for p in root.glob(f".tmp-{name}-*"):
        try:
            pid = int(p.name[len(f".tmp-{name}-"):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("removing %s left by an interrupted prepare (pid %d)", p, pid)
            _remove(p)
        except PermissionError:  # someone else's live process
            pass


# --------------------------------------------------------------------------- loading


def verify_prepared(ds: PreparedDataset) -> None:
    """Raise :class:`DataError` naming the file when a prepared folder's data files no longer match
    the digests its ``meta.json`` recorded (``MEDAPT_VERIFY``: see :mod:`medapt.integrity`).
    Folders prepared before digests were recorded are accepted as they are."""
    from ..integrity import check_files

    damaged = check_files(ds.meta.get("files") or {}, Path(ds.path))
    if damaged:
        raise DataError(f"{damaged[0].file}: {damaged[0].problem}")


def load_prepared(path: Path) -> PreparedDataset:
    """Open a prepared folder written by :func:`prepare_dataset`; images stay memory-mapped.

    Raises :class:`DataError` if the folder is incomplete or inconsistent (a missing
    ``meta.json`` means an unfinished prepare: delete the folder and prepare again).
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        from ..errors import DataPathError

        raise DataPathError(f"prepared dataset {str(path)!r} does not exist; run `medapt prepare` first")
    if not meta_path.is_file():
        raise DataError(f"{path}: not a complete prepared dataset (no meta.json); delete it and prepare again")
    try:
        meta = json.loads(meta_path.read_text())
        images = np.load(path / "images.npy", mmap_mode="r")
        labels = np.load(path / "labels.npy")
        manifest = pd.read_parquet(path / "manifest.parquet")
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: prepared dataset is corrupt ({exc}); delete it and prepare again") from None
    n = meta.get("n")
    if (images.shape[0] != n or len(labels) != n or len(manifest) != n
            or list(images.shape) != list(meta.get("shape", []))):
        raise DataError(
            f"{path}: prepared dataset is inconsistent (images {images.shape}, labels {len(labels)}, "
            f"manifest {len(manifest)}, meta n={n}); delete it and prepare again"
        )
    return PreparedDataset(
        path=path, images=images, labels=labels, manifest=manifest, classes=list(meta["classes"]),
        task_type=meta["task_type"], digest=meta["digest"], meta=meta,
    )
