"""The unit page's technique sections, read from the technique registry:
`technique_views(unit_artifacts, layer_artifacts) -> {technique id: data}`.

A technique with variants gives `{variant: view}` of the variants built (`{}` when none); one
without gives its view or None. Unit-scope techniques come from the unit's artifacts,
layer-scope ones (DeepDream) from the layer's. Some built-ins add a layout of their meta to
the view (`LAYOUTS`); any other technique is shown by `sections/generic.html` from its view
alone (title, images, small meta summary), so a plug-in needs no web code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from microtome.store import Artifact
from microtome.techniques.builtin import DATASET_EXAMPLES
from microtome.techniques.registry import LAYER, Context, Technique, web_sections
from microtome.web.present.artifacts import examples_view, view

Picked = Mapping[str, Artifact]  # `artifacts.pick`'s answer: group key -> best artifact
# technique id -> (artifact) -> extra entries of its view (connections add theirs in the unit view)
LAYOUTS: dict[str, Callable[[Artifact], dict[str, Any]]] = {DATASET_EXAMPLES: examples_view}
# keys of the unit page's own data: a technique with one of these ids cannot be shown
RESERVED = frozenset({"page", "title", "model", "layer", "unit", "shorthand", "url", "prev", "next",
                      "missing", "job", "dead", "dead_on", "sections", "notes", "quality", "artifacts"})


def shown() -> list[Technique]:
    """The techniques the unit page shows, in `web_sections()` order."""
    return [t for t in web_sections() if t.id not in RESERVED and t.section.unit_page]


def _source(t: Technique, unit: Picked, layer: Picked) -> Picked:
    return layer if t.scope == LAYER else unit


def _view(t: Technique, artifact: Artifact) -> dict[str, Any]:
    layout = LAYOUTS.get(t.id)
    return {**view(artifact), **layout(artifact)} if layout else view(artifact)


def technique_views(unit: Picked, layer: Picked) -> dict[str, Any]:
    """Each shown technique's data, by id."""
    out: dict[str, Any] = {}
    for t in shown():
        arts = _source(t, unit, layer)
        if t.variants:
            groups = {v: t.group({"variant": v}) for v in t.variants}
            out[t.id] = {v: _view(t, arts[g]) for v, g in groups.items() if g in arts}
        else:
            art = arts.get(t.id)
            out[t.id] = _view(t, art) if art is not None else None
    return out


def missing(unit: Picked, layer: Picked) -> list[str]:
    """The shown techniques with nothing built for this unit (or, layer-scope, its layer)."""
    present = {key.split(":")[0] for key in unit}
    present_layer = {key.split(":")[0] for key in layer}
    return [t.id for t in shown() if t.id not in (present_layer if t.scope == LAYER else present)
            and t.params(Context("standard"))]  # none by default (`similar` needs another model): never missing
