"""Steps and the plan: cacheable units of work identified by a hash of everything that decides
their output (DESIGN §9).

A :class:`Step` is a node: its kind (a name in :data:`medapt.suite.kinds.KINDS`), a typed key
(the kind's frozen dataclass), its **named** inputs (other steps), and who needs it (``users``:
strategies; ``tags``: the strategy/seed/task/head rows it contributes to the run's tables). The
hash covers the kind, the key, the input hashes by name and :data:`STEP_FORMAT`; equal hashes are
one step, so sharing falls out of hashing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = ["Step", "Plan", "canonical", "key_dict", "count_kinds", "STEP_FORMAT"]

# bump when a step's output format or semantics change, so old outputs are not reused
STEP_FORMAT = 2


def key_dict(key: Any) -> dict[str, Any]:
    """A key as plain data: dataclasses (nested) → dicts; objects with ``to_dict`` use it."""
    if dataclasses.is_dataclass(key):
        out = {}
        for f in dataclasses.fields(key):
            v = getattr(key, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else key_dict(v) if dataclasses.is_dataclass(v) else v
        return out
    return dict(key)


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, so equal inputs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(eq=False)
class Step:
    """One node of the plan. Its kind's ``run(ctx, step, workdir)`` writes the outputs into ``workdir``."""

    kind: str
    key: Any
    inputs: dict[str, Step] = field(default_factory=dict)
    label: str = ""
    users: list[str] = field(default_factory=list)  # strategies that need this step
    tags: list[dict[str, Any]] = field(default_factory=list)  # rows it contributes: strategy, seed, task, head

    def __post_init__(self) -> None:
        from .kinds import KINDS

        KINDS.get(self.kind).check_inputs(self)

    @cached_property
    def hash(self) -> str:
        payload = canonical({"kind": self.kind, "key": key_dict(self.key),
                             "inputs": {name: s.hash for name, s in sorted(self.inputs.items())},
                             "format": STEP_FORMAT})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.hash}"

    @property
    def deps(self) -> list[Step]:
        """The input steps, in name order."""
        return [self.inputs[k] for k in sorted(self.inputs)]

    def input(self, name: str) -> Step | None:
        return self.inputs.get(name)

    def add_user(self, name: str) -> None:
        if name not in self.users:
            self.users.append(name)

    def add_tag(self, tag: dict[str, Any]) -> None:
        if tag not in self.tags:
            self.tags.append(tag)

    def __repr__(self) -> str:
        return f"Step({self.id} {self.label!r})"


@dataclass
class Plan:
    """Steps in dependency order (each once); planners add to it through :meth:`add`."""

    steps: list[Step] = field(default_factory=list)
    builder: Any = None  # the planners' shared constructors (medapt.suite.planners.Builder)
    _by_id: dict[str, Step] = field(default_factory=dict)

    def add(self, step: Step, user: str | None = None, tag: dict[str, Any] | None = None) -> Step:
        """Add ``step`` (and, first, its inputs) unless an equal one is planned; return the planned one.

        ``user`` (a strategy) is recorded on the step and every step it depends on; ``tag`` marks
        the rows the step contributes for that strategy.
        """
        have = self._by_id.get(step.id)
        if have is None:
            step.inputs = {k: self.add(v) for k, v in step.inputs.items()}
            self._by_id[step.id] = have = step
            self.steps.append(step)
        if user is not None:
            self._add_user(have, user)
        if tag is not None:
            have.add_tag(tag)
        return have

    def _add_user(self, step: Step, user: str) -> None:
        """``user`` needs ``step`` and so every step it depends on (already marked if ``step`` was)."""
        if user not in step.users:
            step.add_user(user)
            for d in step.deps:
                self._add_user(d, user)

    def __contains__(self, step_id: str) -> bool:
        return step_id in self._by_id

    def get(self, step_id: str) -> Step | None:
        return self._by_id.get(step_id)

    def counts(self) -> dict[str, int]:
        return count_kinds(self.steps)


def count_kinds(steps: list[Step]) -> dict[str, int]:
    """Steps per kind, in order of first appearance."""
    out: dict[str, int] = {}
    for s in steps:
        out[s.kind] = out.get(s.kind, 0) + 1
    return out
