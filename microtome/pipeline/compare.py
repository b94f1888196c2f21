"""`microtome compare MODEL_A MODEL_B`: the same feature across models, recorded both ways.

`compare_into_store(store, a, b, ...) -> CompareSummary` reads both models over the same
images (techniques/compare.py), and records the `similar` artifacts of both sides
(techniques/similar.py) with provenance, so a unit page of A lists B's units and a unit page
of B lists A's. Every name is checked before anything is loaded or written (exit 2 with the
close names); rerunning with the same options finds everything stored and does nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from microtome.errors import MicrotomeError
from microtome.store import ArtifactKey, PutEntry, Store
from microtome.techniques.builtin import SIMILAR, SIMILAR_PRESETS, similar_params
from microtome.techniques.registry import PRESETS


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


def load_side(name: str, store: Store, device: str):
    """A model as a comparison reads it (default weights), with the store's dictionaries
    (SAE feature layers `LAYER.sae`) attached. The one place compare loads one."""
    from microtome.pipeline.dictionaries import with_dictionaries
    from microtome.zoo import load_model

    return with_dictionaries(*load_model(name, device=device), store)


def spec_side(name: str, store: Store):
    """A model's spec as a comparison sees it, dictionary layers included, without loading
    weights (to check names)."""
    from microtome.pipeline.dictionaries import spec_with_dictionaries
    from microtome.zoo import get_spec

    return spec_with_dictionaries(get_spec(name), store)


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


def compare_into_store(store: Store, a: str, b: str, layers: str | None = None, dataset: str = "samples",
                       preset: str = "standard", images: int | None = None, device: str = "cpu",
                       progress: bool = True) -> CompareSummary:
    """Compare models `a` and `b` and record both sides' `similar` artifacts in `store`."""
    import time

    from microtome.data import get_dataset
    from microtome.pipeline.pipeline import check_weights, provenance
    from microtome.techniques.compare import Side, compare
    from microtome.techniques.similar import A, B, side_results

    started = time.time()
    spec_a, spec_b = spec_side(a, store), spec_side(b, store)
    pairing_a, pairing_b, pairs_a, pairs_b = plan_pairs(layers, spec_a, spec_b)
    if images is not None and images < 3:
        raise MicrotomeError(f"--images must be at least 3 (a correlation needs them), got {images}")
    data = get_dataset(dataset)
    params_a = similar_params(preset, data.name, b, pairing_a, images)
    params_b = similar_params(preset, data.name, a, pairing_b, images)
    check_weights(store, spec_a)
    check_weights(store, spec_b)
    summary = CompareSummary(spec_a.id, spec_b.id)
    if _all_stored(store, spec_a, pairs_a, params_a) and _all_stored(store, spec_b, pairs_b, params_b):
        return summary
    net_a, spec_a = load_side(a, store, device)
    net_b, spec_b = load_side(b, store, device)
    wanted = list(dict.fromkeys([*pairs_a.items(), *((x, y) for y, x in pairs_b.items())]))
    from tqdm.auto import tqdm

    total = min(len(data), params_a["images"])
    with tqdm(total=total, desc=f"compare {spec_a.id} {spec_b.id}", unit="img", file=sys.stderr,
              dynamic_ncols=True, disable=not progress) as bar:
        comparison = compare(Side(net_a, spec_a, tuple(spec_a.layer_ids)), Side(net_b, spec_b, tuple(spec_b.layer_ids)),
                             data, params_a["images"], wanted, device, progress=bar.update)
    entries = []
    for spec, side, params, pairs in ((spec_a, A, params_a, pairs_a), (spec_b, B, params_b, pairs_b)):
        store.put_model(spec.id, spec.summary())
        meta = provenance(spec, preset, 0)
        entries += [PutEntry(ArtifactKey.for_params(spec.id, r.layer, r.unit, SIMILAR, r.params), r.params,
                             r.files, {**r.meta, "provenance": meta})
                    for r in side_results(comparison, side, params, pairs)]
    summary.recorded = store.put_many(entries)
    summary.images = comparison.images
    rows = {e.key.layer: {"layer": e.key.layer, **e.meta} for e in entries[::-1]  # A's side wins (A == B)
            if e.key.model == spec_a.id and e.key.unit is None and e.meta.get("other_layer")}
    summary.rows = [rows[lid] for lid in spec_a.layer_ids if lid in rows]
    for row in summary.rows:
        row["cka"] = row["cka"][row["other_layer"]]
    summary.seconds = time.time() - started
    return summary


def _all_stored(store: Store, spec, pairs: dict[str, str], params: dict[str, Any]) -> bool:
    """Every layer and unit artifact of one side already stored (checked per layer's last unit
    and the layer itself: a side is recorded in one transaction)."""
    for layer in pairs:
        channels = spec.layer(layer).channels
        for unit in (None, 0, channels - 1):
            if not store.has(ArtifactKey.for_params(spec.id, layer, unit, SIMILAR, params)):
                return False
    return bool(pairs)


@click.command(name="compare")
@click.argument("model_a")
@click.argument("model_b")
@click.option("--layers", default=None,
              help="A_LAYER=B_LAYER,... pairs, or A layers paired by depth (default: every layer of both, "
                   "paired by stage-aware relative depth)")
@click.option("--dataset", default="samples", show_default=True, help="samples or folder:PATH")
@click.option("--preset", default="standard", show_default=True, type=click.Choice(PRESETS),
              help="images: " + ", ".join(f"{p} {v['images']}" for p, v in SIMILAR_PRESETS.items()))
@click.option("--images", default=None, type=click.IntRange(3), help="images to read (default: the preset's)")
@click.option("--store", "store_root", default="./microtome-store", show_default=True,
              type=click.Path(file_okay=False), help="artifact store directory")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads (default: torch's)")
def compare_command(model_a, model_b, layers, dataset, preset, images, store_root, device, threads) -> None:
    """Correlate the units of MODEL_A and MODEL_B over the same images (each at its own input
    size): best-correlated units, a one-to-one matching and a linear CKA map, recorded both ways."""
    from pathlib import Path

    from microtome.runtime import torch_threads
    from microtome.zoo import get_spec

    spec_a, spec_b = get_spec(model_a), get_spec(model_b)  # names checked before a store is made
    if not (Path(store_root) / "index.sqlite").is_file():
        from microtome.data import get_dataset
        plan_pairs(layers, spec_a, spec_b)
        get_dataset(dataset)
    with torch_threads(threads):
        result = compare_into_store(Store(store_root), model_a, model_b, layers, dataset, preset, images, device)
    for line in result.lines():
        click.echo(line)
