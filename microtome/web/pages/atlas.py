"""The activation atlas's pages: `atlas(state, m, l) -> data`, and its class atlases, a two-class
comparison and each cell's page (views as in views.py; data from atlas_data.py).

- `/models/M/L/atlas`: the icon grid of every level, coarsest first (the page zooms from one
  to the next), with the class picker and the layout's points;
- `/models/M/L/atlas/class/C`: the class atlas of class C (an index; a name redirects): its own
  icons when `microtome atlas --class` built it, else the whole atlas's cells that hold
  vectors favouring C, counted by those vectors;
- `/models/M/L/atlas/compare/A/B`: two class atlases side by side and the cells they share;
- `/models/M/L/atlas/LEVEL/X/Y`: one cell: its icon, photos with the position marked, top
  units (links), classes, and the cells above and below it.
A static export holds every built atlas's whole, class and cell pages (server/site.py; no
comparison: that page needs the server).
"""

from __future__ import annotations

from typing import Any

from microtome.errors import NotFound
from microtome.techniques.atlas_layout import resolve_class
from microtome.web.present import atlas_data as A
from microtome.web.present.artifacts import blob_url, thumbnails
from microtome.web.present.catalog import ModelView
from microtome.web.present.jump import resolve_path
from microtome.web.present.links import layer_brief, model_brief
from microtome.web.present.state import AppState
from microtome.web.present.values import Redirect

Data = dict[str, Any]


def _layer(state: AppState, model: str, layer: str) -> tuple[ModelView, dict[str, Any], bool]:
    """(model view, layer, whether the names were canonical)."""
    view, found, _ = resolve_path(state.catalog, model, layer)
    assert found is not None
    return view, found, (view.id, found["id"]) == (model, layer)


def _page(state: AppState, view: ModelView, layer: dict[str, Any], art, doc: A.Doc, page: str,
          title: str, url: str) -> Data:
    """What every atlas page holds: model, layer, dataset and the atlas's figures (the whole
    atlas's page and the comparison add `choices`, the class picker's classes: many, so not on
    every class or cell page)."""
    return {"page": page, "title": title, "model": model_brief(view), "layer": layer_brief(view, layer),
            "dataset": doc["dataset"], "atlas_url": A.atlas_url(view.id, layer["id"]),
            "summary": A.summary(doc, art), "static": state.exported is not None, "url": url}


def atlas(state: AppState, model: str, layer: str) -> Data | Redirect:
    """`/models/M/L/atlas`: every level's cells and the layout (`levels`, `layout`)."""
    view, found, canonical = _layer(state, model, layer)
    if not canonical:
        return Redirect(A.atlas_url(view.id, found["id"]))
    art, doc = A.require(state, view.id, found["id"])
    url = A.atlas_url(view.id, found["id"])
    return {**_page(state, view, found, art, doc, "atlas", f"atlas of {view.id}/{found['id']}", url),
            "klass": None, "choices": A.class_choices(doc), "levels": A.levels(state, art, doc),
            "layout": {"method": doc["layout"]["method"], "seed": doc["layout"]["seed"],
                       "points": doc["layout"]["points"]}}


def _class(doc: A.Doc, klass: str) -> int:
    return resolve_class({int(k): v for k, v in doc["labels"].items()}, klass)


def class_atlas(state: AppState, model: str, layer: str, klass: str) -> Data | Redirect:
    """`/models/M/L/atlas/class/C`: the atlas of the vectors whose attribution favours class C."""
    view, found, canonical = _layer(state, model, layer)
    art, doc = A.require(state, view.id, found["id"])
    index = _class(doc, klass)
    url = A.class_url(view.id, found["id"], index)
    if not canonical or str(index) != klass:
        return Redirect(url)
    own = A.stored(state, view.id, found["id"], index)
    levels = A.levels(state, *own) if own else A.class_levels(state, art, doc, index)
    for i, level in enumerate(levels if own else []):  # its own cells open the whole atlas's cell there
        whole = {(c["x"], c["y"]) for c in doc["levels"][i]["cells"]} if i < len(doc["levels"]) else set()
        for c in level["cells"]:
            c["url"] = A.cell_url(view.id, found["id"], i, c["x"], c["y"]) if (c["x"], c["y"]) in whole else None
    chosen, points = A.favouring(doc, index), doc["layout"]["points"]
    name = A.label(doc, index)
    return {**_page(state, view, found, art, doc, "atlas", f"class atlas of {name} in {view.id}/{found['id']}", url),
            "levels": levels,
            "klass": {"class": index, "label": name, "vectors": sum(chosen),
                      "icons": "class" if own else "whole atlas"},
            "layout": {"method": doc["layout"]["method"], "seed": doc["layout"]["seed"],
                       "points": [p for p, take in zip(points, chosen) if take]}}


