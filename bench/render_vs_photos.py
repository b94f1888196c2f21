"""`microtome render` against the best photos, and against the build, unit by unit.

For each unit, the peer is the unit's best spatial-mean activation over the photos of a folder
(`../shared/data/imagenet-sample` by default: 1000 labelled ImageNet photos at the model's input
size). The command line renders the units (`microtome render MODEL LAYER:UNITS --steps S --size P
--seed K`, as a user would, in a subprocess), and the written PNG is measured with the model:
the spatial mean of the unit's activation on the 8-bit image. A ratio >= 1 means the rendered
unit reaches what the best photo does. Then the same command at `--preset standard` is compared
pixel for pixel with the build's image at that preset and seed (`techniques.feature_vis`).

    python bench/render_vs_photos.py                      # issue 17's units, 256 steps, 128 px, seed 1
    python bench/render_vs_photos.py --targets block10:5,6 --photos 200
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from microtome.data import get_dataset
from microtome.images import png_bytes
from microtome.techniques import feature_vis as fv
from microtome.zoo import load_model
from microtome.zoo.hooks import forward_to

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
TARGETS = "stem:14,26,29,23 block2:7,13"


def best_photo_means(model, spec, layer: str, units: list[int], folder: str, n: int) -> list[float]:
    """Each unit's best spatial-mean activation over the first `n` photos of `folder`."""
    dataset = get_dataset(f"folder:{folder}")
    path = {layer: spec.layer(layer).module}
    best = torch.full((len(units),), -float("inf"))
    for batch in dataset.batches(spec.input_size, 32, indices=list(range(min(n, len(dataset))))):
        with torch.no_grad():
            act = forward_to(model, spec.preprocess(batch.images), path)[layer]  # [B, C, H, W]
        means = act[:, units].flatten(2).mean(2) if act.dim() == 4 else act[:, units]  # [B, U]
        best = torch.maximum(best, means.amax(0))
    return best.tolist()


def png_means(model, spec, layer: str, units: list[int], png: Path, size: int) -> list[float]:
    """The spatial mean of unit i's activation on tile i of the CLI's side-by-side PNG."""
    sheet = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255  # [H, W', 3]
    tiles = [sheet[:, i * (size + 2): i * (size + 2) + size] for i in range(len(units))]
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)  # [U, 3, S, S]
    with torch.no_grad():
        act = forward_to(model, spec.preprocess(x), {layer: spec.layer(layer).module})[layer]
    flat = act.flatten(2).mean(2) if act.dim() == 4 else act
    return [float(flat[i, u]) for i, u in enumerate(units)]


def cli_render(target: str, out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "microtome.cli", "render", "efficientnet_lite0", target,
           "-o", str(out), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default=TARGETS, help="space-separated LAYER:UNITS")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--folder", default=str(PHOTOS))
    args = ap.parse_args()
    model, spec = load_model("efficientnet_lite0")
    tmp = Path(tempfile.mkdtemp())
    print(f"{'unit':14s} {'render':>8s} {'best photo':>10s} {'ratio':>6s}")
    for target in args.targets.split():
        layer, units_text = target.split(":")
        units = [int(u) for u in units_text.split(",")]
        png = tmp / f"{layer}.png"
        cli_render(target, png, "--steps", str(args.steps), "--size", str(args.size),
                   "--seed", str(args.seed))
        reached = png_means(model, spec, layer, units, png, args.size)
        best = best_photo_means(model, spec, layer, units, args.folder, args.photos)
        for u, r, b in zip(units, reached, best):
            print(f"{layer + ':' + str(u):14s} {r:8.3f} {b:10.3f} {r / b if b > 0 else float('nan'):6.2f}")
        preset_png = tmp / f"{layer}-standard.png"
        cli_render(f"{layer}:{units[0]}", preset_png, "--preset", "standard", "--seed", str(args.seed))
        built = fv.render_variant(model, spec, layer, [units[0]],
                                  fv.fv_params("standard", "positive", args.seed))
        levels = np.asarray(Image.open(io.BytesIO(png_bytes(built.images[0]))), dtype=np.int16)
        cli = np.asarray(Image.open(preset_png).convert("RGB"), dtype=np.int16)
        print(f"{layer}:{units[0]} --preset standard vs the build's image: max difference "
              f"{int(np.abs(cli - levels).max())}/255")


if __name__ == "__main__":
    main()
