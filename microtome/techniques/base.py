"""What every technique takes and produces: a `Job` in, `ArtifactResult`s out (no torch here).

A technique's runner is `(Job) -> list[ArtifactResult]`, one result per planned `Item`. The
build adds provenance (model weights hash, code version) and writes results to the store;
techniques know nothing of the store. Technique ids and declarations: `registry.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Item(NamedTuple):
    """One planned artifact: its layer, unit (None for a layer-level one) and exact params."""

    layer: str
    unit: int | None
    params: dict[str, Any]


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


Inputs = dict[str, dict[tuple[str, int | None], list[dict[str, Any]]]]  # technique -> (layer, unit) -> metas


@dataclass
class Job:
    """Everything a runner gets: the loaded model, the planned items, the stored artifacts it
    `reads` (their meta, per technique and (layer, unit)), datasets by name and a progress
    callback taking the fraction of the job done since the last call."""

    model: Any  # nn.Module
    spec: Any  # ModelSpec
    device: str
    technique: str
    layers: tuple[str, ...]
    items: list[Item]
    inputs: Inputs = field(default_factory=dict)
    dataset: Callable[[str], Any] = lambda name: None
    tick: Callable[[float], None] = lambda fraction: None

    @property
    def units(self) -> list[int]:
        return sorted({item.unit for item in self.items if item.unit is not None})

    def distinct_params(self) -> list[dict[str, Any]]:
        """The items' params without repeats, in first-seen order."""
        return list({frozen(item.params): item.params for item in self.items}.values())

    def step_progress(self) -> Callable[[int, int, Any], None]:
        """A renderer progress callback `(step, steps, values)` that ticks 1/steps a step: one
        tick per render, whatever steps the layer's schedule gives it."""
        return lambda step, steps, values: self.tick(1.0 / steps)

    def input_metas(self, technique: str, layer: str, unit: int | None) -> list[dict[str, Any]]:
        return self.inputs.get(technique, {}).get((layer, unit), [])


def frozen(params: Mapping[str, Any]) -> str:
    """Params as canonical text, for comparing and de-duplicating them."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
