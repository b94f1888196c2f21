"""Search by photo: `search_photo(model, spec, image, histograms) -> {"predictions", "layers"}`.

For one photo, every unit of the given layers is measured as dataset examples measure it
(its maximum over positions, on the model's view of the photo) and placed in its own
distribution over the dataset: the `percentile` of the unit's stored histogram of per-image
maxima below the photo's value. Units are ranked per layer by percentile, then activation,
so a unit that rarely fires and fires here comes first. One forward pass serves all layers
and the classes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn

from microtome.zoo.hooks import hooked
from microtome.zoo.spec import ModelSpec

Histogram = tuple[Sequence[float], Sequence[float]]  # (edges [bins + 1], counts [bins])


def percentile(value: float, edges: Sequence[float], counts: Sequence[float]) -> float:
    """Percent of the histogram's mass below `value` (linear within its bin), in [0, 100]."""
    total = float(sum(counts))
    if total <= 0 or len(edges) != len(counts) + 1:
        return 0.0
    if value <= edges[0]:
        return 0.0
    if value >= edges[-1]:
        return 100.0
    b = min(bisect_right(edges, value) - 1, len(counts) - 1)
    width = edges[b + 1] - edges[b]
    inside = counts[b] * ((value - edges[b]) / width if width > 0 else 1.0)
    return 100.0 * (sum(counts[:b]) + inside) / total


def photo_view(image: Image.Image, size: int) -> torch.Tensor:
    """The model's view of a photo, `[1, 3, size, size]`: the dataset examples' view."""
    from microtome.data import view

    return view(image, size).unsqueeze(0)


def search_photo(model: nn.Module, spec: ModelSpec, image: Image.Image,
                 histograms: Mapping[str, Mapping[int, Histogram]], top: int = 8,
                 device: str | torch.device = "cpu") -> dict[str, Any]:
    """The model's top-5 classes for `image` and, per layer of `histograms`, the `top` units
    most activated relative to their dataset distribution."""
    x = photo_view(image, spec.input_size).to(device)  # [1, 3, S, S]
    layers = [spec.layer(layer_id) for layer_id in histograms]
    with torch.no_grad(), hooked(model, {layer.id: layer.module for layer in layers}) as captured:
        logits = model(spec.preprocess(x))[0].float()  # [K]: one whole pass, the layers captured on the way
        acts = dict(captured)
    probs = torch.softmax(logits, 0)
    best = torch.topk(probs, min(5, probs.numel()))
    predictions = [{"index": int(i), "label": spec.labels[int(i)] if int(i) < len(spec.labels) else str(int(i)),
                    "probability": round(float(p), 5)} for p, i in zip(best.values, best.indices)]
    out: dict[str, list[dict[str, Any]]] = {}
    for layer in layers:
        act = acts[layer.id][0]  # [C, H, W] or [C]
        maxima = act.flatten(1).amax(1) if act.dim() == 3 else act  # [C]
        rows = []
        for unit, (edges, counts) in histograms[layer.id].items():
            value = float(maxima[unit])
            rows.append({"unit": unit, "activation": round(value, 5),
                         "percentile": round(percentile(value, edges, counts), 3)})
        rows.sort(key=lambda r: (-r["percentile"], -r["activation"]))
        out[layer.id] = rows[:top]
    return {"predictions": predictions, "layers": out}
