"""Pixel helpers shared by the readers: decode 2-D image files, scale, resize, normalise.

Decoding is Pillow's; resizing uses Pillow's convolution resampler on float32 ('F' mode), which
anti-aliases when shrinking. Nothing here knows about labels or manifests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CorruptFileError, InvalidImageError

# ITU-R BT.601 luma, the weights Pillow uses for convert("L")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def load_image_file(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG/TIFF/BMP file with Pillow.

    Returns (H, W) for grayscale (8-bit ``L``, 16-bit ``I;16``, 32-bit ``I``/``F``) or
    (H, W, 3) for colour; palette images are expanded, alpha is dropped. The array keeps the
    file's integer dtype so that ``intensity: dtype`` can scale by the dtype range.
    Raises :class:`CorruptFileError` naming the file when Pillow cannot decode it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # decode now: a truncated file fails here, not later
                return _pil_to_array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise CorruptFileError(
            f"{path}: cannot decode image ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt — re-export it, delete it, or set skip_bad: true to skip such files"
        ) from None


def _pil_to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im)
        if mode == "1":
            arr = arr.astype(np.uint8)
        return arr
    if mode == "LA":
        return np.asarray(im.getchannel("L"))
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.asarray(im.convert("RGB"))
    if mode == "RGB":
        return np.asarray(im)
    # CMYK, YCbCr, LAB, HSV…: let Pillow convert
    return np.asarray(im.convert("RGB"))


def dtype_range(arr: np.ndarray) -> tuple[float, float]:
    """(0, max) of an integer dtype (uint8 → 255, uint16 → 65535); (0, 1) for floats."""
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return (float(min(info.min, 0)), float(info.max))
    if arr.dtype == bool:
        return (0.0, 1.0)
    return (0.0, 1.0)


def to_unit(image: np.ndarray, value_range: tuple[float, float] | None, name: str) -> np.ndarray:
    """Scale ``image`` to [0, 1] float32 using ``value_range`` (clipped) or its own min–max.

    Raises :class:`InvalidImageError` naming ``name`` for NaN/inf values or a constant image.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (1, 3)):
        raise InvalidImageError(
            f"{name}: expected a 2-D grayscale or (H, W, 3) colour image, got shape {x.shape}"
        )
    if not np.isfinite(x).all():
        raise InvalidImageError(
            f"{name}: image contains NaN or infinite values; fix the file or set skip_bad: true"
        )
    xmin, xmax = float(x.min()), float(x.max())
    if xmax <= xmin:
        raise InvalidImageError(
            f"{name}: image is constant (every pixel = {xmin:g}), so it carries no signal; "
            "remove it or set skip_bad: true"
        )
    if value_range is None:
        lo, hi = xmin, xmax
    else:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            raise InvalidImageError(
                f"{name}: invalid intensity range ({lo:g}, {hi:g}); the volume or window is constant "
                "or NaN — check the file (or the window in the config) or set skip_bad: true"
            )
    y = (x - lo) * (1.0 / (hi - lo))
    np.clip(y, 0.0, 1.0, out=y)
    return y


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """(H, W) or (H, W, C) float32 → (size, size[, C]) with Pillow's anti-aliased bilinear filter.

    Non-square images are stretched to the square, as Keras' ``target_size`` does (Mehmood et al.).
    """
    if x.shape[0] == size and x.shape[1] == size:
        return x
    if x.ndim == 2:
        return _resize2d(x, size)
    return np.stack([_resize2d(x[..., c], size) for c in range(x.shape[2])], axis=-1)


def _resize2d(x: np.ndarray, size: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), mode="F")
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def to_chw(unit: np.ndarray, channels: int) -> np.ndarray:
    """[0, 1] image (H, W) or (H, W, 3) → (channels, H, W): grayscale replicated, colour → luma for 1."""
    if unit.ndim == 3 and unit.shape[2] == 1:
        unit = unit[..., 0]
    if unit.ndim == 2:
        return np.broadcast_to(unit, (channels, *unit.shape))
    if channels == 3:
        return np.moveaxis(unit, -1, 0)
    if channels == 1:
        return (unit @ _LUMA)[None]
    raise InvalidImageError(f"cannot turn a colour image into {channels} channels (use 1 or 3)")


def preprocess(
    image: np.ndarray,
    *,
    value_range: tuple[float, float] | None,
    size: int,
    channels: int,
    mean: np.ndarray,
    std: np.ndarray,
    name: str,
) -> np.ndarray:
    """Raw image → (channels, size, size) float32 normalised with the backbone's mean/std.

    ``mean``/``std``: (channels,) arrays, applied to [0, 1] inputs as torchvision/timm do.
    """
    unit = resize(to_unit(image, value_range, name), size)
    chw = to_chw(unit, channels)
    return (chw - mean[:, None, None]) / std[:, None, None]
