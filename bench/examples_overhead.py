"""Dataset examples end to end against a plain forward pass of the same model, same photos.

The technique side runs what `microtome build --techniques dataset_examples` runs for all
layers of efficientnet_lite0 (4120 units): the pass with every layer hooked and the streaming
statistics, the second pass for crops and heat maps, every artifact's files, and the store
writes (into a fresh store). The peer is a plain forward of the same model over the same
photos through the same loader (decode, resize 256, centre crop 224, prefetched) with the
same batch size, in the same run. Each side runs in its own subprocess (its own peak RSS).

Two photo counts N1 < N2 split the technique's time into a fixed part (per unit) and a
per-photo part, T(N) = fixed + N * per_photo; the ratio is per_photo over the forward's time
per photo. Targets: per photo <= 1.3x a forward pass, fixed <= 10 ms per unit.

    python bench/examples_overhead.py [--images 250 1000] [--layers all] [--keep DIR]

`--keep DIR` keeps the store of the largest run (to time `microtome verify` and `gc` on it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-sample"
MODEL = "efficientnet_lite0"


def child(mode: str, images: int, batch_size: int, layers: str, store_dir: str) -> dict:
    """Run one side in this process and return its measurements."""
    import torch

    from microtome.data import FolderDataset
    from microtome.store import ArtifactKey, Store
    from microtome.store.blobs import BlobDir
    from microtome.techniques.examples import dataset_examples
    from microtome.zoo import load_model

    model, spec = load_model(MODEL)
    data = FolderDataset(DATA, name=f"folder:{DATA}")
    data.paths, data.labels = data.paths[:images], data.labels[:images]  # the first N photos
    layer_ids = spec.layer_ids if layers == "all" else layers.split(",")
    with torch.no_grad():  # warm up the allocator and kernels alike for both sides
        model(spec.preprocess(torch.rand(batch_size, 3, spec.input_size, spec.input_size)))
    out: dict = {"mode": mode, "images": images}
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "forward":
        with torch.no_grad():
            for batch in data.batches(spec.input_size, batch_size):
                model(spec.preprocess(batch.images))
    else:
        temps = []  # blob files written: one temp file each
        if hasattr(BlobDir, "write_many"):
            real_write_many = BlobDir.write_many
            BlobDir.write_many = lambda self, blobs: temps.extend([1] * (n := real_write_many(self, blobs))) or n
        else:  # the store before put_many, for before/after figures
            real_temp_path = BlobDir.temp_path
            BlobDir.temp_path = lambda self, suffix="": temps.append(1) or real_temp_path(self, suffix)
        results = dataset_examples(model, spec, layer_ids, data, batch_size=batch_size, k=16)
        out["technique_seconds"] = time.perf_counter() - start
        entries = [(ArtifactKey.for_params(MODEL, r.layer, r.unit, r.technique, r.params),
                    r.params, r.files, r.meta) for r in results]
        with Store(store_dir) as store:
            if hasattr(store, "put_many"):
                store.put_many(entries)
            else:  # the store before put_many, for before/after figures
                for entry in entries:
                    store.put(*entry)
        out["units"] = len(results)
        out["files_per_unit"] = sum(len(r.files) for r in results) / len(results)
        out["blob_writes"] = len(temps)
        blobs = [p for p in Path(store_dir, "blobs").rglob("*") if p.is_file()]
        out["blobs"] = len(blobs)
        out["bytes"] = sum(p.stat().st_size for p in blobs)
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu  # steadier than wall time on a shared machine
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(mode: str, images: int, args: argparse.Namespace, store_dir: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--images", str(images), "--batch-size",
           str(args.batch_size), "--layers", args.layers, "--store", store_dir]
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{mode} with {images} images failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(sizes: list[int], fwd: dict[int, dict], ex: dict[int, dict]) -> None:
    for n in sizes:
        e, f = ex[n], fwd[n]
        print(f"{n:5d} photos: forward {f['seconds']:7.1f} s, cpu {f['cpu_seconds']:.1f} s "
              f"({1e3 * f['seconds'] / n:5.1f} ms/photo, "
              f"peak RSS {f['peak_rss_mb']:5.0f} MB) | examples {e['seconds']:7.1f} s, cpu "
              f"{e['cpu_seconds']:.1f} s (technique "
              f"{e['technique_seconds']:.1f} s + store {e['seconds'] - e['technique_seconds']:.1f} s, "
              f"peak RSS {e['peak_rss_mb']:5.0f} MB) | {e['units']} units, per unit "
              f"{e['files_per_unit']:.1f} files, {e['blob_writes'] / e['units']:.1f} blob writes, "
              f"{e['blobs'] / e['units']:.1f} blobs, {e['bytes'] / e['units'] / 1024:.0f} KiB")
    if len(sizes) < 2:
        return
    n1, n2 = sizes[0], sizes[-1]
    units = ex[n2]["units"]
    for clock, name in (("seconds", "wall"), ("cpu_seconds", "cpu")):
        per_photo = (ex[n2][clock] - ex[n1][clock]) / (n2 - n1)
        fixed = ex[n1][clock] - per_photo * n1
        forward = (fwd[n1][clock] + fwd[n2][clock]) / (n1 + n2)
        print(f"{name:4s}: per photo {1e3 * per_photo:.1f} ms = {per_photo / forward:.2f}x the forward's "
              f"{1e3 * forward:.1f} ms (target <= 1.3x) | fixed {fixed:.1f} s = "
              f"{1e3 * fixed / units:.1f} ms per unit (target <= 10 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", default="all", help="all, or layer ids joined by commas")
    parser.add_argument("--keep", help="keep the store of the largest run here")
    parser.add_argument("--child", choices=["forward", "examples"])
    parser.add_argument("--store")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (the ImageNet sample lives in ../shared/data)")
        return
    if args.child:
        print(json.dumps(child(args.child, args.images[0], args.batch_size, args.layers, args.store)))
        return
    sizes = sorted(args.images)
    print(f"{MODEL}, layers {args.layers}, batch {args.batch_size}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    fwd, ex = {}, {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="examples-bench-") as tmp:
            fwd[n] = run("forward", n, args, tmp)
            ex[n] = run("examples", n, args, str(Path(tmp) / "store"))
            if args.keep and n == sizes[-1]:
                shutil.rmtree(args.keep, ignore_errors=True)
                shutil.copytree(Path(tmp) / "store", args.keep)
    report(sizes, fwd, ex)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
