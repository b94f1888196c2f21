"""Fashion-MNIST: IDX files read back to the bytes written, the dataset's 32 px RGB items, the
errors that name the Debian package; and the real files where they are installed (always on CI)."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from microtome.data import FashionMnistDataset, fashion, get_dataset, list_datasets, load_fashion_mnist, view
from microtome.data.fashion import CLASS_NAMES, read_idx
from microtome.errors import MicrotomeError

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    """The IDX format by its spec: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += np.array(array.shape, ">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def fake_split(folder, split: str = "test", n: int = 7, seed: int = 0):
    """Random 28 x 28 images and labels written as the package's files; returns them."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    image_file, label_file = fashion.FILES[split]
    write_idx(folder / image_file, images)
    write_idx(folder / label_file, labels)
    return images, labels


def test_idx_files_read_back_what_was_written(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for name, array, compress in [("a.gz", rng.integers(0, 256, (3, 5, 4), dtype=np.uint8), True),
                                  ("b.idx", rng.integers(-9, 9, (2, 3)).astype(np.int32), False),
                                  ("c.gz", rng.standard_normal(6).astype(np.float32), True)]:
        write_idx(tmp_path / name, array, compress)
        back = read_idx(tmp_path / name)
        assert back.shape == array.shape and back.dtype == array.dtype
        assert np.array_equal(back, array)


def test_bad_idx_files_are_errors_that_say_why(tmp_path) -> None:
    write_idx(tmp_path / "short.gz", np.zeros((4, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "short.gz").read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(MicrotomeError, match="truncated or corrupt"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"hello, not idx"))
    with pytest.raises(MicrotomeError, match="not an IDX file"):
        read_idx(tmp_path / "text.gz")
    (tmp_path / "plain.gz").write_bytes(b"\0\0\x08\x01 not gzip")
    with pytest.raises(MicrotomeError, match="cannot read IDX file"):
        read_idx(tmp_path / "plain.gz")


def test_load_returns_the_images_and_labels_written(tmp_path) -> None:
    images, labels = fake_split(tmp_path, "train", n=9)
    got_images, got_labels = load_fashion_mnist("train", root=tmp_path)
    assert got_images.dtype == np.uint8 and np.array_equal(got_images, images)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == labels.tolist()
    with pytest.raises(MicrotomeError, match="no Fashion-MNIST split 'val'; valid: train, test"):
        load_fashion_mnist("val", root=tmp_path)


def test_missing_files_name_the_debian_package(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fashion, "DEFAULT_ROOT", tmp_path / "nowhere")
    with pytest.raises(MicrotomeError, match="apt-get install dataset-fashion-mnist") as info:
        get_dataset("fashion_mnist")
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    with pytest.raises(MicrotomeError, match="pass the folder that holds them"):
        load_fashion_mnist("test", root=tmp_path)  # a folder the caller chose: no apt advice


def test_labels_out_of_range_are_an_error(tmp_path) -> None:
    fake_split(tmp_path)
    write_idx(tmp_path / fashion.FILES["test"][1], np.array([0, 1, 2, 3, 4, 5, 10], np.uint8))
    with pytest.raises(MicrotomeError, match="labels .* run from 0 to 10; want 0..9"):
        load_fashion_mnist("test", root=tmp_path)


def test_dataset_items_are_the_gray_images_as_rgb_with_a_black_border(tmp_path, monkeypatch) -> None:
    images, labels = fake_split(tmp_path)
    monkeypatch.setattr(fashion, "DEFAULT_ROOT", tmp_path)
    assert "fashion_mnist" in list_datasets()
    data = get_dataset("fashion_mnist")  # the test split
    assert isinstance(data, FashionMnistDataset) and data.name == "fashion_mnist"
    assert len(data) == 7 and data.paths[3] == "test/00003"
    assert data.labels == labels.tolist() and data.class_names == CLASS_NAMES
    assert data.label_name(0) == CLASS_NAMES[labels[0]]
    item = np.asarray(data.open(2))  # [32, 32, 3]
    assert item.shape == (32, 32, 3) and item.dtype == np.uint8
    assert np.array_equal(item[2:30, 2:30, 1], images[2])
    assert (item[:, :, 0] == item[:, :, 2]).all() and (item[:, :, 0] == item[:, :, 1]).all()
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (item[border] == 0).all()


def test_the_standard_view_crops_the_border_off(tmp_path) -> None:
    """At 224 the view resizes 32 -> 256 and crops 224: the garment scaled by 8 exactly, as a
    direct 28 -> 224 resize, except where bilinear blending reaches the black border."""
    images, _ = fake_split(tmp_path, n=2)
    data = FashionMnistDataset("test", root=tmp_path)
    for i in range(2):
        seen = view(data.open(i), 224)  # [3, 224, 224]
        direct = TF.to_tensor(TF.resize(Image.fromarray(images[i]), 224,
                                        interpolation=TF.InterpolationMode.BILINEAR))  # [1, 224, 224]
        assert seen.shape == (3, 224, 224)
        inner = (seen[:, 8:-8, 8:-8] - direct[:, 8:-8, 8:-8]).abs()
        assert inner.max() <= 1.5 / 255
        assert torch.equal(seen[0], seen[2])


needs_fashion = pytest.mark.skipif(
    not (fashion.DEFAULT_ROOT / fashion.FILES["test"][0]).is_file() and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)")


@needs_fashion
def test_the_real_test_split_has_1000_images_of_each_class() -> None:
    data = get_dataset("fashion_mnist")
    assert len(data) == 10_000 and data.class_names == CLASS_NAMES
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.load(0, 32).shape == (3, 32, 32)
    assert data.label_name(0) == "Ankle boot"  # the first test image of Fashion-MNIST


@needs_fashion
@pytest.mark.slow
def test_the_toy_vit_learns_fashion_mnist_in_seconds() -> None:
    from tests.toy_vit import accuracy, fashion_views, toy_vit, trained_toy_vit

    images, labels = fashion_views("test", 1000)
    assert accuracy(toy_vit(), images, labels) < 0.3  # chance is 0.1
    assert accuracy(trained_toy_vit(), images, labels) > 0.6
