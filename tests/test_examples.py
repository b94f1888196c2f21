"""Dataset examples on a toy model with hand-set filters over a tiny synthetic image folder."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from microtome.data import get_dataset
from microtome.errors import MicrotomeError
from microtome.techniques import example_files
from microtome.techniques.examples import QUANTILES, collect, dataset_examples, spatial_max
from microtome.zoo.hooks import forward_to
from microtome.zoo.receptive import receptive_fields
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges

SIZE = 32  # the view; files are 37 x 37 = round(32 * 256 / 224), so the view is a plain crop
OFFSET = 2  # of the centre crop
REDNESS = (0.1, 0.9, 0.4, 0.7, 0.2, 0.6, 0.3, 0.8)  # red of the square in image i
SQUARES = [(5 + 3 * i, 30 - 3 * i) for i in range(8)]  # top-left (y, x) of the 5 x 5 square


def toy() -> tuple[nn.Module, ModelSpec]:
    """conv 3x3 (unit 0: red - (green + blue) / 2, unit 1: green, unit 2: brightness) -> ReLU
    -> max pool 2 -> conv 3x3 (2 units) -> global average -> linear (2)."""
    conv = nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, :, 1, 1] = torch.tensor([1.0, -0.5, -0.5])
        conv.weight[1, 1, 1, 1] = 1.0
        conv.weight[2] = 1.0 / 27
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    layers = (LayerSpec("colour", "1", "conv", 3, (32, 32)), LayerSpec("pool", "2", "pool", 3, (16, 16)),
              LayerSpec("mix", "3", "conv", 2, (16, 16)), LayerSpec("logits", "6", "logits", 2, (1, 1)))
    spec = ModelSpec(id="toy", title="toy", build=lambda: model, input_size=SIZE, layers=layers,
                     edges=chain_edges([layer.id for layer in layers]), labels=("a", "b"),
                     weights_source="hand-set", weights_sha256=None, mean=(0.0, 0.0, 0.0),
                     std=(1.0, 1.0, 1.0), trained=False, weights="random")
    return model, spec


@pytest.fixture
def folder(tmp_path):
    """8 grey images, each with a reddish 5 x 5 square; a corrupt file; a labels.tsv."""
    rows = ["file\twnid\tclass_index\tclass_name"]
    for i, (red, (y, x)) in enumerate(zip(REDNESS, SQUARES)):
        image = np.full((37, 37, 3), 0.3)
        image[y:y + 5, x:x + 5] = (red, 0.2, 0.2)
        Image.fromarray((image * 255).round().astype(np.uint8)).save(tmp_path / f"img{i}.png")
        rows.append(f"img{i}.png\tn{i % 2}\t{i % 2}\t{'odd' if i % 2 else 'even'}")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.fixture
def noisy_folder(tmp_path):
    """10 random-noise images (no ties between images) and a corrupt one."""
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (37, 37, 3), dtype=np.uint8)).save(tmp_path / f"n{i}.png")
    (tmp_path / "broken.png").write_bytes(b"")
    return tmp_path


def brute_force(model, spec, data, layer):
    """Every readable image at once: max activations [N, C], positions [N, C, 2], ids [N]."""
    ids = [i for i, p in enumerate(data.paths) if p != "broken.png"]
    images = torch.stack([data.load(i, SIZE) for i in ids])
    with torch.no_grad():
        act = forward_to(model, spec.preprocess(images), {layer: spec.layer(layer).module})[layer]
    values, positions = spatial_max(act)
    return values, positions, torch.tensor(ids)


def test_top_example_of_the_red_unit_is_the_reddest_image(folder) -> None:
    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    calls = []
    threads = torch.get_num_threads()
    with pytest.warns(UserWarning, match="broken.png"):
        stats = collect(model, spec, ["colour", "mix", "logits"], data, batch_size=3, k=3,
                        progress=lambda *a: calls.append(a))
    assert [p for p, _ in data.skipped] == ["broken.png"]  # skipped, counted, not fatal
    assert calls[-1] == ("collect", 8, 9) and torch.get_num_threads() == threads
    red = stats["colour"]
    assert red.images == 8 and red.grid == (32, 32) and red.channels == 3
    order = np.argsort(REDNESS)[::-1]
    assert [data.paths[i] for i in red.top.ids[0].tolist()] == [f"img{i}.png" for i in order[:3]]
    y, x = SQUARES[order[0]]
    assert red.top.positions[0, 0].tolist() == [y - OFFSET, x - OFFSET]  # first max in the square
    assert red.top.values[0, 0] == pytest.approx(REDNESS[order[0]] - 0.2, abs=0.01)
    assert [data.paths[i] for i in red.bottom.ids[0].tolist()] == [f"img{i}.png" for i in order[-1:-4:-1]]


@pytest.mark.parametrize("layer", ["colour", "mix", "logits"])
def test_collect_equals_brute_force(noisy_folder, layer) -> None:
    model, spec = toy()
    data = get_dataset(f"folder:{noisy_folder}")
    with pytest.warns(UserWarning):
        stats = collect(model, spec, ["colour", "mix", "logits"], data, batch_size=3, k=4, bins=8)
    values, positions, ids = brute_force(model, spec, data, layer)
    got = stats[layer]
    for lists, largest in ((got.top, True), (got.bottom, False)):
        want = torch.topk(values.T, 4, dim=1, largest=largest)  # [C, 4]
        torch.testing.assert_close(lists.values, want.values)
        # Where a value is unique in its channel (no tie to break), the image must agree.
        unique = (values.T[:, None, :] == want.values[:, :, None]).sum(dim=2) == 1  # [C, 4]
        assert unique.float().mean() > 0.5
        assert torch.equal(lists.ids[unique], ids[want.indices][unique])
        pos = positions.transpose(0, 1).gather(1, want.indices[:, :, None].expand(-1, -1, 2))
        assert torch.equal(lists.positions[unique], pos[unique])
    for c in range(values.shape[1]):
        counts, _ = np.histogram(values[:, c].double().numpy(), bins=got.histogram.edges[c].numpy())
        assert got.histogram.counts[c].tolist() == counts.tolist()


def test_receptive_fields_by_geometry() -> None:
    model, spec = toy()
    fields = receptive_fields(model, spec, ["colour", "pool", "mix", "logits"], SIZE)
    assert fields["colour"].extent == (3, 3) and fields["colour"].stride == (1.0, 1.0)
    assert fields["pool"].extent == (4, 4) and fields["pool"].stride == (2.0, 2.0)
    assert fields["mix"].extent == (8, 8)
    assert fields["colour"].box(10, 20) == (9, 19, 12, 22)
    assert fields["pool"].box(5, 0) == (9, 0, 13, 3)  # conv rows 10, 11 see input 9..12
    assert fields["colour"].box(0, 31) == (0, 30, 2, 32)  # clipped to the image
    assert fields["logits"].box(0, 0) == (0, 0, SIZE, SIZE)


def test_dataset_examples_artifacts(folder) -> None:
    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    with pytest.warns(UserWarning):
        results = dataset_examples(model, spec, ["colour", "logits"], data, units=[0, 1], k=3,
                                   batch_size=4, preset="quick")
    assert [(r.layer, r.unit) for r in results] == [("colour", 0), ("colour", 1), ("logits", 0),
                                                    ("logits", 1)]
    red = results[0]
    assert red.technique == "dataset_examples"
    assert red.params == {"dataset": f"folder:{folder}", "k": 3, "size": SIZE, "preset": "quick"}
    json.dumps(red.meta)  # JSON-ready
    best = red.meta["top"][0]
    reddest = int(np.argmax(REDNESS))
    assert best["path"] == f"img{reddest}.png" and best["label"] == reddest % 2
    assert best["class_name"] == ("odd" if reddest % 2 else "even")
    y, x = best["position"]
    assert best["box"] == [y - 1, x - 1, y + 2, x + 2]  # the 3 x 3 receptive field
    crop = np.asarray(Image.open(io.BytesIO(red.files[best["files"]["crop"]])))
    assert crop.shape == (3, 3, 3)  # centred on the square's top-left corner (its first max)
    assert (crop[1:, 1:, 0] > 200).all() and (crop[0, :, 0] < 100).all()
    sprite = red.meta["heat_sprite"]  # the unit's heat maps: one file, a tile per example
    heat = Image.open(io.BytesIO(red.files[sprite["file"]]))
    assert heat.mode == "RGBA" and sprite["tile"] == [SIZE, SIZE] and sprite["tiles"] == 6
    assert [e["heat_tile"] for e in red.meta["top"] + red.meta["bottom"]] == list(range(6))
    assert [n for n in red.files if "heat" in n] == ["heat_sprite.png"]
    image = Image.open(io.BytesIO(red.files[best["files"]["image"]]))
    assert image.size == (SIZE, SIZE)
    assert len(red.meta["bottom"]) == 3 and len(red.meta["quantiles"]) == len(QUANTILES)
    assert red.meta["skipped"] == 1 and red.meta["images"] == 8
    assert sum(red.meta["histogram"]["counts"]) == 8
    assert "histogram.png" not in red.files  # the page draws the counts
    logit = results[2]
    assert "heat_tile" not in logit.meta["top"][0] and "heat_sprite" not in logit.meta  # flat: no map
    assert logit.meta["top"][0]["box"] == [0, 0, SIZE, SIZE]
    assert logit.meta["top"][0]["crop_from"] == "image" and "crop" not in logit.meta["top"][0]["files"]


def test_wrong_units_or_statistics_are_user_errors(folder) -> None:
    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    with pytest.raises(MicrotomeError, match="no unit 7 in layer mix"):  # before any pass
        dataset_examples(model, spec, "mix", data, units=[7], k=2)
    with pytest.warns(UserWarning):
        stats = collect(model, spec, ["mix"], data, k=2)
    with pytest.raises(MicrotomeError, match="do not fit"):
        dataset_examples(model, spec, "mix", data, k=3, stats=stats)
    with pytest.raises(MicrotomeError, match="do not fit"):
        dataset_examples(model, spec, "colour", data, k=2, stats=stats)


def test_receptive_fields_of_efficientnet_follow_its_geometry() -> None:
    from microtome.zoo import load_model

    model, spec = load_model("efficientnet_lite0", weights="random")
    fields = receptive_fields(model, spec, ["stem", "block1", "logits"], 64)
    # 3x3 stride 2 "SAME" (padding at the bottom/right only): position 0 sees rows 0..2.
    assert fields["stem"].extent == (3, 3) and fields["stem"].box(0, 0) == (0, 0, 3, 3)
    # + depthwise 3x3 (stride 1) + depthwise 3x3 stride 2: 3 + 2 * 2 + 2 * 2 = 11, stride 4.
    assert fields["block1"].extent == (11, 11) and fields["block1"].stride == (4.0, 4.0)
    assert fields["block1"].grid == (16, 16)
    assert fields["logits"].box(0, 0) == (0, 0, 64, 64)


def test_examples_and_heat_maps_equal_brute_force(noisy_folder) -> None:
    """Lists, quantiles and counts in meta are the pass's statistics (checked against brute
    force above); each heat map is the brute-force map of its image, coloured."""
    model, spec = toy()
    data = get_dataset(f"folder:{noisy_folder}")
    layers = ["colour", "mix", "logits"]
    with pytest.warns(UserWarning):
        plain = collect(model, spec, layers, data, batch_size=3, k=4)
        stats = collect(model, spec, layers, data, batch_size=3, k=4, maps=True)
        results = dataset_examples(model, spec, layers, data, k=4, batch_size=3, stats=stats)
    table = example_files.inferno()
    for r in results:
        got, want = stats[r.layer], plain[r.layer]
        for kind in ("top", "bottom"):  # keeping maps changes no statistic
            for field in ("values", "ids", "positions"):
                assert torch.equal(getattr(getattr(got, kind), field), getattr(getattr(want, kind), field))
            assert [e["index"] for e in r.meta[kind]] == getattr(got, kind).ids[r.unit].tolist()
        assert r.meta["histogram"]["counts"] == want.histogram.counts[r.unit].tolist()
        q_ids = want.histogram.quantile_examples(list(QUANTILES))[0][r.unit].tolist()
        assert [e["index"] for e in r.meta["quantiles"]] == [i for i in q_ids if i >= 0]
        if r.layer == "logits":
            continue
        values, _, ids = brute_force(model, spec, data, r.layer)
        with torch.no_grad():
            images = torch.stack([data.load(i, SIZE) for i in ids.tolist()])
            acts = forward_to(model, spec.preprocess(images), {r.layer: spec.layer(r.layer).module})[r.layer]
        sheet = np.asarray(Image.open(io.BytesIO(r.files[r.meta["heat_sprite"]["file"]])))
        for kind in ("top", "bottom"):
            kept = getattr(stats[r.layer], f"{kind}_maps")[r.unit]  # [k, H, W] float16
            for rank, entry in enumerate(r.meta[kind]):
                amap = acts[ids.tolist().index(entry["index"]), r.unit]  # [H, W], brute force
                torch.testing.assert_close(kept[rank].float(), amap, rtol=2e-3, atol=1e-3)
                scale = torch.tensor([r.meta["heat_scale"]])
                want_rgba = example_files.heat_rgba(kept[rank][None], scale, table)[0]
                heat = example_files.sprite_tile(sheet, r.meta["heat_sprite"], entry["heat_tile"])
                assert np.array_equal(heat, want_rgba)


def test_a_photo_shown_by_many_units_is_encoded_once(folder) -> None:
    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    with pytest.warns(UserWarning):
        results = dataset_examples(model, spec, ["colour", "mix"], data, k=8, batch_size=4)
    images = {}  # image index -> the bytes objects of its whole view
    for r in results:
        for entry in r.meta["top"]:
            images.setdefault(entry["index"], set()).add(id(r.files[entry["files"]["image"]]))
    assert len(images) == 8 and all(len(objects) == 1 for objects in images.values())


def test_a_store_built_before_is_skipped_by_the_build(tmp_path) -> None:
    """The key of dataset examples is what it was (params written out literally here, as the
    build made them before files changed format): an old artifact is not planned again."""
    from microtome.pipeline.plan import plan, select
    from microtome.store import ArtifactKey, Store
    from microtome.zoo import get_spec

    spec = get_spec("efficientnet_lite0")
    old_params = {"dataset": "samples", "k": 16, "size": 224, "preset": "standard"}
    files = {"top_00_crop.png": b"old crop", "top_00_image.png": b"old image",
             "top_00_heat.png": b"old heat", "histogram.png": b"old plot"}
    with Store(tmp_path / "store") as store:
        for unit in (0, 1):
            key = ArtifactKey.for_params(spec.id, "block10", unit, "dataset_examples", old_params)
            store.put(key, old_params, files, {"histogram": {"edges": [0.0, 1.0], "counts": [3]}})
        tasks = plan(store, spec, select(spec, ["block10"], [0, 1, 2], ["dataset_examples"], "standard", "samples"))
    assert [item[:2] for task in tasks for item in task.items] == [("block10", 2)]


def css_region(sheet: np.ndarray, window: dict, box: int) -> tuple[int, int, int, int]:
    """The part (left, top, width, height) of image `sheet [H, W, ...]` that a `box` x `box`
    element shows with CSS background-size/-position `window` (in %), per the CSS rules:
    the image is scaled to size % of the box, offset by (box - image) * position %."""
    region = []
    for pixels, size, position in zip((sheet.shape[1], sheet.shape[0]), window["size"], window["position"]):
        scaled = box * size / 100  # the image's displayed extent
        offset = (box - scaled) * position / 100
        start, extent = -offset * pixels / scaled, box * pixels / scaled  # in image pixels
        assert (start, extent) == pytest.approx((round(start), round(extent)), abs=1e-3)
        region.append((round(start), round(extent)))
    (left, width), (top, height) = region
    return left, top, width, height


def stored(r):
    """`r` as a stored Artifact, its files named by made-up shas."""
    from microtome.store import Artifact, ArtifactKey

    names = {name: f"{i:064x}" for i, name in enumerate(r.files)}
    return Artifact(ArtifactKey.for_params("toy", r.layer, r.unit, r.technique, r.params), r.params,
                    r.meta, names, 0.0)


def test_the_page_shows_each_heat_map_as_its_tile_of_the_sprite(folder) -> None:
    """The web's CSS for an example's heat map lands exactly on that example's tile, at any
    size, and the pixels around each tile repeat its edge (smooth scaling bleeds nothing in)."""
    from microtome.web.present.artifacts import examples_view

    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    with pytest.warns(UserWarning):
        r = dataset_examples(model, spec, ["mix"], data, units=[1], k=3, batch_size=4)[0]
    art = stored(r)
    layout = r.meta["heat_sprite"]
    sheet = np.asarray(Image.open(io.BytesIO(r.files[layout["file"]])))  # [rows * 18, cols * 18, 4]
    height, width = layout["tile"]
    rows = {g["name"]: g["rows"] for g in examples_view(art)["groups"]}
    assert all(im["name"] != layout["file"] for im in examples_view(art)["other"])
    for kind in ("top", "bottom"):
        for entry, row in zip(r.meta[kind], rows[kind]):
            sprite = row["overlay"]["heat_sprite"]
            assert sprite["url"] == f"/blobs/{art.files[layout['file']]}.png"
            for box in (112, 48):  # display size of the element, px
                x0, y0, w, h = css_region(sheet, sprite, box)
                assert (w, h) == (width, height)
                want = example_files.sprite_tile(sheet, layout, entry["heat_tile"])
                assert np.array_equal(sheet[y0:y0 + h, x0:x0 + w], want)
                ring = sheet[y0 - 1:y0 + h + 1, x0 - 1:x0 + w + 1]
                assert np.array_equal(ring, np.pad(want, ((1, 1), (1, 1), (0, 0)), mode="edge"))


def test_crops_too_big_for_a_file_are_shown_as_regions_of_the_view(folder, monkeypatch) -> None:
    """Crops too big for a file of their own (`own_file`: all, here) are no files: the page
    shows the region `box` of the whole view, and that region is the receptive-field crop
    (oracle: the photo's pixels in the box; the 32 px view is a lossless PNG)."""
    from microtome.web.present.artifacts import examples_view

    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    monkeypatch.setattr(example_files, "own_file", lambda box, size: False)  # every crop "big"
    with pytest.warns(UserWarning):
        results = dataset_examples(model, spec, ["colour", "logits"], data, units=[0], k=3,
                                   batch_size=4)
    for r in results:
        assert not [n for n in r.files if "_crop" in n]
        art = stored(r)
        groups = {g["name"]: g["rows"] for g in examples_view(art)["groups"]}
        for kind in ("top", "bottom", "quantiles"):
            for entry, row in zip(r.meta[kind], groups[kind]):
                assert entry["crop_from"] == "image"
                image = entry["files"]["image"]
                view = np.asarray(Image.open(io.BytesIO(r.files[image])))
                crop = row["images"][0]
                assert crop["role"] == "crop" and crop["url"] == f"/blobs/{art.files[image]}.png"
                top, left, bottom, right = entry["box"]
                assert css_region(view, crop["window"], 112) == (left, top, right - left, bottom - top)
                want = data.load(entry["index"], SIZE)[:, top:bottom, left:right]  # [3, h, w]
                got = view[top:bottom, left:right]
                assert np.array_equal(got, example_files.pixels(want))
                assert (row["overlay"] is not None) == (r.layer == "colour" and kind != "quantiles")
                assert [im["role"] for im in row["images"]] == ["crop"]


def test_heat_colours_through_the_float16_table_equal_the_direct_colouring() -> None:
    """Every float16 value but NaN (infinities included), against `heat_rgba` per pixel."""
    table = example_files.inferno()
    every = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16).view(torch.float16)
    maps = every[~every.isnan()].reshape(1, -1, 1)  # [1, N, 1]
    for scale in (1.0, 3.7, 1e-12, 6e4):
        direct = example_files.heat_rgba(maps, torch.tensor([scale]), table)
        assert np.array_equal(example_files.heat_rgba_half(maps, scale, table), direct)


