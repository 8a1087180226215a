"""``prepare``: a dataset spec → prepared arrays (float16 memmap + manifest) in the data root."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data import inspect_source, parse_dataset_spec, prepare_dataset, source_classes
from ...data.prepare import LAYOUT_VERSION, prepared_folder, time_preparation
from ...data.spec import SplitSpec
from ...errors import DataError
from . import Estimate, StepKind, register_kind

log = logging.getLogger("medapt.suite")


@dataclass(frozen=True)
class PrepareKey:
    spec: dict[str, Any]
    split: dict[str, Any] | None
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = LAYOUT_VERSION  # the prepared-data layout: a new one (e.g. new split rules) re-prepares


def _naming(exc: Exception, what: str) -> Exception:
    """``exc`` with ``what`` in front of its message, of the same class when it can be."""
    try:
        return type(exc)(f"{what}: {exc}")
    except TypeError:
        return DataError(f"{what}: {exc}")


def _split_sizes(n: int, k: int, split: dict[str, Any] | None) -> dict[str, int]:
    """Images per split of ``n`` images in ``k`` classes: by the split's fractions, or all
    ``external`` for a dataset without one."""
    if split is None:
        return {"n": n, "classes": k, "train": 0, "val": 0, "test": 0, "external": n}
    return {"n": n, "classes": k, "external": 0, **{s: int(round(n * split[s])) for s in ("train", "val", "test")}}


@register_kind
class Prepare(StepKind):
    name = "prepare"
    description = "read a dataset once into float16 memory-mapped arrays + a manifest, split by patient"
    Key = PrepareKey
    memory_gb = 2.0

    def run(self, ctx, step, workdir: Path) -> dict:
        k = step.key
        split = SplitSpec(**k.split) if k.split is not None else None
        try:
            ds = prepare_dataset(parse_dataset_spec(k.spec), ctx.data_root, image_size=k.image_size,
                                 channels=k.channels, mean=tuple(k.mean), std=tuple(k.std), split=split,
                                 progress=ctx.progress)
        except DataError as exc:  # say which of the experiment's datasets it is about
            raise _naming(exc, f"dataset {step.label!r} ({k.spec.get('format')}"
                          + (f" at {k.spec['path']}" if k.spec.get("path") else "") + ")") from None
        counts = {s: int(len(ds.indices(s))) for s in ("train", "val", "test", "external")}
        return {"path": str(Path(ds.path).resolve()), "digest": ds.digest, "n": int(len(ds.labels)),
                "classes": list(ds.classes), "task_type": ds.task_type, "splits": counts}

    def artefacts(self, step, result: dict[str, Any]) -> dict[str, Path]:
        """The prepared folder's data files (it lives in the data root, shared between runs; its
        meta.json is not among them: preparing the same data again rewrites its timestamps)."""
        from ...data.prepare import PREPARED_FILES

        root = Path(result["path"])
        return {str(root / name): root / name for name in PREPARED_FILES}

    def size(self, step, store) -> dict[str, int] | None:
        """Images per split and classes: exact when prepared, else from the spec (``None``: unknown)."""
        info = store.info(step)
        if info is not None:
            r = info["result"]
            return {**r["splits"], "n": r["n"], "classes": len(r["classes"])}
        spec = parse_dataset_spec(step.key.spec)
        try:
            if spec.format == "phantom":  # sized by its spec, nothing to read
                k = len(source_classes(spec))
                n = spec.n_per_class * k
            else:  # reads the source without writing anything
                summary = inspect_source(spec)
                n, k = int(summary["n_images"]), len(summary["classes"])
        except Exception as exc:  # a dry run must not fail on a source it cannot read yet
            log.warning("dry run: cannot size dataset %s (%s)", step.label, exc)
            return None
        return _split_sizes(n, k, step.key.split)

    def dataset(self, ctx, step):
        return ctx.prepared(ctx.store.result(step)["path"])

    def dataset_size(self, step, est) -> dict[str, int] | None:
        """:meth:`size`; for a source not readable (yet), the declared ``n_images`` or the paper's
        size (noted in ``est.size_notes``)."""
        size = self.size(step, est.store)
        if size is None:
            from ..dryrun import declared_size, spec_of

            found = declared_size(spec_of(est.exp, step))
            if found is not None:
                n, k, where = found
                size = _split_sizes(n, k, step.key.split)
                est.size_notes.append(f"{step.label}: {n:,} images ({where})")
        return size

    def dataset_task_type(self, step, est) -> str:
        info = est.store.info(step)
        if info is not None:
            return info["result"]["task_type"]
        k = (est.dataset(step) or {}).get("classes") or 2
        return "binary" if k <= 2 else "multiclass"

    def estimate(self, step, est) -> Estimate:
        size = est.dataset(step)
        if size is None:
            return Estimate()
        k = step.key
        split = SplitSpec(**k.split) if k.split is not None else None
        if est.store.done(step):
            return Estimate(images=size["n"])
        folder = None
        if est.data_root is not None:
            try:  # the folder's key hashes the source's files: only for a readable source
                folder = prepared_folder(k.spec, est.data_root, image_size=k.image_size, channels=k.channels,
                                         mean=tuple(k.mean), std=tuple(k.std), split=split)
            except Exception:  # not readable yet: sized from declared counts, not timed
                return Estimate(images=size["n"], note="preparation not timed (source not readable yet)")
        if folder is not None and folder.exists():  # reused as it is (verified, not read again)
            return Estimate(images=size["n"], note=f"prepared already: {folder}")
        timed = est.probe(("prepare", step.id), lambda: time_preparation(
            k.spec, image_size=k.image_size, channels=k.channels, mean=tuple(k.mean), std=tuple(k.std)))
        if timed is None:
            return Estimate(images=size["n"], note="preparation not timed (source not readable yet)")
        fixed, per_image = timed
        return Estimate(images=size["n"], seconds=fixed + size["n"] * per_image,
                        note=f"{per_image * 1e3:.1f} ms/image measured on its first images")
