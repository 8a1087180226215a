"""A small multi-label chest-X-ray-*style* dataset made from the phantom: PNG images plus a
CheXpert-layout label CSV (``Path``, ``Patient``, one column per finding with 1 / 0 / −1
(uncertain) / blank (not mentioned)), so the ``csv`` reader's multi-label path, the uncertain-label
policies, sigmoid + BCE training and the per-label evaluation run offline.

The images are the phantom's brain-MRI-like ``disease`` slices (not chest X-rays); the findings
are derived from the slice's class: ``Abnormal`` (any class but normal) and one column per
disease class, so an image has up to two positive labels. A fraction of the labels is marked
uncertain (−1) or left blank, deterministically for ``seed``. Not a substitute for real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path, atomic_write_csv
from .phantom import iter_phantom
from .spec import PHANTOM_CLASSES

__all__ = ["write_phantom_csv", "PHANTOM_FINDINGS"]

#: the label columns of the phantom CSV
PHANTOM_FINDINGS = ["Abnormal"] + [c.capitalize() for c in PHANTOM_CLASSES["disease"][1:]]


def write_phantom_csv(out: str | Path, *, n_per_class: int = 40, size: int = 64, seed: int = 0,
                      uncertain: float = 0.1, blank: float = 0.05, slices_per_patient: int = 4) -> Path:
    """Write ``out/images/*.png`` and ``out/labels.csv``; return the CSV's path.

    ``uncertain`` / ``blank``: the fraction of label cells written as −1 / left empty (never the
    ``Abnormal`` column's blanks, so every image has at least one known label).

    >>> csv = write_phantom_csv(tmp_path, n_per_class=4)  # doctest: +SKIP
    """
    from PIL import Image

    if not 0 <= uncertain < 1 or not 0 <= blank < 1:
        raise ValueError(f"uncertain ({uncertain}) and blank ({blank}) are fractions in [0, 1)")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 14])
    classes = PHANTOM_CLASSES["disease"]
    rows = []
    for img, label, patient, si in iter_phantom("disease", n_per_class=n_per_class, size=size,
                                                slices_per_patient=slices_per_patient, seed=seed):
        name = f"images/{patient}-{si}.png"
        with atomic_path(out / name, suffix=".png") as tmp:
            Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(tmp, format="PNG")
        y = [float(label != 0)] + [float(label == k) for k in range(1, len(classes))]
        cells: list = []
        for j, v in enumerate(y):
            u = rng.random()
            if u < uncertain:
                cells.append(-1)
            elif u < uncertain + blank and j > 0:
                cells.append(None)
            else:
                cells.append(int(v))
        rows.append({"Path": name, "Patient": patient, **dict(zip(PHANTOM_FINDINGS, cells))})
    df = pd.DataFrame(rows)
    for c in PHANTOM_FINDINGS:
        df[c] = df[c].astype("Int64")
    return atomic_write_csv(df, out / "labels.csv")
