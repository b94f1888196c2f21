"""The layer graph as an inline SVG: `graph_svg(layers, edges, href) -> Markup`.

Nodes are drawn top to bottom in the spec's order, each a link showing id, kind, output shape
`CxHxW`, unit count and a DeepDream thumbnail when one exists. An edge between neighbours is a
short arrow; an edge that skips nodes (a residual, a branch) arcs on the right, further out the
longer it is, so that every edge of a DAG stays visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup, escape

NODE_W, NODE_H, GAP, LEFT, THUMB = 440, 72, 30, 12, 64


def _y(index: int) -> int:
    return GAP // 2 + index * (NODE_H + GAP)


def _node(layer: dict[str, Any], top: int, href: Callable[[str], str]) -> str:
    c = layer["channels"]
    h, w = (layer.get("size") or (1, 1))[:2]
    shape = f"{c}\u00d7{h}\u00d7{w}"
    units = f"{c} unit{'s' if c != 1 else ''}"
    x_text = LEFT + THUMB + 18
    thumb = layer.get("deepdream")
    if thumb:
        picture = (f'<image href="{escape(href(thumb))}" x="{LEFT + 4}" y="{top + 4}" width="{THUMB}" '
                   f'height="{THUMB}" preserveAspectRatio="xMidYMid slice"/>')
    else:
        picture = (f'<rect class="nothumb" x="{LEFT + 4}" y="{top + 4}" width="{THUMB}" height="{THUMB}" rx="4"/>'
                   f'<text class="nothumb-label" x="{LEFT + 4 + THUMB // 2}" y="{top + 40}" '
                   f'text-anchor="middle">no dream</text>')
    aliases = ", ".join(layer.get("aliases") or ())
    tip = f"{layer['id']} ({layer.get('module', '')})" + (f", alias {aliases}" if aliases else "")
    return (
        f'<a href="{escape(href(layer["url"]))}" class="node" data-layer="{escape(layer["id"])}">'
        f"<title>{escape(tip)}</title>"
        f'<rect x="{LEFT}" y="{top}" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
        f"{picture}"
        f'<text class="node-id" x="{x_text}" y="{top + 26}">{escape(layer["id"])}'
        f'<tspan class="node-kind" dx="10">{escape(layer.get("kind", ""))}</tspan></text>'
        f'<text class="node-shape" x="{x_text}" y="{top + 50}">{escape(shape)}'
        f'<tspan dx="14">{escape(units)}</tspan></text>'
        f'<text class="node-built" x="{LEFT + NODE_W - 12}" y="{top + 26}" text-anchor="end">'
        f'{escape(layer.get("built_label", ""))}</text>'
        "</a>"
    )


def graph_svg(layers: Sequence[dict[str, Any]], edges: Sequence[Sequence[str]],
              href: Callable[[str], str]) -> Markup:
    """Each layer needs `id`, `kind`, `channels`, `size`, `url` and may have `deepdream` (an
    image URL) and `built_label`; `href` maps a site URL to the link to write."""
    index = {layer["id"]: i for i, layer in enumerate(layers)}
    paths, arc = [], 0
    for a, b in edges:
        if a not in index or b not in index:
            continue  # an edge to a layer the page does not show
        i, j = index[a], index[b]
        x_mid = LEFT + NODE_W // 2
        if j == i + 1:
            paths.append(f'<path class="edge" d="M{x_mid},{_y(i) + NODE_H} L{x_mid},{_y(j) - 2}" '
                         'marker-end="url(#arrow)"/>')
            continue
        arc += 1
        x0, bulge = LEFT + NODE_W, 24 + 14 * min(arc, 12)
        y0, y1 = _y(i) + NODE_H // 2, _y(j) + NODE_H // 2
        paths.append(f'<path class="edge skip" d="M{x0},{y0} C{x0 + bulge},{y0} {x0 + bulge},{y1} {x0 + 2},{y1}" '
                     'marker-end="url(#arrow)"/>')
    width = LEFT + NODE_W + 40 + 14 * min(arc, 12)
    height = _y(len(layers)) - GAP // 2 + 4
    nodes = "".join(_node(layer, _y(i), href) for i, layer in enumerate(layers))
    return Markup(
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="layer graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        f'{"".join(paths)}{nodes}</svg>'
    )
