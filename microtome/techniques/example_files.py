"""The files of dataset examples, each encoded once: photos' views and crops, and heat maps.

`encode_box(image [3, S, S], box) -> (extension, bytes)`: the box (top, left, bottom, right) of
a photo's view, as an exact PNG when small (receptive fields of early layers) and as a JPEG
above (a photo: 0.15 ms and 9 KB at 224 px, where PNG takes 12 ms and 45 KB).
`heat_pngs(maps [R, H, W], scales [R]) -> [bytes] * R`: RGBA PNGs at the layer's resolution
whose colour (inferno) and opacity both grow with activation / scale, clipped to [0, 1].
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

PNG_MAX_PIXELS = 48 * 48  # crops up to this size stay lossless
JPEG_QUALITY = 90
_LEVELS = 256  # matplotlib's colormap resolution


def encode_box(image: torch.Tensor, box: tuple[int, int, int, int]) -> tuple[str, bytes]:
    """`image [3, S, S]` in [0, 1], cropped to `box` -> (".png" or ".jpg", file bytes)."""
    top, left, bottom, right = box
    crop = image[:, top:bottom, left:right].clamp(0, 1).permute(1, 2, 0)  # [h, w, 3]
    pil = Image.fromarray((crop.numpy() * 255 + 0.5).astype(np.uint8))
    buf = io.BytesIO()
    if (bottom - top) * (right - left) <= PNG_MAX_PIXELS:
        pil.save(buf, format="PNG", compress_level=1)
        return ".png", buf.getvalue()
    pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return ".jpg", buf.getvalue()


def inferno() -> np.ndarray:
    """matplotlib's inferno colour table `[256, 3]` in [0, 1]."""
    from matplotlib import colormaps

    return colormaps["inferno"](np.arange(_LEVELS))[:, :3]


def heat_rgba(maps: torch.Tensor, scales: torch.Tensor, table: np.ndarray) -> np.ndarray:
    """`maps [R, H, W]`, `scales [R]` -> RGBA `[R, H, W, 4]` uint8, as matplotlib would colour
    each level (table index floor(level * 256), the top level clipped) with opacity
    0.15 + 0.85 * level."""
    level = (maps.float() / scales.float()[:, None, None]).clamp(0, 1).numpy()  # [R, H, W]
    index = np.minimum((level * _LEVELS).astype(np.int64), _LEVELS - 1)
    rgba = np.empty((*level.shape, 4), dtype=np.float64)
    rgba[..., :3] = table[index]
    rgba[..., 3] = 0.15 + 0.85 * level
    return (rgba * 255 + 0.5).astype(np.uint8)


def heat_pngs(maps: torch.Tensor, scales: torch.Tensor, table: np.ndarray) -> list[bytes]:
    """One RGBA PNG per map `[R, H, W]`, coloured in one batch (see `heat_rgba`)."""
    out = []
    for rgba in heat_rgba(maps, scales, table):
        buf = io.BytesIO()
        Image.fromarray(rgba).save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out
