"""The technique registry: one `Technique` declaration per technique, read by every stage.

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

import importlib
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from microtome.errors import MicrotomeError, unknown

PRESETS = ("quick", "standard", "full")
UNIT, LAYER = "unit", "layer"
# what other stages find a technique by (`with_role`), so they never name its id: the one that
# trains SAEs whose features become layers (`microtome sae`), the one that records a
# model's units against another's (`microtome compare`), the one that lays out a layer's atlas
ROLE_SAE, ROLE_COMPARE, ROLE_ATLAS = "sae", "compare", "atlas"
Params = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What an artifact's params may depend on besides the preset."""

    preset: str
    dataset: str = "samples"
    seed: int = 0
    input_size: int = 224
    compare: tuple[str, ...] = ()  # other models to compare with (`similar`; none: nothing planned)


@dataclass(frozen=True)
class Section:
    """How the unit page shows a technique: a heading, a template under `web/templates/`
    (given `d` = the page and `s` = this technique's views), and its place (lower first).
    `unit_page=False`: a layer-wide view with pages of its own, not a section of unit pages."""

    title: str
    template: str = "sections/generic.html"
    order: int = 100
    anchor: str = ""
    unit_page: bool = True


@dataclass(frozen=True)
class Technique:
    """One technique, declared once. `params(ctx)` lists the params of every artifact it makes
    for one unit (or layer): their hash is part of the store key, so they must not change
    for an existing technique. `variants` name the artifacts of one unit when there are
    several (read from `params["variant"]`)."""

    id: str
    title: str
    runner: str  # "package.module:function", `(Job) -> [ArtifactResult]`, imported lazily
    params: Callable[[Context], list[Params]]
    scope: str = UNIT
    variants: tuple[str, ...] = ()
    cost: Callable[[Mapping[str, Any]], float] = lambda params: 0.05  # per artifact, for the ETA
    task_overhead: float = 1.0  # per task, for the ETA
    units_per_task: int = 64
    all_layers: bool = False  # one task for every selected layer (one pass over a dataset)
    layer_summary: bool = False  # a unit technique that also makes one artifact per layer (unit None)
    batch_key: Callable[[Mapping[str, Any]], Hashable] = lambda params: None  # split tasks by it
    reads: tuple[str, ...] = ()  # techniques whose stored artifacts of the task's units it reads
    uses_dataset: bool = False
    on_demand: bool = False  # the web renders it for an unbuilt unit
    in_all: bool = True  # part of `--techniques all` (False: only when named, e.g. training an SAE)
    section: Section = field(default_factory=lambda: Section(""))  # "": the title is `title`
    role: str = ""  # ROLE_*: what `with_role` finds it by ("": nothing but its id)

    def variant(self, params: Mapping[str, Any]) -> str | None:
        """The variant an artifact's params name (the first variant when they name none)."""
        if not self.variants:
            return None
        return str(params.get("variant", self.variants[0]))

    def group(self, params: Mapping[str, Any]) -> str:
        """`id` or `id:variant`: the unit page keeps one artifact per group."""
        variant = self.variant(params)
        return self.id if variant is None else f"{self.id}:{variant}"

    def load_runner(self) -> Callable[..., Any]:
        module, _, name = self.runner.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise MicrotomeError(f"technique {self.id!r}: cannot load its runner {self.runner!r}: {exc}") from exc


@dataclass
class TechniqueRegistry:
    """Techniques by id, in registration order (which is their run order); the built-ins come
    first, loaded on first use (builtin.py imports this module, so not at import time)."""

    _entries: dict[str, Technique] = field(default_factory=dict)
    _loaded: bool = False

    @property
    def entries(self) -> dict[str, Technique]:
        if not self._loaded:
            from microtome.techniques.builtin import BUILTINS

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


def with_role(role: str) -> Technique:
    """The technique that plays `role` (one of `ROLE_*`): the first registered."""
    for entry in _REGISTRY.entries.values():
        if entry.role == role:
            return entry
    raise MicrotomeError(f"no registered technique plays the role {role!r}")


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise unknown("preset", preset, PRESETS)
    return preset


def web_sections() -> list[Technique]:
    """The techniques in the unit page's order."""
    return sorted(techniques(), key=lambda t: t.section.order)
