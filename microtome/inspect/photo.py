"""The building blocks of one photo: `inspect_photo(model, spec, image, layers) -> dict`.

Per inspected layer (activations `[C, H, W]` at the photo):
- `dictionary`: at each position, the top units with their activations;
- `groups`: NMF into K groups (`neuron_groups`), each with its map `[H][W]` over the photo,
  its channel direction `[C]`, its top units and a feature visualization of the direction
  (`direction` objective; all groups of a layer in one render batch);
- `attribution`: gradient × activation from each group to each group of the next inspected
  layer and to the top classes (`group_attribution`);
- `grid`: feature visualizations of the mean activation vector of each cell of a coarse grid
  (at most 7×7 cells; one render batch per layer).
Images are PNG bytes in `result["files"]` (name -> bytes), named in the rest of the result,
which is JSON-ready once `files` is popped (an `Inspection`: a dict that notebooks display).
Render sizes and steps come from a preset (`presets.inspect_params`). Progress: `progress(done, total)` in render steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from microtome.errors import MicrotomeError
from microtome.images import png_bytes
from microtome.inspect.attribution import group_attribution, rounded
from microtome.inspect.groups import Groups, neuron_groups
from microtome.inspect.objectives import direction_cossim
from microtome.inspect.pictures import colour_hex, overlay, single_overlay
from microtome.inspect.presets import MAX_GROUPS, check_groups, check_layers, default_layers, inspect_params
from microtome.optvis import objectives as O
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from microtome.zoo.hooks import hooked
from microtome.zoo.spec import ModelSpec

StepProgress = Callable[[int, int], None]  # (render steps done, total) -> None
__all__ = ["MAX_GROUPS", "Inspection", "check_groups", "check_layers", "default_layers", "inspect_photo",
           "render_steps"]


class Inspection(dict):
    """`inspect_photo`'s result: a plain dict that a notebook shows as the page `microtome
    inspect` writes (images inside it)."""

    def _repr_html_(self) -> str:
        from microtome.display import framed_html
        from microtome.inspect.html import inspect_html

        return framed_html(inspect_html(dict(self), self.get("files")), f"inspect {self.get('model', '')}")


# ---- inputs ------------------------------------------------------------------------------------
def photo_view(image: Image.Image | np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """The model's view of a photo `[3, size, size]` in [0, 1] (short side resized, centre
    crop, as dataset examples see images); a tensor `[3, size, size]` is taken as it is."""
    from microtome.data import view

    if isinstance(image, torch.Tensor):
        if tuple(image.shape) == (3, size, size):
            return image.detach().float().cpu().clamp(0, 1)
        image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        array = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).astype(np.uint8)
        array = np.repeat(array[:, :, None], 3, 2) if array.ndim == 2 else array[:, :, :3]
        image = Image.fromarray(np.ascontiguousarray(array))
    return view(image, size)


# ---- per layer, no rendering -------------------------------------------------------------------
def _forward(model: nn.Module, spec: ModelSpec, x: torch.Tensor, layer_ids: list[str]
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """`({layer: [1, C, H, W]}, logits [K])` of one forward pass of `x` `[1, 3, S, S]`."""
    with torch.no_grad(), hooked(model, {i: spec.layer(i).module for i in layer_ids}) as captured:
        logits = model(x)
        acts = {i: captured[i].detach().clone() for i in layer_ids}
    for layer_id, act in acts.items():
        if act.dim() != 4:
            raise MicrotomeError(f"layer {layer_id} of {spec.id} gives shape {list(act.shape)}, "
                                 "not [B, C, H, W]; inspect needs layers with spatial positions")
    return acts, logits[0].float()


def predictions(logits: torch.Tensor, spec: ModelSpec, n: int) -> list[dict[str, Any]]:
    """The top `n` classes by probability: `[{"class", "label", "p"}]`."""
    probs = torch.softmax(logits, 0)
    best = torch.topk(probs, min(n, probs.numel()))
    return [{"class": int(i), "label": spec.labels[int(i)] if int(i) < len(spec.labels) else f"class {int(i)}",
             "p": round(float(p), 5)} for p, i in zip(best.values, best.indices)]


def dictionary(act: torch.Tensor, top: int) -> list[dict[str, Any]]:
    """At each position of `act` `[C, H, W]` (row-major), the `top` units by activation."""
    c, h, w = act.shape
    values, units = torch.topk(act.flatten(1).T, min(top, c), dim=1)  # [HW, top]
    return [{"y": p // w, "x": p % w,
             "units": [{"unit": int(u), "activation": rounded(float(v))}
                       for u, v in zip(units[p].tolist(), values[p].tolist())]}
            for p in range(h * w)]


def grid_cells(act: torch.Tensor, cells: int) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The mean activation vector of each cell of a grid of at most `cells`² over `act`
    `[C, H, W]`: `(vectors [N, C], [{"y", "x", "box": [top, left, bottom, right] in [0, 1]}])`."""
    _, h, w = act.shape
    gh, gw = min(h, cells), min(w, cells)
    pooled = F.adaptive_avg_pool2d(act[None], (gh, gw))[0]  # [C, gh, gw]
    info = [{"y": i, "x": j, "box": [round(i / gh, 4), round(j / gw, 4),
                                      round((i + 1) / gh, 4), round((j + 1) / gw, 4)], "image": None}
            for i in range(gh) for j in range(gw)]
    return pooled.flatten(1).T.contiguous(), info  # [gh * gw, C]


def _group_entries(layer_id: str, groups: Groups, top: int) -> list[dict[str, Any]]:
    colours = colour_hex(len(groups.maps))
    return [{"index": k, "colour": colours[k], "mass": rounded(float(groups.maps[k].sum())),
             "map": rounded(groups.maps[k].tolist()), "direction": rounded(groups.directions[k].tolist()),
             "units": groups.top_units(k, top), "image": None,
             "map_image": f"{layer_id}-group{k}-map.png"}
            for k in range(len(groups.maps))]


# ---- rendering -----------------------------------------------------------------------------
class _Steps:
    """Counts render steps over several render calls for one `progress(done, total)`; `total`
    is planned at `per_render` steps a render, and corrected as each render starts with the
    steps it runs (a layer schedule may change them)."""

    def __init__(self, total: int, progress: StepProgress | None, per_render: int = 0):
        self.total, self.done, self.progress = total, 0, progress
        self.per_render = per_render

    def callback(self, step: int, steps: int, _values: torch.Tensor) -> None:
        if step == 1:
            self.total += steps - self.per_render
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _render_pngs(model: nn.Module, spec: ModelSpec, objectives: list[O.Objective], size: int,
                 params: dict[str, Any], device, steps: _Steps) -> tuple[list[bytes], list[float]]:
    """One render batch: the images as PNG bytes and the objectives' final values."""
    result = render(model, objectives, ImageParam(size, seed=params["seed"]), spec=spec,
                    steps=params["steps"], lr=params["lr"], device=device, progress=steps.callback)
    return [png_bytes(img) for img in result.images], [rounded(v) for v in result.values.tolist()]


def _render_layer(model, spec, layer_id: str, entry: dict, groups: Groups, cells: torch.Tensor,
                  params: dict, device, steps: _Steps, files: dict[str, bytes]) -> None:
    """Feature visualizations of a layer's group directions and grid cells, into `files`."""
    objs = [O.direction(layer_id, torch.as_tensor(d, dtype=torch.float32)) for d in groups.directions]
    pngs, values = _render_pngs(model, spec, objs, params["size"], params, device, steps)
    for group, png, value in zip(entry["groups"], pngs, values):
        group["image"], group["objective"] = f"{layer_id}-group{group['index']}.png", value
        files[group["image"]] = png
    objs = [direction_cossim(layer_id, v) for v in cells]
    pngs, values = _render_pngs(model, spec, objs, params["grid_size"], params, device, steps)
    for cell, png, value in zip(entry["grid"], pngs, values):
        cell["image"], cell["objective"] = f"{layer_id}-grid{cell['y']}-{cell['x']}.png", value
        files[cell["image"]] = png


# ---- the whole inspection --------------------------------------------------------------------
def _inspect_layer(layer_id: str, act: torch.Tensor, photo: torch.Tensor, k: int,
                   params: dict[str, Any], files: dict[str, bytes]
                   ) -> tuple[dict[str, Any], Groups, torch.Tensor]:
    """One layer's entry without renders or attribution, its groups and its grid's vectors
    `[N, C]`; the overlays go into `files`. `act`: `[C, H, W]`."""
    groups = neuron_groups(act, k, seed=params["seed"])
    vectors, cells = grid_cells(act, params["grid"])
    for cell, v in zip(cells, vectors):
        cell["units"] = [{"unit": int(u), "activation": rounded(float(v[u]))}
                         for u in torch.topk(v, min(3, v.numel())).indices.tolist()]
    entry = {"shape": list(act.shape), "explained": round(groups.explained, 4),
             "signed": groups.signed, "groups": _group_entries(layer_id, groups, params["top"]),
             "overlay": f"{layer_id}-groups.png", "grid": cells,
             "dictionary": dictionary(act, params["dictionary_top"])}
    files[entry["overlay"]] = png_bytes(overlay(photo, groups.maps))
    for group in entry["groups"]:
        files[group["map_image"]] = png_bytes(single_overlay(photo, groups.maps, group["index"]))
    return entry, groups, vectors


def inspect_photo(model: nn.Module, spec: ModelSpec, image, layers: str | Sequence[str] | None = None,
                  groups: int = 6, preset: str = "quick", device: str | torch.device = "cpu", *,
                  renders: bool = True, progress: StepProgress | None = None,
                  **overrides: Any) -> dict[str, Any]:
    """Everything about one photo at `layers` (default: `default_layers`); see the module
    docstring. `overrides` change the preset's parameters (`steps=8, size=32`, ...);
    `renders=False` skips the feature visualizations (no `image` in groups and cells)."""
    params = inspect_params(preset, **overrides)
    layer_ids, k = check_layers(spec.card, layers), check_groups(groups)
    device = torch.device(device)
    photo = photo_view(image, spec.input_size)  # [3, S, S]
    x = spec.preprocess(photo[None].to(device))  # [1, 3, S, S]
    acts, logits = _forward(model, spec, x, layer_ids)
    preds = predictions(logits, spec, params["classes"])
    files: dict[str, bytes] = {"photo.png": png_bytes(photo)}
    found: dict[str, Groups] = {}
    out_layers: dict[str, dict[str, Any]] = {}
    cell_vectors: dict[str, torch.Tensor] = {}
    for layer_id in layer_ids:
        out_layers[layer_id], found[layer_id], cell_vectors[layer_id] = _inspect_layer(
            layer_id, acts[layer_id][0], photo, k, params, files)
    classes = [p["class"] for p in preds]
    for i, layer_id in enumerate(layer_ids):
        nxt = layer_ids[i + 1] if i + 1 < len(layer_ids) else None
        parts = torch.as_tensor(found[layer_id].parts(), dtype=torch.float32)  # [K, C, H, W]
        out_layers[layer_id]["attribution"] = group_attribution(
            model, spec, x, layer_id, acts[layer_id], parts, classes, nxt,
            None if nxt is None else torch.as_tensor(found[nxt].directions, dtype=torch.float32))
    if renders:
        steps = _Steps(render_steps(len(layer_ids), params), progress, params["steps"])
        for layer_id in layer_ids:
            _render_layer(model, spec, layer_id, out_layers[layer_id], found[layer_id],
                          cell_vectors[layer_id], params, device, steps, files)
    return Inspection(model=spec.id, weights=spec.weights, trained=spec.trained,
                      input_size=spec.input_size, photo="photo.png", params={**params, "groups": k},
                      predictions=preds, order=layer_ids, layers=out_layers, files=files)


def render_steps(layers: int, params: dict[str, Any]) -> int:
    """How many render steps `inspect_photo` takes for `layers` layers (for a progress bar)."""
    return 2 * layers * params["steps"]
