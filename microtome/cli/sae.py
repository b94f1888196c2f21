"""`microtome sae MODEL LAYER`: train a TopK sparse autoencoder into the store
(`microtome.pipeline.sae.train_sae_into_store`); its features become the layer `LAYER.sae`
(`LAYER.saeN` for an explicit width N) of the model in that store.

Resumable: rerunning the same command after an interruption (exit 130) continues from the
checkpoints it names. Retraining under a name that exists with other params is refused unless
`--force`, which replaces the SAE and removes every artifact of its features.
"""

from __future__ import annotations

import sys

import click

from microtome.cli.options import (
    dataset_option,
    device_option,
    seed_option,
    store_option,
    threads_option,
    weights_option,
)


@click.command(name="sae")
@click.argument("model")
@click.argument("layer")
@click.option("--features", default=None, type=click.IntRange(1),
              help="dictionary size (default: 4 × the layer's channels, the layer LAYER.sae; "
                   "another size N makes LAYER.saeN)")
@click.option("--k", default=None, type=click.IntRange(1), help="active features per position [default: 16]")
@click.option("--epochs", default=None, type=click.IntRange(1), help="passes over the vectors [default: 20]")
@dataset_option()
@click.option("--max-vectors", default=None, type=click.IntRange(1),
              help="at most this many activation vectors; past it each image keeps a random "
                   "share of its positions [default: 200000]")
@store_option()
@weights_option()
@seed_option()
@device_option()
@threads_option()
@click.option("--force", is_flag=True, help="replace an SAE of the same name trained otherwise, and its artifacts")
def sae_command(model, layer, features, k, epochs, dataset, max_vectors, store_root, weights, seed,
                device, threads, force) -> None:
    """Train a sparse autoencoder on LAYER's activations; its features become a browsable layer."""
    from tqdm.auto import tqdm

    from microtome.pipeline.sae import SaeInterrupted, train_sae_into_store
    from microtome.runtime import torch_threads

    bars = []

    def started(plan) -> None:
        if plan.resumes:
            click.echo(f"continuing from the checkpoint in {plan.folder}", err=True)
        bars.append(tqdm(total=100.0, desc=f"sae {plan.spec.id}/{plan.base}", unit="%", file=sys.stderr,
                         dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/100% [{elapsed}<{remaining}]"))

    def progress(fraction: float) -> None:
        bars[0].update(min(fraction * 100, bars[0].total - bars[0].n))

    try:
        with torch_threads(threads):
            result = train_sae_into_store(store_root, model, layer, features=features, k=k, epochs=epochs,
                                          dataset=dataset, max_vectors=max_vectors, weights=weights, seed=seed,
                                          force=force, device=device, progress=progress, started=started)
    except SaeInterrupted as exc:
        click.echo(f"\ninterrupted: rerun the same command to continue from {exc.folder}", err=True)
        raise SystemExit(130) from None
    finally:
        for bar in bars:
            bar.close()
    if result.stored_already:
        click.echo(f"{result.model}/{result.layer_id} is stored already (same params):")
    elif result.replaced is not None:
        click.echo(f"replaced {result.model}/{result.layer_id}: {result.replaced} artifacts of the old SAE removed")
    _report(result.meta, result.layer_id)


def _report(meta: dict, layer_id: str) -> None:
    click.echo(f"{layer_id}: {meta['features']} features, k={meta['k']}, explained variance "
               f"{meta['explained_variance']:.3f}, mean L0 {meta['l0']:.1f}, dead {meta['dead_fraction']:.1%}, "
               f"{meta['vectors']} vectors of {meta['dataset']}, {meta['epochs']} epochs"
               + (f", {meta['seconds']:.0f} s" if "seconds" in meta else ""))


COMMANDS = (sae_command,)
