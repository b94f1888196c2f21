"""What a static export holds, per page kind: `(state) -> [path and query values]`, one per page.

The route table (routes.py) names these as its routes' `pages`; the export (server/
export.py) walks the table and calls each route's view with each of them. Only what is built
is exported: `state.exported` holds the built units; grids list every page of every variant.
"""

from __future__ import annotations

from collections.abc import Iterator

from microtome.techniques.registry import Role, by_role
from microtome.web.present import atlas_data as A
from microtome.web.present.grid import GRID_VARIANTS, grid_pages
from microtome.web.present.state import AppState

Values = dict[str, str]


def one(state: AppState) -> list[Values]:
    """A page without values (`/`, `/search`)."""
    return [{}]


def models(state: AppState) -> list[Values]:
    return [{"model": m.id} for m in state.catalog.all_models()]


def grids(state: AppState) -> Iterator[Values]:
    """Every page of every variant of every layer's grid."""
    for m in state.catalog.all_models():
        for layer in m.layers:
            for variant in GRID_VARIANTS:
                for page in range(1, grid_pages(int(layer["channels"])) + 1):
                    yield {"model": m.id, "layer": layer["id"], "variant": variant, "page": str(page)}


def _units(state: AppState) -> Iterator[tuple[str, str, int]]:
    for (model, layer), units in sorted((state.exported or {}).items()):
        for unit in units:
            yield model, layer, unit


def units(state: AppState) -> Iterator[Values]:
    """The built units' pages."""
    for model, layer, unit in _units(state):
        yield {"model": model, "layer": layer, "unit": str(unit)}


def circuits(state: AppState) -> Iterator[Values]:
    """The circuits of the built units that have connections (their pages link them)."""
    circuit = by_role(Role.CIRCUIT).id
    having = {(a.key.model, a.key.layer, a.key.unit) for m in state.catalog.all_models()
              for a in state.store.find(m.id, technique=circuit)}
    for model, layer, unit in _units(state):
        if (model, layer, unit) in having:
            yield {"model": model, "layer": layer, "unit": str(unit)}


def _atlases(state: AppState) -> Iterator[tuple[str, str, A.Doc]]:
    for m in state.catalog.all_models():
        for layer in m.layers:
            found = A.stored(state, m.id, layer["id"])
            if found is not None:
                yield m.id, layer["id"], found[1]


def atlases(state: AppState) -> Iterator[Values]:
    for model, layer, _ in _atlases(state):
        yield {"model": model, "layer": layer}


def class_atlases(state: AppState) -> Iterator[Values]:
    for model, layer, doc in _atlases(state):
        for choice in A.class_choices(doc):
            yield {"model": model, "layer": layer, "klass": str(choice["class"])}


def atlas_cells(state: AppState) -> Iterator[Values]:
    for model, layer, doc in _atlases(state):
        for i, level in enumerate(doc["levels"]):
            for c in level["cells"]:
                yield {"model": model, "layer": layer, "level": str(i), "x": str(c["x"]), "y": str(c["y"])}
