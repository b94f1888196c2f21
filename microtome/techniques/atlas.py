"""The `atlas` technique: a layer's activation atlas (Carter et al. 2019), one artifact per layer.

`atlas(model, spec, layer, dataset, params) -> ArtifactResult` in three stages:
- collect: `params["positions"]` activation vectors `[C]` at random positions of every photo
  (seeded per photo), the photo's top `params["classes"]` predicted classes, and each vector's
  attribution toward each of them: gradient × activation, `Σ_c a[c, p] · ∂logit/∂a[c, p]`, the
  linear estimate of what the vector adds to the logit through the rest of the network (the
  paper's choice). An SAE layer's vectors are its features; their attribution is taken at
  its base layer, whose output the network reads (the features' decoding approximates it);
- layout: UMAP of the vectors less the dataset's mean (cosine metric, seeded), binned on
  grids of `params["levels"]` levels (atlas_layout.py);
- render: each cell's icon, the feature visualization of its direction (its mean vector less
  the dataset's mean) by `direction_cossim`, all icons of a level in batches, each image
  seeded by its cell so it is the same in any batch.
With `params["class"]` the atlas is a class atlas: the same layout, its cells made of the
vectors whose attribution favours that class only (`atlas_layout.favours`).

Files: `atlas.json` (everything the pages show; `ATLAS_FORMAT`), `icons/LEVEL/X-Y.png`,
`photos/INDEX.jpg` (the photos cells show). Meta: the figures (vectors, cells per level,
seconds per stage, the icons' agreement with their cells on the finest level).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from microtome.errors import MicrotomeError
from microtome.images import png_bytes, to_pil
from microtome.optvis import objectives as O
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from microtome.techniques import atlas_layout as L
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import ATLAS, ATLAS_STAGES
from microtome.zoo.hooks import hooked, resolve_modules

Stage = Callable[[str, float], None]  # (stage name, fraction of that stage done since the last call)
ATLAS_FORMAT = 1
BATCH = 16  # photos per forward pass
ICON_BATCH = 32  # icons per render
PHOTO_SIDE = 160  # px of the photo thumbnails cells show


def _positions(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """A layer output as vectors per position `[B, P, C]`, and its grid of positions (rows,
    columns): `[B, C, H, W]` (H, W); `[B, N, D]` tokens: the patch tokens, the last side² of
    them, prefix tokens (class, registers) left out (side, side); `[B, C]` (1, 1)."""
    if t.dim() == 4:
        return t.flatten(2).transpose(1, 2), (t.shape[2], t.shape[3])
    if t.dim() == 3:
        side = math.isqrt(t.shape[1])
        return t[:, t.shape[1] - side * side:], (side, side)
    return t.unsqueeze(1), (1, 1)


def _chosen(index: int, count: int, available: int, seed: int) -> np.ndarray:
    """The positions sampled in photo `index`: `count` distinct ones, from its own generator."""
    if count >= available:
        return np.arange(available)
    return np.sort(np.random.default_rng([seed, index]).choice(available, count, replace=False))


def _pass(model, spec, layer, x: torch.Tensor, k: int):
    """One forward and k backward passes: the layer's vectors `[B, P, C]`, attribution maps
    `[B, k, P]` toward the top k classes `[B, k]` and their probabilities `[B, k]`, the grid."""
    source = spec.layer(layer.id.rsplit(".", 1)[0]) if layer.kind == "sae" else layer
    held: dict[str, torch.Tensor] = {}

    def swap(_module, _inputs, output):  # the rest of the network reads a copy of a leaf
        held["leaf"] = output.detach().requires_grad_(True)
        return held["leaf"].clone()  # (a copy: in-place operations downstream leave the leaf as it is)

    handle = resolve_modules(model, {"a": source.module})["a"].register_forward_hook(swap)
    try:
        features = {layer.id: layer.module} if source is not layer else {}  # an SAE's, read beside
        with torch.enable_grad(), hooked(model, features) as captured:
            logits = model(x)
            if logits.dim() != 2:
                raise MicrotomeError(f"an atlas needs class logits [B, K] from {spec.id}, got shape "
                                     f"{tuple(logits.shape)}")
            k = min(k, logits.shape[1])
            probs, top = logits.softmax(1).topk(k, dim=1)  # [B, k]
            leaf, maps = held["leaf"], []
            for j in range(k):
                (grad,) = torch.autograd.grad(logits.gather(1, top[:, j:j + 1]).sum(), leaf,
                                              retain_graph=j + 1 < k)
                maps.append(_positions(grad * leaf)[0].sum(2).detach())  # [B, P]
            vectors, grid = _positions((captured[layer.id] if source is not layer else leaf).detach())
    finally:
        handle.remove()
    return vectors.float().cpu(), torch.stack(maps, 1).float().cpu(), top.cpu(), probs.detach().cpu(), grid


def collect(model, spec, layer_id: str, dataset, params: Mapping[str, Any], device="cpu",
            tick: Callable[[float], None] = lambda f: None) -> tuple[L.Vectors, dict[str, Any]]:
    """The vectors of every photo (`params["positions"]` each, seeded) and, per photo, its top
    classes and probabilities and its dataset label; the layer's grid of positions (rows, columns)."""
    layer = spec.layer(layer_id)
    if len(dataset) == 0:
        raise MicrotomeError(f"dataset {dataset.name} has no images")
    acts, photos, where, classes, scores = [], [], [], [], []
    info: dict[str, Any] = {"photos": {}, "grid": (1, 1)}
    for batch in dataset.batches(spec.input_size, BATCH):
        x = spec.preprocess(batch.images.to(device))
        vectors, maps, top, probs, grid = _pass(model, spec, layer, x, int(params["classes"]))
        info["grid"], width = grid, grid[1]
        for b, index in enumerate(batch.indices.tolist()):
            chosen = torch.from_numpy(_chosen(index, int(params["positions"]), vectors.shape[1], int(params["seed"])))
            acts.append(vectors[b, chosen])
            scores.append(maps[b][:, chosen].T)  # [n, k]
            classes.append(top[b].expand(len(chosen), -1))
            photos += [index] * len(chosen)
            where += [(int(p) % width, int(p) // width) for p in chosen]
            info["photos"][index] = {"path": dataset.paths[index], "label": dataset.label_name(index),
                                     "predicted": [[int(c), round(float(p), 4)] for c, p in zip(top[b], probs[b])]}
        tick(len(batch.indices) / len(dataset))
    if not acts:
        raise MicrotomeError(f"no readable image in {dataset.name}")
    return L.Vectors(torch.cat(acts).numpy(), np.array(photos), np.array(where),
                     torch.cat(classes).numpy(), torch.cat(scores).numpy()), info


def render_icons(model, spec, layer_id: str, directions: np.ndarray, mean: np.ndarray,
                 seeds: list[int], params: Mapping[str, Any], device="cpu",
                 tick: Callable[[float], None] = lambda f: None) -> torch.Tensor:
    """The icons `[M, 3, S, S]` of `directions` `[M, C]` (relative to `mean` `[C]`), rendered
    `ICON_BATCH` at a time; icon i's image is seeded by `seeds[i]` alone."""
    images = []
    icons = max(len(directions), 1)
    for start in range(0, len(directions), ICON_BATCH):
        chunk = directions[start:start + ICON_BATCH]
        objectives = [O.direction_cossim(layer_id, d, mean, float(params["cossim_pow"])) for d in chunk]
        n = len(chunk)
        image = ImageParam(int(params["size"]), seeds=seeds[start:start + n])
        result = render(model, objectives, image, spec=spec, steps=int(params["steps"]),
                        lr=float(params["lr"]), device=device,
                        transforms=None if params["transforms"] == "standard" else [],
                        # a layer schedule may change the steps: tick by the render's own
                        progress=lambda step, steps, values, n=n: tick(n / icons / steps))
        images.append(result.images.cpu())
    return torch.cat(images) if images else torch.zeros(0, 3, int(params["size"]), int(params["size"]))


def icon_vectors(model, spec, layer_id: str, pngs: list[bytes], device="cpu") -> np.ndarray:
    """The layer's mean activation vector over positions `[M, C]` of each stored icon (its PNG
    decoded, as the page shows it): what the agreement with the cells is measured on."""
    from PIL import Image

    if not pngs:
        return np.zeros((0, spec.layer(layer_id).channels))
    layer = spec.layer(layer_id)
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(p)).convert("RGB"), dtype=np.float32)
                                           / 255).permute(2, 0, 1) for p in pngs])  # [M, 3, S, S]
    out = []
    with torch.no_grad(), hooked(model, {layer.id: layer.module}, stop=True) as captured:
        from microtome.zoo.hooks import run

        for start in range(0, len(images), 64):
            acts = run(model, spec.preprocess(images[start:start + 64].to(device)), captured)[layer.id]
            out.append(_positions(acts)[0].mean(1).float().cpu())  # [b, C]
    return torch.cat(out).numpy()


