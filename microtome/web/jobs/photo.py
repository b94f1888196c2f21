"""Search by photo on the server: `decode(bytes) -> PIL image`, `PhotoSearcher().search(models, image) -> {M: result}`.

`decode` reads an uploaded photo from memory and refuses what is not an image (415) and
decompression bombs (413: the pixel count is read from the header, before any pixel is
decoded). `PhotoSearcher` runs `microtome.techniques.photo_search.search_photo` (torch,
imported on the first search only) for each built model, one search at a time: a search
that finds another running waits for it a few seconds (`busy.BusySlot`: a search takes about
0.1 s once its model is loaded), and only then is answered with `errors.Busy` (503,
`retry_after`). Models come from the app's `pipeline.models.ModelService` (loaded once, with
the store's SAEs as they are now). The photo lives in memory only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from microtome.errors import Busy, MicrotomeError
from microtome.pipeline.models import ModelService
from microtome.web.jobs.busy import WAIT_S, BusySlot

MAX_PIXELS = 36_000_000  # 6000 x 6000; decoded RGB that is ~108 MB
DECODE_SIZE = 512  # JPEGs are decoded at a reduced scale no smaller than this (the models see <= 300 px)
THREADS = 1  # torch threads for a search: the other core keeps serving pages
Histograms = Mapping[str, Mapping[int, tuple[list[float], list[float]]]]  # layer -> unit -> (edges, counts)
# (model id, weights, image, histograms, top) -> {"predictions", "layers"}
SearchFn = Callable[[str, str, Image.Image, Histograms, int], dict[str, Any]]


def decode(data: bytes) -> Image.Image:
    """The photo in `data` as an RGB image; 415 if it is not a decodable image, 413 if too many pixels."""
    if not data:
        raise MicrotomeError("no photo: send an image file in the form field 'image'", status=400)
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _bomb(width, height)
        image.draft("RGB", (DECODE_SIZE, DECODE_SIZE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")  # a phone photo the right way up
    except MicrotomeError:  # our own (too many pixels, 413), not a decoding error
        raise
    except Image.DecompressionBombError as exc:
        raise MicrotomeError(f"the image has too many pixels to decode safely ({exc})", status=413) from None
    except UnidentifiedImageError:
        raise MicrotomeError("the upload is not an image in a format that can be read (PNG, JPEG, GIF, WebP, "
                             "BMP, TIFF...)", status=415) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MicrotomeError(f"the upload is not an image that can be decoded (PNG, JPEG, GIF, WebP...): "
                             f"{type(exc).__name__}: {exc}", status=415) from None


def _bomb(width: int, height: int) -> MicrotomeError:
    return MicrotomeError(f"the image is {width}\u00d7{height} pixels; at most {MAX_PIXELS:,} pixels "
                          f"are accepted (a smaller photo finds the same units)", status=413)


def torch_search(models: ModelService) -> SearchFn:
    """The real search: each model from `models` (with the store's SAEs attached, so dictionary
    layers are searched too), run with THREADS threads."""
    def run(model: str, weights: str, image: Image.Image, histograms: Histograms, top: int) -> dict[str, Any]:
        from microtome.runtime import torch_threads
        from microtome.techniques.photo_search import search_photo

        loaded = models.get(model, weights, "cpu")
        with torch_threads(THREADS):
            return search_photo(loaded.model, loaded.spec, image, histograms, top=top)
    return run


def _busy(retry_after: int) -> Busy:
    return Busy(f"another photo is being searched; try again in about {retry_after} s", retry_after=retry_after)


@dataclass
class PhotoSearcher:
    """One search at a time over a cache of loaded models; `run` is the search of one model;
    `wait_s`: how long a search waits for a running one before it is refused; `mean_s`: the
    expected duration of a search until some have run."""

    run: SearchFn | None = None
    top: int = 8
    models: ModelService | None = None  # where models come from (None: a service of its own, no store)
    wait_s: float = WAIT_S
    mean_s: float = 2.0
    _slot: BusySlot = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.run is None:
            self.run = torch_search(self.models or ModelService())
        self._slot = BusySlot(_busy, wait_s=self.wait_s, mean_s=self.mean_s)

    def search(self, models: Mapping[str, tuple[str, Histograms]], image: Image.Image) -> dict[str, dict[str, Any]]:
        """{model: {"predictions", "layers"}} for each `model: (weights, histograms)`; Busy if
        another search holds the slot past the wait."""
        assert self.run is not None
        out: dict[str, dict[str, Any]] = {}
        with self._slot.hold():
            for m, (weights, hists) in models.items():
                try:
                    out[m] = self.run(m, weights, image, hists, self.top)
                except MicrotomeError as exc:  # one model that cannot load must not hide the others
                    out[m] = {"predictions": [], "layers": {}, "error": exc.message}
        return out
