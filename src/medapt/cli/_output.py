"""Output helpers shared by the CLI modules: JSON or a plain table."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def add_experiment_args(p: argparse.ArgumentParser, what: str = "experiment YAML (see examples/quickstart.yaml)") -> None:
    """CONFIG, --out, -o/--override and --force: the arguments of every command that runs an experiment."""
    p.add_argument("config", help=what)
    p.add_argument("--out", help="run directory (default: runs/<experiment name>)")
    add_set_option(p)
    p.add_argument("--force", action="store_true", help="reuse a run directory made by a different config")


def add_set_option(p: argparse.ArgumentParser, help: str | None = None, dest: str = "override",
                   old: tuple[str, ...] = ("--override",)) -> None:
    """``-o/--set KEY=VALUE`` (repeatable): the one spelling of a key=value option in every command;
    earlier spellings (``--override``, ``--opt``) stay accepted, hidden from the help."""
    p.add_argument("-o", "--set", dest=dest, action="append", default=[], metavar="KEY=VALUE",
                   help=help or "dotted override, e.g. -o engine.device=cuda -o seeds=[0,1,2] (repeatable)")
    for spelling in old:
        p.add_argument(spelling, dest=dest, action="append", help=argparse.SUPPRESS)


class LazyChoices:
    """argparse ``choices`` read from a registry only when needed (validating a value, or showing a
    sub-command's help), so ``medapt --help`` imports no torch. ``load()`` returns the names; an
    unknown value raises :class:`~medapt.errors.UnknownNameError` with the closest names."""

    def __init__(self, load, kind: str = "name"):
        self._load, self._names, self.kind = load, None, kind

    def _get(self) -> list[str]:
        if self._names is None:
            self._names = list(self._load())
        return self._names

    def __contains__(self, value) -> bool:
        if value not in self._get():
            from ..errors import UnknownNameError

            raise UnknownNameError(self.kind, str(value), self._get())
        return True

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def registry_choices(module: str, attr: str, kind: str) -> LazyChoices:
    """The names of registry ``module.attr`` (its ``names()``, or the sequence itself), lazily."""
    import importlib

    def load():
        obj = getattr(importlib.import_module(module), attr)
        return obj.names() if hasattr(obj, "names") else obj

    return LazyChoices(load, kind)


def add_format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def emit_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
