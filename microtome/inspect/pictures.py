"""Pictures of an inspection: group maps `[K, H, W]` laid over the photo `[3, S, S]` in colours.

`overlay(photo, maps) -> [3, S, S]` in [0, 1]: each group in its own hue (the colours of
`sparse_channels_to_rgb`), brighter where its map is larger; the photo shows through, dimmed,
where no group is. `colour_hex(k)` gives the same colours for pages.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from microtome.optvis.reducer import group_colours, sparse_channels_to_rgb


def colour_hex(k: int) -> list[str]:
    """The display colour of each of `k` groups, `#rrggbb` (brightest channel at full)."""
    out = []
    for c in group_colours(k):
        c = c / max(float(c.max()), 1e-12)
        out.append("#" + "".join(f"{int(round(v * 255)):02x}" for v in c))
    return out


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """`[K, H, W] -> [K, size, size]`, bilinear (a layer's positions cover the photo evenly)."""
    t = torch.as_tensor(maps, dtype=torch.float32)[None]  # [1, K, H, W]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()


def overlay(photo: torch.Tensor, maps: np.ndarray, scale: float | None = None,
            colours: np.ndarray | None = None) -> torch.Tensor:
    """The photo `[3, S, S]` with `maps` `[K, H, W]` (>= 0) coloured over it: `[3, S, S]`.

    `scale`: the map value shown at full strength (default: the largest); `colours` `[K, 3]`
    overrides the hues (e.g. one group alone in its colour among K)."""
    size = photo.shape[-1]
    up = np.clip(upsample(maps, size), 0, None).transpose(1, 2, 0)  # [S, S, K]
    scale = float(scale if scale is not None else up.max()) or 1.0
    if colours is None:
        rgb = sparse_channels_to_rgb(up)  # [S, S, 3], norm = the maps' norm
    else:
        rgb = up @ colours
    strength = np.clip(np.linalg.norm(up, axis=-1, keepdims=True) / scale, 0, 1)  # [S, S, 1]
    hue = rgb / np.maximum(rgb.max(-1, keepdims=True), 1e-12)  # brightest channel at 1
    base = photo.detach().float().cpu().numpy().transpose(1, 2, 0) * 0.35  # [S, S, 3], dimmed
    alpha = 0.85 * strength
    out = base * (1 - alpha) + hue * alpha
    return torch.as_tensor(out.transpose(2, 0, 1).copy(), dtype=torch.float32).clamp(0, 1)


def single_overlay(photo: torch.Tensor, maps: np.ndarray, k: int) -> torch.Tensor:
    """Group k's map alone over the photo, in group k's colour, at its own full strength."""
    colours = group_colours(maps.shape[0])[k: k + 1]  # [1, 3]
    return overlay(photo, maps[k: k + 1], colours=colours)
