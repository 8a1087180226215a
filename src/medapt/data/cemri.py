"""``cemri``: the CE-MRI brain-tumour dataset of Cheng et al. (2017), figshare ``.mat`` files.

Each ``<n>.mat`` is a MATLAB v7.3 file (HDF5 with a 512-byte user block) holding a struct
``cjdata`` with ``image`` (512×512 int16), ``label`` (1 meningioma, 2 glioma, 3 pituitary),
``PID`` (patient id, a char array), ``tumorBorder`` and ``tumorMask``. MATLAB stores arrays
column-major, so h5py sees every matrix transposed: the image is ``cjdata/image[()].T`` and a
char array comes back as a column of UTF-16 code units. The dataset is published as four zips
(``brainTumorDataPublic_1-766.zip`` …); ``path`` may be one ``.mat``, one zip, or a folder with
either (searched recursively). Older ``-v7`` (non-HDF5) files are read with
:func:`scipy.io.loadmat`. Several images per patient: the patient is ``PID``, so the split is
patient-level (an image-level split leaks patients).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InvalidImageError, LabelError, MissingFieldError
from .readers import LabelMapper, ReadContext, Record, Skipped, Source, check_path, reader, task_type_for
from .spec import CemriSpec

__all__ = ["read_cemri", "read_mat"]

_DEFAULT_MAP = {"1": "meningioma", "2": "glioma", "3": "pituitary"}
_HDF5_SIG = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(data: bytes) -> bool:
    # the superblock sits at 0, 512, 1024, 2048 … (MATLAB v7.3 uses a 512-byte user block)
    off = 0
    while off + 8 <= len(data) and off <= 1 << 20:
        if data[off:off + 8] == _HDF5_SIG:
            return True
        off = 512 if off == 0 else off * 2
    return False


def _char(arr) -> str:
    a = np.asarray(arr)
    if a.dtype.kind in "US":
        return str(a.ravel()[0]) if a.size else ""
    return "".join(chr(int(c)) for c in a.ravel(order="F") if int(c) != 0)


def read_mat(data: bytes, name: str) -> tuple[np.ndarray, str, str]:
    """Decode one CE-MRI ``.mat`` (bytes) → ``(image (H, W) in display orientation, raw label, PID)``.

    Raises :class:`CorruptFileError` (not a readable MAT file) or :class:`MissingFieldError`.
    """
    if _is_hdf5(data):
        import h5py

        try:
            with h5py.File(io.BytesIO(data), "r") as f:
                for field in ("cjdata", "cjdata/image", "cjdata/label", "cjdata/PID"):
                    if field not in f:
                        raise MissingFieldError(
                            f"{name}: field {field!r} not found (found {_fields(f)}); a CE-MRI file "
                            "holds cjdata.image, cjdata.label and cjdata.PID — is this the right dataset?"
                        )
                image = np.asarray(f["cjdata/image"][()]).T  # column-major MATLAB → row-major
                label = np.asarray(f["cjdata/label"][()]).ravel()
                pid = _char(f["cjdata/PID"][()])
        except MissingFieldError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CorruptFileError(
                f"{name}: cannot read the MATLAB v7.3 (HDF5) file ({type(exc).__name__}: {exc}); it is "
                "truncated or corrupt — extract it again or set skip_bad: true"
            ) from None
    elif data[:10] == b"MATLAB 5.0":
        from scipy.io import loadmat

        try:
            m = loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
        except Exception as exc:  # scipy raises assorted errors on damaged v5 files
            raise CorruptFileError(f"{name}: cannot read the MATLAB v5 file ({exc})") from None
        cj = m.get("cjdata")
        if cj is None or not all(hasattr(cj, k) for k in ("image", "label", "PID")):
            raise MissingFieldError(f"{name}: no cjdata struct with image, label and PID fields")
        image, label, pid = np.asarray(cj.image), np.atleast_1d(np.asarray(cj.label)), str(cj.PID)
    else:
        raise CorruptFileError(
            f"{name}: not a MATLAB file (neither v7.3/HDF5 nor v5 header); the file is corrupt or "
            "not from the CE-MRI dataset — extract it again or set skip_bad: true"
        )
    if label.size != 1:
        raise MissingFieldError(f"{name}: cjdata.label should hold one number, got {label.size}")
    if image.ndim != 2:
        raise InvalidImageError(f"{name}: cjdata.image should be 2-D, got shape {image.shape}")
    raw = float(label[0])
    return image, (str(int(raw)) if raw.is_integer() else str(raw)), pid.strip()


def _fields(f) -> list[str]:
    out: list[str] = []
    f.visit(lambda n: out.append(n) if len(out) < 12 else None)
    return out


def _mat_sources(root: Path) -> Iterator[tuple[str, str, object]]:
    """(display name, id, loader) for every .mat under ``root`` (files and members of zips)."""
    paths = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts))
    for p in paths:
        low = p.name.lower()
        if low.endswith(".mat"):
            yield str(p), p.stem, p.read_bytes
        elif low.endswith(".zip"):
            try:
                zf = zipfile.ZipFile(p)
            except (zipfile.BadZipFile, OSError) as exc:
                yield str(p), "", CorruptFileError(f"{p}: cannot open the zip ({exc}); download it again")
                continue
            with zf:
                for info in sorted(zf.infolist(), key=lambda i: i.filename):
                    if info.is_dir() or not info.filename.lower().endswith(".mat"):
                        continue
                    name = f"{p}:{info.filename}"
                    try:
                        data = zf.read(info)
                    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                        yield name, "", CorruptFileError(f"{name}: cannot extract ({exc}); download the zip again")
                        continue
                    yield name, Path(info.filename).stem, (lambda d=data: d)
        else:
            yield str(p), "", None  # not a .mat: ignored, counted


@reader("cemri", version="1")
def read_cemri(spec: CemriSpec, ctx: ReadContext) -> Source:
    """One record per ``.mat``: ``id`` = file stem (``"1"`` … ``"3064"``), ``patient`` = PID."""
    root = check_path(spec.path, "CE-MRI path")
    class_map = spec.class_map if spec.class_map is not None else (None if spec.classes else _DEFAULT_MAP)
    natural = None if spec.class_map is not None else list(_DEFAULT_MAP.values())
    mapper = LabelMapper(classes=spec.classes, class_map=class_map, ignore=spec.ignore, natural=natural,
                         what="cjdata.label")

    def items():
        for name, stem, load in _mat_sources(root):
            if load is None:
                yield Skipped(name, "not a .mat or .zip file")
                continue
            if isinstance(load, Exception):
                yield Skipped(name, "unreadable archive", load)
                continue
            try:
                image, raw, pid = read_mat(load(), name)
                label = mapper(raw, name)
            except (CorruptFileError, MissingFieldError, InvalidImageError, LabelError) as exc:
                yield Skipped(name, type(exc).__name__, exc)
                continue
            if label is None:
                yield Skipped(name, f"label {raw} ignored")
                continue
            yield Record(image=image, id=stem, label=label, source=name, patient=pid or None)

    return Source(classes=mapper.classes, task_type=task_type_for(mapper.classes), items=items())
