"""The layer graph as an inline SVG: `graph_svg(layers, edges, href) -> Markup`.

Nodes are drawn top to bottom in the spec's order, each a link showing id, kind, output shape
`CxHxW`, unit count and a DeepDream thumbnail when one exists. A layer's branches
(`layer_groups`) are drawn beside it in one frame, so a transformer reads as blocks.
An edge between neighbours is a short arrow; an edge that skips nodes (a residual, a branch)
arcs on the right, further out the longer it is, so that every edge of a DAG stays visible.

`circuit_svg(circuit, href) -> Markup` draws a unit's circuit (circuit.py): layers as columns in
the model's order, edges green (excitatory) or red (inhibitory), as wide as they are strong,
every node a link with its feature-vis thumbnail (or a placeholder).

Blocks, `layer_groups(layer_ids) -> [Group]`. The rule (generic, no model names): a layer whose
id is `X_SUFFIX`, where `X` is another layer of the model and `SUFFIX` is lowercase letters
only (`mlp`, `attn`, ...), is a *branch* of `X` and is drawn beside it, in one block. So a
transformer's `block6_mlp` (the MLP's hidden activation) sits beside `block6` (the residual
stream, which stays the chain). A suffix with a digit (`stage1_block0`, `layer1_0`, `conv1_2`)
names a numbered part of its own: a row of the chain like any other layer, so CNN graphs draw
one layer per row. A branch whose main is absent stays a row of its own. `group_edges(groups,
edges)` maps the card's edges onto the drawing: an edge inside a group joins a branch to its
main, an edge between groups joins their main layers (the chain).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from microtome.techniques.registry import Role, by_role

# ---- blocks: layers grouped for the model page's graph ---------------------------------
_BRANCH = re.compile(r"^(?P<main>.+)_(?P<suffix>[a-z]+)$")


@dataclass(frozen=True)
class Group:
    """One row of the graph: `main` (the chain's layer) and its `branches` (layer ids, card order)."""

    main: str
    branches: tuple[str, ...] = ()

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.main, *self.branches)

    def to_json(self) -> dict[str, object]:
        return {"id": self.main, "layers": list(self.layers)}


def main_of(layer_id: str, layer_ids: Iterable[str]) -> str | None:
    """The layer `layer_id` is a branch of (`X` for `X_SUFFIX`, letters-only suffix), or None."""
    found = _BRANCH.match(layer_id)
    if found is None or found["main"] == layer_id:
        return None
    return found["main"] if found["main"] in set(layer_ids) else None


def layer_groups(layer_ids: Sequence[str]) -> list[Group]:
    """The graph's rows: every layer that is not a branch, in card order, with its branches."""
    ids = list(layer_ids)
    branches: dict[str, list[str]] = {}
    for lid in ids:
        main = main_of(lid, ids)
        if main is not None and main_of(main, ids) is None:  # one level: a branch of a branch is a row
            branches.setdefault(main, []).append(lid)
    grouped = {b for bs in branches.values() for b in bs}
    return [Group(lid, tuple(branches.get(lid, ()))) for lid in ids if lid not in grouped]


