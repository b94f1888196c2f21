"""Transformations for robust feature visualization: `(config) -> (images [B,3,H,W], rng) -> images`.

Each factory returns a small function `transform(x, rng=None)`; `compose([...])` chains them and
hands each its `rng`. Every random choice is made per image: `rng` is a `PerImage` (one generator
per image, what the renderer passes), so an image's transforms do not depend on its batch;
without it, draws come from torch's global generator. Plain callables `x -> x` (Lucent's) compose
too. Integer images (0..255) are accepted and returned as integers, rounded; a `fill` or `value`
is in [0, 1] units either way. Values stay in the input's range.

Unlike Lucid's, `random_scale` zooms each image about its centre by its own factor and keeps the
size (filling from the border), so that each image of a batch may have its own scale; `pad` grows
the size and `jitter` crops. `standard_transforms()` is Lucid's set as one resampling (`warp`);
`standard_chain()` the same set step by step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from microtome.errors import MicrotomeError
from microtome.optvis.randomness import Draws, draws

Transform = Callable[..., torch.Tensor]  # (x [B, C, H, W], rng: Draws | None = None) -> x'
INTEGER_SCALE = 255.0


def _transform(fn: Callable[[torch.Tensor, Draws], torch.Tensor]) -> Transform:
    """`fn(x float, draws)` as a transform: integer images in and out, draws for the batch."""

    @functools.wraps(fn)
    def transform(x: torch.Tensor, rng: Draws | None = None) -> torch.Tensor:
        rng = draws(rng, x.shape[0])
        if x.is_floating_point():
            return fn(x, rng)
        y = fn(x.float() / INTEGER_SCALE, rng)
        info = torch.iinfo(x.dtype)
        return (y * INTEGER_SCALE).round().clamp(max(info.min, 0), min(info.max, 255)).to(x.dtype)

    transform.takes_rng = True
    return transform


def apply(t: Transform, x: torch.Tensor, rng: Draws | None = None) -> torch.Tensor:
    """`t(x, rng)` for our transforms, `t(x)` for plain callables."""
    return t(x, rng) if getattr(t, "takes_rng", False) else t(x)


def _pick(options: Sequence[float], rng: Draws, like: torch.Tensor) -> torch.Tensor:
    """One of `options` per image: `[B]` in `like`'s dtype and device."""
    values = torch.tensor([float(v) for v in options], dtype=like.dtype)
    return values[rng.integers(len(options))].to(like.device)


def _offsets(d: int, rng: Draws) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image crop offsets (oy, ox) in [0, d), `[B]` each, drawn as `jitter` draws them."""
    if d <= 1:
        zero = torch.zeros(len(rng), dtype=torch.long)
        return zero, zero
    return rng.integers(d), rng.integers(d)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample `x` `[B, C, H, W]` through per-image affine maps `theta` `[B, 2, 3]`, same size,
    outside filled from the border."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by `width` pixels: `[B, C, H, W] -> [B, C, H + 2w, W + 2w]`."""

    def pad(x: torch.Tensor, rng: Draws) -> torch.Tensor:
        if mode == "constant":
            return F.pad(x, (width,) * 4, mode="constant", value=value)
        return F.pad(x, (width,) * 4, mode=mode)

    return _transform(pad)


