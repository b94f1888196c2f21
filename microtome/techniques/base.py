"""What every technique produces: `ArtifactResult`s, one per (layer, unit) and technique.

A technique is `(model, spec, layer, units, params, ...) -> list[ArtifactResult]`. The build
adds provenance (model weights hash, code version) and writes results to the store; techniques
know nothing of the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from microtome.images import png_bytes  # noqa: F401  (techniques encode their images with it)

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
