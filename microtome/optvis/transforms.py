"""Transformations for robust feature visualization: `(config) -> (images [B,3,H,W]) -> images`.

Each factory returns a small function; `compose([...])` chains them. Randomness comes from
torch's current generator, which the renderer seeds, so the same seed gives the same image.
Sizes may change (pad grows, jitter crops, scale resizes); values stay in the input's range.
`standard_transforms()` is Lucid's set as one resampling (`warp`); `standard_chain()` the same
set step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from microtome.errors import MicrotomeError

Transform = Callable[[torch.Tensor], torch.Tensor]


def _choice(options: Sequence[float]) -> float:
    return float(options[int(torch.randint(len(options), (1,)).item())])


def _angles(options: Sequence[float], batch: int, like: torch.Tensor) -> torch.Tensor:
    """One angle per image drawn from `options`, in degrees: `[B]`."""
    idx = torch.randint(len(options), (batch,)).tolist()
    return torch.tensor([float(options[i]) for i in idx], dtype=like.dtype, device=like.device)


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by `width` pixels: `[B, C, H, W] -> [B, C, H + 2w, W + 2w]`."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        if mode == "constant":
            return F.pad(x, (width,) * 4, mode="constant", value=value)
        return F.pad(x, (width,) * 4, mode=mode)

    return transform


def jitter(d: int) -> Transform:
    """Crop at a random offset in [0, d): `[B, C, H, W] -> [B, C, H - d + 1, W - d + 1]`,
    the same offset for the whole batch."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        if d <= 1:
            return x
        h, w = x.shape[-2:]
        oy, ox = (int(v) for v in torch.randint(d, (2,)))
        return x[..., oy:h - d + 1 + oy, ox:w - d + 1 + ox]

    return transform


def random_scale(scales: Sequence[float]) -> Transform:
    """Resize by a factor drawn from `scales` (bilinear): `[B, C, H, W] -> [B, C, sH, sW]`."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        s = _choice(scales)
        if s == 1.0:
            return x
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    return transform


def random_rotate(angles: Sequence[float]) -> Transform:
    """Rotate each image by its own angle in degrees drawn from `angles`; shape unchanged,
    corners filled from the border."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        theta_deg = _angles(angles, x.shape[0], x)
        if not bool(theta_deg.abs().gt(0).any()):
            return x
        t = theta_deg * (math.pi / 180.0)
        cos, sin, zero = torch.cos(t), torch.sin(t), torch.zeros_like(t)
        affine = torch.stack([torch.stack([cos, -sin, zero], 1),
                              torch.stack([sin, cos, zero], 1)], 1)  # [B, 2, 3]
        grid = F.affine_grid(affine, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return transform


def warp(pad_width: int, jitter_before: int, scales: Sequence[float], angles: Sequence[float],
         jitter_after: int, fill: float = 0.5) -> Transform:
    """`pad(pad_width, value=fill)`, `jitter(jitter_before)`, `random_scale(scales)`,
    `random_rotate(angles)` and `jitter(jitter_after)` as ONE bilinear resampling of the input.

    The same random draws in the same order, the same output size and the same sampling
    positions as that chain; only its two interpolations (scale, then rotate) become one, which
    also saves the padded copy and the crops. Needs `pad_width >= jitter_before`, so that a
    margin of `fill` survives the first crop and the chain's border fill is `fill` too.
    `[B, C, H, W] -> [B, C, round((H + 2p - j1 + 1)·s) - j2 + 1, ...]`."""
    if pad_width < jitter_before:
        raise MicrotomeError(f"warp needs pad_width >= jitter_before (got {pad_width} < "
                             f"{jitter_before}); for a larger jitter compose pad, jitter, "
                             "random_scale and random_rotate instead")

    def offsets(d: int) -> tuple[int, int]:  # as `jitter` draws them: (oy, ox) in [0, d)
        return (0, 0) if d <= 1 else tuple(int(v) for v in torch.randint(d, (2,)))

    def transform(x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        crop1 = max(jitter_before, 1) - 1
        h1, w1 = h + 2 * pad_width - crop1, w + 2 * pad_width - crop1  # after pad + first crop
        oy1, ox1 = offsets(jitter_before)
        s = _choice(scales)
        h2, w2 = (h1, w1) if s == 1.0 else (max(1, round(h1 * s)), max(1, round(w1 * s)))
        t = _angles(angles, b, x) * (math.pi / 180.0)  # [B] radians
        oy2, ox2 = offsets(jitter_after)
        crop2 = max(jitter_after, 1) - 1
        # normalized coordinates (align_corners=False) of the output pixels in the rotated image
        u = (2 * (torch.arange(w2 - crop2, device=x.device, dtype=x.dtype) + ox2) + 1) / w2 - 1
        v = (2 * (torch.arange(h2 - crop2, device=x.device, dtype=x.dtype) + oy2) + 1) / h2 - 1
        # rotate as affine_grid does, (u, v) -> (cos u - sin v, sin u + cos v), then undo the
        # scale, the crop and the pad: source coordinates, affine in u and v
        cos, sin = torch.cos(t), torch.sin(t)  # [B]
        su, sv = w1 / w, h1 / h
        along_u = torch.stack([cos * su, sin * sv], dim=-1)  # [B, 2]
        along_v = torch.stack([-sin * su, cos * sv], dim=-1)
        origin = torch.tensor([su + 2 * (ox1 - pad_width) / w - 1,
                               sv + 2 * (oy1 - pad_width) / h - 1], device=x.device, dtype=x.dtype)
        grid = ((along_u[:, None, None, :] * u[None, None, :, None] + origin)  # [B, 1, W', 2]
                + along_v[:, None, None, :] * v[None, :, None, None])  # + [B, H', 1, 2]
        # zeros outside the image after subtracting `fill` is the constant pad of `fill`
        out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out + fill

    return transform


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply `transforms` in order."""
    transforms = list(transforms)

    def transform(x: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            x = t(x)
        return x

    return transform


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


STANDARD_TRANSFORMS = "pad(12) jitter(8) scale(0.9..1.1) rotate(±10°) jitter(4)"
