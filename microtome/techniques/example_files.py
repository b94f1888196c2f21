"""The files of dataset examples, each encoded once: photos' views and crops, and heat maps.

`encode_box(pixels [S, S, 3] uint8, box) -> (extension, bytes)`: the box (top, left, bottom,
right) of a photo's view (`pixels(image [3, S, S])`), as an exact PNG when small (receptive
fields of early layers: `own_file`; larger crops are shown as regions of the view) and as a
JPEG above (the whole view) (a photo: 0.15 ms and 9 KB at 224 px, where PIL's
PNG takes 12 ms and 45 KB).
`heat_rgba(maps [R, H, W], scales [R]) -> [R, H, W, 4]`: RGBA at the layer's resolution whose
colour (inferno) and opacity both grow with activation / scale, clipped to [0, 1];
`heat_sprite([R, H, W, 4]) -> (PNG bytes, layout)`: one unit's maps as tiles of one PNG
(`sprite_tile` cuts one out again). PNGs are written by `png` (zlib, no filter): ~20 us where
PIL's `save` costs ~300 us of overhead.
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


def own_file(box: tuple[int, int, int, int], size: int) -> bool:
    """Whether a crop `box` of a `size` x `size` view is a file of its own: an exact PNG of a
    small box (early layers' fields: magnified, where JPEG's blocks would show). A larger crop
    is the region `box` of the whole view's JPEG, which the page shows through CSS: one file
    per photo rather than one per (photo, box), ~18,000 fewer JPEGs for lite0 at 1000 photos."""
    top, left, bottom, right = box
    return (bottom - top) * (right - left) <= PNG_MAX_PIXELS and box != (0, 0, size, size)


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
    0.15 + 0.85 * level (float32, then rounded in float64)."""
    level = (maps.float() / scales.float()[:, None, None]).clamp(0, 1)  # [R, H, W] float32
    return _colour(level, table).numpy()


def _colour(level: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """Levels `[...]` in [0, 1] (float32) -> RGBA `[..., 4]` uint8."""
    index = (level * _LEVELS).to(torch.int64).clamp_(0, _LEVELS - 1)  # floor: levels >= 0
    rgba = torch.empty((*level.shape, 4), dtype=torch.uint8)
    rgba[..., :3] = torch.from_numpy(table)[index]
    rgba[..., 3] = ((level * 0.85 + 0.15).double() * 255 + 0.5).to(torch.uint8)
    return rgba


_HALVES = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16).view(torch.float16)


def heat_rgba_half(maps: torch.Tensor, scale: float, table: np.ndarray) -> np.ndarray:
    """`heat_rgba` of float16 `maps [R, H, W]` sharing one `scale`, through a table of the
    colour of every float16 value (65,536): equal output, several times faster when the maps
    hold more pixels than that (a 112 x 112 layer's 32 maps: 400,000)."""
    if maps.dtype != torch.float16:
        raise TypeError(f"heat_rgba_half takes float16 maps, got {maps.dtype}")
    level = (_HALVES.float() / torch.tensor(scale, dtype=torch.float32)).clamp(0, 1)  # [65536]
    colours = _colour(level, table).view(torch.int32).squeeze(1)  # [65536] RGBA as one int32
    index = maps.view(torch.int16).to(torch.int32) + (1 << 15)  # [R, H, W] bit patterns, 0..65535
    return colours[index.long()].unsqueeze(-1).view(torch.uint8).numpy()  # [R, H, W, 4]


SPRITE_PAD = 1  # each tile's edge pixels repeated around it: scaled smoothly, no tile bleeds
SPRITE_COLUMNS = 8
HEAT_PNG_LEVEL = 1  # zlib level of sprites: 3.7x faster than 6 over lite0's real maps, +12% bytes


def heat_sprite(rgba: np.ndarray, level: int = HEAT_PNG_LEVEL) -> tuple[bytes, dict]:
    """One unit's heat maps `[R, H, W, 4]` as ONE PNG: tiles of `[H + 2 pad, W + 2 pad]` (edges
    repeated) in rows of `SPRITE_COLUMNS`, and its layout `{tiles, columns, tile: [H, W], pad}`
    for `sprite_tile` and for the page's CSS. A file per unit where a file per map cost ~17
    file creations per unit."""
    count, height, width, _ = rgba.shape
    columns = max(1, min(count, SPRITE_COLUMNS))
    rows = -(-count // columns)
    pad = SPRITE_PAD
    tiles = np.zeros((rows * columns, height + 2 * pad, width + 2 * pad, 4), dtype=np.uint8)
    tiles[:count] = np.pad(rgba, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    sheet = tiles.reshape(rows, columns, height + 2 * pad, width + 2 * pad, 4).transpose(0, 2, 1, 3, 4)
    image = sheet.reshape(rows * (height + 2 * pad), columns * (width + 2 * pad), 4)
    return png(image, level), {"tiles": count, "columns": columns, "tile": [height, width], "pad": pad}


def sprite_tile(sheet: np.ndarray, layout: dict, index: int) -> np.ndarray:
    """Tile `index` `[H, W, C]` of a decoded sprite `sheet` laid out as `layout` (`heat_sprite`)."""
    if not 0 <= index < layout["tiles"]:
        raise IndexError(f"tile {index} of a sprite of {layout['tiles']} tiles")
    (height, width), pad = layout["tile"], layout["pad"]
    row, column = divmod(index, layout["columns"])
    top, left = row * (height + 2 * pad) + pad, column * (width + 2 * pad) + pad
    return sheet[top:top + height, left:left + width]
