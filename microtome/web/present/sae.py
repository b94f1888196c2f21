"""What the pages show of dictionary (SAE) layers, from the stored SAE's meta (no torch).

- `layer_summary(store, model, layer_id)`: the layer JSON's `"sae"` block
  `{features, k, explained_variance, l0, dead_fraction, dataset}` for a feature layer, else None.
- `feature_section(page, technique, view)`: the unit page's `"sae"` entry (the SAE technique's
  section hook, techniques/builtin.py). On a feature's page:
  the base layer's units its decoder direction loads on most, `[{layer, unit, weight, url,
  image}]`, strongest first; on a base layer's unit page: links to the layer's dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from microtome.pipeline.dictionaries import Dictionary, dictionaries_in, dictionary_for
from microtome.store import Artifact, Store
from microtome.techniques.registry import Technique
from microtome.web.present.artifacts import thumbnails
from microtome.web.present.catalog import ModelView
from microtome.web.present.links import layer_url, unit_link
from microtome.web.present.state import AppState
from microtome.web.present.unit_page import UnitPage


def layer_summary(store: Store, model: str, layer_id: str) -> dict[str, Any] | None:
    found = dictionary_for(store, model, layer_id) if "." in layer_id else None
    return None if found is None else {**found.summary(), "base": found.base,
                                       "base_url": layer_url(model, found.base)}


def feature_section(page: UnitPage, t: Technique, data: Any) -> dict[str, Any] | None:
    """The unit page's SAE entry: loadings on a feature's page, dictionaries on a base layer's."""
    return features(page.state, page.view, page.layer, page.unit, page.layer_artifacts)


def features(state: AppState, view: ModelView, layer: dict[str, Any], unit: int,
             layer_artifacts: Iterable[Artifact]) -> dict[str, Any] | None:
    """`layer_artifacts`: the layer-level artifacts of `layer` that the page has read already
    (a base layer's SAEs are among them, so its units' pages ask the store nothing more)."""
    lid = layer["id"]
    if layer.get("kind") == "sae":
        found = dictionary_for(state.store, view.id, lid)
        return None if found is None else _feature(state, view, found, unit)
    held = dictionaries_in(layer_artifacts)
    if not held:
        return None
    return {"feature": False, "dictionaries": [{"layer": d.layer_id, "url": layer_url(view.id, d.layer_id),
                                                **d.summary()} for d in held]}


def _feature(state: AppState, view: ModelView, found: Dictionary, unit: int) -> dict[str, Any]:
    rows = found.meta.get("loadings") or []
    pairs = rows[unit] if unit < len(rows) else []
    thumbs = thumbnails(state.store, view.id, [(found.base, int(u)) for u, _ in pairs])
    loadings = [{"layer": found.base, "unit": int(u), "weight": float(w),
                 "shorthand": f"{view.id}/{found.base}:{int(u)}",
                 "url": unit_link(state.exported, view.id, found.base, int(u)),
                 "image": thumbs.get((found.base, int(u)))} for u, w in pairs]
    return {"feature": True, "base": found.base, "base_url": layer_url(view.id, found.base),
            "loadings": loadings, **found.summary()}
