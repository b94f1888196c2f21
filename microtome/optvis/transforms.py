"""Transformations for robust feature visualization: `(config) -> (images [B,3,H,W]) -> images`.

Each factory returns a small function; `compose([...])` chains them. Randomness comes from
torch's current generator, which the renderer seeds, so the same seed gives the same image.
Sizes may change (pad grows, jitter crops, scale resizes); values stay in the input's range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def _choice(options: Sequence[float], device=None) -> float:
    return float(options[int(torch.randint(len(options), (1,)).item())])


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
        b = x.shape[0]
        idx = torch.randint(len(angles), (b,))
        theta_deg = torch.tensor([float(angles[i]) for i in idx], dtype=x.dtype, device=x.device)
        if not bool(theta_deg.abs().gt(0).any()):
            return x
        t = theta_deg * (math.pi / 180.0)
        cos, sin, zero = torch.cos(t), torch.sin(t), torch.zeros_like(t)
        affine = torch.stack([torch.stack([cos, -sin, zero], 1),
                              torch.stack([sin, cos, zero], 1)], 1)  # [B, 2, 3]
        grid = F.affine_grid(affine, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return transform


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply `transforms` in order."""
    transforms = list(transforms)

    def transform(x: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            x = t(x)
        return x

    return transform


def standard_transforms() -> list[Transform]:
    """Lucid's standard set: pad 12, jitter 8, scale 0.9-1.1, rotate ±10°, jitter 4."""
    return [
        pad(12, mode="constant", value=0.5),
        jitter(8),
        random_scale([1 + (i - 5) / 50 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    ]


STANDARD_TRANSFORMS = "pad(12) jitter(8) scale(0.9..1.1) rotate(±10°) jitter(4)"
