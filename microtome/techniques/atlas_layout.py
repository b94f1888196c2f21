"""The activation atlas's geometry, torch-free: vectors `[N, C]` -> points `[N, 2]` -> cells.

`layout(vectors, seed) -> points [N, 2]` in the unit square (UMAP, cosine metric, seeded);
`bin_points(points, grid) -> (cx [N], cy [N])`; `summarize(...)` gives each cell of a level that
holds at least `min_count` vectors its count, mean vector, top classes by summed attribution,
top units and a few photos; `favours(...)` says which vectors' attribution favours a class
(the class atlases' filter); `agreement(...)` measures icons against their cells;
`resolve_class(labels, text)` reads a class given by index or name. Cells are numbered from the
top left: `x` is the column, `y` the row, each in `0..grid-1`. The web reads the stored result
with `class_cells` and never imports UMAP (only `layout` does, when called).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from microtome.errors import MicrotomeError, NotFound, unknown

CLIP = 0.5  # percent of the points at each end of each axis clipped to the square's edge


def layout(vectors: np.ndarray, seed: int, n_neighbors: int = 20, min_dist: float = 0.1,
           clip: float = CLIP) -> np.ndarray:
    """UMAP of `vectors` `[N, C]` (cosine metric, `random_state=seed`: one thread, the same
    layout every run) normalized to the unit square `[N, 2]`: each axis scaled so that its
    `clip`-th and `100-clip`-th percentiles span [0, 1], the few points beyond clipped to the edge
    (a far outlier would otherwise squeeze every other point into a few cells)."""
    import warnings

    n = len(vectors)
    if n < 4:
        raise MicrotomeError(f"an atlas needs at least 4 activation vectors to lay out, got {n}: "
                             "use a larger dataset or more --positions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state": wanted
        import umap

        reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(n_neighbors, n - 1),
                            min_dist=min_dist, random_state=seed, init="spectral" if n > 16 else "random")
        points = reducer.fit_transform(np.asarray(vectors, dtype=np.float32))  # [N, 2]
    return normalize(points, clip)


def normalize(points: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """`points` `[N, 2]` scaled per axis into [0, 1] between their `clip` percentiles."""
    low = np.percentile(points, clip, axis=0)
    high = np.percentile(points, 100 - clip, axis=0)
    span = np.where(high > low, high - low, 1.0)
    return np.clip((points - low) / span, 0.0, 1.0).astype(np.float64)


def bin_points(points: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The cell `(x [N], y [N])` of each point of the unit square on a `grid × grid` grid (a
    point on the right or bottom edge is in the last column or row)."""
    cells = np.minimum(np.floor(np.asarray(points) * grid).astype(np.int64), grid - 1)
    return cells[:, 0], cells[:, 1]


def level_grids(grid: int, levels: int) -> list[int]:
    """The grid sizes of `levels` levels, coarsest first, each half the next: 20, 3 -> [5, 10, 20]."""
    if levels < 1 or grid < 1:
        raise MicrotomeError(f"--grid and --levels must be at least 1, got grid {grid}, levels {levels}")
    grids = [max(1, round(grid / 2 ** i)) for i in reversed(range(levels))]
    if len(set(grids)) != len(grids):
        raise MicrotomeError(f"a finest grid of {grid} cannot have {levels} distinct levels halving "
                             f"each time ({grids}); use a larger --grid or fewer --levels")
    return grids


@dataclass(frozen=True)
class Vectors:
    """What the atlas knows of each vector `[N]`: its photo (a dataset index), its position
    `(x, y)` in the layer's grid, and its attribution `scores [N, K]` toward the `classes [N, K]`
    its photo's prediction ranks first (K per photo)."""

    activations: np.ndarray  # [N, C]
    photo: np.ndarray  # [N] int
    position: np.ndarray  # [N, 2] int (column, row)
    classes: np.ndarray  # [N, K] int
    scores: np.ndarray  # [N, K] float


def favours(classes: Sequence[Sequence[int]], scores: Sequence[Sequence[float]], wanted: int) -> list[bool]:
    """Whether each vector's attribution favours class `wanted` `[N]`: the class is one of its
    photo's top classes and the vector's attribution toward it is positive (it pushes the
    class's logit up). A vector may favour several classes: a water texture may push toward
    both "snorkel" and "scuba diver". Plain Python: the web reads it from `atlas.json`."""
    return [any(c == wanted and s > 0 for c, s in zip(cs, ss)) for cs, ss in zip(classes, scores)]


