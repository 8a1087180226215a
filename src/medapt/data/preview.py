"""A labelled image grid of the phantom, so that a person can look at what the tests train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .phantom import generate
from .spec import PHANTOM_CLASSES

__all__ = ["phantom_preview"]


def phantom_preview(
    task: str, out: Path, *, n: int = 8, shift: bool = False, seed: int = 0, size: int = 64,
    slices_per_patient: int = 1,
) -> Path:
    """Write a PNG grid: one row per class (labelled), ``n`` images per row.

    Uses matplotlib's object API (no pyplot, no global backend change). The file is written to
    a temporary name in the same folder and renamed. Returns ``out``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if task not in PHANTOM_CLASSES:
        from ..errors import UnknownNameError

        raise UnknownNameError("phantom task", task, PHANTOM_CLASSES)
    if n < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--n must be at least 1, got {n}")
    classes = PHANTOM_CLASSES[task]
    images, labels, _ = generate(task, n_per_class=n, size=size, shift=shift, seed=seed,
                                 slices_per_patient=slices_per_patient)
    fig = Figure(figsize=(1.3 * n + 1.2, 1.35 * len(classes) + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(classes), n, squeeze=False)
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)[:n]
        for j in range(n):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(idx):
                ax.imshow(images[idx[j]], cmap="gray", vmin=0.0, vmax=1.0)
        axes[c, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"phantom · {task}{' · shift (external)' if shift else ''} · seed {seed}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=100)
    return out
