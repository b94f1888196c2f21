"""Hand-set toys for `inspect` (custom model entry points `tests.inspect_toys:NAME`).

- `texture_net`: `[B, 3, 64, 64]` -> `texture` `[B, 8, 16, 16]` -> logits `[B, 2]`. Units 0-3
  respond to horizontal stripes (second derivative along y, both signs, several gains), units
  4-7 to vertical stripes (along x); ReLU, then 4×4 average pooling.
- `linear_net`: `[B, 3, 32, 32]` -> `a` `[B, 2, 32, 32]` (red, green) -> `b = W a` with
  `W = [[2, 0], [1, 3]]` -> logits = mean over positions of `b` (identity head). No
  nonlinearity anywhere, so gradient × activation is exact and computable by hand.

`toy_app(toy_store(root))` is the web app over a store that knows `texture_net`, its
inspections loading the toy (`toy_loader`) with tiny renders (`TINY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from microtome.store import Store
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges

LINEAR_W = ((2.0, 0.0), (1.0, 3.0))
GAINS = (1.0, 1.0, 0.5, 2.0)  # of the four units of each set (signs +, -, +, -)


def _spec(name: str, model: nn.Module, size: int, layers: tuple[LayerSpec, ...],
          labels: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(id=name, title=name, build=lambda: model, input_size=size, layers=layers,
                     edges=chain_edges([layer.id for layer in layers]), labels=labels,
                     weights_source="hand-set", weights_sha256=None, mean=(0.0, 0.0, 0.0),
                     std=(1.0, 1.0, 1.0))


def texture_net(weights: str = "default") -> tuple[nn.Module, ModelSpec]:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    second = torch.tensor([-1.0, 2.0, -1.0])
    with torch.no_grad():
        conv.weight.zero_()
        for i, gain in enumerate(GAINS):
            sign = 1.0 if i % 2 == 0 else -1.0
            conv.weight[i, :, :, 1] = sign * gain * second / 3  # along y: horizontal stripes
            conv.weight[4 + i, :, 1, :] = sign * gain * second / 3  # along x: vertical stripes
        head = nn.Linear(8, 2)
        head.weight.copy_(torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4]))
        head.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    layers = (LayerSpec("texture", "2", "conv", 8, (16, 16)), LayerSpec("logits", "5", "logits", 2, (1, 1)))
    return model.eval(), _spec("texture_net", model, 64, layers, ("horizontal", "vertical"))


def stripes(size: int = 64) -> torch.Tensor:
    """Horizontal stripes on the left half, vertical ones on the right: `[3, size, size]`."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.where(x < size // 2, (y % 2).float(), (x % 2).float())
    return image.expand(3, size, size).clone()


def linear_net(weights: str = "default") -> tuple[nn.Module, ModelSpec]:
    first = nn.Conv2d(3, 2, 1, bias=False)
    second = nn.Conv2d(2, 2, 1, bias=False)
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))
        second.weight.copy_(torch.tensor(LINEAR_W).view(2, 2, 1, 1))
        head.weight.copy_(torch.eye(2))
    model = nn.Sequential(first, second, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    layers = (LayerSpec("a", "0", "conv", 2, (32, 32)), LayerSpec("b", "1", "conv", 2, (32, 32)),
              LayerSpec("logits", "4", "logits", 2, (1, 1)))
    return model.eval(), _spec("linear_net", model, 32, layers, ("zero", "one"))


def red_green(size: int = 32) -> torch.Tensor:
    """Red on the left half, green on the right: `[3, size, size]`."""
    image = torch.zeros(3, size, size)
    image[0, :, : size // 2] = 1.0
    image[1, :, size // 2:] = 1.0
    return image


TINY = {"steps": 2, "size": 16, "grid_size": 16, "grid": 2}  # renders in a second


def toy_loader(model: str, weights: str) -> tuple[nn.Module, ModelSpec]:
    assert model == "texture_net", model
    return texture_net()


def toy_store(root: Path) -> Store:
    store = Store(root)
    store.put_model("texture_net", texture_net()[1].summary())
    return store


def toy_app(store: Store, inspector: Any = None) -> Any:
    """The web app over `store`, its inspections by `inspector` (default: `toy_loader`, `TINY`)."""
    from microtome.web import create_app
    from microtome.web.jobs.inspect_jobs import InspectJobs

    app = create_app(store, registry=None, on_demand=False)
    app.state.microtome.inspector = inspector or InspectJobs(load=toy_loader, **TINY)
    return app
