"""`microtome atlas MODEL LAYER`: build a layer's activation atlas into a store
(`microtome.pipeline.atlas.build_atlas_into_store`), a progress bar per stage (collect,
layout, render); prints the stage times, cells per level, the icons' agreement with their
cells and where the web shows it.
"""

from __future__ import annotations

import sys

import click

from microtome.cli.options import (
    dataset_option,
    device_option,
    preset_option,
    seed_option,
    store_option,
    threads_option,
    weights_option,
)


@click.command(name="atlas")
@click.argument("model")
@click.argument("layer")
@dataset_option()
@click.option("--grid", default=20, show_default=True, type=click.IntRange(1, 200),
              help="cells per side of the finest level")
@click.option("--levels", default=3, show_default=True, type=click.IntRange(1, 8),
              help="levels, each half as fine as the next")
@click.option("--positions", default=16, show_default=True, type=click.IntRange(1), help="random positions per photo")
@preset_option(help="the icons' optimization steps and size")
@click.option("--class", "klass", default=None, metavar="LABEL_OR_INDEX",
              help="a class atlas: only the vectors whose attribution favours this class")
@store_option()
@weights_option()
@seed_option()
@device_option()
@threads_option()
def atlas_command(model, layer, dataset, grid, levels, positions, preset, klass, store_root, weights, seed,
                  device, threads) -> None:
    """Build LAYER's activation atlas: photos' activations laid out by UMAP, binned, each cell rendered."""
    from microtome.pipeline.atlas import build_atlas_into_store
    from microtome.runtime import torch_threads

    bars = _StageBars()
    try:
        with torch_threads(threads):
            result = build_atlas_into_store(store_root, model, layer, dataset=dataset, grid=grid, levels=levels,
                                            positions=positions, preset=preset, klass=klass, weights=weights,
                                            seed=seed, device=device, stage=bars.tick)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: nothing was stored; rerun the same command", err=True)
        raise SystemExit(130) from None
    finally:
        bars.close()
    if result.stored_already:
        click.echo(f"the atlas of {result.model}/{result.layer} is stored already (same params):")
    _report(result.meta, result.url)


class _StageBars:
    """One tqdm bar per stage on stderr, each finished when the next stage begins."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def tick(self, name: str, fraction: float) -> None:
        from tqdm import tqdm

        if name not in self.bars:
            for other in self.bars.values():
                other.update(other.total - other.n)
                other.close()
            self.bars[name] = tqdm(total=100.0, desc=f"{name:8s}", unit="%", file=sys.stderr, dynamic_ncols=True,
                                   bar_format="{l_bar}{bar}| {n:.0f}/100% [{elapsed}<{remaining}]")
        bar = self.bars[name]
        bar.update(min(fraction * 100, bar.total - bar.n))

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _report(meta: dict, url: str) -> None:
    seconds, cpu = meta.get("seconds", {}), meta.get("cpu_seconds", {})
    agreement = meta.get("agreement") or {}
    click.echo(f"{meta['vectors']} vectors of {meta['photos']} photos; cells per level "
               + ", ".join(f"{g}x{g}: {n}" for g, n in zip(meta["grids"], meta["cells"])))
    click.echo("stage times: " + ", ".join(f"{k} {v:.0f} s" + (f" (CPU {cpu[k]:.0f} s)" if k in cpu else "")
                                           for k, v in seconds.items()))
    if agreement:
        click.echo(f"icons vs cells on the finest level ({agreement.get('cells')} cells): own cell most similar "
                   f"{agreement.get('top1', 0):.0%}, among the 5 most similar {agreement.get('top5', 0):.0%}")
    click.echo(f"see it at {url} (`microtome serve`)")


COMMANDS = (atlas_command,)
