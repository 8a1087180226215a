"""``fewshot``: a per-class, patient-level subset of a task's training split (Cherti & Jitsev's
few-shot transfer).

For ``shots = k`` the step keeps exactly ``k`` training images of every class (multi-label: ``k``
images positive for every label, their union), drawn **patient by patient**: the class's
patients are shuffled with a generator seeded by (seed, draw, task), and a patient's images are
taken together until ``k`` are reached (the last patient's are cut to fit), so the few images
come from as few patients as the split allows. Validation and test rows are untouched. The
step writes ``rows.npy`` (the kept training rows); as a later step's ``data`` input it is the
prepared dataset with every other training row moved to the split ``unused`` (:meth:`Fewshot.dataset`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError
from . import Estimate, Input, StepKind, register_kind

__all__ = ["FewshotKey", "draw_shots", "shots_train_size", "subset_view"]


@dataclass(frozen=True)
class FewshotKey:
    task: str
    shots: int
    draw: int
    seed: int


def _rng(seed: int, draw: int, task: str) -> np.random.Generator:
    h = int(hashlib.sha256(f"{seed}|{draw}|{task}|fewshot".encode()).hexdigest()[:15], 16)
    return np.random.default_rng(h)


def draw_shots(labels: np.ndarray, patients: np.ndarray, rows: np.ndarray, classes: list[str], shots: int,
               rng: np.random.Generator, task: str = "") -> np.ndarray:
    """Rows (ascending) of a ``shots``-per-class, patient-level subset of ``rows``.

    ``labels``: (N,) class indices or (N, L) multi-label 0/1/NaN; ``patients``: (N,) ids (an image
    without one is its own patient). Raises :class:`ConfigError` naming the class and its count
    when a class has fewer than ``shots`` training images.

    >>> y = np.array([0, 0, 0, 1, 1, 1]); pid = np.array(["a", "a", "b", "c", "d", "d"])
    >>> len(draw_shots(y, pid, np.arange(6), ["neg", "pos"], 2, np.random.default_rng(0)))
    4
    """
    labels = np.asarray(labels)
    rows = np.asarray(rows, dtype=np.int64)
    keep: list[int] = []
    for c, name in enumerate(classes):
        member = rows[labels[rows, c] == 1] if labels.ndim == 2 else rows[labels[rows] == c]
        if len(member) < shots:
            raise ConfigError(
                f"task {task!r}: shots {shots} is more than the {len(member)} training image(s) of class {name!r}; "
                f"lower the largest shot level to at most {len(member)} (or use 'full')")
        pids = np.asarray([str(p) if p is not None and p == p and str(p) else f"__row{r}"
                           for p, r in zip(patients[member], member)])
        order = rng.permutation(np.unique(pids))
        need = shots
        for p in order:
            take = member[pids == p][:need]
            keep += take.tolist()
            need -= len(take)
            if need == 0:
                break
    return np.unique(np.asarray(keep, dtype=np.int64))


def shots_train_size(size: dict[str, int], shots: int) -> int:
    """Training images of a ``shots``-per-class draw from a dataset sized ``size`` (``train``,
    ``classes``): ``shots`` per class, at most the split's."""
    return min(size["train"], int(shots) * size["classes"])


def subset_view(ds, rows: np.ndarray, tag: str):
    """``ds`` with only ``rows`` left in its training split (the rest: split ``unused``)."""
    split = ds.manifest["split"].to_numpy().copy()
    train = split == "train"
    mask = np.zeros(len(split), dtype=bool)
    mask[rows] = True
    split[train & ~mask] = "unused"
    manifest = ds.manifest.copy()
    manifest["split"] = split
    # the digest keys the frozen-prefix cache: a subset is its own data
    return dataclasses.replace(ds, manifest=manifest, digest=f"{ds.digest}-{tag}")


@register_kind
class Fewshot(StepKind):
    name = "fewshot"
    description = "k training images per class (patient-level, seeded draw) of a task: few-shot transfer"
    Key = FewshotKey
    inputs = (Input("data", ("prepare",)),)
    memory_gb = 0.5

    def run(self, ctx, step, workdir: Path) -> dict:
        k = step.key
        ds = ctx.dataset(step.inputs["data"])
        patients = ds.manifest["patient"].to_numpy(dtype=object) if "patient" in ds.manifest else \
            np.full(len(ds), None, dtype=object)
        rows = draw_shots(ds.labels, patients, ds.indices("train"), list(ds.classes), k.shots,
                          _rng(k.seed, k.draw, k.task), k.task)
        with atomic_path(workdir / "rows.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, rows)
        n_patients = int(len({str(p) for p in patients[rows]}))
        return {"rows": int(len(rows)), "patients": n_patients, "shots": k.shots, "draw": k.draw}

    def dataset(self, ctx, step):
        """The task's prepared dataset with only the drawn training rows left in ``train``."""
        rows = np.load(ctx.store.path(step) / "rows.npy")
        return subset_view(ctx.dataset(step.inputs["data"]), rows, step.hash)

    def dataset_size(self, step, est) -> dict[str, int] | None:
        """``shots`` per class in training; the other splits as the task's."""
        base = est.dataset(step.inputs["data"])
        return None if base is None else {**base, "train": shots_train_size(base, step.key.shots)}

    def dataset_task_type(self, step, est) -> str:
        return est.task_type(step.inputs["data"])

    def estimate(self, step, est) -> Estimate:
        return Estimate(images=0, note="index draw")

    def tables(self, step, store):
        return {}
