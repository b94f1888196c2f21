"""`folder:PATH`: every image under a folder (recursive, sorted paths), with class labels from
a `labels.tsv` in the root or else from the first level of sub-folders.

labels.tsv: tab-separated with a header; a `file` column (path relative to the root) and a class
column: `class_index` (integers, names from `class_name` if present), or else one of
`class_name`, `class`, `label`, `wnid` (names; indices follow their sorted order). The
layout `file  wnid  class_index  class_name` of ImageNet samples is read as indices + names.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from microtome.data.datasets import Dataset
from microtome.errors import MicrotomeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABELS_FILE = "labels.tsv"
NAME_COLUMNS = ("class_name", "class", "label", "wnid")


def find_images(root: Path) -> list[str]:
    """Image files under `root`, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_labels_tsv(path: Path) -> tuple[dict[str, int], tuple[str, ...]]:
    """`({relative file: class index}, class names)` from a labels.tsv (see the module doc)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            rows = list(reader)
            columns = [(c or "").strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MicrotomeError(f"cannot read {path}: {exc}") from exc
    if not rows:
        return {}, ()
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]
    if "file" not in columns:
        raise MicrotomeError(f"{path} has columns {columns}; it needs a header with a 'file' "
                             f"column and a class column (class_index or {', '.join(NAME_COLUMNS)})")
    name_col = next((c for c in NAME_COLUMNS if c in columns), None)
    if "class_index" in columns:
        labels: dict[str, int] = {}
        names: dict[int, str] = {}
        for line, row in enumerate(rows, start=2):
            try:
                index = int(row["class_index"])
            except ValueError:
                raise MicrotomeError(f"{path}, line {line}: class_index {row['class_index']!r} "
                                     "is not an integer") from None
            if index < 0:
                raise MicrotomeError(f"{path}, line {line}: class_index {index} is negative")
            labels[_norm(row["file"])] = index
            if name_col and "class_name" in columns:
                names.setdefault(index, row["class_name"])
            elif name_col:
                names.setdefault(index, row[name_col])
        top = max(labels.values(), default=-1)
        return labels, tuple(names.get(i, str(i)) for i in range(top + 1))
    if name_col is None:
        raise MicrotomeError(f"{path} has columns {columns}; it needs a class column: "
                             f"class_index or one of {', '.join(NAME_COLUMNS)}")
    class_names = tuple(sorted({row[name_col] for row in rows}))
    index_of = {name: i for i, name in enumerate(class_names)}
    return {_norm(row["file"]): index_of[row[name_col]] for row in rows}, class_names


def _norm(path: str) -> str:
    return Path(path.replace("\\", "/")).as_posix()


class FolderDataset(Dataset):
    """All images under `root`; `paths` relative to it, in sorted order."""

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        super().__init__()
        given = Path(root).expanduser()
        self.name = name or f"folder:{root}"
        if not given.is_dir():
            raise MicrotomeError(f"dataset folder {str(given)!r} does not exist or is not a "
                                 "folder; pass folder:PATH with an existing folder of images")
        self.root = given.resolve()
        self.paths = find_images(self.root)
        if not self.paths:
            raise MicrotomeError(f"dataset folder {str(given)!r} has no images (looked for "
                                 f"{', '.join(IMAGE_SUFFIXES)} files, recursively)")
        tsv = self.root / LABELS_FILE
        if tsv.is_file():
            by_file, self.class_names = read_labels_tsv(tsv)
            self.labels = [by_file.get(p) for p in self.paths]
            self.label_source = LABELS_FILE
        else:
            folders = sorted({p.split("/")[0] for p in self.paths if "/" in p})
            self.class_names = tuple(folders)
            index_of = {name: i for i, name in enumerate(folders)}
            self.labels = [index_of[p.split("/")[0]] if "/" in p else None for p in self.paths]
            self.label_source = "sub-folders" if folders else None

    def open(self, index: int, min_side: int | None = None) -> Image.Image:
        with Image.open(self.root / self.paths[index]) as image:
            if min_side and image.format == "JPEG":
                # Decode at a reduced DCT scale, still at least twice the short side needed.
                image.draft("RGB", (2 * min_side, 2 * min_side))
            image.load()
        return image
