"""SAE on efficientnet_lite0/block10 over 1000 labelled photos: training time, explained variance,
mean L0, dead fraction; against a peer measured in the same run, PCA with as many components
as the SAE has active features (the best rank-k linear reconstruction).

Collects block10's activation vectors once (every position of every photo while they fit in
`--max-vectors`), trains the default SAE (4 × 112 = 448 features, k 16, 20 epochs, as
`microtome sae` does) on 90% of the photos and measures it on those and on the held-out 10%.
Usage: python bench/sae_block10.py [--data /work/shared/data/imagenet-sample] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from microtome.data import get_dataset
from microtome.runtime import torch_threads
from microtome.techniques.builtin import sae_params, sae_width
from microtome.techniques.sae_train import collect, evaluate, train
from microtome.zoo import load_model


def pca_explained_variance(fit_on: torch.Tensor, test: torch.Tensor, k: int) -> float:
    """Explained variance on `test` of the top-k principal components of `fit_on`."""
    mean = fit_on.mean(0)
    _, _, v = torch.linalg.svd(fit_on - mean, full_matrices=False)
    basis = v[:k].T  # [C, k]
    centred = test - mean
    recon = centred @ basis @ basis.T
    return 1 - float((centred - recon).pow(2).sum() / (test - test.mean(0)).pow(2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/imagenet-sample")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--layer", default="block10")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    params = sae_params("standard", f"folder:{args.data}", epochs=args.epochs)
    with torch_threads(args.threads):
        model, spec = load_model(args.model)
        data = get_dataset(f"folder:{args.data}")
        layer = spec.layer(args.layer)
        started = time.perf_counter()
        vectors = collect(model, spec, layer.id, data, params["max_vectors"])
        collect_s = time.perf_counter() - started
        per_image = len(vectors) // len(data)
        split = per_image * (len(data) * 9 // 10)  # vectors are in image order
        fit_on, held_out = vectors[:split], vectors[split:]
        features, k = sae_width(params, layer.channels), params["k"]
        started = time.perf_counter()
        sae, figures = train(fit_on, features, k, params["epochs"], seed=0, lr=params["lr"])
        train_s = time.perf_counter() - started
        held = evaluate(sae, held_out)
        started = time.perf_counter()
        pca = pca_explained_variance(fit_on, held_out, k)
        pca_s = time.perf_counter() - started
    print(f"{args.model}/{layer.id} over {len(data)} photos: {len(vectors)} vectors "
          f"({per_image} per photo), collected in {collect_s:.1f} s")
    print(f"SAE {features} features, k={k}, {params['epochs']} epochs on {len(fit_on)} vectors: "
          f"trained in {train_s:.1f} s ({args.threads} thread)")
    print(f"  train     explained variance {figures.explained_variance:.3f}  L0 {figures.l0:.1f}  "
          f"dead {figures.dead_fraction:.1%}")
    print(f"  held-out  explained variance {held.explained_variance:.3f}  L0 {held.l0:.1f}  "
          f"dead {held.dead_fraction:.1%}")
    print(f"  peer: PCA-{k} held-out explained variance {pca:.3f} (fit {pca_s:.2f} s); "
          f"SAE / PCA = {held.explained_variance / pca:.2f}")


if __name__ == "__main__":
    main()
