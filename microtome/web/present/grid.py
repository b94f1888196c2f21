"""A layer grid's tiles and their order: `tiles(store, m, l, units, variant) -> {unit: {image, quality, labels}}`.

A tile shows the unit's feature visualization (of the grid's variant), its quality (the
activation the visualization reached relative to the best dataset example's, `meta["quality"]`)
and its first labels. `unit_order(...)` sorts a whole layer by `quality` (best first, unknown
last) or `label` (alphabetically by first label, unlabelled last) and keeps the units with a
label matching `label` (search.match); None when the grid is in plain unit order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from microtome.errors import MicrotomeError
from microtome.store import Artifact, Store
from microtome.techniques.registry import Role, by_role
from microtome.web.present.artifacts import image_url, pick
from microtome.web.present.labels import labels_of, match

GRID_PAGE_SIZE = 128
GRID_VARIANTS = ("positive", "negative", "neuron")  # the unit-image variants with one image per unit
SORTS = ("unit", "quality", "label")
CAPTION_LABELS = 2  # labels shown under a tile


def grid_pages(units: int) -> int:
    """How many grid pages `units` units fill (at least one)."""
    return max(1, -(-units // GRID_PAGE_SIZE))


def quality_of(artifact: Artifact | None) -> float | None:
    value = artifact.meta.get("quality") if artifact is not None else None
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def _tile(fv: Artifact | None, labels: Artifact | None) -> dict[str, Any]:
    names = [e["label"] for e in labels_of(labels)]
    return {"image": image_url(fv), "quality": quality_of(fv), "labels": names[:CAPTION_LABELS],
            "label": names[0] if names else None}


def tiles(store: Store, model: str, layer: str, units: Iterable[int], variant: str,
          with_labels: bool) -> dict[int, dict[str, Any]]:
    """Per unit: image, quality and labels; one indexed query per unit and technique."""
    image, labelled = by_role(Role.UNIT_IMAGE), by_role(Role.UNIT_LABELS).id
    group = image.group({"variant": variant})
    out = {}
    for unit in units:
        fv = pick(store.find(model, layer, unit, image.id)).get(group)
        labels = pick(store.find(model, layer, unit, labelled)).get(labelled) if with_labels else None
        out[unit] = _tile(fv, labels)
    return out


def _whole_layer(store: Store, model: str, layer: str, name: str, group: str) -> dict[int, Artifact]:
    """The best artifact of `group` of every unit of the layer (one query)."""
    per_unit: dict[int, list[Artifact]] = {}
    for art in store.find(model, layer, technique=name):
        if art.key.unit is not None:
            per_unit.setdefault(art.key.unit, []).append(art)
    return {u: best for u, arts in per_unit.items() if (best := pick(arts).get(group)) is not None}


def unit_order(store: Store, model: str, layer: str, channels: int, variant: str, sort: str,
               label: str) -> list[int] | None:
    """The layer's units in `sort` order, filtered by `label` (None: all units in plain order)."""
    if sort not in SORTS:
        raise MicrotomeError(f"cannot sort by {sort!r}: sort by {', '.join(SORTS)}")
    label = label.strip()
    if sort == "unit" and not label:
        return None
    labelled = by_role(Role.UNIT_LABELS).id
    labels = _whole_layer(store, model, layer, labelled, labelled) if (label or sort == "label") else {}
    units = list(range(channels))
    if label:
        units = [u for u in units if any(match(label, e["label"]) is not None for e in labels_of(labels.get(u)))]
    if sort == "quality":
        image = by_role(Role.UNIT_IMAGE)
        fv = _whole_layer(store, model, layer, image.id, image.group({"variant": variant}))
        quality = {u: quality_of(a) for u, a in fv.items()}
        units.sort(key=lambda u: (quality.get(u) is None, -(quality.get(u) or 0.0), u))
    elif sort == "label":
        first = {u: labels_of(a)[0]["label"].lower() for u, a in labels.items() if labels_of(a)}
        units.sort(key=lambda u: (u not in first, first.get(u, ""), u))
    return units
