"""The inspection as one HTML page: `inspect_html(result) -> str` (torch-free).

Self-contained: inline styles and SVG, no scripts, nothing fetched from the network; images
are the PNG files named in the result, next to the page. Every text from outside (labels,
model names) is escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from html import escape
from typing import Any

IMAGE_KEYS = ("photo", "overlay", "image", "map_image")  # where a result names its PNGs

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.2em;border-top:1px solid #ccc;padding-top:.6em}
h3{font-size:1em;margin:.8em 0 .3em}
.row{display:flex;gap:.6em;flex-wrap:wrap;align-items:flex-start}
.card{border:1px solid #ddd;border-radius:4px;padding:4px;width:128px;font-size:11px}
.card img{width:128px;height:128px;display:block}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:middle}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}
.over{position:relative;width:336px;height:336px;background-size:cover}
.over .cell{position:absolute;box-sizing:border-box;overflow:hidden}
.over.grid .cell img{width:100%;height:100%;display:block;transition:opacity .2s}
.over.grid:hover .cell img{opacity:.12}
.over.dict .cell{border:1px solid rgba(255,255,255,.25);color:#fff;font-size:9px;
  text-shadow:0 0 2px #000;padding:1px}
.over.dict .cell:hover{background:rgba(255,255,255,.3)}
.muted{color:#777}
"""


def _pct(v: float) -> str:
    return f"{100 * v:.4g}%"


def _unit_list(model: str, layer: str, units: list[dict], key: str) -> str:
    return ", ".join(f"<span title='{escape(model)}/{escape(layer)}:{u['unit']}'>{u['unit']}"
                     f"<span class=muted> ({u[key]:.3g})</span></span>" for u in units)


def _groups(model: str, layer: str, entry: dict) -> str:
    cards = [f"<div class=card><b>all groups</b><img src='{escape(entry['overlay'])}' "
             "alt='the groups over the photo'></div>"]
    for g in entry["groups"]:
        vis = (f"<img src='{escape(g['image'])}' alt='group {g['index']} feature visualization'>"
               if g.get("image") else "<div class=muted>(not rendered)</div>")
        cards.append(
            f"<div class=card><b><span class=swatch style='background:{g['colour']}'></span> "
            f"group {g['index']}</b> <span class=muted>mass {g['mass']:.4g}</span>"
            f"<img src='{escape(g['map_image'])}' alt='where group {g['index']} is'>{vis}"
            f"units: {_unit_list(model, layer, g['units'][:6], 'weight')}</div>")
    return "<div class=row>" + "".join(cards) + "</div>"


def _cells(photo: str, cells: list[tuple[list[float], str]], kind: str) -> str:
    """Absolutely placed cells over the photo: (box [top, left, bottom, right], inner html)."""
    out = [f"<div class='over {kind}' style=\"background-image:url('{escape(photo)}')\">"]
    for (top, left, bottom, right), inner in cells:
        out.append(f"<div class=cell style='top:{_pct(top)};left:{_pct(left)};"
                   f"height:{_pct(bottom - top)};width:{_pct(right - left)}'>{inner}</div>")
    return "".join(out) + "</div>"


def _grid(photo: str, entry: dict) -> str:
    cells = [(c["box"], f"<img src='{escape(c['image'])}' title='cell ({c['y']}, {c['x']})'>"
              if c.get("image") else "") for c in entry["grid"]]
    return _cells(photo, cells, "grid")


def _dictionary(photo: str, model: str, layer: str, entry: dict) -> str:
    _c, h, w = entry["shape"]
    cells = []
    for d in entry["dictionary"]:
        box = [d["y"] / h, d["x"] / w, (d["y"] + 1) / h, (d["x"] + 1) / w]
        tip = "; ".join(f"{model}/{layer}:{u['unit']} = {u['activation']:.3g}" for u in d["units"])
        label = d["units"][0]["unit"] if d["units"] and w <= 28 else ""
        cells.append((box, f"<span title='{escape(tip)}'>{label}</span>"))
    return _cells(photo, cells, "dict")


