"""A model card: plain data about a model organism, no torch (`ModelCard.to_json() -> dict`).

Shape: `ModelCard(id, title, input_size, layers=(LayerCard...), edges=((a, b)...), ...)`;
`card.layer(name) -> LayerCard` resolves a canonical id, a module path or an alias (exact
first, then case-insensitive; canonical ids win a clash, then the earlier layer);
`card.unit(layer, u) -> (LayerCard, u)` and `card.units(layer, "0-7"|[...]|"all")` check
units against the layer. The CLI, the web, the build and inspect all resolve names here.
`ModelCard.from_json(card.to_json()) == card`. A card says nothing of how a model is built:
the zoo's `ModelSpec` pairs a card with its torch builder and weights loader.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from microtome.errors import MicrotomeError, NotFound, unknown

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerCard:
    """One exposed layer ("node"): its output is `[B, units, *size]` at the card's input size.

    `size` is `(1, 1)` for layers whose output is a flat vector `[B, units]`; `module` is the
    path in `model.named_modules()` that the layer is read from."""

    id: str
    module: str
    kind: str  # "conv", "block", "inception", "pool", "linear", "logits", "sae", "tokens", ...
    units: int
    size: tuple[int, int]
    aliases: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        """The units (channels) of the layer: the older name, read by much of the code."""
        return self.units

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "module": self.module, "kind": self.kind, "channels": self.units,
                "units": self.units, "size": list(self.size), "aliases": list(self.aliases)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LayerCard:
        """A layer from `to_json`'s dict (stores written before "units" existed give "channels")."""
        size = tuple(int(s) for s in (d.get("size") or (1, 1)))
        return cls(str(d["id"]), str(d.get("module") or d["id"]), str(d.get("kind") or ""),
                   int(d["units"] if "units" in d else d["channels"]), (size[0], size[-1]),
                   tuple(str(a) for a in d.get("aliases") or ()))


