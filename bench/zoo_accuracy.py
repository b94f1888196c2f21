"""Top-1/top-5 accuracy of the zoo's real weights on ../shared/data/imagenet-sample (1 image per class).

A wrong preprocessing shows here first. Each image: short side resized to
round(input_size * 256 / 224), centre crop input_size, RGB in [0, 1] `[3, S, S]`, then the
spec's own `preprocess`. Targets: efficientnet_lite0 >= 0.78 top-1, efficientnet_lite1 >= 0.79,
efficientnet_lite2 >= 0.80.

    python bench/zoo_accuracy.py                                # the two efficientnet_lite models
    python bench/zoo_accuracy.py --weights googlenet=PATH.pth   # plus a torchvision model's file
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from tqdm import tqdm

from microtome.zoo import load_model

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-sample"
DEFAULT_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TARGETS = {"efficientnet_lite0": 0.78, "efficientnet_lite1": 0.79, "efficientnet_lite2": 0.80}


def eval_crop(path: str | Path, size: int) -> torch.Tensor:
    """The standard ImageNet evaluation crop of an image file: `[3, size, size]` RGB in [0, 1]."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    image = TF.resize(image, round(size * 256 / 224), TF.InterpolationMode.BILINEAR)  # short side
    return TF.to_tensor(TF.center_crop(image, size))


def read_labels(folder: Path) -> list[tuple[Path, int]]:
    """(image path, class index) for each row of `folder/labels.tsv` (file, wnid, class_index, name)."""
    rows = (folder / "labels.tsv").read_text().splitlines()[1:]
    return [(folder / row.split("\t")[0], int(row.split("\t")[2])) for row in rows if row.strip()]


def accuracy(name: str, weights: str, samples: list[tuple[Path, int]], batch_size: int,
             device: str) -> tuple[float, float, float]:
    """(top-1, top-5, seconds) of model `name` with `weights` on `samples`."""
    model, spec = load_model(name, weights=weights, device=device)
    top1 = top5 = 0
    start = time.perf_counter()
    with torch.no_grad(), tqdm(total=len(samples), desc=name, unit="img", leave=False) as bar:
        for i in range(0, len(samples), batch_size):
            batch = samples[i:i + batch_size]
            images = torch.stack([eval_crop(path, spec.input_size) for path, _ in batch])  # [B, 3, S, S]
            labels = torch.tensor([label for _, label in batch], device=device)  # [B]
            top = model(spec.preprocess(images.to(device))).topk(5).indices  # [B, 1000] -> [B, 5]
            top1 += int((top[:, 0] == labels).sum())
            top5 += int((top == labels[:, None]).any(dim=1).sum())
            bar.update(len(batch))
    return top1 / len(samples), top5 / len(samples), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS),
                        help="models with default weights (default: %(default)s)")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                        help="also evaluate MODEL with a local state dict file (repeatable)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    if not (args.data / "labels.tsv").is_file():
        print(f"no labelled images at {args.data.resolve()} (../shared/data/imagenet-sample, "
              "outside the repository): nothing to measure")
        return 0
    samples = read_labels(args.data)[: args.limit or None]
    runs = [(name, "default") for name in args.models]
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--weights wants MODEL=PATH, got {item!r}")
        runs.append((name, path))
    for name, weights in runs:
        top1, top5, seconds = accuracy(name, weights, samples, args.batch_size, args.device)
        target = f"  target top1 >= {TARGETS[name]:.2f}" if name in TARGETS and weights == "default" else ""
        print(f"{name:<20} top1 {top1:.3f}  top5 {top5:.3f}  ({len(samples)} images, "
              f"{seconds:.1f} s){target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
