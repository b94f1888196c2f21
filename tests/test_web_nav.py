"""Navigation over the fixture store: labels on pages, search by text, circuits, quality and
sort/filter on grids, notes over the web (token, escaping, pack/unpack, export)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from microtome.store import Store
from microtome.store.notes import notes
from microtome.web import create_app, export
from tests.web_fixtures import LABELS, LAYER, MODEL, QUALITY, links, registry

UNIT = f"/models/{MODEL}/{LAYER}/1"
TOKEN = "s3cret-token"


@pytest.fixture
def writer(store_root):
    """A client of a private store copy whose server accepts notes with TOKEN."""
    with TestClient(create_app(store_root, registry=registry, on_demand=False, notes_token=TOKEN)) as c:
        yield c, store_root


# ---- labels on pages ------------------------------------------------------------------------

def test_unit_json_has_its_labels_best_first_and_the_page_shows_them(client):
    data = client.get(UNIT + ".json").json()
    assert [e["label"] for e in data["labels"]] == [lab for lab, _, _ in LABELS[1]]
    assert {"label", "score", "source"} <= set(data["labels"][0])
    assert client.get(f"/models/{MODEL}/{LAYER}/9.json").json()["labels"] == []
    html = client.get(UNIT).text
    head = html[html.index('class="unit-head"'):html.index('id="unit-body"')]
    assert "dog" in head and "quality 0.9" in head  # first labels and quality next to the title
    assert 'id="labels"' in html and "wheel" in html


def test_grid_tiles_have_label_captions_and_quality(client):
    data = client.get(f"/models/{MODEL}/{LAYER}.json").json()
    tiles = {u["unit"]: u for u in data["units"]}
    assert tiles[0]["labels"] == ["golden retriever", "dog"] and tiles[0]["label"] == "golden retriever"
    assert tiles[3]["quality"] == QUALITY[(LAYER, 3)] and tiles[9]["quality"] is None and tiles[9]["labels"] == []
    html = client.get(f"/models/{MODEL}/{LAYER}").text
    assert "golden retriever, dog" in html and "q 1.1" in html


# ---- search by text -------------------------------------------------------------------------

def test_search_by_text_finds_units_by_label_best_first(client):
    data = client.get("/search.json", params={"q": "DOG"}).json()
    units = [(r["layer"], r["unit"]) for r in data["results"]]
    assert units[:2] == [(LAYER, 1), (LAYER, 0)]  # exact labels by score, then "hotdog"
    assert (LAYER, 3) in units and data["results"][0]["label"] == "dog"
    first = data["results"][0]
    assert first["url"] == UNIT and first["image"].startswith("/blobs/") and first["match"] == "label"
    assert [r["match"] for r in data["results"]][-1] == "part"  # "hotdog"
    accept = client.get("/search", params={"q": "dog"}, headers={"Accept": "application/json"})
    assert accept.json()["results"] == data["results"]
    assert client.get(first["url"]).status_code == 200
    html = client.get("/search", params={"q": "sports car"}).text
    hrefs, _ = links(html)
    assert f"/models/{MODEL}/{LAYER}/2" in hrefs


def test_unknown_words_give_an_empty_result_not_an_error(client):
    r = client.get("/search.json", params={"q": "zebra crossing"})
    assert r.status_code == 200 and r.json()["results"] == [] and r.json()["jump"] is None
    assert client.get("/search", params={"q": "zebra"}).status_code == 200
    assert client.get("/search.json").json()["results"] == []  # no query: the search page


def test_search_says_where_the_jump_box_goes(client):
    data = client.get("/search.json", params={"q": f"{MODEL}/{LAYER}:3"}).json()
    assert data["jump"]["url"] == f"/models/{MODEL}/{LAYER}/3"
    assert 'class="jump-target"' in client.get("/search", params={"q": f"{MODEL}/{LAYER}:3"}).text


def test_every_page_has_a_search_box_and_the_index_a_photo_form(client):
    for url in ("/", f"/models/{MODEL}", f"/models/{MODEL}/{LAYER}", UNIT, "/search"):
        assert 'class="search"' in client.get(url).text, url
    for url in ("/", "/search"):
        assert 'enctype="multipart/form-data"' in client.get(url).text


# ---- circuits -------------------------------------------------------------------------------

def _connections(root, node_id: str) -> dict:
    model, rest = node_id.split("/")
    layer, unit = rest.split(":")
    with Store(root, create=False) as store:
        (art,) = store.find(model, layer, int(unit), "connections")
        return art.meta


def test_circuit_json_nodes_answer_and_edges_match_the_connections(writer):
    client, root = writer
    data = client.get(UNIT + "/circuit.json").json()
    centre = f"{MODEL}/{LAYER}:1"
    ids = {n["id"] for n in data["nodes"]}
    assert centre in ids and len(data["nodes"]) > 5
    for node in data["nodes"]:
        assert set(node) >= {"id", "url", "image"}
        assert client.get(node["url"]).status_code == 200, node
    assert data["edges"]
    for e in data["edges"]:
        assert {e["source"], e["target"]} <= ids
        if e["source"] == centre:
            meta, direction, other = _connections(root, centre), "outputs", e["target"]
        else:
            meta, direction, other = _connections(root, e["target"]), "inputs", e["source"]
        layer, unit = other.split("/")[1].split(":")
        listed = [c["weight"] for c in meta[direction] if (c["layer"], c["unit"]) == (layer, int(unit))]
        assert listed and e["weight"] == listed[0], e
    assert any(e["target"] != centre and e["source"] != centre for e in data["edges"])  # two layers deep
    assert any(e["weight"] < 0 for e in data["edges"])


def test_circuit_page_draws_linked_nodes_and_is_linked_from_the_unit(client):
    html = client.get(UNIT + "/circuit").text
    assert '<svg class="circuit"' in html and 'class="edge neg"' in html
    hrefs, _ = links(html)
    assert f"/models/{MODEL}/block9/1" in hrefs and UNIT in hrefs
    assert UNIT + "/circuit" in links(client.get(UNIT).text)[0]
    assert client.get(f"/models/{MODEL}/block11/4/circuit.json").json()["built"] is False


# ---- sort and filter ------------------------------------------------------------------------

def test_layer_sorts_by_quality_and_label_and_filters_by_label(client):
    base = f"/models/{MODEL}/{LAYER}"
    by_quality = [u["unit"] for u in client.get(base + ".json", params={"sort": "quality"}).json()["units"]]
    assert by_quality[:4] == [3, 1, 0, 2] and len(by_quality) == 112
    by_label = [u["unit"] for u in client.get(base + ".json", params={"sort": "label"}).json()["units"]]
    assert by_label[:5] == [1, 0, 3, 2, 5]  # dog, golden retriever, hotdog, sports car, striped
    dogs = client.get(base + ".json", params={"label": "dog"}).json()
    assert [u["unit"] for u in dogs["units"]] == [0, 1, 3] and dogs["matching"] == 3 and dogs["pages"] == 1
    assert client.get(base + ".json", params={"label": "zebra"}).json()["units"] == []
    assert "No unit of this layer" in client.get(base, params={"label": "zebra"}).text
    assert client.get(base, params={"sort": "colour"}).status_code == 400


def test_sorting_keeps_variant_and_page_urls(client):
    data = client.get(f"/models/{MODEL}/head.json", params={"variant": "negative", "page": "2"}).json()
    assert data["url"] == f"/models/{MODEL}/head?variant=negative&page=2"
    assert data["prev_page"] == f"/models/{MODEL}/head?variant=negative"
    assert data["next_page"] == f"/models/{MODEL}/head?variant=negative&page=3"
    sorted_ = client.get(f"/models/{MODEL}/head.json", params={"sort": "quality", "page": "2"}).json()
    assert sorted_["url"] == f"/models/{MODEL}/head?page=2&sort=quality"
    assert {s["name"] for s in sorted_["sorts"]} == {"unit", "quality", "label"}


# ---- notes ----------------------------------------------------------------------------------

def test_notes_are_read_only_without_a_configured_token(client):
    r = client.post(UNIT + "/notes", data={"text": "hi"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403 and "--notes-token" in r.text


def test_notes_need_the_right_token(writer):
    client, root = writer
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = client.post(UNIT + "/notes", data={"text": "hi"}, headers={**headers, "Accept": "application/json"})
        assert r.status_code == 403, headers
    with Store(root, create=False) as store:
        assert notes(store, MODEL, LAYER, 1) == []


def test_a_note_is_written_listed_and_escaped(writer):
    client, _ = writer
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post(UNIT + "/notes", data={"text": "<script>alert('x')</script>"}, headers=auth,
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == UNIT
    r = client.post(UNIT + "/notes", files={"text": (None, "wheel & window detector")},
                    headers={**auth, "Accept": "application/json"})
    assert r.status_code == 201 and r.json()["note"]["text"] == "wheel & window detector"
    data = client.get(UNIT + ".json").json()
    assert [n["text"] for n in data["notes"]] == ["<script>alert('x')</script>", "wheel & window detector"]
    assert all(isinstance(n["created"], float) for n in data["notes"])
    html = client.get(UNIT).text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "wheel &amp; window detector" in html
    too_long = client.post(UNIT + "/notes", data={"text": "x" * 5000}, headers=auth)
    assert too_long.status_code == 400 and "4096" in too_long.text
    assert client.post(f"/models/{MODEL}/{LAYER}/999/notes", data={"text": "x"}, headers=auth).status_code == 404


def test_notes_survive_pack_unpack_and_export(writer, tmp_path):
    client, root = writer
    auth = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    assert client.post(UNIT + "/notes", data={"text": "<b>bold</b> claim"}, headers=auth).status_code == 201
    with Store(root, create=False) as store:
        archive = store.pack(tmp_path / "store.tar")
    copy = Store.unpack(archive, tmp_path / "unpacked")
    try:
        assert [n.text for n in notes(copy, MODEL, LAYER, 1)] == ["<b>bold</b> claim"]
        export(copy, tmp_path / "site", progress=False)
    finally:
        copy.close()
    page = tmp_path / "site" / "models" / MODEL / LAYER / "1"
    assert json.loads((page.parent / "1.json").read_text())["notes"][0]["text"] == "<b>bold</b> claim"
    html = (page / "index.html").read_text()
    assert "&lt;b&gt;bold&lt;/b&gt; claim" in html and "<b>bold</b>" not in html
    assert (page / "circuit" / "index.html").exists() and (page / "circuit.json").exists()


def test_no_template_marks_notes_or_labels_safe():
    from pathlib import Path

    import microtome.web

    for template in (Path(microtome.web.__file__).parent / "templates").rglob("*.html"):
        assert "|safe" not in template.read_text().replace(" ", ""), template


def test_search_circuits_sorting_and_notes_do_not_import_torch(store_root):
    """Only searching a photo loads torch; text search, circuits, sorted grids and notes do not."""
    import subprocess
    import sys

    code = f"""
