"""`microtome atlas MODEL LAYER`: build a layer's activation atlas (techniques/atlas.py) into a store.

The same artifact `microtome build MODEL --layers LAYER --techniques atlas` makes when the
options are at their defaults; other `--grid`, `--levels` or `--positions` make another
artifact beside it, and `--class` a class atlas (the same layout, the cells of the vectors
favouring that class, their own icons). A progress bar per stage (collect, layout, render);
the stage times, cells per level and the icons' agreement with their cells are printed and
kept in the artifact's meta.
"""

from __future__ import annotations

import sys

import click

from microtome.pipeline.commands import store_option
from microtome.techniques.registry import PRESETS


@click.command(name="atlas")
@click.argument("model")
@click.argument("layer")
@click.option("--dataset", default="samples", show_default=True, help="samples or folder:PATH")
@click.option("--grid", default=20, show_default=True, type=click.IntRange(1, 200),
              help="cells per side of the finest level")
@click.option("--levels", default=3, show_default=True, type=click.IntRange(1, 8),
              help="levels, each half as fine as the next")
@click.option("--positions", default=16, show_default=True, type=click.IntRange(1), help="random positions per photo")
@click.option("--preset", default="standard", show_default=True, type=click.Choice(PRESETS),
              help="the icons' optimization steps and size")
@click.option("--class", "klass", default=None, metavar="LABEL_OR_INDEX",
              help="a class atlas: only the vectors whose attribution favours this class")
@store_option
@click.option("--weights", default="default", show_default=True, help="default, random or PATH")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads (default: torch's)")
def atlas_command(model, layer, dataset, grid, levels, positions, preset, klass, store_root, weights, seed,
                  device, threads) -> None:
    """Build LAYER's activation atlas: photos' activations laid out by UMAP, binned, each cell rendered."""
    from microtome.data import get_dataset
    from microtome.pipeline.dictionaries import spec_with_dictionaries
    from microtome.pipeline.pipeline import check_weights, existing_store, resolve
    from microtome.store import ArtifactKey, Store
    from microtome.techniques.atlas_layout import level_grids, resolve_class
    from microtome.techniques.builtin import ATLAS, atlas_params

    spec = spec_with_dictionaries(resolve(model, weights).spec, existing_store(store_root))
    found = spec.layer(layer)
    level_grids(grid, levels)  # a bad combination fails before anything runs
    index = resolve_class(dict(enumerate(spec.labels)), klass) if klass is not None else None
    data = get_dataset(dataset)
    params = atlas_params(preset, data.name, seed, index, grid=grid, levels=levels, positions=positions)
    store = Store(store_root)
    check_weights(store, spec)
    key = ArtifactKey.for_params(spec.id, found.id, None, ATLAS, params)
    held = store.get(key)
    if held is None:
        result = _build(model, weights, spec, found.id, data, params, device, threads, store)
        meta = result.meta
    else:
        click.echo(f"the atlas of {spec.id}/{found.id} is stored already (same params):")
        meta = held.meta
    _report(meta, spec.id, found.id, index)


def _build(model, weights, spec, layer_id, data, params, device, threads, store):
    """Run the three stages with a bar each, then record the artifact and the model's summary."""
    from tqdm import tqdm

    from microtome.pipeline.dictionaries import load_with_dictionaries
    from microtome.pipeline.pipeline import provenance
    from microtome.runtime import torch_threads
    from microtome.store import ArtifactKey
    from microtome.techniques.atlas import atlas

    bars: dict[str, tqdm] = {}

    def stage(name: str, fraction: float) -> None:
        if name not in bars:
            for other in bars.values():
                other.update(other.total - other.n)
                other.close()
            bars[name] = tqdm(total=100.0, desc=f"{name:8s}", unit="%", file=sys.stderr, dynamic_ncols=True,
                              bar_format="{l_bar}{bar}| {n:.0f}/100% [{elapsed}<{remaining}]")
        bar = bars[name]
        bar.update(min(fraction * 100, bar.total - bar.n))

    try:
        with torch_threads(threads):
            net, loaded = load_with_dictionaries(model, weights, store, device)
            result = atlas(net, loaded, layer_id, data, params, device, stage)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: nothing was stored; rerun the same command", err=True)
        raise SystemExit(130) from None
    finally:
        for bar in bars.values():
            bar.close()
    meta = {**result.meta, "provenance": provenance(spec, params["preset"], int(params["seed"]))}
    store.put(ArtifactKey.for_params(spec.id, layer_id, None, result.technique, params), params, result.files, meta)
    store.put_model(spec.id, spec.summary())
    result.meta = meta
    return result


def _report(meta: dict, model: str, layer: str, index: int | None) -> None:
    seconds, cpu = meta.get("seconds", {}), meta.get("cpu_seconds", {})
    agreement = meta.get("agreement") or {}
    click.echo(f"{meta['vectors']} vectors of {meta['photos']} photos; cells per level "
               + ", ".join(f"{g}x{g}: {n}" for g, n in zip(meta["grids"], meta["cells"])))
    click.echo("stage times: " + ", ".join(f"{k} {v:.0f} s" + (f" (CPU {cpu[k]:.0f} s)" if k in cpu else "")
                                           for k, v in seconds.items()))
    if agreement:
        click.echo(f"icons vs cells on the finest level ({agreement.get('cells')} cells): own cell most similar "
                   f"{agreement.get('top1', 0):.0%}, among the 5 most similar {agreement.get('top5', 0):.0%}")
    where = f"/models/{model}/{layer}/atlas" + (f"/class/{index}" if index is not None else "")
    click.echo(f"see it at {where} (`microtome serve`)")
