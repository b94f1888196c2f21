"""Feature-visualization quality across whole layers: microtome's images against the best photos.

For every layer of efficientnet_lite0 (stem to head), a sample of units is rendered as the build
renders them (`techniques.feature_vis`, the `positive` variant at a preset), and each image's
maximum activation is divided by the unit's best over the photos of a folder (the peer, measured
in the same run: `../shared/data/imagenet-sample` by default). Per layer it prints the median
ratio over live units (best photo > 0), the fraction of live units at ≥ 1 (a unit capped by a
ReLU6 that reaches its cap counts as ≥ 1), the dead units sampled, and the fraction of clipped
pixels (0 or 255 once written as 8-bit PNG). Target (issue 8): ≥ 95% at ≥ 1 in every layer,
≤ 1% clipped pixels. Since the early-layer schedule bounds the logits (`saturation` 5: levels
2..253), a pixel at that bound is clipped in all but name: the `bound` column counts the pixels
at 0-2 or 253-255, so that the bound cannot hide saturation.

    python bench/fv_quality.py                            # 4 units per layer, 1000 photos
    python bench/fv_quality.py --units 8 --photos 200 --layers stem,block2,block10
    python bench/fv_quality.py --lr 0.1 --sharpen-steps 128   # try a schedule against the preset
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/fv_throughput.py

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from microtome.data import get_dataset  # noqa: E402
from microtome.techniques import feature_vis as fv  # noqa: E402
from microtome.techniques.builtin import FV_PRESETS  # noqa: E402
from microtome.zoo import load_model  # noqa: E402
from microtome.zoo.hooks import forward_to  # noqa: E402

MODEL = "efficientnet_lite0"
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
CAP = 6.0  # ReLU6


def best_photo_maxima(model, spec, layers: list[str], folder: str, n: int) -> dict[str, torch.Tensor]:
    """`{layer: [C]}`: each unit's maximum activation over positions and the first `n` photos."""
    dataset = get_dataset(f"folder:{folder}")
    paths = {layer: spec.layer(layer).module for layer in layers}
    best: dict[str, torch.Tensor] = {}
    for batch in dataset.batches(spec.input_size, 32, indices=list(range(min(n, len(dataset))))):
        with torch.no_grad():
            acts = forward_to(model, spec.preprocess(batch.images), paths)
        for layer, a in acts.items():
            peak = (a.flatten(2) if a.dim() == 4 else a.unsqueeze(2)).amax(2).amax(0)  # [C]
            best[layer] = peak if layer not in best else torch.maximum(best[layer], peak)
    return best


def sample_units(channels: int, k: int, seed: int) -> list[int]:
    return sorted(torch.randperm(channels, generator=torch.Generator().manual_seed(seed))[:k].tolist())


def clipped_fraction(png: bytes, margin: int = 0) -> float:
    """The fraction of 8-bit values within `margin` levels of 0 or 255."""
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    return float(((pixels <= margin) | (pixels >= 255 - margin)).mean())


