"""A store of fake artifacts for the serving benchmarks: `make_store(root, units) -> Store`.

Holds efficientnet_lite0 (its real spec summary) with, for units 0..units-1 of block10, what a
built unit page shows, laid out as the techniques write it: feature vis (four variants,
diversity as four images), dataset examples (top, bottom, quantiles, histogram), connections
to block9/block11 and labels. Every image is one small PNG (pages, not images, are measured).
The web tests keep their own fixture store (tests/web_fixtures.py): this one is the bench's.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from microtome.store import ArtifactKey, Store
from microtome.zoo import get_spec

MODEL, LAYER = "efficientnet_lite0", "block10"
PROVENANCE = {"weights": "default", "trained": True, "weights_sha256": None, "code_version": "bench", "seed": 0,
              "preset": "quick", "created": 1_700_000_000.0}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 80, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _put(store: Store, unit: int, technique: str, params: dict[str, Any], files: dict[str, bytes],
         meta: dict[str, Any]) -> None:
    params = {"preset": "quick", **params}
    key = ArtifactKey.for_params(MODEL, LAYER, unit, technique, params)
    store.put(key, params, files, {**meta, "provenance": PROVENANCE})


def _examples(png: bytes) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Files and meta of dataset examples: 8 top and 4 bottom (crop, image, heat), 3 quantiles."""
    files: dict[str, bytes] = {"histogram.png": png}

    def example(name: str, rank: int, value: float, kinds: tuple[str, ...]) -> dict[str, Any]:
        files.update({f"{name}_{kind}.png": png for kind in kinds})
        return {"index": rank, "path": f"samples/img{rank}.png", "value": value, "position": [3, 4],
                "box": [0, 0, 48, 48], "label": rank, "class_name": f"class {rank}",
                "files": {kind: f"{name}_{kind}.png" for kind in kinds}}
    whole = ("crop", "image", "heat")
    meta = {"dataset": "samples", "images": 40,
            "top": [example(f"top_{i}", i, 9.0 - i, whole) for i in range(8)],
            "bottom": [example(f"bottom_{i}", 10 + i, -1.0 - i, whole) for i in range(4)],
            "quantiles": [{"q": q, **example(f"quantile_{round(q * 100):02d}", 20 + j, q * 5, ("crop",))}
                          for j, q in enumerate((0.1, 0.5, 0.9))],
            "histogram": {"edges": [float(i) for i in range(11)], "counts": [5, 9, 14, 20, 14, 9, 5, 3, 2, 1]}}
    return files, meta


def make_store(root: str | Path, units: int = 64) -> Store:
    """The bench store at `root` (created), with `units` built units of block10."""
    png = _png()
    store = Store(root)
    store.put_model(MODEL, get_spec(MODEL).summary())
    files, examples = _examples(png)
    for unit in range(units):
        for variant in ("positive", "negative", "neuron", "diversity"):
            images = {f"{i}.png": png for i in range(4)} if variant == "diversity" else {"image.png": png}
            _put(store, unit, "feature_vis", {"variant": variant, "steps": 64, "size": 96}, images,
                 {"objective": f"{variant}({LAYER}, {unit})", "activation": 1.5})
        _put(store, unit, "dataset_examples", {"dataset": "samples", "k": 8, "size": 48}, files, examples)
        _put(store, unit, "connections", {"top": 4}, {},
             {"inputs": [{"layer": "block9", "unit": (unit + i) % 40, "weight": 0.9 - 0.2 * i} for i in range(4)],
              "outputs": [{"layer": "block11", "unit": (unit + i) % 40, "weight": 0.7 - 0.2 * i} for i in range(4)],
              "method": "weights", "classes": [{"index": 817, "label": "sports car", "weight": 0.4}]})
        _put(store, unit, "labels", {"dataset": "samples", "top": 8}, {},
             {"labels": [{"label": "dog", "score": 0.6, "source": "examples"}]})
    return store
