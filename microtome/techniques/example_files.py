"""The files of dataset examples, each encoded once: photos' views and crops, and heat maps.

`encode_box(pixels [S, S, 3] uint8, box) -> (extension, bytes)`: the box (top, left, bottom,
right) of a photo's view (`pixels(image [3, S, S])`), as an exact PNG when small (receptive
fields of early layers) and as a JPEG above (a photo: 0.15 ms and 9 KB at 224 px, where PIL's
PNG takes 12 ms and 45 KB).
`heat_pngs(maps [R, H, W], scales [R]) -> [bytes] * R`: RGBA PNGs at the layer's resolution
whose colour (inferno) and opacity both grow with activation / scale, clipped to [0, 1].
Small PNGs are written by `png` (zlib, no filter): ~20 us where PIL's `save` costs ~300 us of
overhead, which at 32 heat maps per unit would be most of a unit's fixed cost.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import torch
from PIL import Image

PNG_MAX_PIXELS = 48 * 48  # crops up to this size stay lossless
JPEG_QUALITY = 90
_LEVELS = 256  # matplotlib's colormap resolution


def pixels(images: torch.Tensor) -> np.ndarray:
    """`[..., 3, S, S]` in [0, 1] -> `[..., S, S, 3]` uint8, rounded as `images.to_pil` does."""
    return (images.float().clamp(0, 1).movedim(-3, -1).numpy() * 255 + 0.5).astype(np.uint8)


def encode_box(view: np.ndarray, box: tuple[int, int, int, int]) -> tuple[str, bytes]:
    """`view [S, S, 3]` uint8 cropped to `box` -> (".png" or ".jpg", file bytes)."""
    top, left, bottom, right = box
    crop = view[top:bottom, left:right]  # [h, w, 3]
    if crop.shape[0] * crop.shape[1] <= PNG_MAX_PIXELS:
        return ".png", png(crop)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return ".jpg", buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png(image: np.ndarray, level: int = 6) -> bytes:
    """`[H, W, 3]` (RGB) or `[H, W, 4]` (RGBA) uint8 -> PNG file bytes (8 bits, no filter)."""
    height, width, channels = image.shape
    rows = np.zeros((height, width * channels + 1), dtype=np.uint8)  # filter byte 0, then pixels
    rows[:, 1:] = image.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if channels == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))


def inferno() -> np.ndarray:
    """matplotlib's inferno colour table `[256, 3]` as uint8 (rounded as an image would be)."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.arange(_LEVELS))[:, :3] * 255 + 0.5).astype(np.uint8)


def heat_rgba(maps: torch.Tensor, scales: torch.Tensor, table: np.ndarray) -> np.ndarray:
    """`maps [R, H, W]`, `scales [R]` -> RGBA `[R, H, W, 4]` uint8, as matplotlib would colour
    each level (table index floor(level * 256), the top level clipped) with opacity
    0.15 + 0.85 * level. Built in uint8: a float RGBA image of a 112 x 112 layer's maps would
    be 8x the memory traffic."""
    level = (maps.float() / scales.float()[:, None, None]).clamp(0, 1).numpy()  # [R, H, W]
    rgba = np.empty((*level.shape, 4), dtype=np.uint8)
    rgba[..., :3] = table[np.minimum((level * _LEVELS).astype(np.int32), _LEVELS - 1)]
    alpha = (0.15 + 0.85 * level).astype(np.float64)  # float32 math, then rounded as before
    rgba[..., 3] = (alpha * 255 + 0.5).astype(np.uint8)
    return rgba


def heat_pngs(maps: torch.Tensor, scales: torch.Tensor, table: np.ndarray) -> list[bytes]:
    """One RGBA PNG per map `[R, H, W]`, coloured in one batch (see `heat_rgba`). Maps with
    nothing above zero (common in bottom lists: ReLU) all look the same and are encoded once."""
    if len(maps) == 0:
        return []
    blank = maps.flatten(1).amax(dim=1) <= 0  # [R]
    drawn = (~blank).nonzero().squeeze(1).tolist() + blank.nonzero()[:1].squeeze(1).tolist()
    level = 1 if maps.shape[-1] * maps.shape[-2] >= 56 * 56 else 6  # big maps: 3x faster, +8% bytes
    pngs = dict(zip(drawn, (png(rgba, level) for rgba in heat_rgba(maps[drawn], scales[drawn], table))))
    first_blank = drawn[-1] if bool(blank.any()) else None
    return [pngs[first_blank if bool(b) else r] for r, b in enumerate(blank.tolist())]
