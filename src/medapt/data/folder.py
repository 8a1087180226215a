"""``folder``: one sub-folder per class (ImageFolder layout), e.g. the HMS atlas images or
Kaggle's Brain Tumor Classification (``Training/<class>/…``, ``Testing/<class>/…``).

* Classes are the sub-folder names, mapped by ``class_map``; ``ignore`` drops some (Mehmood et
  al. do not use Kaggle's ``no_tumor``).
* If every sub-folder is a split name (``Training``/``Testing``/``train``/``val``/``test``…), the
  classes are read inside each, and the published split is kept in ``orig_split``
  (``use_published_split: true`` uses it instead of a fresh patient-level split).
* Grayscale 8/16-bit, RGB, RGBA (alpha dropped), palette PNG and JPEG are decoded by Pillow.
  Non-image files are ignored and counted; an empty class folder is an error.
* No patient ids unless ``patient_regex`` gives them (from the file name or the relative path):
  HMS and Kaggle BTTC ship slices of one patient as separate files, so without it the split is
  slice-level. A file the regex does not match is an error naming both (or skipped with
  ``skip_bad``).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CorruptFileError, EmptyDatasetError, LabelError, MissingFieldError
from ._image import load_image_file
from .readers import LabelMapper, ReadContext, Record, Skipped, Source, check_path, iter_files, reader, task_type_for
from .spec import FolderSpec, compile_patient_regex

__all__ = ["read_folder", "SPLIT_DIRS", "compile_patient_regex", "patient_from_regex"]

#: folder names recognised as published splits (case-insensitive) → manifest split name
SPLIT_DIRS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test", "testing": "test"}


def _subdirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))


def patient_from_regex(rx: re.Pattern, text: str, file: str, what: str) -> str:
    """The patient id ``rx`` finds in ``text`` (its group ``patient``, else its one group).

    Raises :class:`MissingFieldError` naming ``file``, the regex and the text when it does not
    match (or its group is empty).
    """
    m = rx.search(text)
    pid = (m.group("patient") if "patient" in rx.groupindex else m.group(1)) if m else None
    if not pid:
        raise MissingFieldError(
            f"{file}: patient_regex {rx.pattern!r} does not match its {what} {text!r} (searched with re.search), so "
            "the file has no patient id; fix the regex, or set skip_bad: true to skip such files (they are listed "
            "in meta.json 'skipped')"
        )
    return pid


@reader("folder", version="2")
def read_folder(spec: FolderSpec, ctx: ReadContext) -> Source:
    """One record per image file: ``id`` = path relative to ``path``, label = its class folder."""
    root = check_path(spec.path, "image folder", kind="dir")
    top = _subdirs(root)
    if not top:
        raise EmptyDatasetError(f"{root}: no class sub-folders; expected <path>/<class>/<image files>")
    split_layout = all(d.name.lower() in SPLIT_DIRS for d in top)
    groups = [(SPLIT_DIRS[d.name.lower()], d) for d in top] if split_layout else [(None, root)]
    class_dirs = [(s, d) for s, g in groups for d in _subdirs(g)]
    found = sorted({d.name for _, d in class_dirs})
    mapper = LabelMapper(classes=spec.classes, class_map=spec.class_map, ignore=spec.ignore,
                         found=found, what="class folder")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in spec.extensions}
    rx = compile_patient_regex(spec.patient_regex)

    def items():
        # files outside any class folder are not labelled: count them
        for g_split, g in groups:
            for f in sorted(p for p in g.iterdir() if p.is_file() and not p.name.startswith(".")):
                yield Skipped(str(f), "not inside a class folder")
        for g_split, d in class_dirs:
            try:
                label = mapper(d.name, str(d))
            except LabelError as exc:
                yield Skipped(str(d), "class not in the mapping", exc)
                continue
            if label is None:
                yield Skipped(str(d), f"class {d.name!r} ignored")
                continue
            n_images = 0
            for f in iter_files(d):
                if f.suffix.lower() not in exts:
                    yield Skipped(str(f), f"not an image file ({f.suffix or 'no extension'})")
                    continue
                patient = None
                if rx is not None:
                    on_path = spec.patient_regex_on == "path"
                    try:
                        patient = patient_from_regex(rx, f.relative_to(root).as_posix() if on_path else f.name,
                                                     str(f), "path relative to the dataset" if on_path else "file name")
                    except MissingFieldError as exc:
                        yield Skipped(str(f), "no patient id (patient_regex does not match)", exc)
                        continue
                try:
                    image = load_image_file(f)
                except CorruptFileError as exc:
                    yield Skipped(str(f), "unreadable image", exc)
                    continue
                n_images += 1
                yield Record(image=image, id=f.relative_to(root).as_posix(), label=label, source=str(f),
                             patient=patient, split=g_split)
            if n_images == 0:
                yield Skipped(str(d), "empty class folder", EmptyDatasetError(
                    f"{d}: class folder {d.name!r} has no image files ({', '.join(sorted(exts))}); add "
                    "images, list the class under ignore, or set skip_bad: true"))

    return Source(classes=mapper.classes, task_type=task_type_for(mapper.classes), items=items(),
                  intensity=spec.intensity, use_published_split=spec.use_published_split and split_layout)
