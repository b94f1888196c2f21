"""What a technique is, as data: `Technique` (one declaration per technique), its unit-page
`Section`, its `Role`s, the presets. Torch-free; `builtin.py` declares the built-ins with these
types and `registry.py` keeps the process's techniques (built-ins first, then plug-ins).

A declaration says what the technique is (id, title, scope: one artifact per unit or per layer),
what it makes (the params of each artifact at each preset), how the build batches it (units per
task, one task per layer or one for all layers, cost for the ETA, which stored artifacts it
reads), the runner as an import path loaded on first use, and how the web shows it (a section
template and its order on the unit page).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from microtome.errors import MicrotomeError, unknown

PRESETS = ("quick", "standard", "full")
UNIT, LAYER = "unit", "layer"
Params = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What an artifact's params may depend on besides the preset."""

    preset: str
    dataset: str = "samples"
    seed: int = 0
    input_size: int = 224
    fixed_size: bool = False  # the model takes only its input size (torchvision's ViT)
    compare: tuple[str, ...] = ()  # other models to compare with (`similar`; none: nothing planned)


class Role:
    """What a technique is to the pages (`Technique.roles`): the web asks the registry for "the
    technique whose role is X" (`by_role`) and never names a technique id."""

    UNIT_IMAGE = "unit_image"  # one image per unit and variant: grid tiles, thumbnails, quality
    LAYER_IMAGE = "layer_image"  # one image per layer: the model's graph, the layer page
    EXAMPLES = "examples"  # a unit's dataset examples: dead units, histograms to search photos by
    UNIT_LABELS = "unit_labels"  # a unit's labels: search, grid captions and sort
    CIRCUIT = "circuit"  # a unit's connections: its circuit page
    FEATURES = "features"  # a layer's dictionary (SAE) features
    SIMILAR_UNITS = "similar_units"  # other models' units with similar activations (compare)
    ATLAS_MAP = "atlas_map"  # a layer's activation atlas, pages of its own


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
    # "package.module:function", torch-free: `(unit page) -> this section's data` (web/present/
    # sections.py's `UnitPage`), imported on first use; "": the artifact's generic view
    data: str = ""

    def load_data(self) -> Callable[..., Any]:
        return _load(self.data, f"section {self.title!r}")


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
    roles: tuple[str, ...] = ()  # what it is to the pages (`Role`): the web finds it by role

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
        return _load(self.runner, f"technique {self.id!r}: its runner")


def _load(path: str, what: str) -> Callable[..., Any]:
    """The function at import path `package.module:function`."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise MicrotomeError(f"{what}: cannot load {path!r}: {exc}") from exc


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise unknown("preset", preset, PRESETS)
    return preset
