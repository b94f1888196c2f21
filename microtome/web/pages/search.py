"""Search: `/search?q=` finds units by their labels; `POST /search` finds the units a photo excites.

Text: every unit's `labels` artifact (the best one per unit) is indexed once per store
generation as `(model, layer, unit, label, score, source)`; a query matches a label when each
of its words is in the label (case-insensitive); labels holding the query as whole words
("tiger cat" for "cat") rank before those holding it inside a word ("catamaran"), then by the
label's score, so a unit whose evidence points strongly at a cat class comes before weak ones. The jump box's reading of the query comes with the results. A query that
matches nothing is an empty result, not an error.

Photo: every built model (one with `dataset_examples` histograms in the store) runs on the
photo (photo.py), and per layer its units most activated relative to their dataset
distribution are listed with their links and thumbnails, with the model's top-5 classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from microtome.errors import MicrotomeError
from microtome.store import Artifact, Store
from microtome.techniques.builtin import DATASET_EXAMPLES, FEATURE_VIS, LABELS
from microtome.web.present.artifacts import image_url, pick
from microtome.web.server.forms import Upload
from microtome.web.present.jump import resolve
from microtome.web.present.links import unit_link
from microtome.web.jobs.photo import Histograms, decode
from microtome.web.present.state import AppState

MAX_RESULTS = 200
MATCHES = ("part", "words", "label")  # how a label matched, by rank: inside words, whole words, the whole label
Hit = tuple[str, str, int, str, float, str]  # (model, layer, unit, label, score, source)


def labels_of(artifact: Artifact | None) -> list[dict[str, Any]]:
    """A labels artifact's `meta["labels"]`, best first, keeping well-formed entries only."""
    entries = artifact.meta.get("labels") if artifact is not None else None
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("label"), str)]


def by_unit(artifacts: Iterable[Artifact]) -> dict[tuple[str, str, int], Artifact]:
    """The best artifact of each unit (`artifacts.pick`: most expensive preset, then newest)."""
    groups: dict[tuple[str, str, int], list[Artifact]] = {}
    for art in artifacts:
        if art.key.unit is not None:
            groups.setdefault((art.key.model, art.key.layer, art.key.unit), []).append(art)
    return {key: best for key, arts in groups.items() for best in pick(arts).values()}


def label_index(store: Store) -> list[Hit]:
    """Every label of every unit in the store."""
    hits = []
    for (m, layer, unit), art in by_unit(store.find(technique=LABELS)).items():
        for e in labels_of(art):
            score = e.get("score")
            hits.append((m, layer, unit, e["label"], float(score) if isinstance(score, (int, float)) else 0.0,
                         str(e.get("source", ""))))
    return hits


def match(query: str, label: str) -> int | None:
    """How well `label` matches `query` (higher is better: 2 the same, 1 whole words, 0 inside
    words), or None when some word of the query is not in it."""
    words = query.lower().split()
    text = label.lower()
    if not words or not all(w in text for w in words):
        return None
    if " ".join(words) == " ".join(text.split()):
        return 2
    tokens = set(re.findall(r"[\w'-]+", text))
    return 1 if all(w in tokens for w in words) else 0


def find_labels(hits: Iterable[Hit], query: str) -> list[tuple[Hit, int]]:
    """The best-matching label of each unit that has one, best first."""
    best: dict[tuple[str, str, int], tuple[Hit, int]] = {}
    for hit in hits:
        rank = match(query, hit[3])
        if rank is None:
            continue
        key = hit[:3]
        if key not in best or (rank > 0, hit[4], rank) > (best[key][1] > 0, best[key][0][4], best[key][1]):
            best[key] = (hit, rank)
    return sorted(best.values(), key=lambda hr: (hr[1] == 0, -hr[0][4], -hr[1], hr[0][:3]))


def thumbnail(store: Store, model: str, layer: str, unit: int) -> str | None:
    return image_url(pick(store.find(model, layer, unit, FEATURE_VIS)).get(f"{FEATURE_VIS}:positive"))


def first_label(store: Store, model: str, layer: str, unit: int) -> str | None:
    found = labels_of(pick(store.find(model, layer, unit, LABELS)).get(LABELS))
    return found[0]["label"] if found else None


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
        for (m, layer, unit, label, score, source), rank in found[:MAX_RESULTS]:
            results.append({"model": m, "layer": layer, "unit": unit, "shorthand": f"{m}/{layer}:{unit}",
                            "url": unit_link(state.exported, m, layer, unit),
                            "image": thumbnail(state.store, m, layer, unit),
                            "label": label, "score": score, "source": source, "match": MATCHES[rank]})
    return {"page": "search", "title": f"Search: {q}" if q else "Search", "query": q,
            "jump": _jump(state, q) if q else None, "results": results, "total": total,
            "models": None, "url": "/search" + (f"?q={quote(q)}" if q else "")}


# ---- by photo ------------------------------------------------------------------------------

def photo_histograms(store: Store) -> dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]]:
    """{model: {layer: {unit: (edges, counts)}}} of every unit with a dataset-examples histogram."""
    out: dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]] = {}
    for (m, layer, unit), art in by_unit(store.find(technique=DATASET_EXAMPLES)).items():
        hist = art.meta.get("histogram")
        if isinstance(hist, dict) and isinstance(hist.get("edges"), list) and isinstance(hist.get("counts"), list):
            out.setdefault(m, {}).setdefault(layer, {})[unit] = (hist["edges"], hist["counts"])
    return out


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