class _Clock:
    """Each stage's wall-clock seconds and this process's CPU seconds (all its threads): on a
    busy machine the CPU time says what the stage costs, the wall time what it took."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._last = (time.time(), time.process_time())

    def lap(self, name: str) -> None:
        now = (time.time(), time.process_time())
        self.wall[name] = round(now[0] - self._last[0], 1)
        self.cpu[name] = round(now[1] - self._last[1], 1)
        self._last = now


def _icon_seed(seed: int, level: int, x: int, y: int) -> int:
    return (seed * 1_000_003 + level * 10_007 + y * 101 + x) % (2 ** 31)


def _photo_jpeg(dataset, index: int, size: int) -> bytes:
    """A photo as the model sees it (resize, centre crop), `PHOTO_SIDE` px, as JPEG."""
    image = to_pil(dataset.load(index, size)).resize((PHOTO_SIDE, PHOTO_SIDE))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def atlas(model, spec, layer_id: str, dataset, params: Mapping[str, Any], device="cpu",
          stage: Stage = lambda name, fraction: None) -> ArtifactResult:
    """The atlas `params` describe (builtin.atlas_params) of `layer_id` over `dataset`."""
    layer = spec.layer(layer_id)
    clock = _Clock()
    vectors, info = collect(model, spec, layer.id, dataset, params, device, lambda f: stage("collect", f))
    clock.lap("collect")
    mean = vectors.activations.mean(0)  # [C]
    stage("layout", 0.0)  # UMAP reports no progress: its bar shows the time it takes
    points = L.layout(vectors.activations - mean, int(params["seed"]), int(params["neighbors"]),
                      float(params["min_dist"]))
    stage("layout", 1.0)
    keep = None if params.get("class") is None else \
        np.flatnonzero(L.favours(vectors.classes.tolist(), vectors.scores.tolist(), int(params["class"])))
    levels = _levels(vectors, points, mean, params, keep)
    clock.lap("layout")
    cells = [(i, c) for i, level in enumerate(levels) for c in level["cells"]]
    directions = np.array([c.direction for _, c in cells]).reshape(len(cells), -1)
    images = render_icons(model, spec, layer.id, directions, mean,
                          [_icon_seed(int(params["seed"]), i, c.x, c.y) for i, c in cells], params, device,
                          lambda f: stage("render", f))
    files = {f"icons/{i}/{c.x}-{c.y}.png": png_bytes(image) for (i, c), image in zip(cells, images)}
    finest = [(name, c) for name, (i, c) in zip(files, cells) if i == len(levels) - 1]
    agreement = L.agreement(icon_vectors(model, spec, layer.id, [files[n] for n, _ in finest], device) - mean,
                            np.array([c.direction for _, c in finest]).reshape(len(finest), -1))
    shown = sorted({vectors.photo[v] for _, c in cells for v in c.photos})
    files.update({f"photos/{p}.jpg": _photo_jpeg(dataset, int(p), spec.input_size) for p in shown})
    clock.lap("render")  # with measuring the icons and the photos' thumbnails
    document = _document(spec, layer, dataset, params, vectors, info, points, mean, levels)
    document["agreement"] = {k: v for k, v in agreement.items() if k != "ranks"}
    files["atlas.json"] = json.dumps(document, separators=(",", ":")).encode()
    meta = {"vectors": len(vectors.photo), "photos": len(info["photos"]), "dataset": params["dataset"],
            "class": params.get("class"), "cells": [len(level["cells"]) for level in levels],
            "grids": [level["grid"] for level in levels], "seconds": clock.wall, "cpu_seconds": clock.cpu,
            "agreement": document["agreement"]}
    return ArtifactResult(layer.id, None, ATLAS, dict(params), files, meta)


def _levels(vectors: L.Vectors, points: np.ndarray, mean: np.ndarray, params: Mapping[str, Any],
            keep: np.ndarray | None) -> list[dict[str, Any]]:
    """Each level's grid and cells, coarsest first; a class atlas bins only the vectors `keep`."""
    if keep is not None:
        vectors = L.Vectors(vectors.activations[keep], vectors.photo[keep], vectors.position[keep],
                            vectors.classes[keep], vectors.scores[keep])
        points, index = points[keep], keep
    else:
        index = np.arange(len(points))
    levels = []
    for grid in L.level_grids(int(params["grid"]), int(params["levels"])):
        cells = L.summarize(vectors, points, grid, int(params["min_count"]), mean, int(params["top"]),
                            int(params["photos"]))
        for c in cells:  # back to indices of all the vectors
            c.members, c.photos = index[c.members], [int(index[v]) for v in c.photos]
        levels.append({"grid": grid, "cells": cells})
    return levels


