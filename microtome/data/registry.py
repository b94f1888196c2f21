"""The dataset registry: `get_dataset("samples" | "folder:PATH" | a registered name) -> Dataset`.

Registered names are `() -> Dataset` factories added with `@register_dataset` (as the model
registry's, the one module-level table, filled by decorators at import and never mutated
afterwards); `folder:PATH` opens any image folder.
"""

from __future__ import annotations

from collections.abc import Callable

from microtome.data.datasets import Dataset, SamplesDataset
from microtome.data.fashion import FashionMnistDataset
from microtome.data.folder import FolderDataset
from microtome.errors import unknown

_REGISTRY: dict[str, Callable[[], Dataset]] = {}
FOLDER_PREFIX = "folder:"


def register_dataset(factory: Callable[[], Dataset]) -> Callable[[], Dataset]:
    """Register a `() -> Dataset` under its function's name; a duplicate name is an error."""
    name = factory.__name__
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is registered twice")
    _REGISTRY[name] = factory
    return factory


def list_datasets() -> list[str]:
    """Registered dataset names, plus the `folder:PATH` form."""
    return list(_REGISTRY) + [FOLDER_PREFIX + "PATH"]


def get_dataset(name: str) -> Dataset:
    """The dataset called `name`: a registered name or `folder:PATH`."""
    if name.startswith(FOLDER_PREFIX):
        return FolderDataset(name[len(FOLDER_PREFIX):], name=name)
    if name not in _REGISTRY:
        raise unknown("dataset", name, list_datasets(),
                      hint="use folder:PATH for any folder of images")
    return _REGISTRY[name]()


@register_dataset
def samples() -> Dataset:
    """scikit-image's natural photos (offline): the default dataset."""
    return SamplesDataset()


@register_dataset
def fashion_mnist() -> Dataset:
    """Fashion-MNIST's test split (10,000 labelled gray images of 10 garments, shown as RGB);
    from Debian's package dataset-fashion-mnist."""
    return FashionMnistDataset("test")
