"""The inspection as one HTML page: `inspect_html(result) -> str` (torch-free).

Self-contained: inline styles and SVG, no scripts, nothing fetched from the network; images
are the PNG files named in the result, next to the page. Every text from outside (labels,
model names) is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.2em;border-top:1px solid #ccc;padding-top:.6em}
h3{font-size:1em;margin:.8em 0 .3em}
.row{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
.card{border:1px solid #ddd;border-radius:4px;padding:4px;width:150px;font-size:12px}
.card img{width:150px;height:150px;display:block;image-rendering:auto}
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
    cards = []
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


def flow_svg(result: dict[str, Any], width: int = 900) -> str:
    """The attribution as a flow diagram: a column of groups per layer, then the top classes;
    a line's width is the attribution's size (positive solid, negative dashed red)."""
    order = result["order"]
    columns = [[(g["colour"], f"{layer} g{g['index']}") for g in result["layers"][layer]["groups"]]
               for layer in order]
    columns.append([("#444", p["label"]) for p in result["predictions"]])
    step = width / (len(columns) + 0.5)
    height = 40 + 34 * max(len(c) for c in columns)
    pos = [[(60 + step * i, 30 + 34 * j) for j in range(len(col))] for i, col in enumerate(columns)]
    edges = []  # (column, from, to, value)
    for i, layer in enumerate(order):
        attr = result["layers"][layer]["attribution"]
        if attr["next"]:
            edges += [(i, a, b, v) for a, row in enumerate(attr["groups"]) for b, v in enumerate(row)]
        if i == len(order) - 1:
            edges += [(i, a, b, v) for b, c in enumerate(attr["classes"]) for a, v in enumerate(c["groups"])]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             "font-size='11' font-family='sans-serif'>"]
    for i in range(len(columns) - 1):
        mine = [e for e in edges if e[0] == i]
        biggest = max((abs(e[3]) for e in mine), default=0.0) or 1.0
        for _, a, b, v in mine:
            if abs(v) < 0.1 * biggest:
                continue
            (x1, y1), (x2, y2) = pos[i][a], pos[i + 1][b]
            style = "stroke:#6a8caf" if v > 0 else "stroke:#c44;stroke-dasharray:4 3"
            parts.append(f"<line x1='{x1 + 8:.0f}' y1='{y1:.0f}' x2='{x2 - 8:.0f}' y2='{y2:.0f}' "
                         f"style='{style};stroke-width:{0.5 + 6 * abs(v) / biggest:.1f};"
                         f"stroke-opacity:.7'><title>{v:.4g}</title></line>")
    for i, col in enumerate(columns):
        for (colour, name), (x, y) in zip(col, pos[i]):
            parts.append(f"<circle cx='{x:.0f}' cy='{y:.0f}' r='8' fill='{colour}' stroke='#333'/>"
                         f"<text x='{x + 11:.0f}' y='{y + 4:.0f}'>{escape(name)}</text>")
    return "".join(parts) + "</svg>"


def inspect_html(result: dict[str, Any]) -> str:
    """The whole page for `inspect_photo`'s result (without or with its `files`)."""
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
                "<h3>Neuron groups</h3><div class=row>"
                f"<img src='{escape(entry['overlay'])}' width=224 height=224 alt='groups over the photo'>"
                f"</div>{_groups(model, layer, entry)}",
                "<div class=row><div><h3>Activation grid <span class=muted>(hover: the photo)"
                f"</span></h3>{_grid(result['photo'], entry)}</div>",
                "<div><h3>Semantic dictionary <span class=muted>(top unit per position; hover: "
                f"top {len(entry['dictionary'][0]['units']) if entry['dictionary'] else 0})"
                f"</span></h3>{_dictionary(result['photo'], model, layer, entry)}</div></div>"]
    return "".join(out) + "</body></html>"
