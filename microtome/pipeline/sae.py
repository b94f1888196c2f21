"""`microtome sae MODEL LAYER`: train a TopK sparse autoencoder and store it; its features become
the layer `LAYER.sae` (`LAYER.saeN` for an explicit width N) of the model in that store.

Resumable: the activation vectors and the training state after every epoch are kept under
`STORE/checkpoints/sae-MODEL-LAYER-PARAMSHASH/`; rerunning the same command after an
interruption continues from there, and the folder is removed once the SAE is stored.
Retraining under a name that exists with other params is refused unless `--force`, which
replaces the SAE and removes every artifact of its features (never a stale page).
"""

from __future__ import annotations

import shutil
import sys

import click

from microtome.errors import MicrotomeError
from microtome.pipeline.commands import store_option


@click.command(name="sae")
@click.argument("model")
@click.argument("layer")
@click.option("--features", default=None, type=click.IntRange(1),
              help="dictionary size (default: 4 × the layer's channels, the layer LAYER.sae; "
                   "another size N makes LAYER.saeN)")
@click.option("--k", default=None, type=click.IntRange(1), help="active features per position [default: 16]")
@click.option("--epochs", default=None, type=click.IntRange(1), help="passes over the vectors [default: 20]")
@click.option("--dataset", default="samples", show_default=True, help="samples or folder:PATH")
@click.option("--max-vectors", default=None, type=click.IntRange(1),
              help="at most this many activation vectors; past it each image keeps a random "
                   "share of its positions [default: 200000]")
@store_option
@click.option("--weights", default="default", show_default=True, help="default, random or PATH")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads (default: torch's)")
@click.option("--force", is_flag=True, help="replace an SAE of the same name trained otherwise, and its artifacts")
def sae_command(model, layer, features, k, epochs, dataset, max_vectors, store_root, weights, seed,
                device, threads, force) -> None:
    """Train a sparse autoencoder on LAYER's activations; its features become a browsable layer."""
    from microtome.data import get_dataset
    from microtome.pipeline.dictionaries import check_retrain, spec_with_dictionaries
    from microtome.pipeline.pipeline import existing_store, check_weights, resolve
    from microtome.store import ArtifactKey, Store
    from microtome.techniques.builtin import SAE, sae_name, sae_params, sae_width

    plain = resolve(model, weights).spec  # the model's own layers
    spec = spec_with_dictionaries(plain, existing_store(store_root))
    base = spec.layer(layer)
    if base.kind == "sae":
        raise MicrotomeError(f"{base.id} is a dictionary layer already; train on a unit layer such as "
                             f"{base.id.rsplit('.', 1)[0]}")
    if features == 4 * base.channels:
        features = None  # the default width: the layer LAYER.sae
    data = get_dataset(dataset)
    params = sae_params("standard", data.name, seed, features=features, k=k, epochs=epochs,
                        max_vectors=max_vectors)
    layer_id = f"{base.id}.{sae_name(params)}"
    width = sae_width(params, base.channels)
    if not 0 < params["k"] <= width:
        raise MicrotomeError(f"--k must be in 1..{width} (the number of features), got {params['k']}")
    store = Store(store_root)
    check_weights(store, spec)
    key = ArtifactKey.for_params(spec.id, base.id, None, SAE, params)
    held = store.get(key)
    if held is not None:
        click.echo(f"{spec.id}/{layer_id} is stored already (same params):")
        _report(held.meta, layer_id)
        return
    if not force:
        check_retrain(store, spec, base.id, params)
    folder = store.root / "checkpoints" / f"sae-{spec.id}-{base.id}-{key.params_hash}"
    meta = _train(model, weights, spec, base.id, data, params, device, threads, folder)
    _store(store, plain, key, params, meta, layer_id, replace=force)
    shutil.rmtree(folder, ignore_errors=True)
    _report(meta["meta"], layer_id)


def _train(model, weights, spec, base, data, params, device, threads, folder) -> dict:
    """Train with a progress bar; an interruption says how to continue and exits 130."""
    from tqdm.auto import tqdm

    from microtome.runtime import torch_threads
    from microtome.techniques.sae import fit
    from microtome.zoo import load_model

    resumed = (folder / "state.pt").is_file() or (folder / "vectors.pt").is_file()
    if resumed:
        click.echo(f"continuing from the checkpoint in {folder}", err=True)
    bar = tqdm(total=100.0, desc=f"sae {spec.id}/{base}", unit="%", file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/100% [{elapsed}<{remaining}]")
    try:
        with torch_threads(threads), bar:
            net, _ = load_model(model, weights=weights, device=device)
            result = fit(net, spec, base, data, params, device,
                         tick=lambda f: bar.update(min(f * 100, bar.total - bar.n)), checkpoints=folder)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: rerun the same command to continue from {folder}", err=True)
        raise SystemExit(130) from None
    return {"files": result.files, "meta": result.meta}


def _store(store, spec, key, params, trained: dict, layer_id: str, replace: bool) -> None:
    """Record the SAE (replacing one of the same name when asked) and the summary of `spec`
    (the model's own layers) with the store's dictionaries, the new one among them."""
    from microtome.pipeline.dictionaries import dictionary_for, forget_dictionary, spec_with_dictionaries
    from microtome.pipeline.pipeline import provenance

    if replace and dictionary_for(store, spec.id, layer_id) is not None:
        removed = forget_dictionary(store, spec.id, layer_id)
        click.echo(f"replaced {spec.id}/{layer_id}: {removed} artifacts of the old SAE removed")
    meta = {**trained["meta"], "provenance": provenance(spec, "standard", int(params["seed"]))}
    store.put(key, params, trained["files"], meta)
    store.put_model(spec.id, spec_with_dictionaries(spec, store).summary())


def _report(meta: dict, layer_id: str) -> None:
    click.echo(f"{layer_id}: {meta['features']} features, k={meta['k']}, explained variance "
               f"{meta['explained_variance']:.3f}, mean L0 {meta['l0']:.1f}, dead {meta['dead_fraction']:.1%}, "
               f"{meta['vectors']} vectors of {meta['dataset']}, {meta['epochs']} epochs"
               + (f", {meta['seconds']:.0f} s" if "seconds" in meta else ""))
