"""The unit page's technique sections, read from the technique registry: `shown()`, each one's
`generic_view(technique, unit_artifacts, layer_artifacts)`, and what is `missing`.

A technique with variants gives `{variant: view}` of the variants built (`{}` when none); one
without gives its view or None. Unit-scope techniques come from the unit's artifacts,
layer-scope ones (DeepDream) from the layer's. A technique whose `Section.data` names a
torch-free hook `(page, technique, view) -> data` gets the hook's answer instead (unit_page.py;
its links, thumbnails, layout of its meta); any other is shown by `sections/generic.html` from its view
alone (title, images, small meta summary), so a plug-in needs no web code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from microtome.store import Artifact
from microtome.techniques.registry import LAYER, Context, Technique, web_sections
from microtome.web.present.artifacts import examples_view, view

Picked = Mapping[str, Artifact]  # `artifacts.pick`'s answer: group key -> best artifact
# keys of the unit page's own data: a technique with one of these ids cannot be shown
RESERVED = frozenset({"page", "title", "model", "layer", "unit", "shorthand", "url", "prev", "next",
                      "missing", "job", "dead", "dead_on", "sections", "notes", "quality", "artifacts"})


def shown() -> list[Technique]:
    """The techniques the unit page shows, in `web_sections()` order."""
    return [t for t in web_sections() if t.id not in RESERVED and t.section.unit_page]


def _source(t: Technique, unit: Picked, layer: Picked) -> Picked:
    return layer if t.scope == LAYER else unit


def generic_view(t: Technique, unit: Picked, layer: Picked) -> Any:
    """The technique's artifacts as the generic section shows them: `{variant: view}` or a view or None."""
    arts = _source(t, unit, layer)
    if t.variants:
        groups = {v: t.group({"variant": v}) for v in t.variants}
        return {v: view(arts[g]) for v, g in groups.items() if g in arts}
    art = arts.get(t.id)
    return view(art) if art is not None else None


def examples_section(page: Any, t: Technique, data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Dataset examples: the generic view and the layout of the examples (artifacts.examples_view)."""
    return None if data is None else {**data, **examples_view(page.here[t.id])}


def missing(unit: Picked, layer: Picked) -> list[str]:
    """The shown techniques with nothing built for this unit (or, layer-scope, its layer)."""
    present = {key.split(":")[0] for key in unit}
    present_layer = {key.split(":")[0] for key in layer}
    return [t.id for t in shown() if t.id not in (present_layer if t.scope == LAYER else present)
            and t.in_all  # trained on request only (an SAE): never missing
            and t.params(Context("standard"))]  # none by default (`similar` needs another model): never missing
