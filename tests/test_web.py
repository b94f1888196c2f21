"""The web microscope's pages, their JSON twins, images, errors with suggestions and the jump box,
over the fixture store (tests/web_fixtures.py): fake PNG artifacts, real model summaries."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from microtome.web import create_app
from tests.web_fixtures import BUILT_UNITS, FULL_UNITS, LAYER, MODEL, UNTRAINED, links, registry

UNIT = f"/models/{MODEL}/{LAYER}/1"


def page(client: TestClient, url: str, status: int = 200, **kw) -> str:
    r = client.get(url, **kw)
    assert r.status_code == status, (url, r.status_code, r.text[:400])
    return r.text


def twin(client: TestClient, url: str, status: int = 200) -> dict:
    path, _, query = url.partition("?")
    r = client.get(path + ".json" + ("?" + query if query else ""))
    assert r.status_code == status, (url, r.text[:400])
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


# ---- pages and their twins ----------------------------------------------------------------

def test_index_lists_built_and_registered_models(client):
    html = page(client, "/")
    data = twin(client, "/index")
    assert client.get("/.json").json() == data
    models = {m["id"]: m for m in data["models"]}
    assert set(registry()) <= set(models)  # every registered model is browsable
    assert models[MODEL]["built"] and models[MODEL]["trained"]
    assert models[MODEL]["counts"]["feature_vis"] > 0 and models[MODEL]["counts"]["deepdream"] == 3
    assert models[UNTRAINED]["trained"] is False
    assert models["resnet50"]["built"] is False
    hrefs, _ = links(html)
    assert f"/models/{MODEL}" in hrefs and "/models/resnet50" in hrefs
    card = html[html.index(f'href="/models/{UNTRAINED}"'):][:400]
    assert "untrained" in card  # visible wherever the model appears
    assert "not built" in html


def test_model_page_draws_the_layer_graph(client):
    html = page(client, f"/models/{MODEL}")
    data = twin(client, f"/models/{MODEL}")
    summary = registry()[MODEL]
    assert [layer["id"] for layer in data["layers"]] == [layer["id"] for layer in summary["layers"]]
    assert data["edges"] == summary["edges"]
    svg = html[html.index("<svg"):html.index("</svg>")]
    hrefs, srcs = links(svg)
    assert hrefs == [f"/models/{MODEL}/{layer['id']}" for layer in summary["layers"]]
    assert "112\u00d714\u00d714" in svg and "112 units" in svg and ">block10<" in svg.replace("<tspan", "<")
    dreams = {layer["id"]: layer["deepdream"] for layer in data["layers"]}
    assert dreams["block10"] and dreams["stem"] is None
    assert sorted(srcs) == sorted(d for d in dreams.values() if d)
    assert svg.count('class="edge') == len(summary["edges"])


def test_untrained_model_is_marked_on_every_page(client):
    for url in (f"/models/{UNTRAINED}", f"/models/{UNTRAINED}/inception4c", f"/models/{UNTRAINED}/inception4c/0"):
        assert 'class="badge untrained' in page(client, url), url
        assert twin(client, url)["model"]["trained"] is False


def test_layer_grid_is_lazy_paged_and_switches_variant(client):
    html = page(client, f"/models/{MODEL}/{LAYER}")
    data = twin(client, f"/models/{MODEL}/{LAYER}")
    assert [u["unit"] for u in data["units"]] == list(range(112)) and data["pages"] == 1
    built = [u for u in data["units"] if u["image"]]
    assert [u["unit"] for u in built] == list(BUILT_UNITS)
    hrefs, srcs = links(html)
    assert all(f"/models/{MODEL}/{LAYER}/{u}" in hrefs for u in range(112))
    assert sorted(srcs) == sorted([data["layer"]["deepdream"], *(u["image"] for u in built)])
    assert html.count('loading="lazy"') >= len(built)
    assert html.count('class="placeholder') == 112 - len(built)
    negative = twin(client, f"/models/{MODEL}/{LAYER}?variant=negative")
    assert negative["variant"] == "negative"
    assert {u["image"] for u in negative["units"] if u["image"]}.isdisjoint(u["image"] for u in built)
    head = twin(client, f"/models/{MODEL}/head?page=2")
    assert head["pages"] == 10 and head["units"][0]["unit"] == 128
    assert [u["unit"] for u in head["units"] if u["image"]] == [130]
    assert 'href="/models/efficientnet_lite0/head?page=3"' in page(client, f"/models/{MODEL}/head?page=2")


def test_unit_page_shows_every_technique(client):
    html = page(client, UNIT)
    data = twin(client, UNIT)
    assert data["shorthand"] == f"{MODEL}/{LAYER}:1" and data["missing"] == []
    assert set(data["feature_vis"]) == {"positive", "negative", "neuron", "diversity"}
    assert len(data["feature_vis"]["diversity"]["images"]) == 4
    examples = data["dataset_examples"]
    assert [g["name"] for g in examples["groups"]] == ["top", "bottom", "quantiles"]
    top = examples["groups"][0]["rows"][0]
    assert top["overlay"]["heat"] and top["images"][0]["role"] == "crop" and top["info"]["activation"] == 9.0
    assert [im["name"] for im in examples["other"]] == ["histogram.png"]
    assert set(data["tuning"]["files"]) == {"plot.png", "preferred.png"}
    conn = data["connections"]
    assert conn["inputs"][0] == {"layer": "block9", "unit": 1, "weight": 0.9, "shorthand": f"{MODEL}/block9:1",
                                 "url": f"/models/{MODEL}/block9/1", "image": conn["inputs"][0]["image"]}
    assert conn["inputs"][0]["image"].startswith("/blobs/") and conn["classes"][0]["label"] == "sports car"
    assert data["prev"] == f"/models/{MODEL}/{LAYER}/0" and data["next"] == f"/models/{MODEL}/{LAYER}/2"
    hrefs, srcs = links(html)
    assert {data["prev"], data["next"], f"/models/{MODEL}/block9/1", f"/models/{MODEL}/block11/2"} <= set(hrefs)
    every_image = set(re.findall(r'/blobs/[0-9a-f]{64}\.png', json.dumps(data)))
    assert every_image == set(srcs)  # the page shows exactly the images its twin lists
    assert 'data-copy="/models/efficientnet_lite0/block10/1"' in html and "sports car" in html
    assert html.count('<details class="prov"') == 8  # parameters and provenance of every artifact
    assert "&#34;preset&#34;: &#34;quick&#34;" in html and "&#34;code_version&#34;: &#34;0.1.0&#34;" in html


def test_unit_page_with_little_built_names_what_is_missing(client):
    data = twin(client, f"/models/{MODEL}/{LAYER}/{max(FULL_UNITS) + 1}")
    assert data["missing"] == ["dataset_examples", "tuning", "labels"] and data["job"] is None
    data = twin(client, f"/models/{MODEL}/{LAYER}/100")
    assert data["feature_vis"] == {} and data["deepdream"] is not None
    assert "No feature visualization built" in page(client, f"/models/{MODEL}/{LAYER}/100")


def test_models_not_built_are_browsable_from_the_registry(client):
    data = twin(client, "/models/resnet50")
    assert data["model"]["built"] is False and len(data["layers"]) == len(registry()["resnet50"]["layers"])
    layer = data["layers"][-2]["id"]
    last = data["layers"][-2]["channels"] - 1
    unit = twin(client, f"/models/resnet50/{layer}/{last}")
    assert unit["next"] is None and unit["feature_vis"] == {}
    assert "not built" in page(client, "/models/resnet50")


def test_accept_header_chooses_json(client):
    r = client.get(UNIT, headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json") and r.json()["unit"] == 1
    assert client.get(UNIT, headers={"Accept": "text/html,application/json;q=0.9"}).text.startswith("<!doctype")


@pytest.mark.parametrize("url, target", [
    (f"/models/{UNTRAINED}/mixed4c/7", f"/models/{UNTRAINED}/inception4c/7"),  # Lucid alias
    (f"/models/{MODEL}/_blocks.10/3", f"/models/{MODEL}/block10/3"),  # module path
    (f"/models/{MODEL}/block10/05", f"/models/{MODEL}/block10/5"),
    (f"/models/{MODEL}/_blocks.10/3.json", f"/models/{MODEL}/block10/3.json"),
    (f"/models/{MODEL}/_blocks.10?variant=neuron", f"/models/{MODEL}/block10?variant=neuron"),
    ("/models/EfficientNet_Lite0", f"/models/{MODEL}"),
    ("/models", "/"),
])
def test_other_names_redirect_to_the_canonical_permalink(client, url, target):
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == target


# ---- images ---------------------------------------------------------------------------------

def test_blobs_are_served_immutable_with_their_type(client):
    data = twin(client, UNIT)
    url = data["feature_vis"]["positive"]["images"][0]["url"]
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG") and "immutable" in r.headers["cache-control"]
    sha = url.split("/")[-1][:64]
    assert client.get(f"/blobs/{sha}").content == r.content  # the extension is optional
    again = client.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    for bad in ("/blobs/" + "0" * 64 + ".png", "/blobs/xyz.png", f"/blobs/{sha.upper()}.png", f"/blobs/{sha}.p/ng"):
        assert client.get(bad).status_code == 404, bad


# ---- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url, words, suggestion", [
    ("/models/efficientnet_lite", "no model 'efficientnet_lite'", MODEL),
    (f"/models/{MODEL}/blok10", "no layer 'blok10' in efficientnet_lite0", f"{MODEL}/block10"),
    (f"/models/{MODEL}/blok10/5", "no layer 'blok10'", f"{MODEL}/block10:5"),
    ("/models/efficientnet_lit0/block10/5", "no model", f"{MODEL}/block10:5"),
    (f"/models/{MODEL}/block10/112", "out of range: efficientnet_lite0/block10 has 112 units, 0-111",
     f"{MODEL}/block10:111"),
    (f"/models/{MODEL}/block10/five", "a unit is a channel index, 0-111", f"{MODEL}/block10:0"),
    (f"/models/{MODEL}/head?page=11", "pages 1-10", f"{MODEL}/head"),
    (f"/models/{MODEL}/head?variant=shiny", "no variant 'shiny'", f"{MODEL}/head"),
    ("/no/such/page", "no such page", None),
])
def test_unknown_names_are_404_with_suggestions(client, url, words, suggestion):
    path, _, query = url.partition("?")
    r = client.get(path + ".json" + ("?" + query if query else ""))
    if path.count("/") < 2:  # not a page with a twin: ask for JSON by header
        r = client.get(url, headers={"Accept": "application/json"})
    assert r.status_code == 404, r.text
    body = r.json()
    assert set(body) == {"error", "status", "suggestions"} and body["status"] == 404
    assert words in body["error"]
    if suggestion:
        assert suggestion in body["suggestions"]
    html = page(client, url, 404)
    assert words.replace("'", "&#39;") in html
    if suggestion:
        assert f'href="/jump?q={suggestion.replace("/", "/").replace(":", "%3A")}"' in html


def test_bad_page_number_is_a_400(client):
    r = client.get(f"/models/{MODEL}/{LAYER}.json?page=x")
    assert r.status_code == 400 and "page must be a number" in r.json()["error"]


# ---- the jump box ---------------------------------------------------------------------------

@pytest.mark.parametrize("query, context, target", [
    (f"{MODEL}/block10:5", "", f"/models/{MODEL}/block10/5"),
    (f"  {MODEL}/block10:5 ", "", f"/models/{MODEL}/block10/5"),
    (f"{MODEL}/block10/5", "", f"/models/{MODEL}/block10/5"),
    (f"/models/{MODEL}/block10/5", "", f"/models/{MODEL}/block10/5"),
    (f"http://example.org/models/{MODEL}/block10/5.json", "", f"/models/{MODEL}/block10/5"),
    (f"{MODEL}/block10", "", f"/models/{MODEL}/block10"),
    (MODEL, "", f"/models/{MODEL}"),
    ("block10:5", MODEL, f"/models/{MODEL}/block10/5"),
    ("head", MODEL, f"/models/{MODEL}/head"),
    (f"{UNTRAINED}/mixed4c:7", "", f"/models/{UNTRAINED}/inception4c/7"),  # Lucid's name
    ("mixed4c:7", "", f"/models/{UNTRAINED}/inception4c/7"),  # only one model has it
    (f"{MODEL}/_blocks.10:3", "", f"/models/{MODEL}/block10/3"),  # module path
    ("resnet50", MODEL, "/models/resnet50"),  # a model id wins over the context
])
def test_jump_resolves_to_the_permalink(client, query, context, target):
    r = client.get("/jump", params={"q": query, "m": context}, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == target, r.text[:300]
    data = client.get("/jump.json", params={"q": query, "m": context}).json()
    assert data["url"] == target and data["query"] == query


@pytest.mark.parametrize("query, context, status, suggestion", [
    ("block10:5", "", 404, f"{MODEL}/block10:5"),  # in efficientnet_lite0 and _lite2: say which
    (f"{MODEL}/blok10:5", "", 404, f"{MODEL}/block10:5"),
    ("efficientnet_lite/block10:5", "", 404, f"{MODEL}/block10:5"),
    ("blok10:5", MODEL, 404, f"{MODEL}/block10:5"),
    (f"{MODEL}/block10:500", "", 404, f"{MODEL}/block10:111"),
    ("a/b/c/d", "", 404, None),
    ("", "", 400, None),
])
def test_jump_errors_suggest_whole_queries(client, query, context, status, suggestion):
    r = client.get("/jump.json", params={"q": query, "m": context})
    assert r.status_code == status
    if suggestion:
        assert suggestion in r.json()["suggestions"]
    follow = client.get("/jump", params={"q": suggestion}) if suggestion else None
    if follow is not None:
        assert follow.status_code == 200  # each suggestion is itself a working jump


def test_jump_box_is_on_every_page(client):
    for url in ("/", f"/models/{MODEL}", f"/models/{MODEL}/{LAYER}", UNIT, "/models/nope"):
        html = client.get(url).text
        assert 'action="/jump"' in html and 'name="q"' in html, url
    assert 'name="m" value="efficientnet_lite0"' in page(client, UNIT)


def test_histogram_is_drawn_from_counts(store_root):
    """Dataset examples built without a histogram image: the page draws the counts as SVG bars
    over the occupied bins, with a tick per quantile example."""
    from microtome.store import Store
    from tests.web_fixtures import put

    counts = [0, 0, 3, 0, 7, 1, 0, 0]
    meta = {"dataset": "samples", "images": 11, "top": [], "bottom": [],
            "quantiles": [{"q": 0.5, "value": 4.5, "files": {}}, {"q": 0.9, "value": 4.9, "files": {}}],
            "histogram": {"edges": [float(i) for i in range(9)], "counts": counts}}
    with Store(store_root) as store:
        put(store, MODEL, LAYER, 6, "dataset_examples", {"dataset": "samples", "k": 4, "size": 48}, {}, meta)
    with TestClient(create_app(store_root, registry=registry, on_demand=False)) as c:
        html = page(c, f"/models/{MODEL}/{LAYER}/6")
    svg = html[html.index('<svg class="hist-svg"'):html.index("</svg>")]
    assert 'viewBox="0 0 24 100"' in svg  # bins 2..4 drawn, 6 units wide each
    assert re.findall(r"<title>(\d+) in", svg) == ["3", "7", "1"]  # empty bins draw nothing
    assert svg.count('class="mark"') == 2 and 'x1="15.0"' in svg  # 4.5 in [2, 6) -> 2.5 bins in
    assert "over 11 images" in html
