"""Planning a build: `plan(store, spec, selection) -> [Task]`, only what the store does not hold yet.

A `Task` is one batch of work for one worker: a technique, a layer (or, for a technique
declared `all_layers`, every selected layer, so one pass over a dataset serves them all),
and the `Item`s (layer, unit, exact params) of every artifact it will produce. Its `keys`
are what it claims and records. How each technique batches is its declaration's
(techniques/registry.py); nothing here names a technique.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from microtome.errors import MicrotomeError, unknown
from microtome.store import ArtifactKey, Store
from microtome.techniques.base import Inputs, Item
from microtome.techniques.registry import LAYER, Context, Technique, check_preset, technique, technique_ids, techniques
from microtome.zoo.spec import ModelSpec


@dataclass
class Task:
    """One batch of work: `items` are the artifacts it makes (possibly none once claimed)."""

    technique: str
    layers: tuple[str, ...]
    items: list[Item]
    cost: float  # rough relative cost, for the progress bar's ETA

    def keys(self, model: str) -> list[ArtifactKey]:
        return [ArtifactKey.for_params(model, item.layer, item.unit, self.technique, item.params)
                for item in self.items]

    @property
    def units(self) -> list[int]:
        return sorted({item.unit for item in self.items if item.unit is not None})

    def describe(self) -> str:
        units = self.units
        where = ",".join(self.layers)
        span = f":{units[0]}-{units[-1]}" if len(units) > 1 else (f":{units[0]}" if units else "")
        return f"{self.technique} {where}{span if len(self.layers) == 1 else ''}"


@dataclass
class Prepared:
    """A claimed task: `skip` when nothing of it is left to do here, else the inputs it reads."""

    skip: bool
    inputs: Inputs = field(default_factory=dict)


Prepare = Callable[[Task], Prepared]  # claims a task's keys just before it runs (executors call it)


@dataclass(frozen=True)
class Selection:
    """What a build covers: canonical layer ids, the units of each, techniques in run order."""

    layers: tuple[str, ...]
    units: dict[str, list[int]]
    techniques: tuple[str, ...]
    preset: str = "standard"
    dataset: str = "samples"
    seed: int = 0
    compare: tuple[str, ...] = ()  # other models for `similar`
    variants: tuple[str, ...] = ()  # of techniques with variants, only these (none: every variant)

    def wants(self, tech: Technique, params: dict) -> bool:
        """Whether the selection covers the artifact of `tech` with `params` (its variant)."""
        return not (self.variants and tech.variants) or tech.variant(params) in self.variants


def _names(text: str | Sequence[str]) -> list[str]:
    return [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if str(t).strip()]


def parse_techniques(text: str | Sequence[str]) -> list[str]:
    """Technique ids from "feature_vis,deepdream", a list, or "all"; in run order."""
    names = _names(text)
    if names == ["all"]:
        return [t.id for t in techniques() if t.in_all]
    if not names:
        raise MicrotomeError("no technique given; valid: " + ", ".join(technique_ids()))
    for name in names:
        technique(name)  # unknown ids: an error naming the close ones
    return [t for t in technique_ids() if t in names]


def parse_layers(spec: ModelSpec, text: str | Sequence[str]) -> list[str]:
    """Canonical layer ids from "block5,block10", a list, or "all"."""
    names = _names(text)
    if names == ["all"]:
        return spec.layer_ids
    if not names:
        raise MicrotomeError(f"no layer given; `microtome layers {spec.id}` lists them")
    return list(dict.fromkeys(spec.layer(n).id for n in names))


def select(spec: ModelSpec, layers: str | Sequence[str] = "all", units: str | Sequence[int] | None = None,
           techniques_: str | Sequence[str] = "all", preset: str = "standard", dataset: str = "samples",
           seed: int = 0, compare: Sequence[str] = (), variants: str | Sequence[str] = ()) -> Selection:
    """Check a build's selection before anything is written; every user error is raised here.

    `variants` ("positive,negative", a list; empty: all) limits the techniques that have
    variants (feature_vis) to those; techniques without variants are not limited."""
    check_preset(preset)
    ids = tuple(parse_techniques(techniques_))
    chosen_variants = parse_variants(variants, ids)
    layer_ids = tuple(parse_layers(spec, layers))
    chosen = {layer: spec.units(layer, units)[1] for layer in layer_ids}
    for other in compare:
        from microtome.zoo import get_card
        get_card(other)  # an unknown model is an error naming the close ones (its card: nothing built)
    return Selection(layer_ids, chosen, ids, preset, dataset, seed, tuple(dict.fromkeys(compare)),
                     chosen_variants)


def parse_variants(text: str | Sequence[str], technique_ids_: Sequence[str]) -> tuple[str, ...]:
    """Variant names from "positive,neuron" or a list (empty: every variant), each a variant
    of one of the selected techniques."""
    names = _names(text)
    valid = [v for t in technique_ids_ for v in technique(t).variants]
    if names and not valid:
        raise MicrotomeError(f"--variants {','.join(names)}: none of the selected techniques "
                             f"({', '.join(technique_ids_)}) has variants")
    for name in names:
        if name not in valid:
            raise unknown("variant", name, list(dict.fromkeys(valid)))
    return tuple(dict.fromkeys(names))


def plan(store: Store, spec: ModelSpec, selection: Selection) -> list[Task]:
    """The tasks that make every missing artifact of `selection`; existing ones are skipped."""
    ctx = Context(selection.preset, selection.dataset, selection.seed, spec.input_size, spec.fixed_size,
                  selection.compare)
    tasks: list[Task] = []
    for tech in techniques():
        if tech.id not in selection.techniques:
            continue
        variants = [p for p in tech.params(ctx) if selection.wants(tech, p)]
        missing: dict[str, list[Item]] = {}
        for layer in selection.layers:
            units = [None] if tech.scope == LAYER else selection.units[layer] + ([None] if tech.layer_summary else [])
            missing[layer] = [Item(layer, u, p) for u in units for p in variants
                              if not store.has(ArtifactKey.for_params(spec.id, layer, u, tech.id, p))]
        if tech.all_layers:
            items = [item for layer_items in missing.values() for item in layer_items]
            layers = tuple(layer for layer, layer_items in missing.items() if layer_items)
            tasks += [_task(tech, layers, items)] if items else []
        else:
            tasks += [task for layer, items in missing.items() for task in _batches(tech, layer, items)]
    return tasks


def _task(tech: Technique, layers: tuple[str, ...], items: list[Item]) -> Task:
    return Task(tech.id, layers, items, tech.task_overhead + sum(tech.cost(i.params) for i in items))


def _batches(tech: Technique, layer: str, missing: list[Item]) -> list[Task]:
    """One layer's missing artifacts in tasks of at most `units_per_task` units, items with
    different `batch_key`s in different tasks."""
    groups: dict[object, list[Item]] = {}
    for item in missing:
        groups.setdefault(tech.batch_key(item.params), []).append(item)
    tasks = []
    for items in groups.values():
        units = list(dict.fromkeys(item.unit for item in items))
        for i in range(0, len(units), tech.units_per_task):
            chunk = set(units[i:i + tech.units_per_task])
            tasks.append(_task(tech, (layer,), [it for it in items if it.unit in chunk]))
    return tasks
