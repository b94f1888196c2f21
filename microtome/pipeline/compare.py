"""Compare two models, the same feature across models, recorded both ways (`microtome compare`).

`compare_into_store(store, a, b, ...) -> CompareSummary` reads both models over the same
images (techniques/compare.py), and records the compare technique's artifacts of both sides
(techniques/similar.py) with provenance, so a unit page of A lists B's units and a unit page
of B lists A's. Every name is checked before anything is loaded or written (a MicrotomeError
with the close names); rerunning with the same options finds everything stored and does
nothing. `comparisons(store, model)` lists what a store holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from microtome.errors import MicrotomeError
from microtome.store import ArtifactKey, PutEntry, Store
from microtome.techniques.builtin import similar_params
from microtome.techniques.registry import Role, by_role

Progress = Callable[[int, int], None]  # (images read so far, images to read)


@dataclass
class CompareSummary:
    """What a comparison recorded: per pair of layers (A, B) its figures; counts; seconds."""

    a: str
    b: str
    images: int = 0
    recorded: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        if not self.rows and not self.recorded:
            return [f"{self.a} vs {self.b}: already in the store (nothing to do)"]
        out = [f"{'A layer':14s} {'B layer':14s} {'median best r':>13s} {'spatial':>8s} {'matched':>8s} {'CKA':>6s}"]
        for row in self.rows:
            out.append(f"{row['layer']:14s} {row['other_layer']:14s} {row['median_best_r']:13.3f} "
                       f"{row['median_best_r_spatial']:8.3f} {row['mean_matched_r']:8.3f} {row['cka']:6.3f}")
        out.append(f"{self.recorded} artifacts recorded ({self.a} vs {self.b}, {self.images} images) "
                   f"in {self.seconds:.1f} s")
        return out


def load_side(name: str, store: Store | None, device: str, weights: str = "default"):
    """A model as a comparison reads it (with `weights`: default, random or a file), with the
    store's dictionaries (SAE feature layers `LAYER.sae`) attached. The one place compare loads one."""
    from microtome.pipeline.dictionaries import with_dictionaries
    from microtome.zoo import load_model

    return with_dictionaries(*load_model(name, weights=weights, device=device), store)


def spec_side(name: str, store: Store | None, weights: str = "default"):
    """A model's spec as a comparison sees it, with `weights`' identity and dictionary layers,
    without loading weights (to check names; a source's missing default weights fail here)."""
    from microtome.pipeline.dictionaries import spec_with_dictionaries
    from microtome.zoo import get_spec
    from microtome.zoo.loading import spec_with_weights

    return spec_with_dictionaries(spec_with_weights(get_spec(name), weights), store)


def plan_pairs(layers: str | None, spec_a, spec_b) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """(pairing of A, pairing of B, A's pairs, B's pairs) from `--layers`: None (every layer,
    by depth), "A=B,..." (those pairs, both ways) or "A1,A2" (those A layers by depth, and
    their partners paired back by depth)."""
    from microtome.techniques.compare import DEPTH, depth_pairing, parse_pairs, side_pairs, swapped

    if layers is None or not layers.strip() or layers.strip() == "all":
        return DEPTH, DEPTH, side_pairs(DEPTH, spec_a, spec_b), side_pairs(DEPTH, spec_b, spec_a)
    if "=" in layers:
        text = ",".join(f"{a}={b}" for a, b in parse_pairs(layers, spec_a, spec_b))
        back = swapped(text)
        return text, back, side_pairs(text, spec_a, spec_b), side_pairs(back, spec_b, spec_a)
    names = [spec_a.layer(n.strip()).id for n in layers.split(",") if n.strip()]
    pairs_a = depth_pairing(spec_a, spec_b, names)
    return DEPTH, DEPTH, pairs_a, depth_pairing(spec_b, spec_a, sorted(set(pairs_a.values())))