def jitter(d: int) -> Transform:
    """Crop each image at its own random offset in [0, d):
    `[B, C, H, W] -> [B, C, H - d + 1, W - d + 1]`."""

    def jitter(x: torch.Tensor, rng: Draws) -> torch.Tensor:
        if d <= 1:
            return x
        h, w = x.shape[-2] - d + 1, x.shape[-1] - d + 1
        oy, ox = (v.tolist() for v in _offsets(d, rng))
        return torch.stack([x[i, :, y:y + h, z:z + w] for i, (y, z) in enumerate(zip(oy, ox))])

    return _transform(jitter)


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom each image about its centre by its own factor from `scales` (bilinear, >1 enlarges),
    shape unchanged, outside filled from the border."""

    def random_scale(x: torch.Tensor, rng: Draws) -> torch.Tensor:
        s = _pick(scales, rng, x)  # [B]
        if bool((s == 1).all()):
            return x
        zero = torch.zeros_like(s)
        theta = torch.stack([torch.stack([1 / s, zero, zero], 1),
                             torch.stack([zero, 1 / s, zero], 1)], 1)  # [B, 2, 3]
        return _affine(x, theta)

    return _transform(random_scale)


def random_rotate(angles: Sequence[float]) -> Transform:
    """Rotate each image by its own angle in degrees drawn from `angles`; shape unchanged,
    corners filled from the border."""

    def random_rotate(x: torch.Tensor, rng: Draws) -> torch.Tensor:
        t = _pick(angles, rng, x) * (math.pi / 180.0)  # [B] radians
        if not bool(t.ne(0).any()):
            return x
        cos, sin, zero = torch.cos(t), torch.sin(t), torch.zeros_like(t)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1),
                             torch.stack([sin, cos, zero], 1)], 1)  # [B, 2, 3]
        return _affine(x, theta)

    return _transform(random_rotate)


def warp(pad_width: int, jitter_before: int, scales: Sequence[float], angles: Sequence[float],
         jitter_after: int, fill: float = 0.5) -> Transform:
    """`pad(pad_width, value=fill)`, `jitter(jitter_before)`, `random_scale(scales)`,
    `random_rotate(angles)` and `jitter(jitter_after)` as ONE bilinear resampling of the input.

    The same random draws in the same order per image, the same output size and the same
    sampling positions as that chain; only its two interpolations (scale, then rotate) become
    one, which also saves the padded copy and the crops. Needs `pad_width >= jitter_before`, so
    that a margin of `fill` survives the first crop and the chain's border fill is `fill` too.
    `[B, C, H, W] -> [B, C, H + 2p - j1 - j2 + 2, W + 2p - j1 - j2 + 2]` (j: jitter, ≥ 1)."""
    if pad_width < jitter_before:
        raise MicrotomeError(f"warp needs pad_width >= jitter_before (got {pad_width} < "
                             f"{jitter_before}); for a larger jitter compose pad, jitter, "
                             "random_scale and random_rotate instead")

    def warp(x: torch.Tensor, rng: Draws) -> torch.Tensor:
        b, _, h, w = x.shape
        f = dict(device=x.device, dtype=x.dtype)
        h1 = h + 2 * pad_width - max(jitter_before, 1) + 1  # after pad and the first crop
        w1 = w + 2 * pad_width - max(jitter_before, 1) + 1
        oy1, ox1 = (v.to(**f) for v in _offsets(jitter_before, rng))  # [B]
        s = _pick(scales, rng, x)  # [B]
        t = _pick(angles, rng, x) * (math.pi / 180.0)  # [B] radians
        oy2, ox2 = (v.to(**f) for v in _offsets(jitter_after, rng))
        crop2 = max(jitter_after, 1) - 1
        # normalized coordinates (align_corners=False) of each image's output pixels in the
        # rotated image: [B, W'] and [B, H']
        u = (2 * (torch.arange(w1 - crop2, **f)[None] + ox2[:, None]) + 1) / w1 - 1
        v = (2 * (torch.arange(h1 - crop2, **f)[None] + oy2[:, None]) + 1) / h1 - 1
        # rotate as affine_grid does, (u, v) -> (cos u - sin v, sin u + cos v), undo the zoom
        # (divide by s), then the crop and the pad: source coordinates, affine in u and v
        cos, sin = torch.cos(t) / s, torch.sin(t) / s  # [B]
        su, sv = w1 / w, h1 / h
        along_u = torch.stack([cos * su, sin * sv], dim=-1)  # [B, 2]
        along_v = torch.stack([-sin * su, cos * sv], dim=-1)
        origin = torch.stack([su + 2 * (ox1 - pad_width) / w - 1,
                              sv + 2 * (oy1 - pad_width) / h - 1], dim=-1)  # [B, 2]
        grid = ((along_u[:, None, None, :] * u[:, None, :, None] + origin[:, None, None, :])
                + along_v[:, None, None, :] * v[:, :, None, None])  # [B, H', W', 2]
        # zeros outside the image after subtracting `fill` is the constant pad of `fill`
        out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out + fill

    return _transform(warp)


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply `transforms` in order, each with the same per-image `rng`."""
    transforms = list(transforms)

    def compose(x: torch.Tensor, rng: Draws) -> torch.Tensor:
        for t in transforms:
            x = apply(t, x, rng)
        return x

    return _transform(compose)


STANDARD_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
STANDARD_ANGLES = tuple(range(-10, 11)) + 5 * (0,)


def standard_chain() -> list[Transform]:
    """Lucid's standard set step by step: pad 12, jitter 8, scale 0.9-1.1, rotate ±10°, jitter 4."""
    return [
        pad(12, mode="constant", value=0.5),
        jitter(8),
        random_scale(STANDARD_SCALES),
        random_rotate(STANDARD_ANGLES),
        jitter(4),
    ]


def standard_transforms() -> list[Transform]:
    """Lucid's standard set (`standard_chain`) as one resampling: what the renderer uses."""
    return [warp(12, 8, STANDARD_SCALES, STANDARD_ANGLES, 4, fill=0.5)]


def sharp_transforms() -> list[Transform]:
    """Lucid's set without its resampling (pad 12, jitter 8, jitter 4: whole-pixel shifts only),
    for the last steps of a render (`render(sharpen_steps=...)`): the image keeps details finer
    than the bilinear blur of scale and rotation lets through. Same output size as the standard."""
    return [pad(12, mode="constant", value=0.5), jitter(8), jitter(4)]
