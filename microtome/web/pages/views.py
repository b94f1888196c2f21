"""The web microscope's pages, one view function per page kind: `unit(state, m, l, u) -> data`.

A view takes the app's state (state.py) and the URL's path and query values as strings, asks
the store once for what its page shows, and returns the page's data (a JSON-ready dict: the
`.json` twin, and what the route's template renders), a `Redirect` to the canonical URL, or
(blobs) a response. No view sees an HTTP request, so each is called on its own in tests and
by the static export; routes.py maps URLs to them and renders their answers.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from starlette.responses import Response

from microtome.errors import MicrotomeError, NotFound
from microtome.store.notes import add_note as put_note
from microtome.store.notes import notes
from microtome.techniques.registry import Role, by_role, technique, web_sections
from microtome.web.present import blobs
from microtome.web.present.artifacts import dead_on, image_url, inactive, pick
from microtome.web.present.catalog import ModelView
from microtome.web.present.graph import layer_groups
from microtome.web.present.grid import GRID_PAGE_SIZE, GRID_VARIANTS, SORTS, grid_pages, quality_of, tiles, unit_order
from microtome.web.present.jump import resolve, resolve_path
from microtome.web.present.links import layer_brief, layer_url, model_brief, neighbours, unit_link, unit_url
from microtome.web.present.sae import layer_summary
from microtome.web.present.sections import missing
from microtome.web.present.similar import model_similarity
from microtome.web.present.state import AppState
from microtome.web.present.unit_page import UnitPage, technique_views
from microtome.web.present.values import Data, Redirect

# -- pages --

def index(state: AppState) -> Data:
    """`/`: every model, built (store order) then registered, with artifact counts per technique."""
    stats = state.catalog.stats()
    models = []
    for model in state.catalog.all_models():
        counts = {t.id: 0 for t in web_sections()}
        for per_layer in stats.get(model.id, {}).values():
            for name, n in per_layer.items():
                counts[name] = counts.get(name, 0) + n
        counts = {name: n for name, n in counts.items() if n}
        models.append({**model_brief(model), "layers": len(model.layers),
                       "units": sum(int(layer["channels"]) for layer in model.layers),
                       "counts": counts, "artifacts": sum(counts.values())})
    return {"page": "index", "title": "Models", "models": models,
            "registry_error": state.catalog.registry_error, "url": "/"}


def models_root(state: AppState) -> Redirect:
    """`/models`: the index lists them."""
    return Redirect("/")


def model(state: AppState, model: str) -> Data | Redirect:
    """`/models/M`: the layer graph, each layer with its DeepDream and artifact counts."""
    view = state.catalog.model(model)
    if view.id != model:
        return Redirect(f"/models/{view.id}")
    stats = state.catalog.stats().get(view.id, {})
    dream_id, atlas_id = by_role(Role.LAYER_IMAGE).id, by_role(Role.ATLAS_MAP).id
    dreams = {}
    for art in state.store.find(view.id, technique=dream_id):  # one query for all layers
        dreams.setdefault(art.key.layer, []).append(art)
    layers = []
    for layer in view.layers:
        counts = stats.get(layer["id"], {})
        built = sum(counts.values())
        dream = pick(dreams.get(layer["id"], [])).get(dream_id)
        layers.append({**layer_brief(view, layer), dream_id: image_url(dream), "counts": counts,
                       "atlas": f"/models/{view.id}/{layer['id']}/atlas" if counts.get(atlas_id) else None,
                       "built_label": f"{built} artifact{'s' if built != 1 else ''}" if built else ""})
    return {"page": "model", "title": view.title, "model": model_brief(view), "layers": layers,
            "edges": [list(e) for e in view.summary.get("edges", [])], "url": f"/models/{view.id}",
            "groups": [g.to_json() for g in layer_groups(view.layer_ids)],  # the graph's rows (blocks.py)
            "similarity": model_similarity(state, view.id, view.layer_ids)}  # CKA maps (web/similar.py)


def _grid_page(view: ModelView, layer: dict[str, Any], variant: str, page: int,
               order: list[int] | None = None) -> tuple[list[int], int]:
    """The units on grid page `page` (of `order`, or of all units in order) and the number of
    pages; NotFound for a bad variant or page."""
    where = [f"{view.id}/{layer['id']}"]
    if variant not in GRID_VARIANTS:
        raise NotFound(f"no variant {variant!r}: the grid shows {', '.join(GRID_VARIANTS)}", suggestions=where)
    count = int(layer["channels"]) if order is None else len(order)
    pages = grid_pages(count)
    if not 1 <= page <= pages:
        raise NotFound(f"no page {page} of {where[0]}: it has pages 1-{pages} "
                       f"({count} units, {GRID_PAGE_SIZE} per page)", suggestions=where)
    start = (page - 1) * GRID_PAGE_SIZE
    stop = min(start + GRID_PAGE_SIZE, count)
    return list(range(start, stop)) if order is None else order[start:stop], pages


def layer(state: AppState, model: str, layer: str, variant: str = "positive", page: str = "1",
          sort: str = "unit", label: str = "") -> Data | Redirect:
    """`/models/M/L?variant=&page=&sort=&label=`: one page of the layer's grid of feature
    visualizations, in unit order or sorted by quality or label, optionally filtered by label."""
    view, found, _ = resolve_path(state.catalog, model, layer)
    if not page.isdigit():
        raise MicrotomeError(f"page must be a number from 1, got {page!r}")
    lid, number, label = found["id"], int(page), label.strip()[:100]
    link = lambda v=variant, p=number, s=sort: layer_url(view.id, lid, v, p, s, label)  # noqa: E731
    if (view.id, lid) != (model, layer):
        return Redirect(link())
    order = unit_order(state.store, view.id, lid, int(found["channels"]), variant, sort, label)
    units, pages = _grid_page(view, found, variant, number, order)
    built = state.catalog.stats().get(view.id, {}).get(lid, {})
    has = {role: bool(built.get(by_role(role).id)) for role in (Role.UNIT_IMAGE, Role.UNIT_LABELS, Role.EXAMPLES)}
    facts = tiles(state.store, view.id, lid, units, variant, has[Role.UNIT_LABELS]) \
        if has[Role.UNIT_IMAGE] or has[Role.UNIT_LABELS] else {}
    dead = inactive(state.store, view.id, lid, units) if has[Role.EXAMPLES] else {}
    grid = [{"unit": u, "url": unit_link(state.exported, view.id, lid, u), "image": None, "quality": None,
             "labels": [], "label": None, **facts.get(u, {}), "dead": u in dead, "dead_on": dead.get(u)}
            for u in units]
    dream_id = by_role(Role.LAYER_IMAGE).id
    dream = pick(state.store.find(view.id, lid, None, dream_id)).get(dream_id)
    index_ = view.layer_ids.index(lid)
    return {
        "page": "layer", "title": f"{view.id}/{lid}", "model": model_brief(view),
        "layer": {**layer_brief(view, found), dream_id: image_url(dream)},  # JSON field "deepdream"
        "sae": layer_summary(state.store, view.id, lid),  # a dictionary layer's SAE, else None
        "atlas": f"/models/{view.id}/{lid}/atlas" if built.get(by_role(Role.ATLAS_MAP).id) else None,
        "variant": variant,
        "variants": [{"name": v, "url": link(v, 1), "current": v == variant} for v in GRID_VARIANTS],
        "sort": sort, "label": label, "matching": None if order is None else len(order),
        "sorts": [{"name": s_, "url": link(p=1, s=s_), "current": s_ == sort} for s_ in SORTS],
        "page_number": number, "pages": pages, "page_size": GRID_PAGE_SIZE,
        "page_links": [{"page": p, "url": link(p=p)} for p in range(1, pages + 1)],
        "prev_page": link(p=number - 1) if number > 1 else None,
        "next_page": link(p=number + 1) if number < pages else None,
        "built": sum(1 for u in grid if u["image"]),
        "units": grid,
        "prev_layer": layer_brief(view, view.layers[index_ - 1]) if index_ > 0 else None,
        "next_layer": layer_brief(view, view.layers[index_ + 1]) if index_ + 1 < len(view.layers) else None,
        "url": link(),
    }


def unit(state: AppState, model: str, layer: str, unit: str) -> Data | Redirect:
    """`/models/M/L/U`: everything built about one unit; a unit missing an on-demand technique
    is queued for rendering (when the app renders), and the page shows the job."""
    view, found, index_ = resolve_path(state.catalog, model, layer, unit)
    assert found is not None and index_ is not None
    if (view.id, found["id"], str(index_)) != (model, layer, unit):
        return Redirect(unit_url(view.id, found["id"], index_))
    data = unit_page(state, view, found, index_)
    if state.queue is not None and wanted(data, state.on_demand()):
        key = (view.id, found["id"], index_)
        state.queue.submit(key)  # errors.Busy: 503 with Retry-After
        data["job"] = {**state.queue.status(key), "artifacts": data["artifacts"]}
    return data


def wanted(data: Data, on_demand: Iterable[str]) -> list[str]:
    """The on-demand techniques a unit page lacks: missing, or (with variants) missing one."""
    return [t for t in on_demand if t in data["missing"]
            or (technique(t).variants and set(technique(t).variants) - set(data.get(t) or {}))]


def unit_page(state: AppState, view: ModelView, layer: dict[str, Any], unit: int) -> Data:
    """The unit page's data: one query for the unit's artifacts, one for its layer's (DeepDream),
    then each technique's section (sections.py; hooks add links and thumbnails)."""
    lid = layer["id"]
    found = state.store.find(view.id, lid, unit)
    here = pick(found)
    layer_artifacts = state.store.find(view.id, lid, None)
    whole_layer = pick(layer_artifacts)
    sections = technique_views(UnitPage(state, view, layer, unit, found, here, layer_artifacts, whole_layer))
    dead = dead_on(here.get(by_role(Role.EXAMPLES).id))
    image = by_role(Role.UNIT_IMAGE)
    prev, nxt = neighbours(state.exported, view.id, layer, unit)
    return {
        "page": "unit", "title": f"{view.id}/{lid}:{unit}", "model": model_brief(view),
        "layer": layer_brief(view, layer), "unit": unit, "shorthand": f"{view.id}/{lid}:{unit}",
        "url": unit_url(view.id, lid, unit), "prev": prev, "next": nxt,
        **sections,
        "missing": missing(here, whole_layer),
        "artifacts": len(found),  # the unit's own; on-demand pages refill when this grows
        "job": None, "dead": dead is not None, "dead_on": dead,
        "quality": quality_of(here.get(image.group({}))),
        "notes": [n.to_json() for n in notes(state.store, view.id, lid, unit)],
    }