def measure_layer(model, spec, layer: str, units: list[int], best: torch.Tensor, params: dict,
                  capped: bool) -> dict:
    start = time.perf_counter()
    results = fv.feature_vis(model, spec, layer, units, [params],
                             best_examples={u: float(best[u]) for u in units})
    ratios, dead, clipped, bound, below = [], 0, [], [], []
    for r in results:
        clipped.append(clipped_fraction(r.files["image.png"]))
        bound.append(clipped_fraction(r.files["image.png"], 2))
        if r.meta["quality"] is None:
            dead += 1
            continue
        at_cap = capped and r.meta["max_activation"] >= CAP - 1e-3
        ratios.append(max(r.meta["quality"], 1.0) if at_cap else r.meta["quality"])
        if ratios[-1] < 1:
            below.append(f"{r.unit}:{ratios[-1]:.2f}")
    return {"layer": layer, "units": len(units), "dead": dead,
            "median": statistics.median(ratios) if ratios else float("nan"),
            "at_least_1": sum(q >= 1 for q in ratios) / len(ratios) if ratios else float("nan"),
            "clipped": float(np.mean(clipped)), "bound": float(np.mean(bound)), "seconds": time.perf_counter() - start,
            "worst": min(ratios) if ratios else float("nan"), "below": below}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=4, help="units sampled per layer")
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--folder", default=str(PHOTOS))
    ap.add_argument("--preset", default="standard", choices=list(FV_PRESETS))
    ap.add_argument("--layers", default="", help="comma-separated layer ids (default: stem to head)")
    ap.add_argument("--steps", type=int, help="override the preset's steps")
    ap.add_argument("--lr", type=float, help="override the preset's learning rate")
    ap.add_argument("--saturation", type=float,
                    help="the early layers' logit bound (5: 8-bit levels 2..253)")
    ap.add_argument("--lr-final", type=float, help="anneal the learning rate to this (cosine)")
    ap.add_argument("--sharpen-steps", type=int, help="last steps with whole-pixel shifts only")
    ap.add_argument("--no-early", action="store_true",
                    help="without the early and local layer schedules (params stored before them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from microtome.runtime import keep_freed_memory

    keep_freed_memory()  # as the command line does
    model, spec = load_model(MODEL)
    layers = args.layers.split(",") if args.layers else [layer.id for layer in spec.layers if layer.kind != "logits"]
    params = fv.fv_params(args.preset, "positive", args.seed)
    overrides = (("steps", args.steps), ("lr", args.lr), ("sharpen_steps", args.sharpen_steps),
                 ("lr_final", args.lr_final), ("saturation", args.saturation))
    params.update({k: v for k, v in overrides if v is not None})
    if args.no_early:
        params = {k: v for k, v in params.items() if k not in fv.EARLY_LAYERS}
    t = time.perf_counter()
    best = best_photo_maxima(model, spec, layers, args.folder, args.photos)
    early = {k: params[k] for k in fv.EARLY_LAYERS if k in params}
    print(f"{MODEL}, {args.units} units/layer, preset {args.preset} (steps {params['steps']}, "
          f"lr {params['lr']}{'->' + str(params['lr_final']) if params.get('lr_final') else ''}, "
          f"sharpen {params.get('sharpen_steps', 0)}, {params['size']} px, "
          f"early layers {early or 'as others'}), "
          f"best of {args.photos} photos "
          f"({time.perf_counter() - t:.0f} s), {args.threads} threads")
    print(f"{'layer':8} {'units':>5} {'dead':>4} {'median':>7} {'>=1':>6} {'worst':>6} "
          f"{'clipped':>8} {'bound':>6} {'s':>5}  below 1 (unit:ratio)")
    rows = []
    for layer in layers:
        units = sample_units(spec.layer(layer).channels, args.units, args.seed)
        capped = isinstance(dict(model.named_modules())[spec.layer(layer).module], nn.ReLU6)
        row = measure_layer(model, spec, layer, units, best[layer], params, capped)
        rows.append(row)
        print(f"{layer:8} {row['units']:5d} {row['dead']:4d} {row['median']:7.2f} "
              f"{row['at_least_1']:6.0%} {row['worst']:6.2f} {row['clipped']:8.2%} {row['bound']:6.2%} "
              f"{row['seconds']:5.0f}  {' '.join(row['below'])}", flush=True)
    live = [r for r in rows if r["at_least_1"] == r["at_least_1"]]
    print(f"layers meeting >= 95% at >= 1: {sum(r['at_least_1'] >= 0.95 for r in live)}/{len(live)}; "
          f"max clipped {max(r['clipped'] for r in rows):.2%} "
          f"(at 0-2 or 253-255: {max(r['bound'] for r in rows):.2%})")


if __name__ == "__main__":
    main()
