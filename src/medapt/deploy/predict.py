"""``medapt predict MODEL IMAGES…``: score new images with an exported model.

The preprocessing is the one ``medapt prepare`` applied to the model's training data, read from
the JSON beside the model: decode (Pillow for PNG/JPEG/TIFF/BMP, pydicom for DICOM with its
modality LUT and window), scale to [0, 1] (min–max, or the dtype range for ``intensity: dtype``),
resize to the model's input size (bilinear, non-square images stretched), grayscale replicated to
3 channels (colour kept; RGBA/palette converted), normalise with the backbone's mean/std.

Every input gives at least one row: a file that cannot be read (corrupt, not an image, constant)
gets ``status = skipped`` and the reason — never a silent drop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, MedaptError
from ..models.portable import read_metadata

__all__ = ["predict", "predictions_frame", "collect_inputs", "IMAGE_SUFFIXES"]

log = logging.getLogger("medapt.deploy")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"}


def collect_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and folders searched recursively for image and DICOM files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                log.warning("%s: no image files (%s) in this folder", p, ", ".join(sorted(IMAGE_SUFFIXES)))
            out += found
        else:
            out.append(p)  # a missing file becomes a 'skipped' row naming it
    return out


def _frames(path: Path, window) -> Iterator[tuple[Any, np.ndarray, tuple[float, float] | None]]:
    """(frame index or None, image, value range or None) of an image file or a DICOM file."""
    from ..data._image import load_image_file
    from ..data.dicom import NotDicomError, read_dicom_file

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if path.suffix.lower() not in (".dcm", ".dicom"):
        try:
            yield None, load_image_file(path), None
            return
        except MedaptError:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                raise
        # an unknown suffix that Pillow cannot read: try DICOM (files are often written without suffix)
    try:
        for _, img, vr, frame in read_dicom_file(path, None if window is None else tuple(window)):
            yield frame, img, vr
    except NotDicomError:
        raise ConfigError(f"{path}: neither an image Pillow can decode nor a DICOM image") from None


class _Runner:
    """Runs a ``.safetensors`` (medapt.models.load), TorchScript ``.pt`` or ``.onnx`` export on a batch."""

    def __init__(self, path: Path):
        self.path = path
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            try:
                import onnxruntime as ort
            except ImportError:
                raise ConfigError("scoring an .onnx model needs onnxruntime: pip install 'medapt[deploy]'") from None
            self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.kind = "onnx"
        elif suffix in (".pt", ".safetensors"):
            import torch

            from ..models import load

            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                self.model = torch.jit.load(str(path), map_location="cpu") if suffix == ".pt" else load(path)
            self.model.eval()
            self.kind = "torch"
        else:
            raise ConfigError(f"{path}: an exported model is .safetensors (timm), .pt (TorchScript) or .onnx; "
                              "write one with `medapt export`")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "onnx":
            return self.sess.run(None, {self.sess.get_inputs()[0].name: x})[0]
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(x)).float().numpy()


def _probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model_file: str | Path, images: Sequence[str | Path], *, batch_size: int = 32) -> list[dict[str, Any]]:
    """Score ``images`` (files, folders, DICOM) with the exported model ``model_file``; one dict per image.

    Each row: ``file``, ``frame`` (DICOM multi-frame index, else empty), ``status`` (``ok`` or
    ``skipped``), ``reason`` (why a file was skipped; converted sizes/channels are noted),
    ``prediction`` (class name), ``score`` (its probability) and ``p_<class>`` for every class.
    """
    from ..data._image import dtype_range, preprocess

    model_file = Path(model_file)
    if not model_file.is_file():
        raise ConfigError(f"model file {str(model_file)!r} does not exist; write one with `medapt export`")
    meta = read_metadata(model_file)
    size, mean, std = int(meta["image_size"]), np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
    pre = meta.get("preprocessing", {})
    classes, activation = list(meta.get("classes") or []), meta.get("activation", "softmax")
    n_out = int(meta.get("n_outputs", len(classes)))
    runner = _Runner(model_file)
    rows: list[dict[str, Any]] = []
    batch: list[tuple[dict, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        x = np.stack([a for _, a in batch]).astype(np.float32)
        probs = _probabilities(runner(x), activation)
        for (row, _), p in zip(batch, probs):
            if n_out == 1 and len(classes) == 2:  # one logit: the positive class's probability
                scores = {classes[0]: 1.0 - float(p[0]), classes[1]: float(p[0])}
            else:
                names = classes if len(classes) == len(p) else [str(i) for i in range(len(p))]
                scores = dict(zip(names, map(float, p)))
            best = max(scores, key=scores.get)
            row.update(status="ok", prediction=best, score=scores[best], **{f"p_{c}": v for c, v in scores.items()})
        batch.clear()

    for path in collect_inputs(images):
        try:
            for frame, img, vr in _frames(path, pre.get("window")):
                row: dict[str, Any] = {"file": str(path), "frame": "" if frame is None else frame, "status": "", "reason": ""}
                rows.append(row)
                notes = []
                if img.shape[0] != size or img.shape[1] != size:
                    notes.append(f"resized {img.shape[1]}x{img.shape[0]} -> {size}x{size}")
                if img.ndim == 2:
                    notes.append("grayscale replicated to 3 channels")
                if vr is None and pre.get("intensity") == "dtype" and np.issubdtype(img.dtype, np.integer):
                    vr = dtype_range(img)
                try:
                    x = preprocess(img, value_range=vr, size=size, channels=3, mean=mean, std=std, name=str(path))
                except MedaptError as exc:
                    row.update(status="skipped", reason=str(exc))
                    continue
                row["reason"] = "; ".join(notes)
                batch.append((row, x))
                if len(batch) >= batch_size:
                    flush()
        except MedaptError as exc:
            rows.append({"file": str(path), "frame": "", "status": "skipped", "reason": str(exc)})
    flush()
    return rows


def predictions_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`predict` as a table with a fixed column order (class probabilities last)."""
    first = ["file", "frame", "status", "prediction", "score", "reason"]
    df = pd.DataFrame(rows)
    for c in first:
        if c not in df:
            df[c] = ""
    rest = [c for c in df.columns if c not in first]
    return df[first + rest]
