"""A unit's connections as page data: `connections(state, view, meta)` links its inputs and outputs
(with feature-vis thumbnails) and classes; `connections_section` is the connections technique's
section hook (techniques/builtin.py), which adds them and the unit's circuit link to its view.
"""

from __future__ import annotations

from typing import Any

from microtome.techniques.registry import Technique
from microtome.web.present.artifacts import thumbnails
from microtome.web.present.catalog import ModelView
from microtome.web.present.links import unit_link, unit_url
from microtome.web.present.state import AppState
from microtome.web.present.unit_page import UnitPage

MAX_CONNECTIONS = 16  # per direction shown on a unit page
Data = dict[str, Any]


def connections_section(page: UnitPage, t: Technique, data: Data | None) -> Data | None:
    """The connections section: the generic view, the linked inputs, outputs and classes, the circuit."""
    if data is None or t.id not in page.here:
        return data
    lid = page.layer["id"]
    return {**data, **connections(page.state, page.view, page.here[t.id].meta),
            "circuit": unit_url(page.view.id, lid, page.unit) + "/circuit"}


def _connection(view: ModelView, entry: Any) -> tuple[dict[str, Any], bool] | None:
    """One entry of a connections list as a link (ok: it names a real unit of this model)."""
    if not isinstance(entry, dict):
        return None
    found = view.find_layer(str(entry.get("layer", "")))
    unit = entry.get("unit")
    ok = found is not None and isinstance(unit, int) and 0 <= unit < int(found["channels"])
    lid = found["id"] if found is not None else str(entry.get("layer"))
    return {"layer": lid, "unit": unit, "weight": entry.get("weight"),
            "shorthand": f"{view.id}/{lid}:{unit}", "url": None, "image": None}, ok


def connections(state: AppState, view: ModelView, meta: dict[str, Any]) -> Data:
    """Inputs and outputs as linked units with their feature-vis thumbnails, and classes."""
    lists = {}
    for direction in ("inputs", "outputs"):
        entries = meta.get(direction)
        found = (_connection(view, e) for e in (entries if isinstance(entries, list) else [])[:MAX_CONNECTIONS])
        lists[direction] = [pair for pair in found if pair is not None]
    wanted = [(c["layer"], c["unit"]) for pairs in lists.values() for c, ok in pairs if ok]
    thumbs = thumbnails(state.store, view.id, wanted)
    for pairs in lists.values():
        for c, ok in pairs:
            if ok:
                c["url"] = unit_link(state.exported, view.id, c["layer"], c["unit"])
                c["image"] = thumbs[(c["layer"], c["unit"])]
    classes = [c for c in meta.get("classes") or [] if isinstance(c, dict)]
    return {"method": meta.get("method"), "inputs": [c for c, _ in lists["inputs"]],
            "outputs": [c for c, _ in lists["outputs"]], "classes": classes[:MAX_CONNECTIONS]}
