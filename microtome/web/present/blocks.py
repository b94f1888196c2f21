"""Layers grouped into blocks for the model page's graph: `layer_groups(layer_ids) -> [Group]`.

The rule (generic, no model names): a layer whose id is `X_SUFFIX`, where `X` is another layer
of the model and `SUFFIX` is lowercase letters only (`mlp`, `attn`, ...), is a *branch* of `X`
and is drawn beside it, in one block. So a transformer's `block6_mlp` (the MLP's hidden
activation) sits beside `block6` (the residual stream, which stays the chain). A suffix with a
digit (`stage1_block0`, `layer1_0`, `conv1_2`) names a numbered part of its own: it is a row of
the chain like any other layer, so CNN graphs draw one layer per row as they always did.

Groups are in the order of their main layer; a branch whose main is absent stays a row of its own.
`group_edges(groups, edges)` maps the card's edges onto the drawing: an edge inside a group
joins a branch to its main, an edge between groups joins their main layers (the chain).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