def _document(spec, layer, dataset, params, vectors: L.Vectors, info, points, mean, levels) -> dict:
    """`atlas.json`: what the web pages show, without torch (format `ATLAS_FORMAT`)."""
    used = {int(c) for c in np.unique(vectors.classes)}
    labels = {str(c): spec.labels[c] for c in sorted(used) if c < len(spec.labels)}
    shown = lambda c: {"x": c.x, "y": c.y, "count": int(len(c.members)),  # noqa: E731
                       "direction": [round(float(v), 5) for v in c.direction],
                       "classes": [[k, round(s, 5)] for k, s in c.classes],
                       "units": [[u, round(w, 5)] for u, w in c.units], "photos": c.photos}
    return {
        "format": ATLAS_FORMAT, "model": spec.id, "layer": layer.id, "dataset": params["dataset"],
        "class": params.get("class"), "labels": labels, "mean": [round(float(v), 5) for v in mean],
        "positions_grid": list(info["grid"]), "positions_per_photo": int(params["positions"]),
        "photos": {str(k): v for k, v in info["photos"].items()},
        "vectors": {"photo": vectors.photo.tolist(), "position": vectors.position.tolist(),
                    "classes": vectors.classes.tolist(),
                    "scores": np.round(vectors.scores, 5).tolist()},
        "layout": {"method": "umap", "metric": "cosine", "seed": int(params["seed"]),
                   "n_neighbors": int(params["neighbors"]), "min_dist": float(params["min_dist"]),
                   "points": np.round(points, 4).tolist()},
        "levels": [{"grid": level["grid"], "min_count": int(params["min_count"]),
                    "cells": [shown(c) for c in level["cells"]]} for level in levels],
    }


def run_atlas(job: Job) -> list[ArtifactResult]:
    """The build's runner: one atlas per planned (layer, params); the stages' shares of the
    progress bar are `builtin.ATLAS_STAGES`."""
    share = 1.0 / max(len(job.items), 1)
    stage = lambda name, fraction: job.tick(fraction * ATLAS_STAGES[name] * share)  # noqa: E731
    return [atlas(job.model, job.spec, item.layer, job.dataset(item.params["dataset"]), item.params,
                  job.device, stage) for item in job.items]