def flow_svg(result: dict[str, Any], width: int = 900, keep: float = 0.2) -> str:
    """The attribution as a flow diagram: a column of groups per layer (their feature
    visualizations, framed in their colours), then the top classes; a line's width is the
    attribution's size (positive solid blue, negative dashed red); lines under `keep` of the
    largest between two columns are left out (the JSON has every number)."""
    order = result["order"]
    columns = [[(g["colour"], f"{layer} g{g['index']}", g.get("image"))
                for g in result["layers"][layer]["groups"]] for layer in order]
    columns.append([("#444", p["label"], None) for p in result["predictions"]])
    step, node = width / (len(columns) + 0.6), 34
    height = 20 + (node + 10) * max(len(c) for c in columns)
    pos = [[(40 + step * i, 10 + node / 2 + (node + 10) * j) for j in range(len(col))]
           for i, col in enumerate(columns)]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height:.0f}' "
             "font-size='11' font-family='sans-serif'>"]
    for i, mine in enumerate(_flow_edges(result)):
        biggest = max((abs(v) for _, _, v in mine), default=0.0) or 1.0
        for a, b, v in mine:
            if abs(v) < keep * biggest:
                continue
            (x1, y1), (x2, y2) = pos[i][a], pos[i + 1][b]
            style = "stroke:#4a7cb0" if v > 0 else "stroke:#c44;stroke-dasharray:4 3"
            parts.append(f"<path d='M{x1 + node / 2:.0f},{y1:.0f} C{(x1 + x2) / 2:.0f},{y1:.0f} "
                         f"{(x1 + x2) / 2:.0f},{y2:.0f} {x2 - node / 2 - 2:.0f},{y2:.0f}' fill='none' "
                         f"style='{style};stroke-width:{0.5 + 7 * abs(v) / biggest:.1f};"
                         f"stroke-opacity:.6'><title>{v:.4g}</title></path>")
    for i, col in enumerate(columns):
        for (colour, name, image), (x, y) in zip(col, pos[i]):
            side = node if i < len(columns) - 1 else 12  # classes: a dot and a label
            x0, y0 = x - node / 2, y - side / 2
            if image:
                parts.append(f"<image href='{escape(image)}' x='{x0:.0f}' y='{y0:.0f}' "
                             f"width='{node}' height='{node}'/>")
            parts.append(f"<rect x='{x0:.0f}' y='{y0:.0f}' width='{side}' height='{side}' rx='3' "
                         f"fill='{'none' if image else colour}' stroke='{colour}' stroke-width='3'>"
                         f"<title>{escape(name)}</title></rect>")
            if i == len(columns) - 1:
                parts.append(f"<text x='{x0 + side + 4:.0f}' y='{y + 4:.0f}'>{escape(name)}</text>")
    for i, layer in enumerate(order):
        parts.append(f"<text x='{pos[i][0][0] - node / 2:.0f}' y='{height - 2:.0f}'>{escape(layer)}</text>")
    return "".join(parts) + "</svg>"


def _flow_edges(result: dict[str, Any]) -> list[list[tuple[int, int, float]]]:
    """Per pair of neighbouring columns, `(from, to, attribution)`: each layer's groups to the
    next layer's, and the last layer's groups to the top classes."""
    order, edges = result["order"], []
    for i, layer in enumerate(order):
        attr = result["layers"][layer]["attribution"]
        if i < len(order) - 1:
            edges.append([(a, b, v) for a, row in enumerate(attr["groups"]) for b, v in enumerate(row)])
        else:
            edges.append([(a, b, v) for b, c in enumerate(attr["classes"])
                          for a, v in enumerate(c["groups"])])
    return edges


def with_image_urls(value: Any, url: Callable[[str], str | None]) -> Any:
    """A copy of a result in which every image name (under `IMAGE_KEYS`) that `url` maps to a
    URL is that URL instead (names it maps to None stay); `files` is left out."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "files":
                continue
            mapped = url(v) if k in IMAGE_KEYS and isinstance(v, str) else None
            out[k] = mapped if mapped is not None else with_image_urls(v, url)
        return out
    if isinstance(value, list):
        return [with_image_urls(v, url) for v in value]
    return value


def with_data_urls(value: Any, files: dict[str, bytes]) -> Any:
    """A copy of a result in which every PNG named in `files` is a `data:` URL instead, for a
    page in one file (or a JSON answer that carries its images)."""
    return with_image_urls(value, lambda name: f"data:image/png;base64,{base64.b64encode(files[name]).decode()}"
                           if name in files else None)


def inspect_html(result: dict[str, Any], files: dict[str, bytes] | None = None) -> str:
    """The whole page for `inspect_photo`'s result; with `files`, the images are inside the
    page as `data:` URLs (one file), else named files next to it."""
    if files:
        result = with_data_urls(result, files)
    model = result["model"]
    title = f"Inspect {model}"
    untrained = "" if result.get("trained", True) else " <b>(untrained: random weights)</b>"
    rows = "".join(f"<tr><td>{p['class']}</td><td>{escape(p['label'])}</td><td>{p['p']:.3f}</td></tr>"
                   for p in result["predictions"])
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
           f"<style>{STYLE}</style></head><body><h1>{escape(title)}{untrained}</h1>",
           f"<div class=row><img src='{escape(result['photo'])}' width=224 height=224 alt='the photo'>"
           f"<table><tr><th>class</th><th>label</th><th>p</th></tr>{rows}</table></div>",
           "<h2>How the groups feed each other and the classes</h2>",
           "<p class=muted>gradient × activation; line width: size; dashed red: negative</p>",
           flow_svg(result)]
    for layer in result["order"]:
        entry = result["layers"][layer]
        c, h, w = entry["shape"]
        out += [f"<h2>{escape(layer)} <span class=muted>{c} units at {h}×{w}; "
                f"{len(entry['groups'])} groups explain {entry['explained']:.0%}</span></h2>",
                "<h3>Neuron groups <span class=muted>(each a direction in the layer's units: "
                "where it is in the photo, its feature visualization, its top units)</span></h3>"
                f"{_groups(model, layer, entry)}",
                "<div class=row><div><h3>Activation grid <span class=muted>(hover: the photo)"
                f"</span></h3>{_grid(result['photo'], entry)}</div>",
                "<div><h3>Semantic dictionary <span class=muted>(top unit per position; hover: "
                f"top {len(entry['dictionary'][0]['units']) if entry['dictionary'] else 0})"
                f"</span></h3>{_dictionary(result['photo'], model, layer, entry)}</div></div>"]
    return "".join(out) + "</body></html>"
