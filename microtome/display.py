"""Pictures for notebooks: `Figure(images, captions)` -> `_repr_png_` / `_repr_html_` (torch-free).

The plain IPython display protocol, no notebook dependency: an object with `_repr_png_` or
`_repr_html_` shows itself as the last line of a cell, and `IPython.display.display(x)` shows it
anywhere. A figure is a grid of images `[H, W, 3]` uint8, each with a caption under it; its PNG
draws the captions into the picture, its HTML puts them in `<figcaption>`s (a notebook shows the
HTML and keeps the PNG for exports). Results of the library display themselves through here:
`RenderResult` (`render_figure`: each objective's name and value under its image), `Objective`
(`objective_html`: its description and the layers it reads), `ChannelReducer` (`reducer_figure`:
the factors' maps over the last activations it transformed) and an inspection (`framed_html`
of the page `microtome inspect` writes). A leaf: it imports no other stage, which call it from
their `_repr_*_` methods (deferred imports, no cycle). Images go in as torch
tensors `[N, 3, H, W]` / `[3, H, W]` in [0, 1], numpy arrays `[N, H, W, 3]` / `[H, W, 3]` /
`[H, W]` (floats in [0, 1] or uint8), PIL images, PNG bytes, or a list of any of those.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

import numpy as np

from microtome.errors import MicrotomeError

MIN_TILE = 128  # px: smaller images are enlarged (nearest neighbour) to at least this width
MAX_COLUMNS = 8
CAPTION_LINE = 13  # px per caption line in the PNG
_STYLE = ("display:inline-block;margin:0 6px 8px 0;vertical-align:top;text-align:center;"
          "font:11px/1.3 system-ui,sans-serif")


# ---- images in ------------------------------------------------------------------------------
def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "cpu")  # a torch tensor, without importing torch


def _from_bytes(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    return (np.clip(np.nan_to_num(array.astype(np.float64)), 0, 1) * 255 + 0.5).astype(np.uint8)


def _rgb(array: np.ndarray, channels_first: bool) -> np.ndarray:
    """One image `[H, W]`, `[H, W, C]` (or `[C, H, W]` when `channels_first`) as `[H, W, 3]` uint8."""
    if array.ndim == 3 and channels_first:
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise MicrotomeError(f"an image must be [H, W], [H, W, 3] (or a tensor [3, H, W]); got shape "
                             f"{tuple(array.shape)}")
    array = _uint8(array[:, :, :3])
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else np.ascontiguousarray(array)


def as_images(images: Any) -> list[np.ndarray]:
    """Every image in `images` (see the module docstring) as `[H, W, 3]` uint8."""
    if isinstance(images, (bytes, bytearray)):
        return [_from_bytes(bytes(images))]
    if hasattr(images, "convert") and hasattr(images, "size"):  # a PIL image
        return [np.asarray(images.convert("RGB"))]
    if isinstance(images, (list, tuple)):
        return [im for item in images for im in as_images(item)]
    channels_first = _is_tensor(images)
    array = images.detach().float().cpu().numpy() if channels_first else np.asarray(images)
    if array.ndim == 4:  # a batch
        return [_rgb(a, channels_first or a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4))
                for a in array]
    return [_rgb(array, channels_first)]


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png(array: np.ndarray) -> bytes:
    """PNG file contents of one image `[H, W, 3]` uint8."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _enlarged(array: np.ndarray, width: int) -> np.ndarray:
    """`array` repeated by a whole factor so it is at least `width` wide (pixels stay sharp)."""
    factor = max(1, -(-width // max(array.shape[1], 1)))
    return array.repeat(factor, 0).repeat(factor, 1) if factor > 1 else array


# ---- the figure ------------------------------------------------------------------------------
class Figure:
    """Images in a captioned grid (rows of `columns`, default up to 8), shown by notebooks."""

    def __init__(self, images: Any, captions: Sequence[str] = (), title: str = "",
                 columns: int | None = None):
        self.images = as_images(images)
        if captions and len(captions) != len(self.images):
            raise MicrotomeError(f"{len(captions)} captions for {len(self.images)} images")
        self.captions = [str(c) for c in captions] or [""] * len(self.images)
        self.title = title
        self.columns = max(1, min(columns or MAX_COLUMNS, max(len(self.images), 1)))

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        sizes = sorted({f"{a.shape[1]}×{a.shape[0]}" for a in self.images})
        head = f"{self.title}: " if self.title else ""
        return f"<Figure {head}{len(self.images)} images ({', '.join(sizes)})>"

    def to_pil(self):
        """The grid as one PIL image, captions drawn under the tiles."""
        from PIL import Image, ImageDraw, ImageFont

        tiles = [_enlarged(a, MIN_TILE) for a in self.images]
        width = max((t.shape[1] for t in tiles), default=MIN_TILE)
        chars = max(8, width // 6)
        wrapped = [[w for line in c.split("\n") for w in textwrap.wrap(line, chars) or [""]]
                   if c else [] for c in self.captions]
        lines = max((len(w) for w in wrapped), default=0)
        cell_h = max((t.shape[0] for t in tiles), default=0) + lines * CAPTION_LINE + 6
        top = 18 if self.title else 0
        rows = -(-len(tiles) // self.columns)
        sheet = Image.new("RGB", (self.columns * (width + 6), top + rows * cell_h), "white")
        draw = ImageDraw.Draw(sheet)
        font = ImageFont.load_default()
        if self.title:
            draw.text((3, 3), self.title, fill="black", font=font)
        for i, (tile, text) in enumerate(zip(tiles, wrapped)):
            x, y = (i % self.columns) * (width + 6) + 3, top + (i // self.columns) * cell_h
            sheet.paste(Image.fromarray(tile), (x, y))
            for j, line in enumerate(text):
                draw.text((x, y + tile.shape[0] + 2 + j * CAPTION_LINE), line, fill="black", font=font)
        return sheet

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.to_pil().save(buf, format="PNG")
        return buf.getvalue()

    def html(self) -> str:
        cells = []
        for array, caption in zip(self.images, self.captions):
            shown = max(array.shape[1], MIN_TILE)
            lines = "<br>".join(escape(line) for line in caption.split("\n"))
            cells.append(f"<figure style='{_STYLE}'><img src='{data_url(png(array))}' width={shown} "
                         f"style='image-rendering:pixelated' alt='{escape(caption)}'>"
                         f"<figcaption style='max-width:{shown}px;overflow-wrap:anywhere'>{lines}"
                         "</figcaption></figure>")
        title = f"<div style='font-weight:600;margin-bottom:4px'>{escape(self.title)}</div>" if self.title else ""
        rows = ["".join(cells[i:i + self.columns]) for i in range(0, len(cells), self.columns)]
        return f"<div class='microtome-figure'>{title}{'<br>'.join(rows)}</div>"

    def save(self, path: str) -> None:
        """Write the grid as a PNG file."""
        with open(path, "wb") as fh:
            fh.write(self.png())

    def _repr_png_(self) -> bytes:
        return self.png()

    def _repr_html_(self) -> str:
        return self.html()


# ---- the library's results -------------------------------------------------------------------
def render_figure(result: Any) -> Figure:
    """A `RenderResult` as a figure: each image with its objective's name and final value."""
    values = [float(v) for v in result.values.detach().cpu().reshape(-1).tolist()]
    names = list(result.objectives) or [""] * len(values)
    captions = [f"{name}\n= {value:.4g}" if name else f"= {value:.4g}" for name, value in zip(names, values)]
    return Figure(result.images, captions)


def objective_html(objective: Any) -> str:
    """An objective's description and the layers it reads (it is maximized)."""
    layers = ", ".join(sorted(objective.layers)) or "no layer"
    return (f"<div class='microtome-objective'><code>{escape(objective.name)}</code> "
            f"<span style='color:#777'>(maximized; reads {escape(layers)})</span></div>")


def _heat(maps: np.ndarray) -> list[np.ndarray]:
    """Each map `[H, W]` of `[H, W, K]` as a grey picture scaled to its own maximum."""
    out = []
    for k in range(maps.shape[-1]):
        m = maps[..., k]
        top = float(np.abs(m).max())
        out.append(_rgb(np.abs(m) / top if top > 0 else np.zeros_like(m), False))
    return out


def reducer_figure(reducer: Any, last: Any | None, colour: Callable[[np.ndarray], np.ndarray] | None = None) -> Figure:
    """A fitted `ChannelReducer`'s factors over `last`, the activations `[..., H, W, K]` it gave
    back last (None: only fitted): each factor's map (first image of a batch), and all of them in one picture by
    `colour` (`[H, W, K] -> [H, W, 3]`) when they are non-negative (NMF); for flat activations,
    its components `[K, C]` (grey: 0)."""
    title = repr(reducer)
    array = last.detach().float().cpu().numpy() if _is_tensor(last) else np.asarray(last)
    if last is not None and array.ndim >= 3:  # [..., H, W, K]: maps over positions
        maps = array.reshape(-1, *array.shape[-3:])[0]  # [H, W, K]
        pictures, captions = _heat(maps), [f"factor {k}" for k in range(maps.shape[-1])]
        if colour is not None and (maps >= 0).all():
            rgb = colour(maps)
            pictures.insert(0, _rgb(rgb / max(float(rgb.max()), 1e-8), False))
            captions.insert(0, "all factors")
        return Figure(pictures, captions, title=f"{title} over {'×'.join(map(str, array.shape))}")
    components = np.asarray(reducer.components_)  # [K, C]
    top = float(np.abs(components).max()) or 1.0
    return Figure([components / top * 0.5 + 0.5], [f"components [{components.shape[0]}, "
                                                    f"{components.shape[1]}] (grey: 0)"], title=title)


def reducer_html(reducer: Any, fitted: bool, last: Any | None,
                 colour: Callable[[np.ndarray], np.ndarray] | None = None) -> str:
    if not fitted:
        return f"<div class='microtome-reducer'><code>{escape(repr(reducer))}</code>: not fitted</div>"
    return reducer_figure(reducer, last, colour).html()


def framed_html(page: str, title: str, height: int = 900) -> str:
    """A whole HTML page (an inspection's) in a frame, so its styles stay out of the notebook's."""
    return (f"<iframe srcdoc=\"{escape(page, quote=True)}\" style='width:100%;height:{height}px;"
            f"border:1px solid #ddd' title='{escape(title)}'></iframe>")
