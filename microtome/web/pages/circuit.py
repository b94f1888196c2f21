"""A unit's circuit: `circuit(state, m, l, u) -> {"nodes": [{id, url, image}], "edges": [{source, target, weight}]}`.

From the `connections` artifacts: the unit's strongest inputs, their strongest inputs (two
layers deep), and the unit's strongest outputs (one layer up). Edges carry the weights as
the artifacts record them (signed). `graph.circuit_svg(data, href)` draws it with layers as columns
in the model's order, edges green (excitatory) or red (inhibitory) and as wide as they are
strong, every node a link with its feature-vis thumbnail (or a placeholder).
"""

from __future__ import annotations

from typing import Any

from microtome.store import Store
from microtome.techniques.registry import Role, by_role
from microtome.web.present.artifacts import pick, thumbnails
from microtome.web.present.catalog import ModelView
from microtome.web.present.jump import resolve_path
from microtome.web.present.links import layer_brief, model_brief, unit_link, unit_url
from microtome.web.present.state import AppState
from microtome.web.present.values import Redirect

FIRST, SECOND, OUT = 6, 4, 6  # strongest inputs; inputs of each of those; outputs
Node = tuple[str, int]  # (layer id, unit)


def _entries(view: ModelView, meta: dict[str, Any], direction: str, n: int) -> list[tuple[Node, float]]:
    """The first `n` well-formed entries of a connections list, as (node, weight)."""
    out = []
    entries = meta.get(direction)
    for e in entries if isinstance(entries, list) else []:
        if len(out) == n:
            break
        if not isinstance(e, dict) or not isinstance(e.get("weight"), (int, float)):
            continue
        layer = view.find_layer(str(e.get("layer", "")))
        unit = e.get("unit")
        if layer is not None and isinstance(unit, int) and 0 <= unit < int(layer["channels"]):
            out.append(((layer["id"], unit), float(e["weight"])))
    return out


def _meta(store: Store, model: str, node: Node) -> dict[str, Any] | None:
    circuit_id = by_role(Role.CIRCUIT).id
    art = pick(store.find(model, node[0], node[1], circuit_id)).get(circuit_id)
    return art.meta if art is not None else None


def graph(store: Store, view: ModelView, centre: Node) -> tuple[list[Node], list[tuple[Node, Node, float]], bool]:
    """(nodes, edges (source, target, weight), whether the centre has connections)."""
    nodes: dict[Node, None] = {centre: None}
    edges: dict[tuple[Node, Node], float] = {}
    meta = _meta(store, view.id, centre)
    if meta is None:
        return [centre], [], False
    inputs = _entries(view, meta, "inputs", FIRST)
    for node, weight in inputs:
        nodes[node] = None
        edges.setdefault((node, centre), weight)
    for node, weight in _entries(view, meta, "outputs", OUT):
        nodes[node] = None
        edges.setdefault((centre, node), weight)
    for node, _ in inputs:
        deeper = _meta(store, view.id, node)
        for source, weight in _entries(view, deeper or {}, "inputs", SECOND):
            nodes[source] = None
            edges.setdefault((source, node), weight)
    return list(nodes), [(a, b, w) for (a, b), w in edges.items()], True


def circuit(state: AppState, model: str, layer: str, unit: str) -> dict[str, Any] | Redirect:
    """`/models/M/L/U/circuit`: the unit's circuit as nodes and signed edges."""
    view, found, index_ = resolve_path(state.catalog, model, layer, unit)
    assert found is not None and index_ is not None
    if (view.id, found["id"], str(index_)) != (model, layer, unit):
        return Redirect(unit_url(view.id, found["id"], index_) + "/circuit")
    centre = (found["id"], index_)
    nodes, edges, built = graph(state.store, view, centre)
    thumbs = thumbnails(state.store, view.id, nodes)
    order = {lid: i for i, lid in enumerate(view.layer_ids)}
    name = lambda n: f"{view.id}/{n[0]}:{n[1]}"  # noqa: E731
    return {
        "page": "circuit", "title": f"circuit of {name(centre)}", "model": model_brief(view),
        "layer": layer_brief(view, found), "unit": index_, "shorthand": name(centre),
        "unit_url": unit_url(view.id, found["id"], index_), "built": built,
        "nodes": [{"id": name(n), "url": unit_link(state.exported, view.id, *n), "image": thumbs[n],
                   "layer": n[0], "unit": n[1], "column": order.get(n[0], 0), "centre": n == centre}
                  for n in nodes],
        "edges": [{"source": name(a), "target": name(b), "weight": w} for a, b, w in edges],
        "url": unit_url(view.id, found["id"], index_) + "/circuit",
    }