def compare(state: AppState, model: str, layer: str, a: str, b: str) -> Data | Redirect:
    """`/models/M/L/atlas/compare/A/B`: class atlases A and B side by side (the paper's
    "snorkel vs scuba diver") and, on the finest level, the cells holding vectors of both."""
    view, found, canonical = _layer(state, model, layer)
    art, doc = A.require(state, view.id, found["id"])
    ia, ib = _class(doc, a), _class(doc, b)
    url = A.compare_url(view.id, found["id"], ia, ib)
    if not canonical or (str(ia), str(ib)) != (a, b):
        return Redirect(url)
    sides = [{"class": i, "label": A.label(doc, i), "url": A.class_url(view.id, found["id"], i),
              "levels": A.class_levels(state, art, doc, i)} for i in (ia, ib)]
    finest = [{(c["x"], c["y"]): c for c in side["levels"][-1]["cells"]} if side["levels"] else {} for side in sides]
    shared = [{"x": x, "y": y, "image": finest[0][(x, y)]["image"], "url": finest[0][(x, y)]["url"],
               "counts": [finest[0][(x, y)]["count"], finest[1][(x, y)]["count"]]}
              for x, y in sorted(finest[0].keys() & finest[1].keys(), key=lambda p: (p[1], p[0]))]
    title = f"{sides[0]['label']} vs {sides[1]['label']} in {view.id}/{found['id']}"
    return {**_page(state, view, found, art, doc, "atlas_compare", title, url),
            "choices": A.class_choices(doc), "sides": sides, "shared": shared}


def _cell_place(doc: A.Doc, level: str, x: str, y: str) -> tuple[int, A.Doc]:
    """The level index and the stored cell at (level, x, y); NotFound names what exists."""
    levels = doc["levels"]
    where = f"{doc['model']}/{doc['layer']}"
    if not level.isdigit() or int(level) >= len(levels):
        raise NotFound(f"no level {level!r} in the atlas of {where}: levels are 0-{len(levels) - 1}, "
                       "coarsest first", suggestions=[where])
    i = int(level)
    grid = levels[i]["grid"]
    for cell in levels[i]["cells"]:
        if (str(cell["x"]), str(cell["y"])) == (x, y):
            return i, cell
    raise NotFound(f"no cell ({x}, {y}) on level {i} ({grid}×{grid}) of the atlas of {where}: cells "
                   f"are 0-{grid - 1} each way, and a cell with fewer than "
                   f"{levels[i].get('min_count', 1)} vectors is left out", suggestions=[where])


def _photo(doc: A.Doc, art, vector: int) -> Data:
    """One of a cell's photos, with where in it the vector was taken (`box`: left, top, width,
    height in % of the photo)."""
    index = doc["vectors"]["photo"][vector]
    px, py = doc["vectors"]["position"][vector]
    rows, cols = doc.get("positions_grid") or (1, 1)
    info = doc["photos"][str(index)]
    jpeg = art.files.get(f"photos/{index}.jpg")
    return {"photo": index, "path": info["path"], "label": info.get("label"),
            "image": blob_url(jpeg, "photo.jpg") if jpeg else None, "position": [px, py],
            "box": [round(100 * px / cols, 3), round(100 * py / rows, 3), round(100 / cols, 3), round(100 / rows, 3)],
            "predicted": [{"class": c, "label": A.label(doc, c), "p": p} for c, p in info["predicted"][:3]]}


def _family(art, doc: A.Doc, model: str, layer: str, i: int, cell: A.Doc) -> tuple[Data | None, list[Data]]:
    """The cell containing this one on the level above, and the cells inside it on the level below."""
    levels = doc["levels"]
    grid = levels[i]["grid"]
    parent = None
    if i > 0:
        up = levels[i - 1]["grid"]
        px, py = cell["x"] * up // grid, cell["y"] * up // grid
        if any((c["x"], c["y"]) == (px, py) for c in levels[i - 1]["cells"]):
            parent = {"level": i - 1, "x": px, "y": py, "url": A.cell_url(model, layer, i - 1, px, py)}
    children = []
    if i + 1 < len(levels):
        down = levels[i + 1]["grid"]
        inside = [c for c in levels[i + 1]["cells"]
                  if (c["x"] * grid // down, c["y"] * grid // down) == (cell["x"], cell["y"])]
        children = [{"level": i + 1, "x": c["x"], "y": c["y"], "url": A.cell_url(model, layer, i + 1, c["x"], c["y"]),
                     "image": A.icon_url(art, i + 1, c)} for c in inside]
    return parent, children


def cell(state: AppState, model: str, layer: str, level: str, x: str, y: str) -> Data | Redirect:
    """`/models/M/L/atlas/LEVEL/X/Y`: one cell of the atlas."""
    view, found, canonical = _layer(state, model, layer)
    art, doc = A.require(state, view.id, found["id"])
    i, stored_cell = _cell_place(doc, level, x, y)
    url = A.cell_url(view.id, found["id"], i, stored_cell["x"], stored_cell["y"])
    if not canonical or level != str(i):
        return Redirect(url)
    shown = A.cell_view(state, art, doc, i, stored_cell)
    thumbs = thumbnails(state.store, view.id, [(found["id"], u["unit"]) for u in shown["units"]])
    for u in shown["units"]:
        u["image"] = thumbs[(found["id"], u["unit"])]
    picked = {c["class"] for c in A.class_choices(doc)}
    for c in shown["classes"]:
        c["url"] = A.class_url(view.id, found["id"], c["class"]) if c["class"] in picked else None
    parent, children = _family(art, doc, view.id, found["id"], i, stored_cell)
    grid = doc["levels"][i]["grid"]
    title = f"atlas cell ({stored_cell['x']}, {stored_cell['y']}) of {grid}×{grid} in {view.id}/{found['id']}"
    return {**_page(state, view, found, art, doc, "atlas_cell", title, url), **shown,
            "level": i, "grid": grid, "levels": len(doc["levels"]), "positions_grid": doc.get("positions_grid"),
            "photos": [_photo(doc, art, v) for v in stored_cell["photos"]],
            "parent": parent, "children": children}