def test_the_unit_page_serves_sprites_and_view_crops(folder, tmp_path, monkeypatch) -> None:
    """A unit page over artifacts written as now (heat sprite, crops cut from the view): the
    page lays each example out with CSS windows and every URL it names is served."""
    import re

    from fastapi.testclient import TestClient

    from microtome.store import ArtifactKey, Store
    from microtome.web import create_app
    from tests.web_fixtures import registry

    model, spec = toy()
    data = get_dataset(f"folder:{folder}")
    monkeypatch.setattr(example_files, "own_file", lambda box, size: box[2] - box[0] < 3)
    with pytest.warns(UserWarning):
        r = dataset_examples(model, spec, ["colour"], data, units=[0], k=3, batch_size=4)[0]
    with Store(tmp_path / "store") as store:
        store.put_model("efficientnet_lite0", registry()["efficientnet_lite0"])
        store.put(ArtifactKey.for_params("efficientnet_lite0", "block10", 0, r.technique, r.params),
                  r.params, r.files, r.meta)
    with TestClient(create_app(tmp_path / "store", registry=registry, on_demand=False)) as client:
        html = client.get("/models/efficientnet_lite0/block10/0").text
        assert html.count('class="heat window"') == 6  # top 3 + bottom 3, tiles of one sprite
        views = sum(1 for e in r.meta["top"] + r.meta["bottom"] + r.meta["quantiles"] if "crop_from" in e)
        assert 0 < views < 15 and html.count('<span class="window"') == views
        urls = set(re.findall(r"url\('([^']+)'\)", html)) | set(re.findall(r'src="(/blobs/[^"]+)"', html))
        assert any(u.endswith(".png") for u in urls) and len(urls) > 2
        for url in urls:
            got = client.get(url)
            assert got.status_code == 200 and got.headers["content-type"].startswith("image/")
