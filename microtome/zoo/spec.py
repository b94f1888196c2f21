"""A model's spec: `ModelSpec` holds everything about a model organism but its weights' values.

Shape: `spec.preprocess(images [B,3,H,W] RGB in [0,1]) -> model input [B,3,H,W]`;
`spec.layer(name) -> LayerSpec` resolves canonical ids, module paths and aliases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from microtome.errors import MicrotomeError, NotFound, unknown

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerSpec:
    """One exposed layer ("node"): its output is `[B, channels, *size]` at the default input.

    `size` is `(1, 1)` for layers whose output is a flat vector `[B, channels]`."""

    id: str
    module: str  # path in model.named_modules()
    kind: str  # "conv", "block", "inception", "pool", "linear", "logits", ...
    channels: int
    size: tuple[int, int]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a model but its weights' values. One per registered model.

    `build` makes the architecture with random weights; `load_default` (if any) fills a built
    module with the model's default weights and returns the weights file's sha256."""

    id: str
    title: str
    build: Callable[[], nn.Module]
    input_size: int  # square side in pixels
    layers: tuple[LayerSpec, ...]
    edges: tuple[tuple[str, str], ...]
    labels: tuple[str, ...]
    weights_source: str  # where the default weights come from, human readable
    weights_sha256: str | None  # of the default weights file, when known ahead
    load_default: Callable[[nn.Module], str] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    value_range: tuple[float, float] = (0.0, 1.0)  # pixel range the mean/std apply to
    trained: bool = True  # False once loaded with weights="random"
    weights: str = "default"  # which weights a loaded model carries: default, random or a path
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    # ---- preprocessing -------------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] `[B, 3, H, W]` to this model's input `[B, 3, H, W]`."""
        lo, hi = self.value_range
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * (hi - lo) + lo - mean) / std

    # ---- layers --------------------------------------------------------------------
    @property
    def layer_ids(self) -> list[str]:
        return [layer.id for layer in self.layers]

    def layer(self, name: str) -> LayerSpec:
        """The layer called `name`: a canonical id, a module path or an alias.

        Raises NotFound listing the nearest ids."""
        for layer in self.layers:
            if name == layer.id or name == layer.module or name in layer.aliases:
                return layer
        raise unknown("layer", name, self.layer_ids, where=self.id,
                      hint=f"`microtome layers {self.id}` lists them")

    def unit(self, layer_name: str, unit: int) -> tuple[LayerSpec, int]:
        """The layer and a checked unit index; a unit outside the layer names the valid range."""
        layer = self.layer(layer_name)
        return layer, check_unit(unit, layer.channels, f"{layer.id} of {self.id}")

    def units(self, layer_name: str, units: str | Sequence[int] | None = None) -> tuple[LayerSpec, list[int]]:
        """The layer and its units selected by `units` (None or "all": every unit; "0-7"-style
        text; a list), each checked; the one place units are validated."""
        layer = self.layer(layer_name)
        where = f"{layer.id} of {self.id}"
        if units is None or (isinstance(units, str) and units.strip() == "all"):
            return layer, list(range(layer.channels))
        if isinstance(units, str):
            return layer, parse_units(units, layer.channels, where)
        return layer, list(dict.fromkeys(check_unit(u, layer.channels, where) for u in units))

    def index_of(self, layer_id: str) -> int:
        return self.layer_ids.index(self.layer(layer_id).id)

    def inputs_of(self, layer_id: str) -> list[str]:
        """Layers with an edge into `layer_id`."""
        return [a for a, b in self.edges if b == layer_id]

    def outputs_of(self, layer_id: str) -> list[str]:
        """Layers that `layer_id` has an edge into."""
        return [b for a, b in self.edges if a == layer_id]

    def with_weights(self, weights: str, trained: bool) -> "ModelSpec":
        return dataclasses.replace(self, weights=weights, trained=trained)

    def summary(self) -> dict:
        """A JSON-ready description (no callables)."""
        return {
            "id": self.id,
            "title": self.title,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "value_range": list(self.value_range),
            "weights": self.weights,
            "trained": self.trained,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "num_classes": len(self.labels),
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "edges": [list(e) for e in self.edges],
        }


def chain_edges(layer_ids: list[str]) -> tuple[tuple[str, str], ...]:
    """Edges of a plain sequential graph: each layer feeds the next."""
    return tuple(zip(layer_ids[:-1], layer_ids[1:]))


def check_unit(unit: object, channels: int, where: str = "this layer") -> int:
    """`unit` if it is a whole number in 0..channels-1, else an error naming the range."""
    if not isinstance(unit, int) or isinstance(unit, bool):
        raise MicrotomeError(f"unit {unit!r} is not a whole number: {where} has units 0-{channels - 1}")
    if not 0 <= unit < channels:
        raise NotFound(f"unit {unit} is out of range: {where} has units 0-{channels - 1}")
    return unit


def parse_units(text: str, channels: int, where: str = "this layer") -> list[int]:
    """Units from "0-7", "0,3,5", "2,10-12" or "all", checked against `channels` of `where`."""
    if text.strip() == "all":
        return list(range(channels))
    units: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                units.extend(range(int(lo), int(hi) + 1))
            else:
                units.append(int(part))
        except ValueError:
            raise MicrotomeError(f"bad unit list {text!r}: expected e.g. '0-7', '0,3,5' or 'all'") from None
    for u in units:
        check_unit(u, channels, where)
    if not units:
        raise MicrotomeError(f"no units in {text!r}")
    return list(dict.fromkeys(units))