def compare_into_store(store: Store | str, a: str, b: str, layers: str | None = None, dataset: str = "samples",
                       preset: str = "standard", images: int | None = None, device: str = "cpu",
                       progress: Progress | None = None, weights: tuple[str, str] = ("default", "default")
                       ) -> CompareSummary:
    """Compare models `a` and `b` (with `weights` (a's, b's): default, random or a file) and
    record both sides' artifacts in `store` (a path: the store is made there once every name is
    checked). `progress(done, total)` counts images."""
    import time

    from microtome.data import get_dataset
    from microtome.pipeline.pipeline import check_weights, existing_store

    started = time.time()
    held = store if isinstance(store, Store) else existing_store(store)
    spec_a, spec_b = spec_side(a, held, weights[0]), spec_side(b, held, weights[1])
    pairing_a, pairing_b, pairs_a, pairs_b = plan_pairs(layers, spec_a, spec_b)
    if images is not None and images < 3:
        raise MicrotomeError(f"--images must be at least 3 (a correlation needs them), got {images}")
    data = get_dataset(dataset)
    params_a = similar_params(preset, data.name, b, pairing_a, images)
    params_b = similar_params(preset, data.name, a, pairing_b, images)
    store = held or Store(store)
    check_weights(store, spec_a)
    check_weights(store, spec_b)
    summary = CompareSummary(spec_a.id, spec_b.id)
    if _all_stored(store, spec_a, pairs_a, params_a) and _all_stored(store, spec_b, pairs_b, params_b):
        return summary
    _record(store, summary, (a, b), (pairs_a, pairs_b), (params_a, params_b), data, device, progress, weights)
    summary.seconds = time.time() - started
    return summary


def _record(store: Store, summary: CompareSummary, names: tuple[str, str], pairs: tuple[dict, dict],
            params: tuple[dict, dict], data, device: str, progress: Progress | None,
            weights: tuple[str, str] = ("default", "default")) -> None:
    """Load both sides, read `data` through both, record both sides' artifacts into `summary`."""
    from microtome.pipeline.pipeline import provenance
    from microtome.techniques.compare import Side, compare
    from microtome.techniques.similar import A, B, side_results

    (net_a, spec_a), (net_b, spec_b) = (load_side(name, store, device, w) for name, w in zip(names, weights))
    (pairs_a, pairs_b), (params_a, params_b) = pairs, params
    wanted = list(dict.fromkeys([*pairs_a.items(), *((x, y) for y, x in pairs_b.items())]))
    total, done = min(len(data), params_a["images"]), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    comparison = compare(Side(net_a, spec_a, tuple(spec_a.layer_ids)), Side(net_b, spec_b, tuple(spec_b.layer_ids)),
                         data, params_a["images"], wanted, device, progress=tick)
    entries = []
    for spec, side, side_params, side_pairs in ((spec_a, A, params_a, pairs_a), (spec_b, B, params_b, pairs_b)):
        store.put_model(spec.id, spec.summary())
        meta = provenance(spec, side_params["preset"], 0)
        entries += [PutEntry(ArtifactKey.for_params(spec.id, r.layer, r.unit, r.technique, r.params), r.params,
                             r.files, {**r.meta, "provenance": meta})
                    for r in side_results(comparison, side, side_params, side_pairs)]
    summary.recorded = store.put_many(entries)
    summary.images = comparison.images
    rows = {e.key.layer: {"layer": e.key.layer, **e.meta} for e in entries[::-1]  # A's side wins (A == B)
            if e.key.model == spec_a.id and e.key.unit is None and e.meta.get("other_layer")}
    summary.rows = [rows[lid] for lid in spec_a.layer_ids if lid in rows]
    for row in summary.rows:
        row["cka"] = row["cka"][row["other_layer"]]


def _all_stored(store: Store, spec, pairs: dict[str, str], params: dict[str, Any]) -> bool:
    """Every layer and unit artifact of one side already stored (checked per layer's last unit
    and the layer itself: a side is recorded in one transaction)."""
    for layer in pairs:
        channels = spec.layer(layer).channels
        for unit in (None, 0, channels - 1):
            if not store.has(ArtifactKey.for_params(spec.id, layer, unit, by_role(Role.SIMILAR_UNITS).id, params)):
                return False
    return bool(pairs)


def comparisons(store: Store, model: str) -> dict[str, set[tuple[str, Any, Any]]]:
    """{other model: {(layer, images, dataset)}} of every comparison of `model` in `store`
    (the compare technique's layer-level artifacts)."""
    seen: dict[str, set] = {}
    for art in store.find(model, technique=by_role(Role.SIMILAR_UNITS).id, unit=None):
        if art.meta.get("other_layer"):
            seen.setdefault(str(art.meta.get("other")), set()).add(
                (art.key.layer, art.meta.get("images"), art.meta.get("dataset")))
    return seen
