"""Pieces of the web microscope on their own: the layer graph SVG, export link mapping, the
tolerant dataset-examples layout, the page cache and blob content types."""

from __future__ import annotations

import re
import time

from microtome.store import Artifact, ArtifactKey
from microtome.web.present.artifacts import examples_view, pick
from microtome.web.present.blobs import content_type
from microtome.web.present.cache import StoreCache
from microtome.web.present.graph import graph_svg
from microtome.web.server.export import site_target, static_href


def layer(i: int, **kw) -> dict:
    return {"id": f"l{i}", "kind": "conv", "channels": 8 * (i + 1), "size": [4, 4], "url": f"/models/m/l{i}", **kw}


def test_graph_draws_every_node_and_edge_including_skips():
    layers = [layer(0, deepdream="/blobs/" + "a" * 64 + ".png"), layer(1), layer(2), layer(3)]
    edges = [["l0", "l1"], ["l1", "l2"], ["l2", "l3"], ["l0", "l2"], ["l1", "l3"], ["l3", "gone"]]
    svg = str(graph_svg(layers, edges, href=lambda url: "X" + url))
    assert re.findall(r'<a href="([^"]+)"', svg) == [f"X/models/m/l{i}" for i in range(4)]
    assert svg.count('class="edge"') == 3 and svg.count('class="edge skip"') == 2  # the dangling edge is dropped
    assert svg.count("<image ") == 1 and 'href="X/blobs/' in svg and svg.count("no dream") == 3
    assert "16\u00d74\u00d74" in svg and "32 units" in svg


def test_graph_escapes_names():
    svg = str(graph_svg([layer(0, id="<b>&", kind='"x"')], [], href=lambda u: u))
    assert "<b>&" not in svg and "&lt;b&gt;&amp;" in svg


def test_static_links_are_relative_folders_and_files():
    href = static_href("models/m/l/3")
    assert href("/") == "../../../../"
    assert href("/models/m") == "../../"
    assert href("/models/m/l/4") == "../4/"
    assert href("/models/m/l/3") == "./"
    assert href("/models/m/l?variant=negative&page=2") == "../negative-2.html"
    assert href("/models/m/l?page=1") == "../"
    assert href("/blobs/" + "a" * 64 + ".png") == "../../../../blobs/" + "a" * 64 + ".png"
    assert href("/static/microtome.css") == "../../../../static/microtome.css"
    assert static_href("")("/models/m") == "models/m/"
    assert site_target("/models/m/l.json?variant=neuron&page=3") == ("models/m/l/neuron-3.json", False)
    assert site_target("/index.json") == ("index.json", False)
    assert site_target("/models/m/l/3.json") == ("models/m/l/3.json", False)


def artifact(files: dict[str, str], meta: dict, params: dict | None = None, created: float = 0.0) -> Artifact:
    params = params or {"preset": "quick"}
    return Artifact(ArtifactKey.for_params("m", "l", 0, "dataset_examples", params), params, meta, files, created)


def test_examples_without_file_lists_are_grouped_by_name():
    sha = "b" * 64
    files = {n: sha for n in ("top_0.png", "top_0_heat.png", "top_1.png", "bottom-0.png", "top/2/crop.png",
                              "hist.png", "notes.txt")}
    view = examples_view(artifact(files, {"top": [{"value": 3.0}, {"value": 2.0}], "histogram": {"counts": [1, 2]}}))
    groups = {g["name"]: g["rows"] for g in view["groups"]}
    assert [r["index"] for r in groups["top"]] == [0, 1, 2] and [r["index"] for r in groups["bottom"]] == [0]
    assert groups["top"][0]["overlay"] is not None and groups["top"][0]["info"] == {"activation": 3.0}
    assert groups["top"][2]["images"][0]["role"] == "crop"
    assert [im["name"] for im in view["other"]] == ["hist.png"] and view["histogram"] == {"counts": [1, 2]}


def test_examples_with_missing_pieces_do_not_fail():
    assert examples_view(artifact({}, {})) == {"groups": [], "other": [], "histogram": None}
    view = examples_view(artifact({"top_00_crop.png": "c" * 64},
                                  {"top": [{"files": {"crop": "top_00_crop.png", "heat": "gone.png"},
                                            "error": "the image could not be read again"}, "junk"]}))
    row = view["groups"][0]["rows"][0]
    assert [im["role"] for im in row["images"]] == ["crop"] and row["overlay"] is None
    assert row["info"] == {"error": "the image could not be read again"}


def test_pick_prefers_the_most_expensive_preset_then_the_newest():
    quick = artifact({}, {}, {"preset": "quick", "variant": "positive"}, created=3.0)
    full = artifact({}, {}, {"preset": "full", "variant": "positive"}, created=1.0)
    full_new = artifact({}, {}, {"preset": "full", "variant": "positive", "seed": 1}, created=2.0)
    assert pick([quick, full, full_new])["dataset_examples"] is full_new


def test_cache_forgets_when_the_store_changes(tmp_path):
    (tmp_path / "index.sqlite").write_bytes(b"1")
    cache = StoreCache(tmp_path, maxsize=2, ttl=60)
    calls = []
    value = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert cache.get("a", value) == 1 and cache.get("a", value) == 1
    time.sleep(0.01)
    (tmp_path / "index.sqlite-wal").write_bytes(b"12")
    assert cache.get("a", value) == 2
    assert cache.get("b", value) == 3 and cache.get("c", value) == 4 and cache.get("a", value) == 5  # LRU of 2
    assert cache.get("d", value, keep=lambda v: False) == 6 and cache.get("d", value) == 7


def test_content_types_come_from_the_bytes():
    assert content_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert content_type(b'<?xml version="1.0"?><svg xmlns="">') == "image/svg+xml"
    assert content_type(b'{"a": 1}') == "application/json"
    assert content_type(b"<html><script>") == "application/octet-stream"