def job(state: AppState, model: str, layer: str, unit: str) -> Data:
    """`/jobs/M/L/U.json`: the on-demand render job of a unit (state none when there is none)
    and `artifacts`, how many the unit has stored: its page refills when that number grows."""
    view, found, index_ = resolve_path(state.catalog, model, layer, unit)
    assert found is not None and index_ is not None
    stored = len(state.store.find(view.id, found["id"], index_))
    if state.queue is None:
        return {"state": "none", "position": None, "artifacts": stored}
    return {**state.queue.status((view.id, found["id"], index_)), "artifacts": stored}


def jump(state: AppState, q: str = "", m: str = "") -> Redirect:
    """`/jump?q=&m=`: the jump box; `m` is the model of the page it was typed on."""
    target = {"query": q, **resolve(state.catalog, q, m or None)}
    return Redirect(target["url"], target)


def add_note(state: AppState, model: str, layer: str, unit: str, text: str = "",
             authorization: str | None = None) -> Redirect:
    """`POST /models/M/L/U/notes` (form field `text`): needs `Authorization: Bearer TOKEN` with
    the server's notes token; 303 to the unit page, or 201 with the note as JSON."""
    if not state.notes_token:  # None, or an empty token that would let "Bearer " in
        raise MicrotomeError("notes are read-only on this server: start it with "
                             "`microtome serve --notes-token TOKEN` to accept notes", status=403)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), state.notes_token.encode()):
        raise MicrotomeError("writing a note needs the header `Authorization: Bearer TOKEN` with this "
                             "server's notes token", status=403)
    view, found, index_ = resolve_path(state.catalog, model, layer, unit)
    assert found is not None and index_ is not None
    if state.catalog.store_models().get(view.id) is None:
        raise NotFound(f"{view.id} is not in this store: notes go on units of built models")
    note = put_note(state.store, view.id, found["id"], index_, text)
    url = unit_url(view.id, found["id"], index_)
    return Redirect(url, {"note": note.to_json(), "url": url,
                          "notes": [n.to_json() for n in notes(state.store, view.id, found["id"], index_)]},
                    status=303, json_status=201)


def blob(state: AppState, name: str, if_none_match: str | None = None) -> Response:
    """`/blobs/<sha256>[.ext]`: an image (or other file) of the store, immutable."""
    return blobs.serve(state.store, name, if_none_match)
