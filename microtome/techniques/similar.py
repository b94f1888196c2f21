"""The `similar` technique: a `Comparison` (compare.py) as artifacts of one side,
`side_results(comparison, side, params) -> [ArtifactResult]`, and its build runner.

For each paired layer of the side (X against the other model Y):
- per unit (layer, unit): meta `{"other", "other_layer", "similar": [{"unit", "r", "r_spatial"}]
  (the `top` best by pooled r), "matched": {"unit", "r", "r_spatial"} or None (the Hungarian
  partner), "best_spatial": {"unit", "r_spatial"}, "images", "dataset"}`;
- per layer (unit None), for every layer X read: meta `{"other", "other_layer" (None when
  unpaired), "cka": {Y layer: linear CKA}, "cka_best", "other_layers", "images", "dataset"}`
  (Y's unit layers only: what Y's dictionaries are does not change X's artifacts),
  plus for a paired layer the medians and grids (`summary`) and the files `r.npy`,
  `r_spatial.npy` (`[Cx, Cy]` float16: the correlation matrices themselves).
`microtome compare` records both sides; `microtome build X --techniques similar
--compare-with Y` records X's side (same params, so each finds what the other stored).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import SIMILAR
from microtome.techniques.compare import Comparison, PairResult, Side, compare, side_pairs, summary, unit_layers

A, B = "a", "b"


def _npy(matrix: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, matrix.astype(np.float16))
    return buf.getvalue()


def _oriented(comparison: Comparison, side: str, pair: tuple[str, str]) -> PairResult:
    """The result of `pair` (A layer, B layer) seen from `side` (rows = that side's units)."""
    found = comparison.pairs[pair]
    if side == A:
        return found
    return PairResult(found.r.T, found.r_spatial.T, found.partner_b, found.partner_a, found.grid)


def _unit_meta(result: PairResult, unit: int, top: int) -> dict[str, Any]:
    r, rs = result.r[unit], result.r_spatial[unit]  # [Cy]
    order = np.argsort(-r, kind="stable")[:top]
    partner = int(result.partner_a[unit])
    best_spatial = int(np.argmax(rs)) if rs.size else None
    return {
        "similar": [{"unit": int(v), "r": round(float(r[v]), 4), "r_spatial": round(float(rs[v]), 4)} for v in order],
        "matched": None if partner < 0 else {"unit": partner, "r": round(float(r[partner]), 4),
                                              "r_spatial": round(float(rs[partner]), 4)},
        "best_spatial": None if best_spatial is None else
        {"unit": best_spatial, "r_spatial": round(float(rs[best_spatial]), 4)},
    }


def side_results(comparison: Comparison, side: str, params: dict[str, Any], pairs: dict[str, str],
                 units: Callable[[str], Sequence[int]] | None = None) -> list[ArtifactResult]:
    """The artifacts of `side` ("a" or "b"): one per unit of each layer in `pairs` ({this
    side's layer: other side's layer}, `units(layer)` of them, default all) and one per
    layer this side read. `params` are that side's `similar` params."""
    mine, other = (comparison.a, comparison.b) if side == A else (comparison.b, comparison.a)
    rows, cols = (comparison.layers_a, comparison.layers_b) if side == A else (comparison.layers_b, comparison.layers_a)
    cka = comparison.cka if side == A else comparison.cka.T  # [this side's layers, other's]
    keep = [j for j, lid in enumerate(cols) if lid in unit_layers(other)]
    cols, cka = [cols[j] for j in keep], cka[:, keep]
    common = {"other": other.id, "images": comparison.images, "dataset": comparison.dataset}
    out = []
    for i, layer in enumerate(rows):
        partner = pairs.get(layer)
        row = {lid: round(float(v), 4) for lid, v in zip(cols, cka[i])}
        meta = {**common, "other_layer": partner, "cka": row, "other_layers": list(cols),
                "cka_best": max(row, key=row.get) if row else None}
        files = {}
        if partner is not None:
            result = _oriented(comparison, side, (layer, partner) if side == A else (partner, layer))
            meta.update(summary(result), grid=list(result.grid))
            files = {"r.npy": _npy(result.r), "r_spatial.npy": _npy(result.r_spatial)}
            chosen = range(result.r.shape[0]) if units is None else units(layer)
            out += [ArtifactResult(layer, u, SIMILAR, params, meta={**common, "other_layer": partner,
                                                                     **_unit_meta(result, u, params["top"])})
                    for u in chosen]
        out.append(ArtifactResult(layer, None, SIMILAR, params, files=files, meta=meta))
    return out


def in_model_order(spec, layers: Sequence[str]) -> tuple[str, ...]:
    wanted = set(layers)
    return tuple(lid for lid in spec.layer_ids if lid in wanted)


def load_other(name: str, device: str):
    """The other model of a build's comparison (its default weights, its unit layers: depth
    pairing never pairs with the other's dictionary layers, see compare.depth_pairing)."""
    from microtome.zoo import load_model

    return load_model(name, device=device)


def run_similar(job: Job) -> list[ArtifactResult]:
    """The build's runner: this model's side against each `other` its params name."""
    out = []
    todo = job.distinct_params()
    for params in todo:
        other_model, other_spec = load_other(params["other"], job.device)
        pairs = side_pairs(params["pairing"], job.spec, other_spec, job.layers)
        a = Side(job.model, job.spec, in_model_order(job.spec, job.layers))
        b = Side(other_model, other_spec, tuple(unit_layers(other_spec)))
        dataset = job.dataset(params["dataset"])
        total = min(len(dataset), params["images"]) * len(todo)
        comparison = compare(a, b, dataset, params["images"], list(pairs.items()), job.device,
                             progress=lambda n: job.tick(n / total))
        wanted: dict[str, list[int]] = {}
        for item in job.items:
            if item.params == params and item.unit is not None:
                wanted.setdefault(item.layer, []).append(item.unit)
        out += side_results(comparison, A, params, pairs, units=lambda layer: wanted.get(layer, []))
    return out
