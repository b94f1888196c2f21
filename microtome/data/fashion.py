"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package: `load_fashion_mnist(split) ->
(images [N, 28, 28] uint8, labels [N] int64)`, and `FashionMnistDataset(split)`, whose items are
those gray images as RGB with a 2-pixel black border (32 x 32).

The border fits the standard view: its centre crop keeps 224/256 = 28/32 of the short side, so
at any size it cuts the border and (up to the rounding of `resize_size`) nothing of the garment:
`view(open(i), S)` is about the 28 x 28 image resized to S x S. The files are gzip'd IDX
(the MNIST format), read with numpy alone.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from microtome.data.datasets import Dataset
from microtome.errors import MicrotomeError

APT_PACKAGE = "dataset-fashion-mnist"
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts it
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
BORDER = 2  # pixels of black around each 28 x 28 image: 28 + 2 * 2 = 32, and 28 / 32 = 224 / 256

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip'd when its name ends in .gz) as an array of its declared shape and type.

    Layout: two zero bytes, a type code, the number of dimensions, each dimension as a
    big-endian uint32, then the values, big-endian."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise MicrotomeError(f"cannot read IDX file {str(path)!r}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise MicrotomeError(f"{str(path)!r} is not an IDX file: it should start with two zero "
                             "bytes and a type code (0x08 for unsigned bytes)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], ">u4"))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise MicrotomeError(f"IDX file {str(path)!r} has {len(data)} bytes; its header "
                             f"(shape {shape}, {dtype.name}) says {expected}: truncated or corrupt")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "test", root: str | Path | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """`(images [N, 28, 28] uint8, labels [N] int64)` of the train (60k) or test (10k) split.

    `root` is the folder of the four .gz files; by default Debian's, from `apt-get install
    dataset-fashion-mnist`."""
    if split not in FILES:
        raise MicrotomeError(f"no Fashion-MNIST split {split!r}; valid: {', '.join(FILES)}")
    folder = Path(root).expanduser() if root is not None else DEFAULT_ROOT
    paths = [folder / name for name in FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        install = (f"install Debian's package: apt-get install {APT_PACKAGE}" if root is None
                   else "pass the folder that holds them")
        raise MicrotomeError(f"Fashion-MNIST files missing in {str(folder)!r}: "
                             f"{', '.join(missing)}; {install}")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise MicrotomeError(f"Fashion-MNIST {split} files in {str(folder)!r} do not match: "
                             f"images {images.shape}, labels {labels.shape} (want [N, H, W], [N])")
    if labels.size and not 0 <= labels.min() <= labels.max() < len(CLASS_NAMES):
        raise MicrotomeError(f"Fashion-MNIST {split} labels in {str(folder)!r} run from "
                             f"{labels.min()} to {labels.max()}; want 0..{len(CLASS_NAMES) - 1}")
    return images.astype(np.uint8), labels.astype(np.int64)


class FashionMnistDataset(Dataset):
    """One split of Fashion-MNIST; item i is image i as RGB, 32 x 32 with a black border.

    `paths` are names like "test/00042" (split / index), `labels` the class indices."""

    def __init__(self, split: str = "test", root: str | Path | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        self.images, labels = load_fashion_mnist(split, root)  # [N, 28, 28] uint8, [N]
        self.split = split
        self.name = name or ("fashion_mnist" if split == "test" else f"fashion_mnist_{split}")
        self.root = Path(root).expanduser() if root is not None else DEFAULT_ROOT
        width = len(str(max(len(labels) - 1, 0)))
        self.paths = [f"{split}/{i:0{max(width, 5)}d}" for i in range(len(labels))]
        self.labels = [int(label) for label in labels]
        self.class_names = CLASS_NAMES

    def open(self, index: int, min_side: int | None = None) -> Image.Image:
        gray = np.pad(self.images[index], BORDER)  # [32, 32] uint8, black border
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))  # [32, 32, 3]
