"""`microtome compare MODEL_A MODEL_B`: the same feature across models, recorded both ways
(`microtome.pipeline.compare.compare_into_store`), a progress bar over the images; prints a
line per pair of layers (median best r, spatial, matched, CKA).
"""

from __future__ import annotations

import sys

import click

from microtome.cli.options import (
    WEIGHTS_HELP,
    dataset_option,
    device_option,
    preset_option,
    store_option,
    threads_option,
)
from microtome.techniques.builtin import SIMILAR_PRESETS


@click.command(name="compare")
@click.argument("model_a")
@click.argument("model_b")
@click.option("--layers", default=None,
              help="A_LAYER=B_LAYER,... pairs, or A layers paired by depth (default: every layer of both, "
                   "paired by stage-aware relative depth)")
@dataset_option()
@preset_option(help="images: " + ", ".join(f"{p} {v['images']}" for p, v in SIMILAR_PRESETS.items()))
@click.option("--images", default=None, type=click.IntRange(3), help="images to read (default: the preset's)")
@click.option("--weights-a", default="default", show_default=True, help="MODEL_A's weights: " + WEIGHTS_HELP)
@click.option("--weights-b", default="default", show_default=True, help="MODEL_B's weights: " + WEIGHTS_HELP)
@store_option()
@device_option()
@threads_option()
def compare_command(model_a, model_b, layers, dataset, preset, images, weights_a, weights_b, store_root, device,
                    threads) -> None:
    """Correlate the units of MODEL_A and MODEL_B over the same images (each at its own input
    size): best-correlated units, a one-to-one matching and a linear CKA map, recorded both ways."""
    from tqdm.auto import tqdm

    from microtome.pipeline.compare import compare_into_store
    from microtome.runtime import torch_threads

    bar = tqdm(desc=f"compare {model_a} {model_b}", unit="img", file=sys.stderr, dynamic_ncols=True, delay=0.5)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    with torch_threads(threads), bar:
        result = compare_into_store(store_root, model_a, model_b, layers, dataset, preset, images, device,
                                    progress=progress, weights=(weights_a, weights_b))
    for line in result.lines():
        click.echo(line)


COMMANDS = (compare_command,)
