"""Config helpers shared by every layer: YAML reading, dotted overrides, readable validation errors.

This module imports nothing of medapt but :mod:`medapt.errors`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean

__all__ = ["read_yaml", "apply_overrides", "format_validation_error"]


def read_yaml(path: str | Path, what: str = "config file", expect: tuple[type, ...] = (dict,),
              hint: str = " Start from examples/quickstart.yaml.") -> Any:
    """Read a YAML document (``yaml.safe_load``: config is data, never executed).

    ``what`` names the file in errors; the top level must be one of ``expect``.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r} does not exist.{hint}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {str(p)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, expect):
        kinds = " or ".join("a mapping" if t is dict else "a list" for t in expect)
        raise ConfigError(f"{what} {str(p)!r} must hold {kinds} at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``3``, ``1e-4``, ``[a, b]``, ``true``)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. engine.device=cpu)")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping in the config")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def format_validation_error(exc: Exception, source: str, fields_of=None) -> str:
    """Turn a pydantic ``ValidationError`` into lines naming each bad key, with suggestions.

    ``fields_of(loc)`` returns the valid field names at a location (for "did you mean").
    """
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():  # type: ignore[attr-defined]
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            hint = ""
            if fields_of is not None:
                close = did_you_mean(key, fields_of(err["loc"][:-1]))
                if close:
                    hint = " Did you mean " + ", ".join(repr(c) for c in close) + "?"
            lines.append(f"  - unknown key {loc!r}.{hint}")
        elif err["type"] == "missing":
            lines.append(f"  - {loc}: required key is missing")
        else:
            got = err.get("input")
            got_s = repr(got)
            if len(got_s) > 60:
                got_s = got_s[:57] + "..."
            lines.append(f"  - {loc}: {err['msg']} (got {got_s})")
    return "\n".join(lines)
