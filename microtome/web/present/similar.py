"""The `similar` artifacts as page data: a unit's similar units in other models, and a model's
CKA maps against the models it was compared with.

- `similar_of(state, unit_artifacts) -> [{"model", "layer", "unit", "r",
  "r_spatial", "matched", "url", "image", "shorthand"}]`, best r first over every other model
  (unit JSON `similar`, the technique's section hook `similar_section`); the Hungarian partner
  is always in the list (`matched: true`).
- `model_similarity(state, model) -> [{"other", "other_url", "layers", "other_layers",
  "cka" [[...]], "pairs", "median_best_r", "images", "dataset"}]` (model JSON `similarity`;
  the model page draws each `cka` as a heat map, sections/cka.html).
When one model was compared with another several times (another dataset or image count), the
comparison with the most images wins, then the newest. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from microtome.store import Artifact
from microtome.techniques.registry import Role, Technique, by_role
from microtome.web.present.artifacts import thumbnails
from microtome.web.present.links import model_url, unit_link
from microtome.web.present.state import AppState
from microtome.web.present.unit_page import UnitPage


def _rank(art: Artifact) -> tuple[int, float]:
    return int(art.meta.get("images") or 0), art.created


def _best_per_other(artifacts: Iterable[Artifact]) -> dict[str, Artifact]:
    best: dict[str, Artifact] = {}
    for art in artifacts:
        other = art.meta.get("other")
        if isinstance(other, str) and (other not in best or _rank(art) > _rank(best[other])):
            best[other] = art
    return best


def _entry(state: AppState, other: str, layer: str, item: dict[str, Any], matched: bool) -> dict[str, Any]:
    view = state.catalog.find_model(other)
    found = view.find_layer(layer) if view is not None else None
    unit = item.get("unit")
    ok = found is not None and isinstance(unit, int) and 0 <= unit < int(found["channels"])
    return {"model": other, "layer": layer, "unit": unit, "r": item.get("r"), "r_spatial": item.get("r_spatial"),
            "matched": matched, "url": unit_link(state.exported, other, layer, unit) if ok else None,
            "image": None, "shorthand": f"{other}/{layer}:{unit}"}


def similar_section(page: UnitPage, t: Technique, data: Any) -> list[dict[str, Any]]:
    """The compare technique's section hook: other models' similar units, best r first."""
    return similar_of(page.state, page.found)


def similar_of(state: AppState, unit_artifacts: Iterable[Artifact]) -> list[dict[str, Any]]:
    """The unit's similar units in every other model it was compared with, best r first, from
    the unit's artifacts (the unit page's one query) and one thumbnail batch per other model."""
    out = []
    own = by_role(Role.SIMILAR_UNITS).id
    mine = (a for a in unit_artifacts if a.key.technique == own)
    for other, art in _best_per_other(mine).items():
        other_layer = art.meta.get("other_layer")
        if not isinstance(other_layer, str):
            continue
        partner = (art.meta.get("matched") or {}).get("unit")
        items = [e for e in art.meta.get("similar") or [] if isinstance(e, dict)]
        entries = [_entry(state, other, other_layer, e, e.get("unit") == partner) for e in items]
        if partner is not None and not any(e["matched"] for e in entries):
            entries.append(_entry(state, other, other_layer, art.meta["matched"], True))
        thumbs = thumbnails(state.store, other, [(e["layer"], e["unit"]) for e in entries if e["url"]])
        for e in entries:
            e["image"] = thumbs.get((e["layer"], e["unit"]))
        out += entries
    return sorted(out, key=lambda e: -(e["r"] if isinstance(e["r"], (int, float)) else -2.0))


def model_similarity(state: AppState, model: str, layer_ids: list[str]) -> list[dict[str, Any]]:
    """One CKA map per other model: rows this model's layers (in `layer_ids` order), columns
    the other's, from the layer-level `similar` artifacts."""
    groups: dict[str, dict[str, list[Artifact]]] = {}
    for art in state.store.find(model, technique=by_role(Role.SIMILAR_UNITS).id, unit=None):
        other = art.meta.get("other")
        if isinstance(other, str) and isinstance(art.meta.get("cka"), dict):
            groups.setdefault(other, {}).setdefault(art.key.params_hash, []).append(art)
    maps = []
    for other, runs in groups.items():
        arts = max(runs.values(), key=lambda a: (len(a), max(_rank(x) for x in a)))
        by_layer = {a.key.layer: a for a in arts}
        rows = [lid for lid in layer_ids if lid in by_layer]
        cols = [c for c in by_layer[rows[0]].meta.get("other_layers") or []] if rows else []
        maps.append({
            "other": other, "other_url": model_url(other),
            "layers": rows, "other_layers": cols,
            "cka": [[by_layer[lid].meta["cka"].get(c) for c in cols] for lid in rows],
            "pairs": [[lid, by_layer[lid].meta["other_layer"]] for lid in rows
                      if by_layer[lid].meta.get("other_layer")],
            "median_best_r": {lid: by_layer[lid].meta.get("median_best_r") for lid in rows
                              if by_layer[lid].meta.get("other_layer")},
            "images": arts[0].meta.get("images"), "dataset": arts[0].meta.get("dataset"),
        })
    return sorted(maps, key=lambda m: m["other"])
