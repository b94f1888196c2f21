"""EfficientNet-Lite0 against Lite1 and Lite2 over the same real photos: the figures of
`microtome compare` (median best r per paired layer, pooled and spatial, mean matched r, CKA
of the pair, the CKA-best layer) and the linear CKA map, saved as a PNG per pair.

Timing: the comparison (both models hooked at every layer, pooled maxima, spatial running
sums for every depth pair both ways, correlations, Hungarian matchings, CKA) against its peer
in the same run, a plain forward pass of both models over the same photos through the same
loader (each model at its own input size), so the ratio is what comparing costs over reading.

    python bench/compare_models.py [--images 250] [--out bench/out] [--pairs lite1,lite2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-sample"
BASE = "efficientnet_lite0"


def forward_only(models, dataset, indices) -> float:
    """Seconds for a plain forward of every model over `indices` (the peer)."""
    started = time.perf_counter()
    for net, spec in models:
        with torch.no_grad():
            for batch in dataset.batches(spec.input_size, 16, indices):
                net(spec.preprocess(batch.images))
    return time.perf_counter() - started


def cka_png(cka: np.ndarray, rows, cols, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.32 * len(cols) + 2.5, 0.32 * len(rows) + 1.8))
    im = ax.imshow(cka, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=70, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="linear CKA")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_pair(other: str, images: int, out: Path) -> dict:
    from microtome.data import get_dataset
    from microtome.techniques.compare import Side, compare, depth_pairing, spread, summary
    from microtome.zoo import load_model

    dataset = get_dataset(f"folder:{DATA}")
    net_a, spec_a = load_model(BASE)
    net_b, spec_b = load_model(other)
    indices = spread(len(dataset), images)
    peer = forward_only([(net_a, spec_a), (net_b, spec_b)], dataset, indices)
    pairs_a = depth_pairing(spec_a, spec_b)
    pairs = list(dict.fromkeys([*pairs_a.items(), *((a, b) for b, a in depth_pairing(spec_b, spec_a).items())]))
    started = time.perf_counter()
    result = compare(Side(net_a, spec_a, tuple(spec_a.layer_ids)), Side(net_b, spec_b, tuple(spec_b.layer_ids)),
                     dataset, images, pairs)
    seconds = time.perf_counter() - started
    rows = []
    for la, lb in pairs_a.items():
        figures = summary(result.pairs[(la, lb)])
        i, j = result.layers_a.index(la), result.layers_b.index(lb)
        rows.append({"a": la, "b": lb, **figures, "cka": float(result.cka[i, j]),
                     "cka_best": result.layers_b[int(np.argmax(result.cka[i]))]})
    png = out / f"cka_{BASE}_{other}.png"
    cka_png(result.cka, result.layers_a, result.layers_b,
            f"linear CKA, {BASE} (rows) vs {other}, {result.images} photos", png)
    print(f"\n{BASE} vs {other}: {result.images} photos of imagenet-sample, {len(pairs)} layer pairs")
    print(f"{'A layer':9s} {'B layer':9s} {'med best r':>10s} {'spatial':>8s} {'matched':>8s} {'CKA':>6s}  CKA-best B")
    for r in rows:
        print(f"{r['a']:9s} {r['b']:9s} {r['median_best_r']:10.3f} {r['median_best_r_spatial']:8.3f} "
              f"{r['mean_matched_r']:8.3f} {r['cka']:6.3f}  {r['cka_best']}")
    diag = [float(result.cka[result.layers_a.index(a), result.layers_b.index(b)]) for a, b in pairs_a.items()]
    print(f"CKA at paired layers: median {np.median(diag):.3f}; map saved to {png}")
    print(f"compare {seconds:.1f} s vs plain forward of both models {peer:.1f} s: ratio {seconds / peer:.2f}x")
    return {"other": other, "images": result.images, "rows": rows, "cka": result.cka.round(4).tolist(),
            "layers_a": list(result.layers_a), "layers_b": list(result.layers_b),
            "seconds": seconds, "forward_seconds": peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=250)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--pairs", default="efficientnet_lite1,efficientnet_lite2")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_pair(other.strip(), args.images, args.out) for other in args.pairs.split(",") if other.strip()]
    (args.out / "compare_models.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