def favoured_counts(classes: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> dict[int, int]:
    """`{class: the number of vectors that favour it}` (`favours`), for every class some vector favours."""
    counts: dict[int, int] = {}
    for cs, ss in zip(classes, scores):
        for c in {c for c, s in zip(cs, ss) if s > 0}:
            counts[c] = counts.get(c, 0) + 1
    return counts


def top_classes(members: np.ndarray, vectors: Vectors, top: int) -> list[tuple[int, float]]:
    """The cell's classes by attribution summed over its vectors, best first, positive only."""
    summed: dict[int, float] = {}
    for c, s in zip(vectors.classes[members].ravel().tolist(), vectors.scores[members].ravel().tolist()):
        summed[c] = summed.get(c, 0.0) + s
    ranked = sorted(((c, s) for c, s in summed.items() if s > 0), key=lambda cs: -cs[1])
    return ranked[:top]


def top_units(direction: np.ndarray, top: int) -> list[tuple[int, float]]:
    """The units that carry the cell's direction (its mean less the dataset's) the most:
    `(unit, share of the direction's length)`, largest positive first."""
    norm = float(np.linalg.norm(direction)) or 1.0
    order = np.argsort(-direction)[:top]
    return [(int(u), float(direction[u] / norm)) for u in order if direction[u] > 0]


@dataclass
class Cell:
    """One cell of one level: its place, its vectors (indices `[n]`), their mean `[C]` and its
    direction (the mean less the dataset's mean), and what it pushes toward."""

    x: int
    y: int
    members: np.ndarray
    mean: np.ndarray
    direction: np.ndarray
    classes: list[tuple[int, float]]
    units: list[tuple[int, float]]
    photos: list[int]


def summarize(vectors: Vectors, points: np.ndarray, grid: int, min_count: int, mean: np.ndarray,
              top: int = 8, photos: int = 6) -> list[Cell]:
    """The cells of a `grid × grid` level holding at least `min_count` vectors, row by row."""
    cx, cy = bin_points(points, grid)
    ids = cy * grid + cx
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    cells = []
    for members in np.split(order, bounds):
        if len(members) < min_count:
            continue
        cell_mean = vectors.activations[members].mean(0)
        direction = cell_mean - mean
        cells.append(Cell(int(cx[members[0]]), int(cy[members[0]]), members, cell_mean, direction,
                          top_classes(members, vectors, top), top_units(direction, top),
                          _photos(members, vectors, mean, direction, photos)))
    return cells


def _photos(members: np.ndarray, vectors: Vectors, mean: np.ndarray, direction: np.ndarray,
            count: int) -> list[int]:
    centred = vectors.activations[members] - mean  # [n, C]
    sims = centred @ direction / (np.linalg.norm(centred, axis=1) * (np.linalg.norm(direction) or 1.0) + 1e-12)
    chosen, seen = [], set()
    for i in np.argsort(-sims, kind="stable"):
        photo = int(vectors.photo[members[i]])
        if photo not in seen:
            seen.add(photo)
            chosen.append(int(members[i]))
            if len(chosen) == count:
                break
    return chosen


def class_cells(points: Sequence[Sequence[float]], chosen: Sequence[bool], grid: int,
                kept: Callable[[int, int], bool] = lambda x, y: True) -> dict[tuple[int, int], int]:
    """`{(x, y): the chosen vectors in it}` on a `grid × grid` level (a class atlas: the vectors
    that favour the class), for the cells `kept(x, y)` accepts, in plain Python for the web."""
    counts: dict[tuple[int, int], int] = {}
    for (u, v), take in zip(points, chosen):
        if not take:
            continue
        cell = (min(int(u * grid), grid - 1), min(int(v * grid), grid - 1))
        if kept(*cell):
            counts[cell] = counts.get(cell, 0) + 1
    return counts


def agreement(icon_vectors: np.ndarray, directions: np.ndarray, top: int = 5) -> dict[str, Any]:
    """How well icons match their cells: icon i's vector `[C]` (less the dataset mean) against
    every cell's direction `[M, C]` (icon i is cell i's) by cosine; the share of icons whose own
    cell is the most similar (`top1`) and among the `top` most similar (`top5`), and each
    icon's rank of its own cell (0 = first)."""
    a = icon_vectors / (np.linalg.norm(icon_vectors, axis=1, keepdims=True) + 1e-12)
    b = directions / (np.linalg.norm(directions, axis=1, keepdims=True) + 1e-12)
    sims = a @ b.T  # [M, M]
    own = np.diag(sims)
    ranks = (sims > own[:, None]).sum(1)  # cells more similar than the icon's own
    return {"top1": float(np.mean(ranks == 0)), f"top{top}": float(np.mean(ranks < top)),
            "ranks": ranks.tolist(), "cells": len(ranks)}


def resolve_class(labels: dict[int, str], text: str | int) -> int:
    """A class index from `text`: an index among `labels` `{index: name}`, or a name (any case;
    the ImageNet names' comma-separated synonyms too); unknown names list the close ones."""
    value = str(text).strip()
    if value.isdigit():
        if int(value) in labels:
            return int(value)
        raise NotFound(f"no class {value} among the {len(labels)} classes here: give a class index "
                       f"or a name such as {next(iter(labels.values()), 'goldfish')!r}")
    by_name: dict[str, int] = {}
    for index, name in sorted(labels.items()):
        for part in [name, *name.split(",")]:
            by_name.setdefault(part.strip().lower(), index)
    if value.lower() in by_name:
        return by_name[value.lower()]
    names = {part.strip() for name in labels.values() for part in [name, *name.split(",")]}
    raise unknown("class", value, sorted(names))