def group_edges(groups: Sequence[Group], edges: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """The edges to draw, in card order: an edge between two groups is drawn between their main
    layers (once), one inside a group as it is. Edges to unknown layers are dropped."""
    owner = {lid: g.main for g in groups for lid in g.layers}
    drawn: list[tuple[str, str]] = []
    for a, b in edges:
        if a not in owner or b not in owner:
            continue
        edge = (a, b) if owner[a] == owner[b] else (owner[a], owner[b])
        if edge != (a, b) and edge in drawn:
            continue  # two card edges onto one chain link (block5 -> block6_mlp and -> block6)
        drawn.append(edge)
    return drawn

# ---- drawing ----------------------------------------------------------------------------

NODE_W, NODE_H, GAP, LEFT, THUMB = 440, 72, 30, 12, 64
BRANCH_W, BRANCH_GAP, BLOCK_PAD = 360, 36, 7  # a block's branch nodes, the gap before each, the block's margin


def _y(index: int) -> int:
    return GAP // 2 + index * (NODE_H + GAP)


def _x(col: int) -> int:
    """Left edge of the node in column `col` of a row (0: the chain's layer, then its branches)."""
    return LEFT if col == 0 else LEFT + NODE_W + BRANCH_GAP + (col - 1) * (BRANCH_W + BRANCH_GAP)


def _w(col: int) -> int:
    return NODE_W if col == 0 else BRANCH_W


def _node(layer: dict[str, Any], top: int, href: Callable[[str], str], left: int = LEFT,
          width: int = NODE_W) -> str:
    c = layer["channels"]
    h, w = (layer.get("size") or (1, 1))[:2]
    shape = f"{c}\u00d7{h}\u00d7{w}"
    units = f"{c} unit{'s' if c != 1 else ''}"
    x_text = left + THUMB + 18
    thumb = layer.get(by_role(Role.LAYER_IMAGE).id)  # the layer's image (JSON field "deepdream")
    if thumb:
        picture = (f'<image href="{escape(href(thumb))}" x="{left + 4}" y="{top + 4}" width="{THUMB}" '
                   f'height="{THUMB}" preserveAspectRatio="xMidYMid slice"/>')
    else:
        picture = (f'<rect class="nothumb" x="{left + 4}" y="{top + 4}" width="{THUMB}" height="{THUMB}" rx="4"/>'
                   f'<text class="nothumb-label" x="{left + 4 + THUMB // 2}" y="{top + 40}" '
                   f'text-anchor="middle">no dream</text>')
    aliases = ", ".join(layer.get("aliases") or ())
    tip = f"{layer['id']} ({layer.get('module', '')})" + (f", alias {aliases}" if aliases else "")
    return (
        f'<a href="{escape(href(layer["url"]))}" class="node" data-layer="{escape(layer["id"])}">'
        f"<title>{escape(tip)}</title>"
        f'<rect x="{left}" y="{top}" width="{width}" height="{NODE_H}" rx="8"/>'
        f"{picture}"
        f'<text class="node-id" x="{x_text}" y="{top + 26}">{escape(layer["id"])}'
        f'<tspan class="node-kind" dx="10">{escape(layer.get("kind", ""))}</tspan></text>'
        f'<text class="node-shape" x="{x_text}" y="{top + 50}">{escape(shape)}'
        f'<tspan dx="14">{escape(units)}</tspan></text>'
        f'<text class="node-built" x="{left + width - 12}" y="{top + 26}" text-anchor="end">'
        f'{escape(layer.get("built_label", ""))}</text>'
        "</a>" + _atlas_link(layer, top, href, left + width)
    )


def _atlas_link(layer: dict[str, Any], top: int, href: Callable[[str], str], right: int) -> str:
    """A link to the layer's activation atlas, over its node's corner, when one is built."""
    if not layer.get("atlas"):
        return ""
    return (f'<a href="{escape(href(layer["atlas"]))}" class="atlas-link"><title>activation atlas of '
            f'{escape(layer["id"])}</title><text class="node-atlas" x="{right - 12}" y="{top + 52}" '
            'text-anchor="end">atlas</text></a>')


def _block_box(group: Group, row: int) -> str:
    """The frame around a block's chain layer and its branches (nothing for a lone layer)."""
    if not group.branches:
        return ""
    col = len(group.branches)
    width = _x(col) + _w(col) - LEFT + 2 * BLOCK_PAD
    return (f'<g class="block" data-block="{escape(group.main)}"><title>{escape(group.main)}: '
            f'{escape(", ".join(group.branches))} beside it</title>'
            f'<rect x="{LEFT - BLOCK_PAD}" y="{_y(row) - BLOCK_PAD}" width="{width}" '
            f'height="{NODE_H + 2 * BLOCK_PAD}" rx="12"/></g>')


def _edge(a: tuple[int, int], b: tuple[int, int], right: dict[int, int], arc: int) -> str:
    """The path of one edge between (row, column) places; `arc` numbers the skips so far."""
    (i, ca), (j, cb) = a, b
    if i == j:  # inside a block: a branch and its chain layer, side by side
        x0, x1 = (_x(ca), _x(cb) + _w(cb)) if ca > cb else (_x(ca) + _w(ca), _x(cb))
        y = _y(i) + NODE_H // 2
        return f'<path class="edge branch" d="M{x0},{y} L{x1 + (2 if ca > cb else -2)},{y}" marker-end="url(#arrow)"/>'
    if j == i + 1 and ca == cb == 0:
        x_mid = LEFT + NODE_W // 2
        return f'<path class="edge" d="M{x_mid},{_y(i) + NODE_H} L{x_mid},{_y(j) - 2}" marker-end="url(#arrow)"/>'
    x0, x1 = right[i], right[j]
    x_far, bulge = max(x0, x1), 24 + 14 * min(arc, 12)
    y0, y1 = _y(i) + NODE_H // 2, _y(j) + NODE_H // 2
    return (f'<path class="edge skip" d="M{x0},{y0} C{x_far + bulge},{y0} {x_far + bulge},{y1} {x1 + 2},{y1}" '
            'marker-end="url(#arrow)"/>')


def graph_svg(layers: Sequence[dict[str, Any]], edges: Sequence[Sequence[str]],
              href: Callable[[str], str]) -> Markup:
    """Each layer needs `id`, `kind`, `channels`, `size`, `url` and may have `deepdream` (an
    image URL) and `built_label`; `href` maps a site URL to the link to write.

    One row per group of `blocks.layer_groups` (top to bottom, in the card's order): the chain's
    layer on the left, its branches (`block6_mlp` of `block6`) beside it in a frame. Edges
    between rows join chain layers (`blocks.group_edges`); one between neighbouring rows is a
    short arrow, one that skips rows arcs on the right, further out the longer it is."""
    by_id = {layer["id"]: layer for layer in layers}
    groups = layer_groups(list(by_id))
    place = {lid: (row, col) for row, g in enumerate(groups) for col, lid in enumerate(g.layers)}
    right = {row: _x(len(g.branches)) + _w(len(g.branches)) for row, g in enumerate(groups)}
    paths, arc = [], 0
    for a, b in group_edges(groups, edges):
        (i, ca), (j, cb) = place[a], place[b]
        skip = i != j and not (j == i + 1 and ca == cb == 0)
        arc += skip
        paths.append(_edge(place[a], place[b], right, arc))
    width = max(right.values(), default=LEFT + NODE_W) + 40 + 14 * min(arc, 12)
    height = _y(len(groups)) - GAP // 2 + 4
    boxes = "".join(_block_box(g, row) for row, g in enumerate(groups))
    nodes = "".join(_node(by_id[lid], _y(row), href, _x(col), _w(col)) for lid, (row, col) in place.items())
    return Markup(
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="layer graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        f'{boxes}{"".join(paths)}{nodes}</svg>'
    )


COL_W, ROW_H, C_THUMB, PAD = 200, 92, 64, 24  # the circuit's columns, rows, thumbnails, margin


def circuit_svg(data: dict[str, Any], href: Callable[[str], str]) -> Markup:
    """The circuit as an inline SVG: one column per layer (model order), nodes stacked in each."""
    columns = sorted({n["column"] for n in data["nodes"]})
    place: dict[str, tuple[int, int]] = {}
    rows: dict[int, int] = {}
    for n in data["nodes"]:
        c = columns.index(n["column"])
        place[n["id"]] = (PAD + c * COL_W, PAD + 20 + rows.get(c, 0) * ROW_H)
        rows[c] = rows.get(c, 0) + 1
    width = PAD * 2 + (len(columns) - 1) * COL_W + C_THUMB + 20
    height = PAD * 2 + 20 + max(rows.values(), default=1) * ROW_H
    strongest = max((abs(e["weight"]) for e in data["edges"]), default=1.0) or 1.0
    heads = []
    for c, lid in enumerate(dict.fromkeys(n["layer"] for n in sorted(data["nodes"], key=lambda n: n["column"]))):
        heads.append(f'<text class="col-head" x="{PAD + c * COL_W}" y="{PAD}">{escape(lid)}</text>')
    paths = [_circuit_edge(e, place, strongest) for e in data["edges"]]
    nodes = [_circuit_node(n, place[n["id"]], href) for n in data["nodes"]]
    return Markup(f'<svg class="circuit" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img" aria-label="circuit of {escape(data["shorthand"])}">'
                  f'{"".join(heads)}{"".join(paths)}{"".join(nodes)}</svg>')


def _circuit_edge(e: dict[str, Any], place: dict[str, tuple[int, int]], strongest: float) -> str:
    (x0, y0), (x1, y1) = place[e["source"]], place[e["target"]]
    y0, y1 = y0 + C_THUMB // 2, y1 + C_THUMB // 2
    w = e["weight"]
    width = 1 + 5 * abs(w) / strongest
    if x0 == x1:  # same layer: arc on the left
        d = f"M{x0},{y0} C{x0 - 60},{y0} {x1 - 60},{y1} {x1},{y1}"
    else:
        xs, xt = (x0 + C_THUMB, x1) if x1 > x0 else (x0, x1 + C_THUMB)
        mid = (xs + xt) / 2
        d = f"M{xs},{y0} C{mid},{y0} {mid},{y1} {xt},{y1}"
    return (f'<path class="edge {"neg" if w < 0 else "pos"}" d="{d}" stroke-width="{width:.2f}">'
            f'<title>{escape(e["source"])} \u2192 {escape(e["target"])}: {w:.4g}</title></path>')


def _circuit_node(n: dict[str, Any], at: tuple[int, int], href: Callable[[str], str]) -> str:
    x, y = at
    if n["image"]:
        picture = (f'<image href="{escape(href(n["image"]))}" x="{x}" y="{y}" width="{C_THUMB}" height="{C_THUMB}" '
                   'preserveAspectRatio="xMidYMid slice"/>')
    else:
        picture = f'<rect class="nothumb" x="{x}" y="{y}" width="{C_THUMB}" height="{C_THUMB}" rx="4"/>'
    centre = " centre" if n["centre"] else ""
    frame = f'<rect class="frame{centre}" x="{x}" y="{y}" width="{C_THUMB}" height="{C_THUMB}" rx="4"/>'
    label = (f'<text x="{x + C_THUMB // 2}" y="{y + C_THUMB + 14}" text-anchor="middle">'
             f'{escape(n["layer"])}:{n["unit"]}</text>')
    body = f"<title>{escape(n['id'])}</title>{picture}{frame}{label}"
    if n["url"] is None:
        return f'<g class="cnode">{body}</g>'
    return f'<a class="cnode" href="{escape(href(n["url"]))}" data-node="{escape(n["id"])}">{body}</a>'
