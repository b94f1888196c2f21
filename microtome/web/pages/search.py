"""Search: `/search?q=` finds units by their labels; `POST /search` finds the units a photo excites.

Text: every unit's `labels` artifact (the best one per unit) is indexed once per store
generation as `(model, layer, unit, label, score, source)`; a query matches a label when each
of its words is in the label (case-insensitive); labels holding the query as whole words
("tiger cat" for "cat") rank before those holding it inside a word ("catamaran"), then by the
label's score, so a unit whose evidence points strongly at a cat class comes before weak ones.
The jump box's reading of the query comes with the results. A query that matches nothing is an
empty result, not an error.

Photo: every built model (one with `dataset_examples` histograms in the store) runs on the
photo (photo.py), and per layer its units most activated relative to their dataset
distribution are listed with their links and thumbnails, with the model's top-5 classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from microtome.errors import MicrotomeError
from microtome.web.jobs.photo import Histograms, decode
from microtome.web.present.jump import resolve
from microtome.web.present.labels import find_labels, first_label, label_index, photo_histograms, thumbnail
from microtome.web.present.links import unit_link
from microtome.web.present.state import AppState
from microtome.web.present.values import Upload

MAX_RESULTS = 200
MATCHES = ("part", "words", "label")  # how a label matched, by rank: inside words, whole words, the whole label


def _jump(state: AppState, q: str) -> dict[str, Any] | None:
    """Where the jump box sends `q`, or None when it names no model, layer or unit."""
    try:
        return resolve(state.catalog, q)
    except MicrotomeError:
        return None


def search(state: AppState, q: str = "") -> dict[str, Any]:
    """`/search?q=`: units whose labels match `q`, and where the jump box sends it."""
    q = q.strip()[:200]
    results, total = [], 0
    if q:
        assert state.indexes is not None
        index = state.indexes.get("labels", lambda: label_index(state.store))
        found = find_labels(index, q)
        total = len(found)
        for hit, rank in found[:MAX_RESULTS]:
            m, layer, unit = hit.where
            results.append({"model": m, "layer": layer, "unit": unit, "shorthand": f"{m}/{layer}:{unit}",
                            "url": unit_link(state.exported, m, layer, unit),
                            "image": thumbnail(state.store, m, layer, unit),
                            "label": hit.label, "score": hit.score, "source": hit.source, "match": MATCHES[rank]})
    return {"page": "search", "title": f"Search: {q}" if q else "Search", "query": q,
            "jump": _jump(state, q) if q else None, "results": results, "total": total,
            "models": None, "url": "/search" + (f"?q={quote(q)}" if q else "")}


# ---- by photo ------------------------------------------------------------------------------

def _built_models(state: AppState) -> dict[str, tuple[str, Histograms]]:
    """{model: (weights, histograms)} of the models a photo can be searched in."""
    assert state.indexes is not None
    hists = state.indexes.get("histograms", lambda: photo_histograms(state.store))
    models = state.catalog.store_models()
    return {m: (str(models[m].summary.get("weights") or "default"), h) for m, h in hists.items() if m in models}


def _layout(state: AppState, model: str, found: Mapping[str, Any]) -> dict[str, Any]:
    """One model's answer with unit links and thumbnails, layers in the model's order."""
    view = state.catalog.store_models()[model]
    order = {lid: i for i, lid in enumerate(view.layer_ids)}
    layers = {}
    for layer in sorted(found.get("layers", {}), key=lambda lid: order.get(lid, len(order))):
        layers[layer] = [{**row, "shorthand": f"{model}/{layer}:{row['unit']}",
                          "url": unit_link(state.exported, model, layer, row["unit"]),
                          "image": thumbnail(state.store, model, layer, row["unit"]),
                          "label": first_label(state.store, model, layer, row["unit"])}
                         for row in found["layers"][layer]]
    out = {"title": view.title, "trained": view.trained, "predictions": found.get("predictions", []),
           "layers": layers}
    if found.get("error"):
        out["error"] = found["error"]
    return out


def search_photo(state: AppState, image: Upload | str | None = None) -> dict[str, Any]:
    """`POST /search` (multipart field `image`): the units of every built model that the photo
    excites most relative to their dataset distribution, and each model's top-5 classes."""
    if not isinstance(image, Upload):
        raise MicrotomeError("send the photo as a file in the multipart form field 'image'")
    photo = decode(image.data)
    models = _built_models(state)
    if not models:
        raise MicrotomeError("no model in this store has dataset examples to compare a photo with; "
                             "build some with `microtome build MODEL --techniques dataset_examples`", status=409)
    found = state.photo.search(models, photo)
    return {"page": "search", "title": "Search by photo", "query": "", "jump": None, "results": [], "total": 0,
            "photo": {"width": photo.width, "height": photo.height, "bytes": len(image.data)},
            "models": {m: _layout(state, m, found[m]) for m in found}, "url": "/search"}
