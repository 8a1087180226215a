"""``inspect_source``: read a source without writing anything and summarise it."""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel

from ..errors import DataError
from ._image import dtype_range, to_unit
from .readers import READERS, ReadContext, Skipped
from .split import normalize_patient_id, patient_id_collisions

__all__ = ["inspect_source"]


def inspect_source(spec: BaseModel | dict, *, image_size: int = 64) -> dict:
    """Summarise what a reader sees: counts, patients, image sizes, and every skipped file.

    Unlike :func:`~medapt.data.prepare_dataset` it does not stop at the first bad file: every
    problem is listed under ``skipped`` (``bad: true``) with its reason, whatever ``skip_bad``
    says. Global problems (a missing path, a mapping CSV without the needed column) still raise.

    Returns a JSON-ready dict with at least ``n_images``, ``classes`` (name → count),
    ``n_patients`` (``None`` when the source has no patient ids; ids counted after
    :func:`~medapt.data.split.normalize_patient_id`), ``patient_id_collisions`` (normalised id →
    the spellings that collapse onto it), ``n_without_patient``, ``image_sizes``
    (``"HxW"`` → count), ``skipped`` (list of ``{file, reason, bad}``), plus ``format``,
    ``task_type``, ``n_skipped`` and ``n_bad``.

    Example:
        >>> inspect_source({"format": "phantom", "task": "grade", "n_per_class": 4})["classes"]
        {'low_grade': 4, 'high_grade': 4}
    """
    from .spec import parse_dataset_spec

    spec = parse_dataset_spec(spec)
    source = READERS.get(spec.format).read(spec, ReadContext(image_size=image_size))
    multilabel = source.task_type == "multilabel"
    counts = np.zeros(len(source.classes), dtype=np.int64)
    patients: list = []
    n_without = 0
    sizes: Counter[str] = Counter()
    skipped: list[dict] = []
    seen: set[str] = set()
    n = 0
    for item in source.items:
        if isinstance(item, Skipped):
            d = item.as_dict()
            if item.error is not None:
                d["reason"] = str(item.error)
            skipped.append(d)
            continue
        name = item.source if item.slice is None else f"{item.source} (slice {item.slice})"
        if item.id in seen:
            skipped.append({"file": item.source, "reason": f"duplicate image id {item.id!r}", "bad": True})
            continue
        try:
            vr = item.value_range
            if vr is None and source.intensity == "dtype":
                vr = dtype_range(item.image)
            to_unit(item.image, vr, name)
        except DataError as exc:
            skipped.append({"file": item.source, "reason": str(exc), "bad": True})
            continue
        seen.add(item.id)
        n += 1
        if multilabel:
            counts += (np.nan_to_num(np.asarray(item.label, dtype=np.float32)) > 0.5).astype(np.int64)
        else:
            counts[int(item.label)] += 1
        if normalize_patient_id(item.patient) is None:
            n_without += 1
        else:
            patients.append(item.patient)
        h, w = item.image.shape[:2]
        sizes[f"{h}x{w}"] += 1
    return {
        "format": spec.format,
        "task_type": source.task_type,
        "n_images": n,
        "classes": {c: int(k) for c, k in zip(source.classes, counts)},
        "n_patients": len({normalize_patient_id(p) for p in patients}) or None,
        "patient_id_collisions": patient_id_collisions(patients),
        "n_without_patient": n_without,
        "image_sizes": dict(sizes.most_common()),
        "n_skipped": len(skipped),
        "n_bad": sum(1 for s in skipped if s.get("bad")),
        "skipped": skipped,
    }
