"""A model's layers read from the model itself: `derive_layers(model, input_size) -> (LayerCard...)`.

One forward pass at `[1, 3, S, S]` (no grad) records every module's output shape and how often
it ran; the rules below pick the layers from that, generically (module types and shapes, no
list of architectures):
- transformer (ViT, DeiT, CLIP/SigLIP/EVA/DINOv2 towers, torchvision's ViT): a Sequential or
  ModuleList whose children have an `.mlp` and output tokens `[B, N, D]`. Per block i:
  `block{i}` the residual stream (the block's output, D units) and `block{i}_mlp` the MLP's
  hidden activation after its nonlinearity (the gated product for GLU MLPs), both kind
  "tokens" on the patch grid (prefix tokens counted from the model: `num_prefix_tokens`, or
  torchvision's class token).
- CNN-like and Swin (ResNet, ConvNeXt, EfficientNet, RegNet, CLIP ResNets): the stages (timm's
  `feature_info` modules; several in one container: every child of it; without it, the
  Sequential children of `features`/`trunk_output`/the model) as `stage{i}` (`stem` for a
  leading stage without blocks), and their blocks `stage{i}_block{j}` (the last block is the
  stage's output: its path is an alias of the stage); channels as units; channels-last outputs
  (Swin) are permuted to `[B, C, H, W]`.
- the head: `logits` when the class names are known, `embedding` otherwise (a CLIP tower's
  projection); none for a headless model (`num_classes` 0).
Only modules that ran exactly once are exposed (a shared activation module is ambiguous).
Layers are ordered as the forward pass finishes them and chained by edges. To cover a new
family, add one rule here and one test in tests/test_model_sources.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.zoo.card import LayerCard
from microtome.zoo.grid import CHANNELS_LAST, GRID, TOKENS, add_grid_view

_CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass(frozen=True)
class Probe:
    """Per module path: output shape, number of calls, order of its (first) completion."""

    shapes: dict[str, tuple[int, ...]]
    calls: dict[str, int]
    order: dict[str, int]

    def once(self, path: str) -> bool:
        return self.calls.get(path) == 1


def probe(model: nn.Module, input_size: int) -> Probe:
    """Run `model` on zeros `[1, 3, S, S]` with a hook on every module."""
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    order: dict[str, int] = {}

    def make(path: str):
        def hook(_m, _i, out):
            calls[path] = calls.get(path, 0) + 1
            order.setdefault(path, len(order))
            if isinstance(out, torch.Tensor):
                shapes.setdefault(path, tuple(out.shape))
        return hook

    handles = [m.register_forward_hook(make(p)) for p, m in model.named_modules() if p]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    return Probe(shapes, calls, order)


def _children(model: nn.Module, path: str) -> list[str]:
    module = model.get_submodule(path)
    return [f"{path}.{name}" if path else name for name, _ in module.named_children()]


def _transformer_blocks(model: nn.Module, seen: Probe) -> list[str]:
    for path, module in model.named_modules():
        kids = list(module.children()) if isinstance(module, _CONTAINERS) else []
        if kids and all(hasattr(k, "mlp") for k in kids):
            paths = _children(model, path)
            if len(seen.shapes.get(paths[0], ())) == 3:
                return paths
    return []


def _mlp_hidden(model: nn.Module, block: str, seen: Probe) -> str | None:
    """The path whose output is the MLP's hidden activation (after the nonlinearity)."""
    mlp_path = f"{block}.mlp"
    mlp = model.get_submodule(mlp_path)
    kids = sorted((p for p in _children(model, mlp_path) if p in seen.order), key=seen.order.get)
    passive = (nn.Linear, nn.LayerNorm, nn.Identity, nn.Dropout)
    if "glu" in type(mlp).__name__.lower() or hasattr(mlp, "fc1_g"):  # gated: act(x_g) * x
        linears = [p for p in kids if isinstance(model.get_submodule(p), nn.Linear)]
        before = kids[:kids.index(linears[-1])] if linears else []
        dropout = [p for p in before if isinstance(model.get_submodule(p), nn.Dropout)]
        return dropout[-1] if dropout else None  # the product is what reaches fc2
    if hasattr(mlp, "act"):
        return f"{mlp_path}.act"
    return next((p for p in kids if not isinstance(model.get_submodule(p), passive)), None)


def num_prefix_tokens(model: nn.Module) -> int:
    """Class/distillation/register tokens before the patch tokens, as the model says."""
    if hasattr(model, "num_prefix_tokens"):
        return int(model.num_prefix_tokens)
    if hasattr(model, "class_token"):  # torchvision's VisionTransformer: one class token
        return 1
    raise MicrotomeError(f"{type(model).__name__} has token layers but no `num_prefix_tokens`: set "
                         "model.num_prefix_tokens (class, distillation and register tokens) before use")


def _token_layers(model: nn.Module, blocks: list[str], seen: Probe) -> list[LayerCard]:
    prefix = num_prefix_tokens(model)
    layers = []
    for i, block in enumerate(blocks):
        rows = [(f"block{i}", block)]
        hidden = _mlp_hidden(model, block, seen)
        if hidden and seen.once(hidden) and len(seen.shapes.get(hidden, ())) == 3:
            rows.append((f"block{i}_mlp", hidden))
        for layer_id, path in rows:
            _, n, d = seen.shapes[path]
            side = round((n - prefix) ** 0.5)
            view = add_grid_view(model, path, TOKENS, prefix)
            layers.append(LayerCard(layer_id, view, TOKENS, d, (side, side), (path,)))
    return layers


