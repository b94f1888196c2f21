"""The technique registry: the process's `Technique` declarations (declaration.py), read by every stage.

`technique(id) -> Technique`; `techniques() -> (Technique, ...)` in run order. A declaration
says what the technique is (id, title, scope: one artifact per unit or per layer), what it
makes (the params of each artifact at each preset), how the build batches it (units per task,
one task per layer or one for all layers, cost for the ETA, which stored artifacts it reads),
the runner as an import path loaded on first use, and how the web shows it (a section
template and its order on the unit page). This module imports no torch: the web, the planner
and the CLI read it without loading a model.

Adding a technique is one module (its runner, `(Job) -> [ArtifactResult]`) and one entry:
`register(Technique(...))` here for a built-in, or `with registered(Technique(...))` for a
plug-in or a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from microtome.errors import MicrotomeError, unknown
from microtome.techniques.builtin import BUILTINS
from microtome.techniques.declaration import (  # noqa: F401  (re-exported: the registry's vocabulary)
    LAYER,
    PRESETS,
    UNIT,
    Context,
    Params,
    Role,
    Section,
    Technique,
    check_preset,
)


@dataclass
class TechniqueRegistry:
    """Techniques by id, in registration order (which is their run order); the built-ins come
    first (builtin.py), then plug-ins in the order they register."""

    _entries: dict[str, Technique] = field(default_factory=dict)
    _loaded: bool = False

    @property
    def entries(self) -> dict[str, Technique]:
        if not self._loaded:
            self._loaded = True
            builtins = {entry.id: entry for entry in BUILTINS}
            self._entries = {**builtins, **self._entries}
        return self._entries

    def add(self, entry: Technique) -> Technique:
        if entry.id in self.entries:
            raise MicrotomeError(f"technique {entry.id!r} is already registered")
        if entry.scope not in (UNIT, LAYER):
            raise MicrotomeError(f"technique {entry.id!r}: scope must be {UNIT!r} or {LAYER!r}")
        missing = [r for r in entry.reads if r not in self.entries]
        if missing:
            raise MicrotomeError(f"technique {entry.id!r} reads {missing}, which are not registered "
                                 "before it (run order is registration order)")
        self.entries[entry.id] = entry
        return entry

    def remove(self, technique_id: str) -> None:
        self.entries.pop(technique_id, None)


_REGISTRY = TechniqueRegistry()  # the process's techniques: built-ins below, plug-ins added


def register(entry: Technique) -> Technique:
    """Add a technique; a duplicate id is an error."""
    return _REGISTRY.add(entry)


@contextmanager
def registered(entry: Technique) -> Iterator[Technique]:
    """A technique registered inside the block only (plug-ins that come and go, tests)."""
    register(entry)
    try:
        yield entry
    finally:
        _REGISTRY.remove(entry.id)


def techniques() -> tuple[Technique, ...]:
    """Every registered technique, in run order."""
    return tuple(_REGISTRY.entries.values())


def technique_ids() -> tuple[str, ...]:
    return tuple(_REGISTRY.entries)


def technique(technique_id: str) -> Technique:
    """The declaration of `technique_id`; unknown ids are an error naming the close ones."""
    try:
        return _REGISTRY.entries[technique_id]
    except KeyError:
        raise unknown("technique", technique_id, technique_ids()) from None


def find(technique_id: str) -> Technique | None:
    return _REGISTRY.entries.get(technique_id)





def by_role(role: str) -> Technique:
    """The first registered technique whose `roles` name `role` (a `Role`)."""
    for entry in techniques():
        if role in entry.roles:
            return entry
    raise MicrotomeError(f"no registered technique has the role {role!r}; the built-ins declare "
                         "one per role (techniques/builtin.py)")


def web_sections() -> list[Technique]:
    """The techniques in the unit page's order."""
    return sorted(techniques(), key=lambda t: t.section.order)
