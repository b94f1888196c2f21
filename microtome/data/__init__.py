"""Datasets: `get_dataset(name) -> Dataset`, whose `batches(size, batch_size)` yield `Batch`es of
`images [B, 3, size, size]` RGB in [0, 1] with their dataset `indices [B]`."""

from microtome.data.datasets import Batch, Dataset, SamplesDataset, resize_size, view
from microtome.data.fashion import FashionMnistDataset, load_fashion_mnist, read_idx
from microtome.data.folder import FolderDataset
from microtome.data.registry import get_dataset, list_datasets, register_dataset

__all__ = ["Batch", "Dataset", "FashionMnistDataset", "FolderDataset", "SamplesDataset", "get_dataset",
           "list_datasets", "load_fashion_mnist", "read_idx", "register_dataset", "resize_size",
           "view"]
