"""Time of `inspect` for one photo: efficientnet_lite0 on chelsea at block10 and head, 6 groups,
7×7 grid, per preset; against a peer measured in the same run, one feature-visualization batch
of 6 channels of block10 at the preset's steps and size (what a unit page's build costs).

Prints wall and CPU (process) seconds of the analysis alone (`renders=False`: forward, NMF,
attribution, dictionary), of the whole inspection, and the ratio of the whole to the peer.
Like the other benches it sets OMP_WAIT_POLICY=PASSIVE unless the environment says otherwise.

    python bench/inspect_time.py --presets quick --threads 1
    python bench/inspect_time.py --presets quick,standard
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="quick")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override the presets' steps")
    args = parser.parse_args()

    import skimage.data
    import torch
    from PIL import Image

    from microtome.inspect.photo import inspect_photo
    from microtome.inspect.presets import inspect_params
    from microtome.optvis import objectives as O
    from microtome.optvis.param import ImageParam
    from microtome.optvis.render import render
    from microtome.zoo import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, spec = load_model("efficientnet_lite0")
    photo = Image.fromarray(skimage.data.chelsea())
    layers = "block10,head"
    inspect_photo(model, spec, photo, layers, renders=False)  # warm-up
    wall, cpu = _timed(lambda: inspect_photo(model, spec, photo, layers, renders=False))
    print(f"analysis (no renders): {wall:.1f} s wall, {cpu:.1f} s CPU")
    for preset in args.presets.split(","):
        params = inspect_params(preset, steps=args.steps)
        peer = [O.channel("block10", u) for u in range(6)]
        p_wall, p_cpu = _timed(lambda: render(model, peer, ImageParam(params["size"]), spec=spec,
                                              steps=params["steps"]))
        wall, cpu = _timed(lambda: inspect_photo(model, spec, photo, layers, groups=6,
                                                 preset=preset, steps=args.steps))
        print(f"{preset} ({params['steps']} steps, {params['size']} px groups, {params['grid_size']} px "
              f"grid): inspect {wall:.1f} s wall / {cpu:.1f} s CPU; peer (6 channels of block10) "
              f"{p_wall:.1f} s / {p_cpu:.1f} s; ratio {wall / p_wall:.1f}x wall, {cpu / p_cpu:.1f}x CPU")


if __name__ == "__main__":
    main()
