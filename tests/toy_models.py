"""Toy models for the tests.

- `tiny_net() -> (nn.Module, ModelSpec)`, a custom `module:function` entry point: input
  `[B, 3, 32, 32]` -> conv1 `[B, 8, 16, 16]` -> conv2 `[B, 16, 8, 8]` -> logits `[B, 3]`.
- `colour_net`, hand-set to tell red, green and blue apart; `colour_images` writes photos for it.
- `Toy`, a bare `nn.Module` (no spec) for the feature-visualization library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from microtome.errors import MicrotomeError
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges


def _build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),  # [B, 8, 16, 16]
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),  # [B, 16, 8, 8]
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))  # [B, 3]


def tiny_net(weights: str = "random") -> tuple[nn.Module, ModelSpec]:
    """A three-class toy with random (seeded) weights only."""
    if weights not in ("random", "default"):
        raise MicrotomeError(f"tiny_net has random weights only, not {weights!r}")
    layers = (LayerSpec("conv1", "1", "conv", 8, (16, 16)),
              LayerSpec("conv2", "3", "conv", 16, (8, 8)),
              LayerSpec("logits", "6", "logits", 3, (1, 1)))
    spec = ModelSpec(id="tiny_net", title="Tiny test net", build=_build, input_size=32,
                     layers=layers, edges=chain_edges([layer.id for layer in layers]),
                     labels=("red", "green", "blue"), weights_source="random init",
                     weights_sha256=None, trained=False, weights="random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _build()
    return model, spec


def tiny_net_fixed() -> tuple[nn.Module, ModelSpec]:
    """The same toy from a function that takes no `weights` argument."""
    return tiny_net()


def tiny_net_broken(weights: str = "default") -> tuple[nn.Module, ModelSpec]:
    """An entry point whose own code raises TypeError: that is its error, not a missing argument."""
    raise TypeError("broken inside")


COLOURS = ("red", "green", "blue")


def colour_net(weights: str = "default") -> tuple[nn.Module, ModelSpec]:
    """Hand-set weights: unit c of `colour` is the excess of colour c over the other two
    (ReLU), and logit c reads unit c, so class c = the dominant colour. Input `[B, 3, 32, 32]`
    -> colour `[B, 3, 32, 32]` -> logits `[B, 3]`."""
    if weights not in ("default", "random"):
        raise MicrotomeError(f"colour_net has hand-set weights only, not {weights!r}")
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_((torch.eye(3) * 1.5 - 0.5).view(3, 3, 1, 1))
        conv.bias.zero_()
        linear = nn.Linear(3, 3)
        linear.weight.copy_(torch.eye(3) * 4.0)
        linear.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    layers = (LayerSpec("colour", "1", "conv", 3, (32, 32)), LayerSpec("logits", "4", "logits", 3, (1, 1)))
    spec = ModelSpec(id="colour_net", title="Colour toy", build=lambda: model, input_size=32,
                     layers=layers, edges=chain_edges(["colour", "logits"]), labels=COLOURS,
                     weights_source="hand-set", weights_sha256=None, trained=True, weights="default",
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return model, spec


def colour_images(root: Path, per_class: int = 6, folders: bool = True) -> Path:
    """Photos dominated by one colour each (noise on top), in sub-folders named by colour."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(COLOURS):
        for i in range(per_class):
            pixels = rng.uniform(0, 0.35, (40, 40, 3))
            pixels[..., c] += rng.uniform(0.4, 0.6)
            folder = root / name if folders else root
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{name}{i}.png")
    return root


class Toy(nn.Module):
    """conv(3->8, 5) -> relu -> conv(8->6, 3) -> relu -> pool -> linear(6->4)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(3, 8, 5)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 6, 3)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))