import sys
from fastapi.testclient import TestClient
from microtome.web import create_app
app = create_app({str(store_root)!r}, registry=None, notes_token="t")
with TestClient(app) as c:
    for url in ["/search?q=dog", "/search.json?q={MODEL}/{LAYER}:1", "{UNIT}/circuit", "{UNIT}/circuit.json",
                "/models/{MODEL}/{LAYER}?sort=quality&label=dog", "{UNIT}"]:
        assert c.get(url).status_code == 200, url
    assert c.post("{UNIT}/notes", data={{"text": "hi"}}, headers={{"Authorization": "Bearer t"}},
                  follow_redirects=False).status_code == 303
    assert c.post("/search.json", files={{"image": ("x.png", b"not an image")}}).status_code == 415
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_serve_passes_the_notes_token_to_the_app(monkeypatch, store_root):
    import uvicorn
    from click.testing import CliRunner

    from microtome.cli.serve import serve

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    result = CliRunner().invoke(serve, ["--store", str(store_root), "--no-render", "--notes-token", "tok"])
    assert result.exit_code == 0, result.output
    assert apps[0].state.microtome.notes_token == "tok"
    CliRunner().invoke(serve, ["--store", str(store_root), "--no-render"], env={"MICROTOME_NOTES_TOKEN": ""})
    assert apps[-1].state.microtome.notes_token in (None, "")  # no token: read-only
    bad = CliRunner().invoke(serve, ["--store", str(store_root), "--notes-token", " "])
    assert bad.exit_code != 0 and "must not be empty" in bad.output


def test_the_exported_circuit_links_only_exported_units_and_its_images(tmp_path, store_root):
    from tests.web_fixtures import links as page_links

    export(store_root, tmp_path / "site", progress=False)
    folder = tmp_path / "site" / "models" / MODEL / LAYER / "1" / "circuit"
    hrefs, srcs = page_links((folder / "index.html").read_text())
    nodes = [h for h in hrefs if "/block" in h]
    assert nodes and all((folder / h / "index.html").resolve().exists() for h in nodes), nodes
    assert srcs and all((folder / s).resolve().exists() for s in srcs)
    data = json.loads((folder.parent / "circuit.json").read_text())
    unlinked = [n for n in data["nodes"] if n["url"] is None]
    assert unlinked and all(n["layer"] == "block8" for n in unlinked)  # block8 is not in the export
