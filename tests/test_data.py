"""Datasets: samples offline, image folders with labels.tsv or sub-folder labels, bad files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from microtome.data import FolderDataset, get_dataset, list_datasets, view
from microtome.errors import MicrotomeError, NotFound


def write_image(path, colour=(200, 30, 30), size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_samples_load_offline_as_rgb_views() -> None:
    data = get_dataset("samples")
    assert data.name == "samples" and data.root is None
    assert len(data) >= 15 and "chelsea" in data.paths and "astronaut" in data.paths
    assert data.labels == [None] * len(data) and data.class_names == ()
    camera = data.load(data.paths.index("camera"), 32)  # grayscale, repeated into RGB
    assert camera.shape == (3, 32, 32) and torch.equal(camera[0], camera[1])
    batch = next(data.batches(48, 4))
    assert batch.images.shape == (4, 3, 48, 48) and batch.indices.tolist() == [0, 1, 2, 3]
    assert 0 <= batch.images.min() and batch.images.max() <= 1


def test_view_resizes_short_side_then_centre_crops() -> None:
    image = np.zeros((60, 120, 3), np.uint8)
    image[:, 60:] = 255  # right half white
    out = view(Image.fromarray(image), 56)  # short side 60 -> 64, then a 56 x 56 centre crop
    assert out.shape == (3, 56, 56)
    assert out[:, :, :20].max() < 0.05 and out[:, :, -20:].min() > 0.95


def test_folder_with_imagenet_style_labels_tsv(tmp_path) -> None:
    for name in ("b.jpg", "a.png", "sub/c.webp", "sub/d.BMP", "notes.txt"):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            write_image(tmp_path / name)
    (tmp_path / "labels.tsv").write_text(
        "file\twnid\tclass_index\tclass_name\n"
        "a.png\tn01\t0\ttench\nb.jpg\tn02\t2\tgreat white shark\nsub/c.webp\tn02\t2\tgreat white shark\n")
    data = get_dataset(f"folder:{tmp_path}")
    assert data.name == f"folder:{tmp_path}" and data.root == tmp_path.resolve()
    assert data.paths == ["a.png", "b.jpg", "sub/c.webp", "sub/d.BMP"]
    assert data.labels == [0, 2, 2, None]  # d.BMP is not in labels.tsv
    assert data.class_names == ("tench", "1", "great white shark")
    assert data.label_name(1) == "great white shark" and data.label_name(3) is None


def test_folder_with_class_name_column_only(tmp_path) -> None:
    write_image(tmp_path / "x.png")
    write_image(tmp_path / "y.png")
    (tmp_path / "labels.tsv").write_text("file\tclass\nx.png\tzebra\ny.png\tant\n")
    data = FolderDataset(tmp_path)
    assert data.class_names == ("ant", "zebra") and data.labels == [1, 0]


def test_folder_labels_from_sub_folders(tmp_path) -> None:
    for name in ("dog/1.png", "cat/2.jpg", "cat/deep/3.png", "loose.png"):
        write_image(tmp_path / name)
    data = get_dataset(f"folder:{tmp_path}")
    assert data.paths == ["cat/2.jpg", "cat/deep/3.png", "dog/1.png", "loose.png"]
    assert data.class_names == ("cat", "dog")
    assert data.labels == [0, 0, 1, None]


@pytest.mark.parametrize("header", ["name\tclass_index\n", "file\tscore\n"])
def test_labels_tsv_without_the_needed_columns_says_so(tmp_path, header) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "labels.tsv").write_text(header + "a.png\t1\n")
    with pytest.raises(MicrotomeError, match="column"):
        FolderDataset(tmp_path)


def test_corrupt_files_are_skipped_counted_and_reported(tmp_path) -> None:
    write_image(tmp_path / "a.png", (255, 0, 0))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "c.jpg").write_bytes(b"")
    write_image(tmp_path / "d.png", (0, 255, 0))
    data = get_dataset(f"folder:{tmp_path}")
    with pytest.warns(UserWarning, match="skipped 2 unreadable of 4"):
        batches = list(data.batches(16, 2))
    assert [b.indices.tolist() for b in batches] == [[0], [3]]
    assert [path for path, _ in data.skipped] == ["b.png", "c.jpg"]
    with pytest.raises(MicrotomeError, match="b.png"):
        data.load(1, 16)
    with pytest.raises(MicrotomeError, match="out of range"):
        data.load(9, 16)


def test_batches_over_chosen_indices_in_order(tmp_path) -> None:
    for i in range(5):
        write_image(tmp_path / f"{i}.png", (i * 50, 0, 0))
    data = FolderDataset(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing to report
        batches = list(data.batches(8, 2, indices=[4, 1, 3]))
    with pytest.raises(MicrotomeError, match="out of range"):
        next(data.batches(8, 2, indices=[0, 5]))
    assert [b.indices.tolist() for b in batches] == [[4, 1], [3]]
    assert torch.allclose(batches[0].images[:, 0, 0, 0], torch.tensor([200, 50]) / 255)


def test_stopping_early_leaves_no_thread_behind(tmp_path) -> None:
    import threading

    for i in range(6):
        write_image(tmp_path / f"{i}.png")
    data = FolderDataset(tmp_path)
    for _batch in data.batches(8, 1):
        break
    assert not any(t.name == "microtome-decode" for t in threading.enumerate())


def test_unknown_names_and_bad_folders_say_what_is_valid(tmp_path) -> None:
    with pytest.raises(NotFound, match="samples") as err:
        get_dataset("sampels")
    assert "samples" in err.value.suggestions
    assert "samples" in list_datasets()
    with pytest.raises(MicrotomeError, match="does not exist"):
        get_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(MicrotomeError, match="has no images"):
        get_dataset(f"folder:{tmp_path}")
