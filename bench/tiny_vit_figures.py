"""Figures of the trained Fashion-MNIST ViT (docs/tiny-vit.md): FV throughput and dataset examples.

- `throughput`: one batch of `--units` units of a layer rendered as the build renders them
  (`render_variant`, the `positive` variant) at the quick and standard presets: units per
  minute; then the same render with fewer steps against the standard preset's final objective
  (the steps it takes to reach 90% of it).
- `examples`: the dataset examples' top-k of every unit of a layer over the whole test split
  (`techniques.examples.collect`, streaming) against a brute force (every image's spatial
  maximum, sorted): values equal, and the same images where the values are distinct.

    OMP_WAIT_POLICY=PASSIVE python bench/tiny_vit_figures.py throughput --threads 2
    python bench/tiny_vit_figures.py examples --layers block2,block2_mlp
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/fv_throughput.py

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from microtome.data import get_dataset  # noqa: E402
from microtome.techniques import feature_vis as fv  # noqa: E402
from microtome.techniques.examples import collect  # noqa: E402
from microtome.zoo import load_model  # noqa: E402
from microtome.zoo.hooks import forward_to  # noqa: E402

MODEL = "bench.tiny_vit:fashion_vit"
WEIGHTS = "out/tiny_vit_fmnist.safetensors"
STEPS = (8, 16, 32, 64, 128, 192, 224)


def render_values(model, spec, layer: str, units: list[int], preset: str, steps: int | None = None
                  ) -> tuple[torch.Tensor, float, object]:
    """(final objective values [U], seconds, result) of one build-like render of `units`."""
    params = fv.fv_params(preset, "positive", 0, spec.input_size)
    if steps is not None:
        params["steps"] = steps
    start = time.perf_counter()
    result = fv.render_variant(model, spec, layer, units, params)
    return result.values, time.perf_counter() - start, result


def throughput(model, spec, layer: str, units: list[int], presets: list[str]) -> None:
    """Units per minute at each preset; then the steps a render needs to reach 90% of the
    standard preset's final objective (the same render, with fewer steps: the final values
    are measured untransformed, after the polish, as the build's are)."""
    for preset in presets:
        load = os.getloadavg()[0]
        values, seconds, result = render_values(model, spec, layer, units, preset)
        print(f"{preset:8} {result.images.shape[-1]} px, {result.steps} steps ({result.schedule or 'no'} "
              f"schedule): {len(units)} units in {seconds:.1f} s = {len(units) * 60 / seconds:.1f} units/min; "
              f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    final = render_values(model, spec, layer, units, "standard")[0]
    for steps in STEPS:
        values = render_values(model, spec, layer, units, "standard", steps)[0]
        share = values / final  # [U]
        print(f"{steps:4d} steps: median {float(share.median()):.2f} of the standard render's objective, "
              f"{int((share >= 0.9).sum())}/{len(units)} units at >= 0.9", flush=True)


def examples(model, spec, layers: list[str], dataset: str, k: int) -> None:
    data = get_dataset(dataset)
    start = time.perf_counter()
    stats = collect(model, spec, layers, data, k=k, batch_size=250)
    streaming = time.perf_counter() - start
    paths = {layer: spec.layer(layer).module for layer in layers}
    maxima: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    start = time.perf_counter()
    with torch.no_grad():
        for batch in data.batches(spec.input_size, 250):
            acts = forward_to(model, spec.preprocess(batch.images), paths)
            for layer, act in acts.items():
                maxima[layer].append(act.flatten(2).amax(2))  # [B, C, H, W] -> [B, C]
    brute = time.perf_counter() - start
    for layer in layers:
        values = torch.cat(maxima[layer]).T  # [C, N]
        want = torch.sort(values, dim=1, descending=True)
        got = stats[layer].top
        same_values = torch.equal(got.values, want.values[:, :k])
        distinct = want.values[:, :k] != want.values[:, 1:k + 1]  # no tie with the next one
        same_ids = torch.equal(got.ids[distinct], want.indices[:, :k][distinct])
        print(f"{layer}: top-{k} of {values.shape[0]} units over {values.shape[1]} images: values equal "
              f"{same_values}, images equal {same_ids} ({int(distinct.sum())} untied entries); "
              f"streaming {streaming:.1f} s, brute force {brute:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=("throughput", "examples"))
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--layer", default="block2", help="throughput: the layer rendered")
    ap.add_argument("--units", type=int, default=8, help="throughput: units in the batch (the build's task)")
    ap.add_argument("--presets", default="quick,standard")
    ap.add_argument("--layers", default="block2,block2_mlp", help="examples: the layers checked")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, spec = load_model(args.model, weights=args.weights)
    if args.figure == "throughput":
        throughput(model, spec, args.layer, list(range(args.units)), args.presets.split(","))
    else:
        examples(model, spec, args.layers.split(","), args.dataset, args.k)


if __name__ == "__main__":
    main()