@dataclass(frozen=True)
class ModelCard:
    """Everything about a model that is data: one per registered model, or derived from a loaded one.

    `weights` says which weights a loaded model carries ("default", "random" or a path),
    `weights_sha256` their file's hash when known; `source` how the model was found (`zoo` for
    a registered one, the `package.module:function` of a custom entry point). `num_classes`
    defaults to the number of `class_names`."""

    id: str
    title: str
    input_size: int  # square side in pixels
    layers: tuple[LayerCard, ...]
    edges: tuple[tuple[str, str], ...] = ()
    class_names: tuple[str, ...] = ()
    weights_source: str = ""  # where the default weights come from, human readable
    weights_sha256: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    value_range: tuple[float, float] = (0.0, 1.0)  # pixel range the mean/std apply to
    trained: bool = True  # False once loaded with weights="random"
    weights: str = "default"
    source: str = ""
    description: str = ""
    num_classes: int | None = field(default=None)
    interpolation: str = ""  # the resize the weights were trained with ("bilinear", "bicubic"), if known
    crop_pct: float | None = None  # centre crop side / resize side of the evaluation transform, if known
    fixed_size: bool = False  # True: the model takes `input_size` images only (torchvision's ViT)

    def __post_init__(self) -> None:
        if self.num_classes is None:
            object.__setattr__(self, "num_classes", len(self.class_names))

    # ---- JSON ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-ready plain data; `ModelCard.from_json` reads it back."""
        return {"id": self.id, "title": self.title, "source": self.source, "input_size": self.input_size,
                "mean": list(self.mean), "std": list(self.std), "value_range": list(self.value_range),
                "weights": self.weights, "trained": self.trained, "weights_source": self.weights_source,
                "weights_sha256": self.weights_sha256, "num_classes": self.num_classes,
                "class_names": list(self.class_names), "description": self.description,
                "interpolation": self.interpolation, "crop_pct": self.crop_pct,
                "fixed_size": self.fixed_size, "layers": [layer.to_json() for layer in self.layers],
                "edges": [list(e) for e in self.edges]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelCard:
        """A card from `to_json`'s dict; keys a store written before them lacks take their defaults."""
        return cls(
            id=str(d["id"]), title=str(d.get("title") or d["id"]), input_size=int(d.get("input_size") or 0),
            layers=tuple(LayerCard.from_json(layer) for layer in d.get("layers") or ()),
            edges=tuple((str(a), str(b)) for a, b in d.get("edges") or ()),
            class_names=tuple(str(c) for c in d.get("class_names") or ()),
            weights_source=str(d.get("weights_source") or ""), weights_sha256=d.get("weights_sha256"),
            mean=_floats(d.get("mean"), IMAGENET_MEAN), std=_floats(d.get("std"), IMAGENET_STD),
            value_range=_floats(d.get("value_range"), (0.0, 1.0)), trained=bool(d.get("trained", True)),
            weights=str(d.get("weights") or "default"), source=str(d.get("source") or ""),
            description=str(d.get("description") or ""), num_classes=d.get("num_classes"),
            interpolation=str(d.get("interpolation") or ""), crop_pct=d.get("crop_pct"),
            fixed_size=bool(d.get("fixed_size", False)))

    # ---- layers --------------------------------------------------------------------
    @property
    def layer_ids(self) -> list[str]:
        return [layer.id for layer in self.layers]

    @cached_property
    def _names(self) -> tuple[dict[str, LayerCard], dict[str, LayerCard]]:
        """(exact name -> layer, lower-cased name -> layer): ids win, then the earlier layer."""
        exact: dict[str, LayerCard] = {}
        for layer in reversed(self.layers):
            for name in (layer.module, *layer.aliases):
                exact[name] = layer
        lowered = {name.lower(): layer for name, layer in exact.items()}
        for layer in reversed(self.layers):
            exact[layer.id] = layer
            lowered[layer.id.lower()] = layer
        return exact, lowered

    def find_layer(self, name: str) -> LayerCard | None:
        """The layer called `name` (id, module path or alias; case-insensitive as a last resort)."""
        exact, lowered = self._names
        return exact.get(name) or lowered.get(name.lower())

    def layer(self, name: str, hint: str | None = None) -> LayerCard:
        """The layer called `name`; NotFound listing the nearest ids (and `hint`) otherwise."""
        found = self.find_layer(name)
        if found is None:
            raise unknown("layer", name, self.layer_ids, where=self.id,
                          hint=hint or f"`microtome layers {self.id}` lists them")
        return found

    def unit(self, layer_name: str, unit: object) -> tuple[LayerCard, int]:
        """The layer and a checked unit index; a unit outside the layer names the valid range."""
        layer = self.layer(layer_name)
        return layer, check_unit(unit, layer.units, f"{layer.id} of {self.id}")

    def units(self, layer_name: str, units: str | Sequence[int] | None = None) -> tuple[LayerCard, list[int]]:
        """The layer and its units selected by `units` (None or "all": every unit; "0-7"-style
        text; a list), each checked; the one place a selection of units is validated."""
        layer = self.layer(layer_name)
        where = f"{layer.id} of {self.id}"
        if isinstance(units, str) or units is None:
            return layer, parse_units("all" if units is None else units, layer.units, where)
        return layer, list(dict.fromkeys(check_unit(u, layer.units, where) for u in units))

    def index_of(self, layer_id: str) -> int:
        return self.layer_ids.index(self.layer(layer_id).id)

    def inputs_of(self, layer_id: str) -> list[str]:
        """Layers with an edge into `layer_id`."""
        return [a for a, b in self.edges if b == layer_id]

    def outputs_of(self, layer_id: str) -> list[str]:
        """Layers that `layer_id` has an edge into."""
        return [b for a, b in self.edges if a == layer_id]

    def with_weights(self, weights: str, trained: bool, sha256: str | None = None) -> ModelCard:
        """This card as it is with `weights` (`sha256`: theirs, None: keep the card's)."""
        changes: dict[str, Any] = {"weights": weights, "trained": trained}
        if sha256 is not None:
            changes["weights_sha256"] = sha256
        return dataclasses.replace(self, **changes)


def _floats(value: Any, default: tuple[float, ...]) -> Any:
    return tuple(float(v) for v in value) if value else default


def chain_edges(layer_ids: list[str]) -> tuple[tuple[str, str], ...]:
    """Edges of a plain sequential graph: each layer feeds the next."""
    return tuple(zip(layer_ids[:-1], layer_ids[1:]))


def check_unit(unit: object, units: int, where: str = "this layer") -> int:
    """`unit` as an int if it is a whole number (numpy's and torch's too) in 0..units-1, else an
    error naming the range."""
    try:
        if isinstance(unit, bool):
            raise TypeError
        index = operator.index(unit)  # type: ignore[arg-type]
    except TypeError:
        raise MicrotomeError(f"unit {unit!r} is not a whole number: {where} has units 0-{units - 1}") from None
    if not 0 <= index < units:
        raise NotFound(f"unit {index} is out of range: {where} has units 0-{units - 1}")
    return index


def parse_units(text: str, units: int, where: str = "this layer") -> list[int]:
    """Units from "0-7", "0,3,5", "2,10-12" or "all", checked against the `units` of `where`."""
    if text.strip() == "all":
        return list(range(units))
    picked: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                picked.extend(range(int(lo), int(hi) + 1))
            else:
                picked.append(int(part))
        except ValueError:
            raise MicrotomeError(f"bad unit list {text!r}: expected e.g. '0-7', '0,3,5' or 'all'") from None
    for u in picked:
        check_unit(u, units, where)
    if not picked:
        raise MicrotomeError(f"no units in {text!r}")
    return list(dict.fromkeys(picked))
