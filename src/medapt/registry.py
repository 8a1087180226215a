"""A small name → object registry filled by a decorator, as in timm's ``register_model``.

Besides fixed names, a registry can hold *parametric families*: ``FAMILY@k`` names resolved by a
factory (``TTL@8`` → the TruncatedTL strategy cut after unit 8). Listing shows each family once,
as ``FAMILY@k``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")

_FAMILY_NAME = re.compile(r"^(?P<family>[A-Za-z][\w-]*)@(?P<arg>-?\d+)$")


class Registry(Generic[T]):
    """Names to objects, listable and filterable; unknown names raise with suggestions.

    >>> readers = Registry("reader")
    >>> @readers.register("csv")
    ... def read_csv(...): ...
    >>> strategies.register_family("TTL", lambda k: make_ttl(k), doc="keep units 1..k")
    >>> strategies.get("TTL@8")
    """

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint
        self._items: dict[str, T] = {}
        self._families: dict[str, tuple[Callable[[int], T], str]] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        def deco(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = o
            return o

        return deco(obj) if obj is not None else deco

    def register_family(self, family: str, factory: Callable[[int], T], doc: str = "") -> None:
        """Register ``family@k`` names; ``factory(k)`` builds the object (and validates ``k``)."""
        if family in self._families:
            raise ValueError(f"{self.kind} family {family!r} is registered twice")
        self._families[family] = (factory, doc)

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        m = _FAMILY_NAME.match(str(name))
        if m and m.group("family") in self._families:
            return self._families[m.group("family")][0](int(m.group("arg")))
        if "@" in str(name):
            family = str(name).split("@", 1)[0]
            if family in self._families:
                raise ConfigError(f"{self.kind} {name!r}: the part after '@' must be an integer, "
                                  f"e.g. {family}@4")
            raise UnknownNameError(f"{self.kind} family", family, self._families, self.hint)
        raise UnknownNameError(self.kind, name, self.names() + self.family_patterns(), self.hint)

    def names(self, pattern: str = "*") -> list[str]:
        """Fixed names (families not included: see :meth:`family_patterns`)."""
        return [n for n in self._items if fnmatch.fnmatchcase(n, pattern)]

    def families(self) -> dict[str, str]:
        """Family name → its one-line description."""
        return {f: doc for f, (_, doc) in self._families.items()}

    def family_patterns(self) -> list[str]:
        """``FAMILY@k`` for every family (for listings and error messages)."""
        return [f"{f}@k" for f in self._families]

    def __contains__(self, name: object) -> bool:
        if name in self._items:
            return True
        m = _FAMILY_NAME.match(str(name))
        return bool(m and m.group("family") in self._families)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self):
        return self._items.items()
