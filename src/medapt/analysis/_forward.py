"""One forward pass of a frozen :class:`~medapt.models.UnitModel` that records GAP features at
several cut points at once (shared by per-unit similarity and the cut-point probe).

Units are chained with ``forward_units``-style calls, unit by unit, so the pass stops after the
deepest requested cut point and each unit runs once per batch. Images are read batch by batch
(``images[rows]``), so a float16 memmap of a whole dataset is never copied into memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, EmptyDatasetError, ShapeMismatchError, UnknownNameError
from ..models.model import GapHead, UnitModel

#: ``alloc(cut_point, shape) -> array`` receives the GAP features of one cut point, ``(N, C_k)``.
Alloc = Callable[[int, tuple[int, int]], np.ndarray]


def resolve_cut_points(model: UnitModel, units: Iterable[int | str] | None) -> list[int]:
    """Cut points (1-based, sorted, unique) from cut points and/or unit names; ``None`` = all."""
    if units is None:
        return list(range(1, model.n_units + 1))
    out = set()
    for u in units:
        if isinstance(u, str):
            if u not in model.unit_names:
                raise UnknownNameError("unit", u, model.unit_names,
                                       hint=f"This {model.backbone} has units {', '.join(model.unit_names[:4])}, ….")
            out.add(model.unit_names.index(u) + 1)
        else:
            k = int(u)
            if not 1 <= k <= model.n_units:
                raise ConfigError(
                    f"cut point {k} out of range: this {model.backbone} has cut points 1..{model.n_units} "
                    "(1 = after the stem)."
                )
            out.add(k)
    if not out:
        raise ConfigError("no cut points requested; pass units=None for all of them.")
    return sorted(out)


def _check_images(images: Any, rows: Sequence[int] | np.ndarray | None) -> tuple[Any, np.ndarray | None, int]:
    if hasattr(images, "detach"):  # a CPU tensor becomes a view, not a copy
        images = images.detach().cpu().numpy()
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise ShapeMismatchError(f"images must be (N, C, H, W); got shape {shape}.")
    if rows is not None:
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise ConfigError(f"rows must be a 1-D array of integer row indices; got {rows.dtype} shape {rows.shape}.")
        if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
            raise ConfigError(f"rows must lie in [0, {shape[0]}) for images of shape {shape}; "
                              f"found {rows.min()}..{rows.max()}.")
    n = shape[0] if rows is None else len(rows)
    if n == 0:
        raise EmptyDatasetError(f"no images to run: images shape {shape}, {0 if rows is None else len(rows)} rows selected.")
    return images, rows, n


def _batches(images: Any, rows: np.ndarray | None, n: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float32 batch)``; only one batch of ``images`` is ever read into memory."""
    for s in range(0, n, batch_size):
        idx = slice(s, min(s + batch_size, n)) if rows is None else rows[s : s + batch_size]
        yield s, np.asarray(images[idx], dtype=np.float32)


@torch.no_grad()
def gap_pass(
    model: UnitModel,
    images: Any,
    cut_points: list[int],
    *,
    rows: Sequence[int] | np.ndarray | None,
    batch_size: int,
    alloc: Alloc,
) -> dict[int, np.ndarray]:
    """Run ``model`` once in eval mode and store the GAP output after each unit in ``cut_points``.

    Returns ``{k: alloc(k, (N, C_k)) filled}``. The model's train/eval flags are restored.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size}.")
    images, rows, n = _check_images(images, rows)
    param = next(model.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    wanted, last = set(cut_points), max(cut_points)
    out: dict[int, np.ndarray] = {}
    was_training = model.training
    model.eval()  # BatchNorm in inference mode, dropout off: the backbone is frozen
    try:
        for s, xb in _batches(images, rows, n, batch_size):
            x = torch.from_numpy(xb).to(device=device, dtype=dtype)
            for k, unit in enumerate(model.units[:last], start=1):
                x = unit(x)
                if k in wanted:
                    f = GapHead.pool(x).to(torch.float64).cpu().numpy()
                    if k not in out:
                        out[k] = alloc(k, (n, f.shape[1]))
                    out[k][s : s + len(f)] = f
    finally:
        model.train(was_training)
    return {k: out[k] for k in cut_points}
