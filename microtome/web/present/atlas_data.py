"""What the atlas pages share: finding a layer's atlases in the store, reading their
`atlas.json` (techniques/atlas.py) once, and laying out cells as the pages and their JSON show them.

`stored(state, model, layer, klass=None) -> (artifact, document) | None` (the whole atlas, or
the class atlas of class `klass` built by `microtome atlas --class`); `levels(...)` gives the
page's `levels` `[{grid, cells: [{x, y, count, image, direction, classes, units, url}]}]`;
`class_levels(...)` the same layout filtered to one class. No torch, no UMAP here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from microtome.errors import NotFound
from microtome.store import Artifact
from microtome.techniques.atlas_layout import class_cells, favoured_counts, favours
from microtome.techniques.registry import Role, by_role
from microtome.web.present.artifacts import PRESET_RANK, blob_url
from microtome.web.present.links import unit_link
from microtome.web.present.state import AppState

Doc = dict[str, Any]


def atlas_url(m: str, layer: str) -> str:
    return f"/models/{m}/{layer}/atlas"


def cell_url(m: str, layer: str, level: int, x: int, y: int) -> str:
    return f"{atlas_url(m, layer)}/{level}/{x}/{y}"


def class_url(m: str, layer: str, klass: int) -> str:
    return f"{atlas_url(m, layer)}/class/{klass}"


def compare_url(m: str, layer: str, a: int, b: int) -> str:
    return f"{atlas_url(m, layer)}/compare/{a}/{b}"


def _best(artifacts: Sequence[Artifact]) -> Artifact | None:
    """The most expensive preset, then the newest (as `artifacts.pick` chooses)."""
    ranked = sorted(artifacts, key=lambda a: (PRESET_RANK.get(str(a.params.get("preset")), -1), a.created))
    return ranked[-1] if ranked else None


def stored(state: AppState, model: str, layer: str, klass: int | None = None) -> tuple[Artifact, Doc] | None:
    """The layer's best atlas (`klass` None) or class atlas of `klass`, with its document."""
    atlases = state.store.find(model, layer, None, by_role(Role.ATLAS_MAP).id)
    found = [a for a in atlases if a.params.get("class") == klass]
    art = _best(found)
    if art is None:
        return None
    sha = art.files["atlas.json"]
    doc = state.indexes.get(("atlas", sha), lambda: json.loads(state.store.read(sha)))
    return art, doc


def require(state: AppState, model: str, layer: str) -> tuple[Artifact, Doc]:
    """The whole atlas, or a 404 saying how to build it."""
    found = stored(state, model, layer)
    if found is None:
        raise NotFound(f"no activation atlas of {model}/{layer} is built: `microtome atlas {model} {layer} "
                       f"--dataset DATASET` builds one", suggestions=[f"{model}/{layer}"])
    return found


def label(doc: Doc, klass: int) -> str:
    return doc["labels"].get(str(klass), f"class {klass}")


def _classes(doc: Doc, pairs: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    return [{"class": int(c), "label": label(doc, int(c)), "score": s} for c, s in pairs]


def _units(state: AppState, model: str, layer: str, pairs: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    return [{"unit": int(u), "weight": w, "url": unit_link(state.exported, model, layer, int(u))} for u, w in pairs]


def opacity(count: int, most: int) -> float:
    """An icon's opacity by its cell's density (the paper's): 0.25 to 1, by √(count / most)."""
    return round(0.25 + 0.75 * math.sqrt(count / most), 3) if most else 1.0


def icon_url(art: Artifact, level: int, cell: Doc) -> str | None:
    icon = art.files.get(f"icons/{level}/{cell['x']}-{cell['y']}.png")
    return blob_url(icon, "icon.png") if icon else None


def cell_view(state: AppState, art: Artifact, doc: Doc, level: int, cell: Doc, directions: bool = True) -> Doc:
    """One cell as the pages show it: the JSON fields of the issue plus its page URL."""
    model, layer = doc["model"], doc["layer"]
    out = {"x": cell["x"], "y": cell["y"], "count": cell["count"], "image": icon_url(art, level, cell),
           "classes": _classes(doc, cell["classes"]), "units": _units(state, model, layer, cell["units"]),
           "url": cell_url(model, layer, level, cell["x"], cell["y"]) if doc.get("class") is None else None}
    if directions:
        out["direction"] = cell["direction"]
    return out


def levels(state: AppState, art: Artifact, doc: Doc) -> list[Doc]:
    """Every level of a stored atlas, coarsest first, each cell with its opacity."""
    out = []
    for i, level in enumerate(doc["levels"]):
        most = max((c["count"] for c in level["cells"]), default=0)
        out.append({"level": i, "grid": level["grid"],
                    "cells": [{**cell_view(state, art, doc, i, c), "opacity": opacity(c["count"], most)}
                              for c in level["cells"]]})
    return out


def class_levels(state: AppState, art: Artifact, doc: Doc, klass: int) -> list[Doc]:
    """The whole atlas's cells that hold vectors favouring `klass`, each with `count` the number
    of those vectors (`cell_count`: all of its vectors) and its icon: the class atlas on the
    whole atlas's layout, without rendering anything. A cell lists the 3 classes and 5 units its
    tooltip shows (its page has the rest): a static export holds a page per class."""
    points, chosen = doc["layout"]["points"], favouring(doc, klass)
    out = []
    for i, level in enumerate(doc["levels"]):
        grid = level["grid"]
        by_place = {(c["x"], c["y"]): c for c in level["cells"]}
        counts = class_cells(points, chosen, grid, lambda x, y: (x, y) in by_place)
        most = max(counts.values(), default=0)
        cells = [{**cell_view(state, art, doc, i, {**c, "classes": c["classes"][:3], "units": c["units"][:5]},
                              directions=False),
                  "count": counts[(c["x"], c["y"])], "cell_count": c["count"],
                  "opacity": opacity(counts[(c["x"], c["y"])], most)}
                 for c in level["cells"] if (c["x"], c["y"]) in counts]
        out.append({"level": i, "grid": grid, "cells": cells})
    return out


def favouring(doc: Doc, klass: int) -> list[bool]:
    """Which vectors favour `klass` `[N]` (`atlas_layout.favours`)."""
    return favours(doc["vectors"]["classes"], doc["vectors"]["scores"], klass)


def class_choices(doc: Doc) -> list[Doc]:
    """The classes some vector favours, by how many do (then by name): the class picker."""
    counts = favoured_counts(doc["vectors"]["classes"], doc["vectors"]["scores"])
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], label(doc, kv[0])))
    return [{"class": c, "label": label(doc, c), "vectors": n,
             "url": class_url(doc["model"], doc["layer"], c)} for c, n in ranked]


def summary(doc: Doc, art: Artifact) -> Doc:
    """The atlas's figures a page states: vectors, photos, params, stage times, agreement."""
    meta = art.meta
    return {"vectors": len(doc["vectors"]["photo"]), "photos": len(doc["photos"]),
            "positions": doc.get("positions_per_photo"), "preset": art.params.get("preset"),
            "steps": art.params.get("steps"), "size": art.params.get("size"),
            "grids": [level["grid"] for level in doc["levels"]],
            "seconds": meta.get("seconds"), "agreement": meta.get("agreement"),
            "trained": (meta.get("provenance") or {}).get("trained", True)}