def _stage_paths(model: nn.Module, seen: Probe) -> list[str]:
    info = getattr(model, "feature_info", None)
    names = [d["module"] for d in info] if isinstance(info, list) else []
    parents = [name.rpartition(".")[0] for name in names]
    out: list[str] = []
    for name, parent in zip(names, parents):
        if parent and parents.count(parent) > 1 and isinstance(model.get_submodule(parent), _CONTAINERS):
            out += [p for p in _children(model, parent) if p not in out]
        elif name not in out:
            out.append(name)
    if not names:
        root = next((p for p in ("features", "trunk_output") if hasattr(model, p)), "")
        out = [p for p in _children(model, root) if len(list(model.get_submodule(p).children())) > 1]
    return [p for p in out if seen.once(p) and len(seen.shapes.get(p, ())) == 4
            and not isinstance(model.get_submodule(p), nn.Identity)]


def _block_paths(model: nn.Module, stage: str, seen: Probe) -> list[str]:
    module = model.get_submodule(stage)
    if isinstance(getattr(module, "blocks", None), _CONTAINERS):
        kids = _children(model, f"{stage}.blocks")
    elif isinstance(module, _CONTAINERS):
        kids = _children(model, stage)
    else:
        kids = [p for p in _children(model, stage) if seen.shapes.get(p) == seen.shapes.get(stage)
                and _weighted(model.get_submodule(p)) > 1]  # composite blocks, not a conv or a norm
    return [p for p in kids if seen.once(p) and len(seen.shapes.get(p, ())) == 4
            and not isinstance(model.get_submodule(p), nn.Identity)]


def _weighted(module: nn.Module) -> int:
    """How many of `module`'s modules hold parameters of their own."""
    return sum(1 for m in module.modules() if any(True for _ in m.parameters(recurse=False)))


def _channels_last(model: nn.Module) -> bool:
    return getattr(model, "output_fmt", "NCHW") == "NHWC" or type(model).__name__.startswith("SwinTransformer")


def _map_layer(model: nn.Module, layer_id: str, path: str, kind: str, seen: Probe,
               aliases: tuple[str, ...] = ()) -> LayerCard:
    shape = seen.shapes[path]
    if _channels_last(model):
        view = add_grid_view(model, path, CHANNELS_LAST)
        return LayerCard(layer_id, view, kind, shape[3], (shape[1], shape[2]), (path, *aliases))
    return LayerCard(layer_id, path, kind, shape[1], (shape[2], shape[3]), aliases)


def _stage_layers(model: nn.Module, seen: Probe) -> list[LayerCard]:
    layers = []
    for i, stage in enumerate(_stage_paths(model, seen)):
        blocks = _block_paths(model, stage, seen)
        if not blocks and i == 0:
            layers.append(_map_layer(model, "stem", stage, "stage", seen))
            continue
        for j, block in enumerate(blocks[:-1]):
            layers.append(_map_layer(model, f"stage{i}_block{j}", block, "block", seen))
        layers.append(_map_layer(model, f"stage{i}", stage, "stage", seen, tuple(blocks[-1:])))
    return layers


def head_path(model: nn.Module, seen: Probe) -> str | None:
    """The classifier (or projection) head's path: timm's `get_classifier()`, else a root child
    called fc/classifier/head/heads; None when headless."""
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        paths = [p for p, m in model.named_modules() if m is head and p]
        paths += [p.rpartition(".")[0] for p in paths if "." in p]  # a pooling head's (CLIP's attention pool)
        candidates = paths if not isinstance(head, nn.Identity) else []
    else:
        candidates = [p for p in ("fc", "classifier", "heads", "head") if hasattr(model, p)]
    found = [p for p in candidates if seen.once(p) and len(seen.shapes.get(p, ())) == 2]
    return found[0] if found else None


def derive_layers(model: nn.Module, input_size: int, has_classes: bool) -> tuple[LayerCard, ...]:
    """The model's layers at `[1, 3, input_size, input_size]` (see the module docstring);
    grid views are attached to `model` for the token and channels-last layers."""
    seen = probe(model, input_size)
    blocks = _transformer_blocks(model, seen)
    layers = _token_layers(model, blocks, seen) if blocks else _stage_layers(model, seen)
    if not layers:
        raise MicrotomeError(f"found no blocks or stages in {type(model).__name__}: no rule in "
                             "microtome/zoo/derive.py covers this family yet")
    head = head_path(model, seen)
    if head:
        units = seen.shapes[head][1]
        kind = "logits" if has_classes else "embedding"
        layers.append(LayerCard(kind, head, kind, units, (1, 1), ()))
    def finished(layer: LayerCard) -> int:  # when the forward pass completes the layer's module
        return seen.order[layer.module.removesuffix("." + GRID)]

    return tuple(sorted(layers, key=finished))


def takes_other_sizes(model: nn.Module, input_size: int) -> bool:
    """Whether `model` runs on `[1, 3, S + 32, S + 32]` as well as on its own size S (a ViT
    without a dynamic image size asserts its size: its card says `fixed_size`)."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size + 32, input_size + 32))
    except (AssertionError, RuntimeError, ValueError):
        return False
    return True


def attach_views(model: nn.Module, layers: tuple[LayerCard, ...]) -> nn.Module:
    """Attach to a fresh build the grid views that its derived `layers` read; returns `model`."""
    for layer in layers:
        if layer.module.endswith("." + GRID):
            path = layer.module[: -len(GRID) - 1]
            if layer.kind == TOKENS:
                add_grid_view(model, path, TOKENS, num_prefix_tokens(model))
            else:
                add_grid_view(model, path, CHANNELS_LAST)
    return model
