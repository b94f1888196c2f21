"""Image helpers shared by every stage: tensors `[N, 3, H, W]` in [0, 1] to PIL images and files.

Files are written atomically (temp file, then rename), so a failed run leaves no half image.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_pil(image: torch.Tensor | np.ndarray) -> Image.Image:
    """One image, a tensor `[3, H, W]`/`[H, W]` in [0, 1] or an array `[H, W, 3]`, as PIL RGB/L."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().clamp(0, 1)
        if image.dim() == 3:
            image = image.permute(1, 2, 0)
        image = image.numpy()
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(image)


def png_bytes(image: torch.Tensor | np.ndarray | Image.Image) -> bytes:
    """PNG file contents of one image."""
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def grid(images: torch.Tensor, columns: int | None = None, labels: Sequence[str] = (),
         gap: int = 2) -> Image.Image:
    """Tile `[N, 3, H, W]` into rows of `columns` (default: one row) on white, with an optional
    caption under each tile."""
    n, _, h, w = images.shape
    columns = columns or n
    rows = (n + columns - 1) // columns
    caption = 14 if labels else 0
    sheet = Image.new("RGB", (columns * (w + gap) - gap, rows * (h + caption + gap) - gap), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x, y = (i % columns) * (w + gap), (i // columns) * (h + caption + gap)
        sheet.paste(to_pil(images[i]), (x, y))
        if labels:
            draw.text((x + 2, y + h + 1), labels[i], fill="black")
    return sheet


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
