"""The `sae` technique: a TopK sparse autoencoder on a layer's activations, one artifact per layer.

`fit(model, spec, layer, dataset, params) -> ArtifactResult` collects the layer's activation
vectors over the dataset (techniques/sae_train.py), trains the SAE and returns the artifact:
file `sae.pt` (TopKSAE.to_bytes) and meta `{name, features, k, explained_variance, l0,
dead_fraction, dataset, epochs, weights_sha256, scale, vectors, seconds, loadings}`. Its features are
the layer `LAYER.NAME`: `sae` at the default width (`expansion` × the layer's channels),
`saeN` for an explicit width N, so that several widths of one layer live side by side
under names that never change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from microtome.errors import MicrotomeError
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import SAE, sae_name, sae_width
from microtome.techniques.sae_train import Checkpoint, Tick, collect, train
from microtome.zoo.sae import KIND, weights_sha

LOADINGS_TOP = 8  # base units listed per feature in the SAE's meta
COLLECT_SHARE = 0.2  # of the progress bar: the pass over the dataset; the rest is training


def fit(model, spec, layer_id: str, dataset, params: Mapping[str, Any], device: str = "cpu",
        tick: Tick = lambda f: None, checkpoints: str | Path | None = None) -> ArtifactResult:
    """Train the SAE `params` describe on `layer_id`'s activations over `dataset`.

    With `checkpoints` (a directory), the activation vectors are kept there once collected and
    the training state after every epoch, so a rerun after an interruption continues."""
    layer = spec.layer(layer_id)
    if layer.kind == KIND:
        raise MicrotomeError(f"{layer.id} is itself a dictionary layer; train an SAE on a unit layer "
                             f"such as {layer.id.rsplit('.', 1)[0]}")
    features = sae_width(params, layer.channels)
    if not 0 < params["k"] <= features:
        raise MicrotomeError(f"--k must be in 1..{features} (the number of features), got {params['k']}")
    started = time.time()
    vectors = _vectors(model, spec, layer.id, dataset, params, device,
                       lambda f: tick(f * COLLECT_SHARE), checkpoints)
    checkpoint = Checkpoint(Path(checkpoints) / "state.pt") if checkpoints else None
    sae, figures = train(vectors, features, int(params["k"]), int(params["epochs"]), seed=int(params["seed"]),
                         lr=float(params["lr"]), checkpoint=checkpoint,
                         tick=lambda f: tick(f * (1 - COLLECT_SHARE)))
    data = sae.to_bytes()
    meta = {"name": sae_name(params), "base": layer.id, "features": features, "k": int(params["k"]),
            **figures.as_dict(), "dataset": params["dataset"], "epochs": int(params["epochs"]),
            "weights_sha256": weights_sha(sae), "scale": float(sae.scale),
            "seconds": time.time() - started, "loadings": top_loadings(sae),
            "positions": "all" if figures.vectors >= len(dataset) * layer.size[0] * layer.size[1]
            else f"{figures.vectors // max(len(dataset), 1)} random per image"}
    return ArtifactResult(layer.id, None, SAE, dict(params), {"sae.pt": data}, meta)


def top_loadings(sae, top: int = LOADINGS_TOP) -> list[list[list[float]]]:
    """Per feature, its decoder direction's `top` largest loadings on the base layer's units,
    `[[unit, weight], ...]` by |weight| (what the feature's page lists without loading torch)."""
    loadings = sae.loadings()  # [F, C]
    order = loadings.abs().argsort(dim=1, descending=True)[:, :top]  # [F, top]
    return [[[int(u), round(float(loadings[f, u]), 5)] for u in row] for f, row in enumerate(order)]


def _vectors(model, spec, layer_id, dataset, params, device, tick, checkpoints):
    """The activation vectors, from the checkpoint directory when a previous run kept them."""
    import torch

    cached = Path(checkpoints) / "vectors.pt" if checkpoints else None
    if cached is not None and cached.is_file():
        tick(1.0)
        return torch.load(cached, weights_only=True)
    vectors = collect(model, spec, layer_id, dataset, int(params["max_vectors"]), seed=int(params["seed"]),
                      device=device, tick=tick)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vectors, cached.with_suffix(".tmp"))
        cached.with_suffix(".tmp").replace(cached)
    return vectors


def run_sae(job: Job) -> list[ArtifactResult]:
    """The build's runner: one SAE per planned (layer, params)."""
    results = []
    share = 1.0 / max(len(job.items), 1)
    for item in job.items:
        results.append(fit(job.model, job.spec, item.layer, job.dataset(item.params["dataset"]),
                           item.params, job.device, tick=lambda f: job.tick(f * share)))
    return results
