"""Planning a build: `plan(store, spec, ...) -> [Task]`, only what the store does not hold yet.

A `Task` is one batch of work for one worker: a technique, a layer (or, for dataset examples,
every selected layer, so one pass over the dataset serves them all), units and the exact
params of each artifact it will produce. Its `keys` are what it claims and records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from microtome.errors import MicrotomeError, unknown
from microtome.store import ArtifactKey, Store
from microtome.techniques import feature_vis as fv
from microtome.techniques.base import (CONNECTIONS, DATASET_EXAMPLES, DEEPDREAM, FEATURE_VIS,
                                       TECHNIQUES, TUNING)
from microtome.zoo.spec import ModelSpec, parse_units

PRESETS = ("quick", "standard", "full")
EXAMPLES_K = {"quick": 8, "standard": 16, "full": 32}
# techniques in the order they run: dataset examples first (feature vis quality needs them)
ORDER = (DATASET_EXAMPLES, FEATURE_VIS, DEEPDREAM, TUNING, CONNECTIONS)
UNITS_PER_TASK = {FEATURE_VIS: 8, TUNING: 256, CONNECTIONS: 64}


@dataclass
class Task:
    """One batch of work. `items` are (layer, unit or None, params) of every artifact it makes."""

    technique: str
    layers: tuple[str, ...]
    items: list[tuple[str, int | None, dict[str, Any]]]
    cost: float  # rough relative cost, for the progress bar's ETA
    options: dict[str, Any] = field(default_factory=dict)

    def keys(self, model: str) -> list[ArtifactKey]:
        return [ArtifactKey.for_params(model, layer, unit, self.technique, params)
                for layer, unit, params in self.items]

    @property
    def units(self) -> list[int]:
        return sorted({unit for _, unit, _ in self.items if unit is not None})

    def describe(self) -> str:
        units = self.units
        where = ",".join(self.layers)
        span = f":{units[0]}-{units[-1]}" if len(units) > 1 else (f":{units[0]}" if units else "")
        return f"{self.technique} {where}{span if len(self.layers) == 1 else ''}"


def parse_techniques(text: str | Sequence[str]) -> list[str]:
    """Technique ids from "feature_vis,deepdream", a list, or "all"; in run order."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if names == ["all"]:
        return list(ORDER)
    for name in names:
        if name not in TECHNIQUES:
            raise unknown("technique", name, TECHNIQUES)
    if not names:
        raise MicrotomeError("no technique given; valid: " + ", ".join(TECHNIQUES))
    return [t for t in ORDER if t in names]


