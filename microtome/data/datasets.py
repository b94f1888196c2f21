"""Datasets of images for dataset examples: `Dataset.batches(size, batch_size) -> Batch`s of
`images [B, 3, size, size]` RGB in [0, 1] with their dataset `indices [B]`.

Every image goes through the same view: short side resized to round(size * 256 / 224), then a
centre crop of size x size (the standard ImageNet evaluation view). Unreadable files are
skipped, recorded in `dataset.skipped` as (path, reason) and reported once a pass ends; they
never stop a pass. Decoding runs in one background thread so it overlaps the model.

`get_dataset("samples" | "folder:PATH" | a registered name) -> Dataset`.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from microtome.errors import MicrotomeError


@dataclass
class Batch:
    """Images `[B, 3, size, size]` in [0, 1] and their dataset indices `[B]` (int64).

    B may be smaller than the batch size asked for: the last batch, or skipped files."""

    indices: torch.Tensor
    images: torch.Tensor


def resize_size(size: int) -> int:
    """The short side an image is resized to before the centre crop of `size`."""
    return round(size * 256 / 224)


def view(image: Image.Image, size: int) -> torch.Tensor:
    """A PIL image -> the model's view `[3, size, size]` in [0, 1]: resize short side, centre crop."""
    image = TF.resize(image.convert("RGB"), resize_size(size),
                      interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.to_tensor(TF.center_crop(image, [size, size]))  # [3, size, size]


class Dataset:
    """A sequence of images with optional class labels.

    Subclasses set `name`, `root` (a folder, or None), `paths` (relative to root, or names),
    `labels` (per item a class index or None), `class_names`, and implement `open(index)`."""

    name: str
    root: Path | None
    paths: list[str]
    labels: list[int | None]
    class_names: tuple[str, ...]

    def __init__(self) -> None:
        self._skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self)} images>"

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be read, over all passes so far."""
        return sorted(self._skipped.items())

    def open(self, index: int, min_side: int | None = None) -> Image.Image:
        """The image at `index`, decoded (any mode); raises on an unreadable file.

        `min_side` is a hint: the caller needs at least that many pixels on the short side,
        so a loader may decode at a reduced scale."""
        raise NotImplementedError

    def label_name(self, index: int) -> str | None:
        label = self.labels[index]
        if label is None or label >= len(self.class_names):
            return None
        return self.class_names[label]

    def _read(self, index: int, size: int) -> torch.Tensor | None:
        """`[3, size, size]`, or None (and the file recorded as skipped) when unreadable."""
        try:
            image = view(self.open(index, resize_size(size)), size)
        except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable file"
            self._skipped[self.paths[index]] = f"{type(exc).__name__}: {exc}"
            return None
        self._skipped.pop(self.paths[index], None)  # readable now (the file was replaced)
        return image

    def load(self, index: int, size: int) -> torch.Tensor:
        """One image's view `[3, size, size]` in [0, 1]; an unreadable file is a MicrotomeError."""
        if not 0 <= index < len(self):
            raise MicrotomeError(f"image index {index} out of range: {self.name} has "
                                 f"{len(self)} images (0..{len(self) - 1})")
        image = self._read(index, size)
        if image is None:
            raise MicrotomeError(f"cannot read image {self.paths[index]!r} of {self.name}: "
                                 f"{self._skipped[self.paths[index]]}")
        return image

    def batches(self, size: int, batch_size: int, indices: Sequence[int] | None = None
                ) -> Iterator[Batch]:
        """Batches over all images (or `indices`, in that order), decoded one batch ahead
        in a background thread. Skipped files are warned about once the pass ends."""
        if batch_size < 1 or size < 1:
            raise MicrotomeError(f"batch size and image size must be positive, got "
                                 f"batch_size={batch_size}, size={size}")
        order = list(range(len(self))) if indices is None else [int(i) for i in indices]
        outside = [i for i in order if not 0 <= i < len(self)]
        if outside:
            raise MicrotomeError(f"image index {outside[0]} out of range: {self.name} has "
                                 f"{len(self)} images (0..{len(self) - 1})")
        groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        new: list[str] = []  # paths skipped in this pass
        yield from _prefetch(lambda group: self._decode(group, size, new), groups)
        if new:
            shown = "; ".join(f"{p} ({self._skipped[p]})" for p in new[:5])
            warnings.warn(f"{self.name}: skipped {len(new)} unreadable of {len(order)} images: "
                          f"{shown}{' ...' if len(new) > 5 else ''}", stacklevel=2)

    def _decode(self, group: list[int], size: int, skipped: list[str]) -> Batch | None:
        kept, images = [], []
        for index in group:
            image = self._read(index, size)
            if image is None:
                skipped.append(self.paths[index])
            else:
                kept.append(index)
                images.append(image)
        if not kept:
            return None
        return Batch(torch.tensor(kept, dtype=torch.int64), torch.stack(images))  # [B, 3, S, S]


_DONE = object()


def _prefetch(work: Callable[[list[int]], Batch | None], groups: list[list[int]]
              ) -> Iterator[Batch]:
    """Yield `work(group)` for each group, computed one ahead in a daemon thread.

    PIL decodes and resizes without holding the GIL, so this overlaps the model's forward."""
    out: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for group in groups:
                if stop.is_set():
                    return
                batch = work(group)
                if batch is not None and not put(batch):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(exc)
            return
        put(_DONE)

    thread = threading.Thread(target=run, name="microtome-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# ---- samples: scikit-image's natural images ----------------------------------------------

# Natural photographs shipped inside scikit-image (no download). Grayscale ones are repeated
# into three channels. Left out: synthetic images (colorwheel, logo, checkerboard, ...),
# `cat` (the same photo as chelsea) and the ones scikit-image fetches with pooch.
SAMPLE_NAMES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
                "motorcycle_left", "motorcycle_right", "retina", "rocket",
                "brick", "camera", "clock", "coins", "grass", "gravel", "moon", "page", "text")


def _sample_array(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _disparity = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


class SamplesDataset(Dataset):
    """scikit-image's natural images; `paths` are their function names, e.g. "chelsea"."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "samples"
        self.root = None
        self.paths = list(SAMPLE_NAMES)
        self.labels = [None] * len(self.paths)
        self.class_names = ()

    def open(self, index: int, min_side: int | None = None) -> Image.Image:
        array = _sample_array(self.paths[index])  # [H, W] or [H, W, 3|4] uint8
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))
