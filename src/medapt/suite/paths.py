"""Relative input paths of an experiment YAML are relative to the YAML file, not to the working folder.

``load_experiment("examples/study.yaml")`` from anywhere reads ``data: {path: scans/}`` as
``examples/scans/``: the dataset paths of the source, the targets and their external sets
(``path``, ``image_root``, ``labels_csv``, ``mapping_csv``) and a ``backbone.weights`` file.
``data.root`` — the prepared-data *cache*, an output — stays relative to the working folder, as
``--out`` does. Absolute paths and ``~`` are kept as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["resolve_relative_paths", "PATH_FIELDS"]

#: the fields of a dataset spec that name input files or folders
PATH_FIELDS = ("path", "image_root", "labels_csv", "mapping_csv")


def _fix(value: Any, base: Path) -> Any:
    if not isinstance(value, (str, Path)) or not str(value).strip():
        return value
    p = Path(str(value))
    if p.is_absolute() or str(value).startswith("~"):
        return value
    return str((base / p).resolve())


def _spec(spec: Any, base: Path) -> Any:
    if not isinstance(spec, dict):
        return spec
    return {k: (_fix(v, base) if k in PATH_FIELDS else v) for k, v in spec.items()}


def resolve_relative_paths(data: dict[str, Any], config_path: str | Path) -> dict[str, Any]:
    """A copy of the raw config ``data`` with its relative input paths made absolute against the
    folder of ``config_path`` (see the module docstring for which fields)."""
    if not isinstance(data, dict):
        return data
    base = Path(config_path).expanduser().resolve().parent
    out = dict(data)
    d = out.get("data")
    if isinstance(d, dict):
        d = dict(d)
        if "source" in d:
            d["source"] = _spec(d["source"], base)
        if isinstance(d.get("targets"), dict):
            d["targets"] = {name: ({**t, **{k: _spec(t[k], base) for k in ("dataset", "external") if k in t}}
                                   if isinstance(t, dict) else t) for name, t in d["targets"].items()}
        out["data"] = d
    bb = out.get("backbone")
    if isinstance(bb, dict) and bb.get("weights") not in (None, "none", "embedded", "imagenet"):
        out["backbone"] = {**bb, "weights": _fix(bb["weights"], base)}
    return out
