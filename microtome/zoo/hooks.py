"""Named hook points: read layer outputs `{layer id: [B, C, H, W] or [B, C]}` during a forward pass.

Hooks are global state on the module tree, so they are attached inside a context manager and
removed in `finally`, even when the forward pass raises, and they act only for the thread that
attached them: two threads reading one model at once each see their own pass. `forward_to` stops the pass as soon
as every requested layer has been seen, so nothing past the deepest one is computed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from microtome.errors import unknown


class StopForward(Exception):
    """Raised from a hook once every wanted layer has been captured."""


def resolve_modules(model: nn.Module, paths: Mapping[str, str]) -> dict[str, nn.Module]:
    """`{layer id: module}` for `{layer id: module path}`; an unknown path lists close ones."""
    modules = dict(model.named_modules())
    out = {}
    for layer_id, path in paths.items():
        if path not in modules:
            raise unknown("module", path, [name for name in modules if name],
                          where=type(model).__name__)
        out[layer_id] = modules[path]
    return out


@contextmanager
def hooked(model: nn.Module, paths: Mapping[str, str], stop: bool = False
           ) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, the returned dict fills with each layer's output at every forward.

    With `stop=True` the forward pass raises `StopForward` once all layers are captured;
    call the model through `run(model, x)`, which catches it."""
    captured: dict[str, torch.Tensor] = {}
    wanted = set(paths)
    handles = []
    owner = threading.get_ident()

    def make_hook(layer_id: str):
        def hook(_module, _inputs, output):
            if threading.get_ident() != owner:  # another thread's forward pass
                return
            captured[layer_id] = output
            if stop and wanted <= captured.keys():
                raise StopForward
        return hook

    try:
        for layer_id, module in resolve_modules(model, paths).items():
            handles.append(module.register_forward_hook(make_hook(layer_id)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run(model: nn.Module, x: torch.Tensor, captured: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`model(x)` inside `hooked(..., stop=True)`: the pass ends at the deepest wanted layer.
    Returns a copy of `captured` for this pass."""
    captured.clear()
    try:
        model(x)
    except StopForward:
        pass
    return dict(captured)


def forward_to(model: nn.Module, x: torch.Tensor, paths: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Run `model(x)` only as far as needed and return `{layer id: output}`.

    Gradients flow from the returned tensors to `x` as usual."""
    with hooked(model, paths, stop=True) as captured:
        run(model, x, captured)
        missing = set(paths) - captured.keys()
        if missing:
            raise RuntimeError(f"layers {sorted(missing)} were not reached in the forward pass")
        return dict(captured)


def layer_paths(spec, layer_ids) -> dict[str, str]:
    """`{canonical id: module path}` for layer names (ids, paths or aliases) of a ModelSpec."""
    out = {}
    for name in layer_ids:
        layer = spec.layer(name)
        out[layer.id] = layer.module
    return out