def parse_layers(spec: ModelSpec, text: str | Sequence[str]) -> list[str]:
    """Canonical layer ids from "block5,block10", a list, or "all"."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if names == ["all"]:
        return spec.layer_ids
    if not names:
        raise MicrotomeError(f"no layer given; `microtome layers {spec.id}` lists them")
    return list(dict.fromkeys(spec.layer(n).id for n in names))


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise unknown("preset", preset, PRESETS)
    return preset


def artifact_params(technique: str, spec: ModelSpec, preset: str, dataset: str,
                    seed: int = 0) -> list[dict[str, Any]]:
    """The params of every artifact `technique` makes for one unit (or layer) at `preset`."""
    if technique == FEATURE_VIS:
        return [fv.fv_params(preset, variant, seed) for variant in fv.VARIANTS]
    if technique == DEEPDREAM:
        return [fv.dream_params(preset, seed)]
    if technique == DATASET_EXAMPLES:
        return [{"dataset": dataset, "k": EXAMPLES_K[preset], "size": spec.input_size, "preset": preset}]
    if technique == TUNING:
        from microtome.techniques.tuning import TUNING_PRESETS, check_sweep
        return [check_sweep(TUNING_PRESETS[preset])]
    if technique == CONNECTIONS:
        from microtome.techniques.connections import CONNECTIONS_PRESETS
        return [{**CONNECTIONS_PRESETS[preset], "dataset": dataset, "preset": preset}]
    raise unknown("technique", technique, TECHNIQUES)


def units_of(spec: ModelSpec, layer_id: str, units: str | Sequence[int] | None) -> list[int]:
    """The units of `layer_id` selected by `units` (None/"all", "0-7"-style text or a list)."""
    layer = spec.layer(layer_id)
    if units is None or units == "all":
        return list(range(layer.channels))
    text = units if isinstance(units, str) else ",".join(map(str, units))
    return parse_units(text, layer.channels, f"{layer.id} of {spec.id}")


def check_units(spec: ModelSpec, layer_ids: Sequence[str], units: str | Sequence[int] | None) -> None:
    """Raise before anything is written if `units` falls outside any selected layer."""
    for layer_id in layer_ids:
        units_of(spec, layer_id, units)


def _cost(technique: str, params: dict[str, Any], spec: ModelSpec, n: int) -> float:
    """Rough seconds-like weights: optimization steps x images, passes x images."""
    if technique == FEATURE_VIS:
        images = params.get("images", 1)
        return n * images * params["steps"] * (params["size"] / 128) ** 2 * 0.01
    if technique == DEEPDREAM:
        return params["steps"] * (params["size"] / 128) ** 2 * 0.01
    return 0.05 * n + 1.0


def plan(store: Store, spec: ModelSpec, layers: Sequence[str], units: str | Sequence[int] | None,
         techniques: Sequence[str], preset: str = "standard", dataset: str = "samples",
         seed: int = 0) -> list[Task]:
    """The tasks that make every missing artifact; existing ones are skipped.

    `units` is None/"all" for every unit of each layer, else a unit list or "0-7"-style text
    applied to each layer (units past a layer's channels are an error naming the range)."""
    check_preset(preset)
    tasks: list[Task] = []
    examples: list[tuple[str, int | None, dict]] = []
    for technique in techniques:
        variants = artifact_params(technique, spec, preset, dataset, seed)
        for layer_id in layers:
            layer = spec.layer(layer_id)
            if technique == DEEPDREAM:
                missing = [(layer.id, None, p) for p in variants
                           if not store.has(ArtifactKey.for_params(spec.id, layer.id, None, technique, p))]
                tasks += [Task(technique, (layer.id,), [m], _cost(technique, m[2], spec, 1)) for m in missing]
                continue
            chosen = units_of(spec, layer.id, units)
            missing = [(layer.id, u, p) for u in chosen for p in variants
                       if not store.has(ArtifactKey.for_params(spec.id, layer.id, u, technique, p))]
            if technique == DATASET_EXAMPLES:
                examples += missing
                continue
            tasks += _batches(technique, layer.id, missing, spec)
    if examples:
        layer_ids = tuple(dict.fromkeys(layer for layer, _, _ in examples))
        tasks.insert(0, Task(DATASET_EXAMPLES, layer_ids, examples, _cost(DATASET_EXAMPLES, {}, spec, len(examples)),
                             {"dataset": dataset}))
    return tasks


def _batches(technique: str, layer: str, missing: list, spec: ModelSpec) -> list[Task]:
    """Split one layer's missing artifacts into tasks of at most UNITS_PER_TASK units; for
    feature vis, single-image variants and diversity sets go to separate tasks (separate batches)."""
    per_task = UNITS_PER_TASK[technique]
    groups: dict[Any, list] = {}
    for item in missing:
        groups.setdefault(item[2].get("variant") == "diversity", []).append(item)
    tasks = []
    for items in groups.values():
        units = list(dict.fromkeys(u for _, u, _ in items))
        for i in range(0, len(units), per_task):
            chunk = set(units[i:i + per_task])
            batch = [it for it in items if it[1] in chunk]
            cost = sum(_cost(technique, p, spec, 1) for _, _, p in batch)
            tasks.append(Task(technique, (layer,), batch, cost))
    return tasks
