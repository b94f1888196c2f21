"""Dataset examples for ALL layers of efficientnet_lite0 against a bare forward pass.

Both sides read the same JPEGs through the same loader (decode, resize 256, centre crop 224,
prefetched one batch ahead) with the same batch size; the examples side adds hooks on every
layer, the per-image spatial max and the streaming top-k/bottom-k/histogram of all 4120 units.
Each configuration runs in its own subprocess so its peak RSS (ru_maxrss) is its own; 250 and
1000 images show that memory does not grow with the number of images. Target: time ratio
<= 1.3x.

    python bench/examples_overhead.py [--images 250 1000] [--batch-size 32] [--render]

`--render` also times turning the statistics into artifacts (crops, heat maps, histograms)
for every unit, once, at the smallest image count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-sample"
MODEL = "efficientnet_lite0"


def rss_mb() -> float:
    """The current resident set size, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, images: int, batch_size: int) -> dict:
    """Run one configuration in this process and return its measurements."""
    import torch

    from microtome.data import FolderDataset
    from microtome.techniques.examples import collect, dataset_examples
    from microtome.zoo import load_model

    model, spec = load_model(MODEL)
    data = FolderDataset(DATA, name=f"folder:{DATA}")
    data.paths, data.labels = data.paths[:images], data.labels[:images]  # the first N images
    with torch.no_grad():  # warm up the allocator and kernels alike for both sides
        model(spec.preprocess(torch.rand(batch_size, 3, spec.input_size, spec.input_size)))
    before = rss_mb()
    cpu0, start = time.process_time(), time.perf_counter()
    out: dict = {"mode": mode, "images": images}
    if mode == "forward":
        with torch.no_grad():
            for batch in data.batches(spec.input_size, batch_size):
                model(spec.preprocess(batch.images))
    else:
        stats = collect(model, spec, spec.layer_ids, data, batch_size=batch_size, k=16)
        out["units"] = sum(s.channels for s in stats.values())
        if mode == "render":
            cpu0, start = time.process_time(), time.perf_counter()
            results = dataset_examples(model, spec, spec.layer_ids, data, batch_size=batch_size,
                                       k=16, stats=stats)
            out["artifacts"] = len(results)
            out["files"] = sum(len(r.files) for r in results)
            unique = {id(b): len(b) for r in results for b in r.files.values()}  # shared bytes once
            out["megabytes"] = sum(unique.values()) / 2**20
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu0
    out["rss_before_mb"] = before
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(mode: str, images: int, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--images", str(images),
           "--batch-size", str(batch_size)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{mode} with {images} images failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--child", choices=["forward", "examples", "render"])
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (the ImageNet sample lives in ../shared/data)")
        return
    if args.child:
        print(json.dumps(child(args.child, args.images[0], args.batch_size)))
        return
    print(f"{MODEL}, all layers, batch {args.batch_size}, {os.cpu_count()} CPUs, "
          f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    for images in args.images:
        bare = run("forward", images, args.batch_size)
        ex = run("examples", images, args.batch_size)
        print(f"{images:5d} images: forward {bare['seconds']:7.1f} s "
              f"(cpu {bare['cpu_seconds']:7.1f} s, peak RSS {bare['peak_rss_mb']:6.0f} MB) | "
              f"examples {ex['seconds']:7.1f} s (cpu {ex['cpu_seconds']:7.1f} s, "
              f"peak RSS {ex['peak_rss_mb']:6.0f} MB, {ex['units']} units) | "
              f"ratio {ex['seconds'] / bare['seconds']:.2f}x wall, "
              f"{ex['cpu_seconds'] / bare['cpu_seconds']:.2f}x cpu (target <= 1.3x)")
    if args.render:
        images = min(args.images)
        out = run("render", images, args.batch_size)
        print(f"{images:5d} images: artifacts for {out['artifacts']} units in "
              f"{out['seconds']:.1f} s after the pass ({out['files']} files, "
              f"{out['megabytes']:.0f} MB of distinct content), peak RSS {out['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
