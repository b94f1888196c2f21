"""Receptive fields measured on the model: `receptive_fields(model, spec, layers, size) ->
{layer id: ReceptiveField}`, each mapping an output position (y, x) of a layer `[B, C, H, W]`
to the box of input pixels `(top, left, bottom, right)` of a `[3, size, size]` image it sees.

Measured by the gradient of the layer's centre position (all channels) with respect to random
input images, so it works for any architecture (branches, odd padding) without parsing it.
Two things would make that gradient sparse and the box too small: inactive ReLUs and max
pooling (whose gradient reaches one pixel of each window). So while measuring, a torch
function mode makes the common activations the identity and max pooling average pooling:
the field is then the geometric one, whatever the weights.

A token layer's geometric field is the whole image from the first attention on, which says
nothing, so it gets its effective field instead (Luo et al. 2016): the gradient of a random
direction in its centre patch's channels w.r.t. random images, through the real network, and
the box about that patch holding `EFFECTIVE_MASS` of the gradient's absolute mass along each
axis. Where the residual stream outweighs attention (early blocks, timm's random init) that is
the patch itself and its neighbours; where attention dominates, most of the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from microtome.zoo.grid import TOKENS
from microtome.zoo.hooks import forward_to, layer_paths
from microtome.zoo.spec import ModelSpec

PROBES = 1  # random input images; the linearized net's gradient pattern needs just one
EFFECTIVE_PROBES = 4  # random images (each with its own random channel direction) for token layers
EFFECTIVE_MASS = 0.9  # the share of the gradient's mass a token layer's field holds, per axis


@dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's output positions look in a `size` x `size` input.

    `grid` is the layer's output (H, W) (`(1, 1)` for flat layers); `stride` input pixels per
    output step; `centre` the input coordinates (y, x) of position (0, 0)'s field centre;
    `extent` the field's (height, width) in input pixels, which may exceed the image."""

    size: int
    grid: tuple[int, int]
    stride: tuple[float, float]
    centre: tuple[float, float]
    extent: tuple[int, int]

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of position (y, x)'s field, bottom/right exclusive,
        clipped to the image."""
        spans = []
        for pos, stride, centre, extent in zip((y, x), self.stride, self.centre, self.extent):
            start = round(centre + pos * stride - (extent - 1) / 2)
            spans.append((max(start, 0), min(start + extent, self.size)))
        (top, bottom), (left, right) = spans
        return top, left, bottom, right

    def summary(self) -> dict:
        return {"grid": list(self.grid), "stride": list(self.stride),
                "extent": list(self.extent), "centre": list(self.centre)}


def whole_image(size: int) -> ReceptiveField:
    """The field of a flat layer `[B, C]`: every position is the whole image."""
    return ReceptiveField(size, (1, 1), (float(size), float(size)),
                          ((size - 1) / 2, (size - 1) / 2), (size, size))


def receptive_fields(model: nn.Module, spec: ModelSpec, layer_ids: Sequence[str], size: int,
                     device: str | torch.device = "cpu", seed: int = 0
                     ) -> dict[str, ReceptiveField]:
    """`{canonical layer id: ReceptiveField}` at input size `size`.

    Layers are measured shallow first, each with a forward pass to it and one backward; a
    layer downstream (by the spec's edges) of one whose field already covers the image
    covers it too and is not measured."""
    paths = layer_paths(spec, layer_ids)
    order = sorted(paths, key=spec.index_of)
    gen = torch.Generator().manual_seed(seed)
    probes = torch.rand(PROBES, 3, size, size, generator=gen).to(device)
    with torch.no_grad():  # every layer's grid from one image
        grids = {layer_id: tuple(act.shape[-2:]) if act.dim() == 4 else None
                 for layer_id, act in forward_to(model, spec.preprocess(probes[:1]), paths).items()}
    ancestors = _ancestors(spec)
    fields: dict[str, ReceptiveField] = {}
    covering: set[str] = set()  # layers whose field covers the whole image
    for layer_id in order:
        grid = grids[layer_id]
        if grid is None:
            fields[layer_id] = whole_image(size)
            continue
        if spec.layer(layer_id).kind == TOKENS:  # never "covering": its field is measured, not geometric
            fields[layer_id] = _measure_effective(model, spec, paths[layer_id], probes, grid, seed)
            continue
        if ancestors.get(layer_id, set()) & covering:
            fields[layer_id] = _covering(size, grid)
        else:
            fields[layer_id] = _measure(model, spec, layer_id, paths[layer_id], probes, grid)
        if fields[layer_id].extent[0] >= size and fields[layer_id].extent[1] >= size:
            covering.add(layer_id)
    return fields


def _measure(model: nn.Module, spec: ModelSpec, layer_id: str, path: str, probes: torch.Tensor,
             grid: tuple[int, int]) -> ReceptiveField:
    """The field of one layer from the gradient of its centre position w.r.t. `probes`."""
    images = probes.clone().requires_grad_(True)  # [P, 3, S, S]
    cy, cx = grid[0] // 2, grid[1] // 2
    with torch.enable_grad(), _Linearized():
        act = forward_to(model, spec.preprocess(images), {layer_id: path})[layer_id]
        grad, = torch.autograd.grad(act[:, :, cy, cx].sum(), images)  # [P, 3, S, S]
    seen = (grad != 0).any(dim=1).any(dim=0)  # [S, S] (NaN counts as reached)
    return _field(seen.cpu(), probes.shape[-1], grid, (cy, cx))


def _measure_effective(model: nn.Module, spec: ModelSpec, path: str, probes: torch.Tensor,
                       grid: tuple[int, int], seed: int) -> ReceptiveField:
    """A token layer's effective field (module docstring), from its centre patch."""
    size = probes.shape[-1]
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.rand(EFFECTIVE_PROBES, 3, size, size, generator=gen).to(probes.device)
    images.requires_grad_(True)  # [P, 3, S, S]
    cy, cx = grid[0] // 2, grid[1] // 2
    with torch.enable_grad():
        act = forward_to(model, spec.preprocess(images), {"layer": path})["layer"]  # [P, C, gh, gw]
        direction = torch.randn(act.shape[:2], generator=gen).to(act.device)  # [P, C]
        grad, = torch.autograd.grad((act[:, :, cy, cx] * direction).sum(), images)
    mass = grad.detach().abs().sum(dim=(0, 1)).cpu()  # [S, S]
    stride, centre, extent = [], [], []
    for axis, pos in enumerate((cy, cx)):
        step = size / grid[axis]
        middle = (pos + 0.5) * step - 0.5
        span = _span_holding(mass.sum(dim=1 - axis), middle, EFFECTIVE_MASS)
        stride.append(step)
        centre.append(middle - pos * step)
        extent.append(2 * size - 1 if span >= size else span)
    return ReceptiveField(size, grid, (stride[0], stride[1]), (centre[0], centre[1]), (extent[0], extent[1]))


def _span_holding(profile: torch.Tensor, middle: float, share: float) -> int:
    """The width of the narrowest window centred on `middle` whose sum holds `share` of
    `profile`'s `[S]` (the whole image when the profile is all zero)."""
    total = float(profile.sum())
    size = profile.numel()
    if total <= 0:
        return size
    coords = torch.arange(size, dtype=torch.float64)
    for half in range(size):
        inside = (coords - middle).abs() <= half + 0.5
        if float(profile[inside].sum()) >= share * total:
            return int(2 * half + 2 if middle % 1 else 2 * half + 1)
    return size


# Activations that pass gradient nowhere on part of their domain, made the identity.
_IDENTITY = frozenset({"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu",
                       "leaky_relu_", "elu", "elu_", "gelu", "silu", "hardswish", "mish",
                       "threshold", "threshold_"})


def _average_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                  return_indices=False):
    """max_pool2d's geometry with a gradient over the whole window."""
    if return_indices or dilation not in (1, (1, 1)):
        return F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode,
                            return_indices)
    return F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad=True)


