"""The unit page's technique sections: `technique_views(UnitPage(...)) -> {technique id: data}`.

Each section the unit page shows (sections.py) is its technique's generic view, or what the
technique's torch-free section hook (`Section.data` in its registry entry) makes of it with the
page's `UnitPage`: links, thumbnails, a layout of its meta. Pages never name a technique.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from microtome.store import Artifact
from microtome.web.present.catalog import ModelView
from microtome.web.present.sections import Picked, generic_view, shown
from microtome.web.present.state import AppState


@dataclass(frozen=True)
class UnitPage:
    """What a section's data hook reads: the app, the unit, the unit's artifacts (`found`, and
    the best per group `here`) and its layer's (`layer_artifacts`, best per group `whole_layer`)."""

    state: AppState
    view: ModelView
    layer: dict[str, Any]
    unit: int
    found: list[Artifact]
    here: Picked
    layer_artifacts: list[Artifact]
    whole_layer: Picked



def technique_views(page: UnitPage) -> dict[str, Any]:
    """Each shown technique's data, by id: its hook's answer, or its generic view."""
    out: dict[str, Any] = {}
    for t in shown():
        data = generic_view(t, page.here, page.whole_layer)
        out[t.id] = t.section.load_data()(page, t, data) if t.section.data else data
    return out
