"""``medmnist``: a local MedMNIST ``{flag}_{size}.npz`` (Yang et al., MedMNIST v2, 2023).

Keys ``train_images``/``train_labels``, ``val_*``, ``test_*``; images (N, H, W) uint8 or
(N, H, W, 3); labels (N, 1) class indices or (N, L) 0/1 multi-label (ChestMNIST). The file is
read where it is: medapt never downloads it (``pip install medmnist`` and its ``download=True``
do that, if you want). The published splits are kept by default. 3-D MedMNIST+ volumes are
not supported (they are not 2-D images).
"""

from __future__ import annotations

import zipfile

import numpy as np

from ..errors import ConfigError, CorruptFileError, InvalidImageError, LabelError, MissingFieldError
from .readers import LabelMapper, ReadContext, Record, Skipped, Source, check_path, reader, task_type_for
from .spec import MedmnistSpec

__all__ = ["read_medmnist"]

_PARTS = ("train", "val", "test")


@reader("medmnist", version="1")
def read_medmnist(spec: MedmnistSpec, ctx: ReadContext) -> Source:
    """One record per image: ``id`` = ``<part>_<index>``, ``split`` = the published part."""
    path = check_path(spec.path, "MedMNIST .npz", kind="file")
    try:
        npz = np.load(path, allow_pickle=False)
        keys = set(npz.files)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptFileError(f"{path}: cannot open the .npz ({type(exc).__name__}: {exc}); download it again") from None
    parts = [p for p in _PARTS if f"{p}_images" in keys]
    if not parts:
        raise MissingFieldError(
            f"{path}: no MedMNIST arrays (expected train_images/train_labels, val_*, test_*; found {sorted(keys)})"
        )
    for p in parts:
        if f"{p}_labels" not in keys:
            raise MissingFieldError(f"{path}: {p}_images has no matching {p}_labels array")
    try:
        labels = {p: np.asarray(npz[f"{p}_labels"]) for p in parts}  # small; images load per part
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptFileError(f"{path}: cannot read the labels ({exc}); download the file again") from None
    widths = {lab.reshape(len(lab), -1).shape[1] for lab in labels.values()}
    if len(widths) != 1:
        raise MissingFieldError(f"{path}: label arrays have different widths {sorted(widths)} across splits")
    width = widths.pop()
    multilabel = spec.task == "multilabel" or (spec.task == "auto" and width > 1)
    if multilabel:
        classes = list(spec.classes) if spec.classes else [str(i) for i in range(width)]
        if len(classes) != width:
            raise ConfigError(f"classes has {len(classes)} names but {path} has {width} labels")
        mapper = None
    else:
        if width != 1:
            raise LabelError(f"{path}: task multiclass needs (N, 1) labels, found width {width}")
        n_cls = int(max(int(lab.max()) for lab in labels.values())) + 1
        natural = [str(i) for i in range(n_cls)]
        if spec.classes is not None and spec.class_map is None and len(spec.classes) == n_cls \
                and set(spec.classes) != set(natural):
            # classes given as names for indices 0..C-1
            class_map = dict(zip(natural, spec.classes))
        else:
            class_map = spec.class_map
        mapper = LabelMapper(classes=spec.classes, class_map=class_map, ignore=spec.ignore,
                             natural=natural if class_map is None else None, found=natural, what="label")
        classes = mapper.classes

    def items():
        for p in parts:
            try:
                imgs = np.asarray(npz[f"{p}_images"])
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                yield Skipped(f"{path}:{p}_images", "unreadable array",
                              CorruptFileError(f"{path}: cannot read {p}_images ({exc}); download the file again"))
                continue
            if imgs.ndim == 4 and imgs.shape[-1] not in (1, 3) or imgs.ndim not in (3, 4):
                raise InvalidImageError(
                    f"{path}: {p}_images has shape {imgs.shape}; expected (N, H, W) or (N, H, W, 3) — "
                    "3-D MedMNIST volumes are not supported"
                )
            lab = labels[p].reshape(len(labels[p]), -1)
            if len(lab) != len(imgs):
                raise MissingFieldError(f"{path}: {p}_images has {len(imgs)} rows but {p}_labels has {len(lab)}")
            for i in range(len(imgs)):
                where = f"{path}:{p}[{i}]"
                if multilabel:
                    label = lab[i].astype(np.float32)
                else:
                    try:
                        label = mapper(str(int(lab[i, 0])), where)
                    except LabelError as exc:
                        yield Skipped(where, "label not in the mapping", exc)
                        continue
                    if label is None:
                        yield Skipped(where, f"label {int(lab[i, 0])} ignored")
                        continue
                yield Record(image=imgs[i], id=f"{p}_{i}", label=label, source=where, split=p)
            del imgs

    return Source(classes=classes, task_type=task_type_for(classes, multilabel), items=items(),
                  intensity=spec.intensity, use_published_split=spec.use_published_split)
