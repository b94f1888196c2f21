"""What every technique produces: `ArtifactResult`s, one per (layer, unit) and technique.

A technique is `(model, spec, layer, units, params, ...) -> list[ArtifactResult]`. The build
adds provenance (model weights hash, code version) and writes results to the store; techniques
know nothing of the store.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

FEATURE_VIS = "feature_vis"
DEEPDREAM = "deepdream"
DATASET_EXAMPLES = "dataset_examples"
TUNING = "tuning"
CONNECTIONS = "connections"
TECHNIQUES = (FEATURE_VIS, DEEPDREAM, DATASET_EXAMPLES, TUNING, CONNECTIONS)


@dataclass
class ArtifactResult:
    """One artifact: named files (PNG/SVG/JSON bytes) plus JSON-ready metadata.

    `unit` is None for layer-level artifacts (DeepDream). `params` are exactly what determines
    the result (preset values, seed, dataset name): their hash is part of the store key."""

    layer: str
    unit: int | None
    technique: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def png_bytes(image: torch.Tensor | np.ndarray) -> bytes:
    """PNG of one image: a tensor `[3, H, W]` or `[H, W]` in [0, 1], or a uint8/float array `[H, W, 3]`."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().clamp(0, 1)
        if image.dim() == 3:
            image = image.permute(1, 2, 0)
        image = image.numpy()
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