class _Linearized(TorchFunctionMode):
    """Within the block: common activations are the identity, max pooling averages."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _IDENTITY and args:
            return args[0]
        if name == "max_pool2d":
            return _average_pool(*args, **kwargs)
        if name == "adaptive_max_pool2d" and not kwargs.get("return_indices"):
            return F.adaptive_avg_pool2d(args[0], args[1] if len(args) > 1 else kwargs["output_size"])
        return func(*args, **kwargs)


def _covering(size: int, grid: tuple[int, int]) -> ReceptiveField:
    """A field larger than the image at every position of `grid`."""
    stride = (size / grid[0], size / grid[1])
    centre = ((size - 1) / 2 - grid[0] // 2 * stride[0], (size - 1) / 2 - grid[1] // 2 * stride[1])
    return ReceptiveField(size, grid, stride, centre, (2 * size - 1, 2 * size - 1))


def _ancestors(spec: ModelSpec) -> dict[str, set[str]]:
    """Every layer's transitive inputs along the spec's edges."""
    parents: dict[str, set[str]] = {}
    for a, b in spec.edges:
        parents.setdefault(b, set()).add(a)
    out: dict[str, set[str]] = {}

    def visit(layer_id: str) -> set[str]:
        if layer_id not in out:
            out[layer_id] = set()  # guards against cycles
            found = set()
            for parent in parents.get(layer_id, ()):
                found |= {parent} | visit(parent)
            out[layer_id] = found
        return out[layer_id]

    for layer_id in spec.layer_ids:
        visit(layer_id)
    return out


def _field(seen: torch.Tensor, size: int, grid: tuple[int, int], centre_pos: tuple[int, int]
           ) -> ReceptiveField:
    """A field from the input pixels `seen [size, size]` that reach output `centre_pos`."""
    stride, centre, extent = [], [], []
    for axis in (0, 1):
        step = size / grid[axis]
        hits = seen.any(dim=1 - axis).nonzero().squeeze(1)
        geometric = (centre_pos[axis] + 0.5) * step - 0.5
        if len(hits) == 0:  # no gradient at all (a dead layer): assume the stride's patch
            lo, hi = geometric - (step - 1) / 2, geometric + (step - 1) / 2
        else:
            lo, hi = float(hits[0]), float(hits[-1])
        clipped_lo, clipped_hi = lo <= 0, hi >= size - 1
        if clipped_lo and clipped_hi:  # the field covers the whole image and more
            mid, span = (size - 1) / 2, 2 * size - 1  # so that every box is the whole image
        elif clipped_lo or clipped_hi:  # one side cut off: mirror the other side
            mid = geometric
            span = int(2 * max(abs(mid - lo), abs(hi - mid)) + 1)
        else:
            mid, span = (lo + hi) / 2, int(hi - lo + 1)
        stride.append(step)
        centre.append(mid - centre_pos[axis] * step)
        extent.append(span)
    return ReceptiveField(size, grid, (stride[0], stride[1]), (centre[0], centre[1]),
                          (extent[0], extent[1]))
