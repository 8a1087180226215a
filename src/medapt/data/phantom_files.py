"""Phantom images as files: a folder of PNGs (one sub-folder per class) to try readers and `medapt predict` on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_path
from ..errors import ConfigError, UnknownNameError
from .phantom import generate
from .spec import PHANTOM_CLASSES

__all__ = ["write_phantom_images"]


def write_phantom_images(task: str, out_dir: str | Path, *, n: int = 4, shift: bool = False, seed: int = 0,
                         size: int = 64) -> list[Path]:
    """Write ``n`` phantom images per class of ``task`` as 8-bit PNGs ``out_dir/<class>/<class>_<i>.png``.

    Each image is min–max scaled to 0..255 (what ``format: folder`` reads back). Deterministic for
    ``seed``; ``shift`` gives the external-cohort (scanner-shift) variant. Returns the files.
    """
    if task not in PHANTOM_CLASSES:
        raise UnknownNameError("phantom task", task, PHANTOM_CLASSES)
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    images, labels, _ = generate(task, n_per_class=n, size=size, shift=shift, seed=seed, slices_per_patient=1)
    out, classes, written = Path(out_dir), PHANTOM_CLASSES[task], []
    for c, name in enumerate(classes):
        (out / name).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(labels == c)[:n]):
            img = images[i].astype(np.float64)
            lo, hi = float(img.min()), float(img.max())
            u8 = np.round(255 * (img - lo) / (hi - lo if hi > lo else 1.0)).astype(np.uint8)
            path = out / name / f"{name}_{j}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(u8, mode="L").save(tmp, format="PNG")
            written.append(path)
    return written
