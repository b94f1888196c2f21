"""A finished inspection as page data: `result_data(store, model, job_id, result) -> {"predictions", "layers", ...}`.

The result of `inspect_photo` names its PNGs; here they become URLs served from memory
(`/models/M/inspect/JOB/NAME`), every unit becomes a link to its unit page with its built
feature-vis thumbnail (None when not built: the unit page renders it on demand), each
dictionary position gets its box over the photo, and the attribution is drawn as a flow
diagram (`flow_svg`, inline SVG; its numbers stay in each layer's `attribution`). Torch-free.
"""

from __future__ import annotations

import copy
from typing import Any

from markupsafe import Markup

from microtome.inspect.html import flow_svg, with_image_urls
from microtome.store import Store
from microtome.web.present.artifacts import thumbnails
from microtome.web.present.links import unit_url

GROUP_UNITS = 6  # units linked under each group
Data = dict[str, Any]


def job_url(model: str, job_id: str) -> str:
    return f"/models/{model}/inspect/{job_id}"


def _units(layer: str, entries: list[Data]) -> list[tuple[str, int]]:
    return [(layer, int(u["unit"])) for u in entries]


def _link(model: str, layer: str, entry: Data, thumbs: dict[tuple[str, int], str | None]) -> Data:
    unit = int(entry["unit"])
    return {**entry, "layer": layer, "shorthand": f"{model}/{layer}:{unit}",
            "url": unit_url(model, layer, unit), "thumbnail": thumbs.get((layer, unit))}


def _wanted(layer: str, entry: Data) -> list[tuple[str, int]]:
    """The units of a layer's entry that the page shows with thumbnails."""
    units = [u for g in entry["groups"] for u in _units(layer, g["units"][:GROUP_UNITS])]
    units += [u for d in entry["dictionary"] for u in _units(layer, d["units"][:1])]
    return units


def _layer(model: str, layer: str, entry: Data, thumbs: dict[tuple[str, int], str | None]) -> Data:
    """One layer's entry with unit links, thumbnails and the dictionary's boxes."""
    _c, h, w = entry["shape"]
    for group in entry["groups"]:
        group["units"] = [_link(model, layer, u, thumbs) for u in group["units"]]
    for pos in entry["dictionary"]:
        y, x = pos["y"], pos["x"]
        pos["box"] = [round(y / h, 4), round(x / w, 4), round((y + 1) / h, 4), round((x + 1) / w, 4)]
        pos["units"] = [_link(model, layer, u, thumbs) for u in pos["units"]]
    for cell in entry["grid"]:
        cell["units"] = [_link(model, layer, u, thumbs) for u in cell.get("units", [])]
    attr = entry["attribution"]
    entry["attribution_table"] = {
        "next": attr.get("next"),
        "groups": attr.get("groups") or [],
        "classes": [{"class": c["class"], "groups": c["groups"], "total": c.get("total")}
                    for c in attr.get("classes") or []]}
    return entry


def result_data(store: Store, model: str, job_id: str, result: Data, files: dict[str, bytes]) -> Data:
    """The page's (and JSON twin's) view of a finished inspection; `result` is not changed."""
    base = job_url(model, job_id)
    out = with_image_urls(copy.deepcopy(result), lambda name: f"{base}/{name}" if name in files else None)
    wanted = [u for layer in out["order"] for u in _wanted(layer, out["layers"][layer])]
    thumbs = thumbnails(store, model, wanted)
    labels = {p["class"]: p["label"] for p in out["predictions"]}
    for layer in out["order"]:
        out["layers"][layer] = _layer(model, layer, out["layers"][layer], thumbs)
        for c in out["layers"][layer]["attribution_table"]["classes"]:
            c["label"] = labels.get(c["class"], f"class {c['class']}")
    out["flow_svg"] = Markup(flow_svg(out))  # flow_svg escapes every label and name it draws
    return out
