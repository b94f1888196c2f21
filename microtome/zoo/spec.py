"""A model's spec: `ModelSpec(card, build, load_default)`, the torch side of a `ModelCard`.

Shape: `spec.preprocess(images [B,3,H,W] RGB in [0,1]) -> model input [B,3,H,W]`;
`spec.card` is the plain data (zoo/card.py) and every field of it reads through the spec
(`spec.id`, `spec.layers`, `spec.layer(name)`, ...); `spec.labels` is `card.class_names`.
`ModelSpec(id=..., title=..., build=..., layers=..., labels=..., ...)` still makes a spec
from the card's fields, as custom entry points do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from microtome.zoo.card import IMAGENET_MEAN, IMAGENET_STD, LayerCard, ModelCard, chain_edges, check_unit, parse_units

LayerSpec = LayerCard  # the older name: `LayerSpec(id, module, kind, channels, size, aliases)`
__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LayerSpec", "ModelSpec", "chain_edges", "check_unit", "parse_units"]


@dataclass(frozen=True, init=False)
class ModelSpec:
    """A card and how to make the model: `build() -> nn.Module` with random weights;
    `load_default(module) -> sha256` (if any) fills a built module with the default weights."""

    card: ModelCard
    build: Callable[[], nn.Module]
    load_default: Callable[[nn.Module], str] | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __init__(self, card: ModelCard | None = None, build: Callable[[], nn.Module] | None = None,
                 load_default: Callable[[nn.Module], str] | None = None, extra: dict | None = None,
                 **fields: Any):
        """From a `card`, or from the card's fields (`labels` is `class_names`); `fields` given
        with a `card` replace its own (so `dataclasses.replace(spec, layers=...)` works)."""
        if "labels" in fields:
            fields["class_names"] = tuple(fields.pop("labels"))
        card = ModelCard(**fields) if card is None else dataclasses.replace(card, **fields) if fields else card
        if build is None:
            raise TypeError("ModelSpec needs `build`, a () -> nn.Module")
        object.__setattr__(self, "card", card)
        object.__setattr__(self, "build", build)
        object.__setattr__(self, "load_default", load_default)
        object.__setattr__(self, "extra", dict(extra or {}))

    def __getattr__(self, name: str) -> Any:
        """The card's fields and methods: `spec.id`, `spec.layers`, `spec.layer(...)`, ..."""
        if name.startswith("__") or name == "card":  # unpickling, copying: no card yet
            raise AttributeError(name)
        return getattr(self.card, name)

    @property
    def labels(self) -> tuple[str, ...]:
        """The class names, index = class id."""
        return self.card.class_names

    # ---- preprocessing -------------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] `[B, 3, H, W]` to this model's input `[B, 3, H, W]`; a
        fixed-size model's (`card.fixed_size`) input is resized to `[B, 3, S, S]`, S its input
        size (bilinear, differentiable: renders and stimuli of any size reach it)."""
        size = self.card.input_size
        if self.card.fixed_size and tuple(x.shape[-2:]) != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        lo, hi = self.card.value_range
        mean = torch.tensor(self.card.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.card.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * (hi - lo) + lo - mean) / std

    def with_weights(self, weights: str, trained: bool, sha256: str | None = None) -> ModelSpec:
        return dataclasses.replace(self, card=self.card.with_weights(weights, trained, sha256))

    def summary(self) -> dict:
        """The card as JSON (no callables): what the store keeps and the web reads."""
        return self.card.to_json()
