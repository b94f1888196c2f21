"""The web's view functions on their own (no HTTP), the route table, a plug-in technique shown
on the unit page and in the export with no project file edited, and dead units said as dead."""

from __future__ import annotations

import inspect
import json
import time

import pytest
from fastapi.testclient import TestClient

from microtome.errors import MicrotomeError, NotFound
from microtome.store import Artifact, ArtifactKey, Store
from microtome.techniques.registry import LAYER as LAYER_SCOPE
from microtome.techniques.registry import Technique, registered, web_sections
from microtome.web import create_app, export
from microtome.web.pages import atlas, circuit, inspect_views, search, views
from microtome.web.pages.views import Redirect
from microtome.web.present.artifacts import dead_on
from microtome.web.present.state import AppState
from microtome.web.server.routes import routes
from tests.web_fixtures import FULL_UNITS, LAYER, MODEL, links, png, provenance, put, registry, store_copy

DEAD, CONSTANT = 6, 7  # block10 units given dataset examples that never activate / never change


def toy_stat() -> Technique:
    return Technique(id="toy_stat", title="Toy statistic", runner="tests.x:y",
                     params=lambda ctx: [{"preset": ctx.preset}])


def put_toy(store: Store, unit: int | None, technique: str = "toy_stat", **params: object) -> Artifact:
    params = {"preset": "quick", **params}
    key = ArtifactKey.for_params(MODEL, LAYER, unit, technique, params)
    return store.put(key, params, files={"image.png": png("toy", unit, *params.values())},
                     meta={"statistic": 0.25, "provenance": provenance()})


def put_examples(store: Store, unit: int, top: float, bottom: float, counts: list[int]) -> None:
    entry = {"index": 0, "path": "samples/a.png", "value": top, "files": {}}
    put(store, MODEL, LAYER, unit, "dataset_examples", {"dataset": "samples", "k": 1, "size": 48}, {},
        {"dataset": "samples", "images": sum(counts), "top": [entry], "bottom": [{**entry, "value": bottom}],
         "histogram": {"edges": [bottom + i for i in range(len(counts) + 1)], "counts": counts}})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = store_copy(tmp_path_factory.mktemp("views") / "store")
    with Store(root, create=False) as store:
        put_examples(store, DEAD, 0.0, 0.0, [40, 0, 0])
        put_examples(store, CONSTANT, 2.0, 2.0, [0, 40, 0])
    return root


@pytest.fixture(scope="module")
def state(root):
    with Store(root, create=False) as store:
        yield AppState.over(store, registry)


# ---- each view on its own ---------------------------------------------------------------------

def test_each_view_returns_its_page_data_without_http(state):
    assert views.index(state)["page"] == "index" and MODEL in [m["id"] for m in views.index(state)["models"]]
    model = views.model(state, MODEL)
    assert model["page"] == "model" and model["url"] == f"/models/{MODEL}" and len(model["layers"]) == 19
    grid = views.layer(state, MODEL, LAYER, "negative", "1")
    assert grid["variant"] == "negative" and len(grid["units"]) == 112 and grid["built"] == 16
    unit = views.unit(state, MODEL, LAYER, "1")
    assert unit["shorthand"] == f"{MODEL}/{LAYER}:1" and unit["job"] is None and unit["missing"] == []
    assert set(unit["feature_vis"]) == {"positive", "negative", "neuron", "diversity"}
    assert unit["connections"]["inputs"][0]["image"].startswith("/blobs/")
    assert views.job(state, MODEL, LAYER, "1") == {"state": "none", "position": None,
                                                   "artifacts": len(state.store.find(MODEL, LAYER, 1))}
    jump = views.jump(state, "block10:5", MODEL)
    assert jump == Redirect(f"/models/{MODEL}/{LAYER}/5", jump.data) and jump.data["query"] == "block10:5"
    sha = unit["feature_vis"]["positive"]["images"][0]["url"].split("/")[-1]
    assert views.blob(state, sha).body.startswith(b"\x89PNG")
    assert views.models_root(state) == Redirect("/")


def test_views_redirect_to_canonical_names_and_raise_errors_with_status(state):
    assert views.model(state, "EfficientNet_Lite0") == Redirect(f"/models/{MODEL}")
    assert views.layer(state, MODEL, "_blocks.10", "neuron") == Redirect(f"/models/{MODEL}/{LAYER}?variant=neuron")
    assert views.unit(state, MODEL, LAYER, "05") == Redirect(f"/models/{MODEL}/{LAYER}/5")
    with pytest.raises(NotFound) as err:
        views.unit(state, MODEL, "blok10", "5")
    assert err.value.status == 404 and f"{MODEL}/block10:5" in err.value.suggestions
    with pytest.raises(MicrotomeError) as bad:
        views.layer(state, MODEL, LAYER, page="x")
    assert bad.value.status == 400


def test_the_unit_view_asks_the_store_once_per_kind_of_thing(state, monkeypatch):
    calls: list[tuple] = []
    find = state.store.find
    monkeypatch.setattr(state.store, "find", lambda *a, **kw: calls.append(a) or find(*a, **kw))
    data = views.unit(state, MODEL, LAYER, "1")
    assert calls[:2] == [(MODEL, LAYER, 1), (MODEL, LAYER, None)]  # the unit's artifacts, its layer's
    linked = {(c["layer"], c["unit"]) for c in data["connections"]["inputs"] + data["connections"]["outputs"]}
    assert sorted(calls[2:]) == sorted((MODEL, lid, u, "feature_vis") for lid, u in linked)  # thumbnails only


def test_the_route_table_is_flat_and_names_module_level_views():
    table = routes()
    assert len({(r.path, r.methods) for r in table}) == len(table)
    for route in table:
        module = inspect.getmodule(route.view)
        # page views; others in their modules
        assert module is views or module in (search, circuit, inspect_views, atlas)
        assert route.view.__qualname__ == route.view.__name__
        assert next(iter(inspect.signature(route.view).parameters)) == "state"


# ---- a plug-in technique ----------------------------------------------------------------------

def test_a_plugin_technique_is_shown_on_the_unit_page_and_in_its_json(root):
    with registered(toy_stat()), Store(root, create=False) as store:
        art = put_toy(store, 2)
        assert [t.id for t in web_sections()][-1] == "toy_stat"
        with TestClient(create_app(store, registry=registry, on_demand=False)) as client:
            data = client.get(f"/models/{MODEL}/{LAYER}/2.json").json()
            html = client.get(f"/models/{MODEL}/{LAYER}/2").text
            other = client.get(f"/models/{MODEL}/{LAYER}/3.json").json()
    image = f"/blobs/{art.files['image.png']}.png"
    assert data["toy_stat"]["images"] == [{"name": "image.png", "url": image}]
    assert data["toy_stat"]["summary"] == {"statistic": 0.25} and "toy_stat" not in data["missing"]
    assert other["toy_stat"] is None and other["missing"] == ["toy_stat"]
    section = html[html.index('<section id="toy_stat"'):]
    section = section[:section.index("</section>")]
    assert "<h2>Toy statistic</h2>" in section and "statistic 0.25" in section
    assert links(section)[1] == [image] and "parameters and provenance" in section
    assert html.index('id="connections"') < html.index('id="toy_stat"')  # web_sections() order


def test_a_plugin_with_variants_at_layer_scope_uses_the_generic_section(state):
    entry = Technique(id="toy_maps", title="Toy maps", runner="tests.x:y", scope=LAYER_SCOPE,
                      variants=("low", "high"), params=lambda ctx: [])
    with registered(entry):
        put_toy(state.store, None, "toy_maps", variant="high")
        data = views.unit(state, MODEL, LAYER, "9")
        html = state.renderer.html("unit.html", data)
    assert list(data["toy_maps"]) == ["high"] and "toy_maps" not in data["missing"]
    assert "<b>high</b>" in html and "Toy maps" in html


def test_the_export_includes_a_plugin_technique(root, tmp_path):
    with registered(toy_stat()):
        with Store(root, create=False) as store:
            art = put_toy(store, 2)
        export(root, tmp_path / "site", progress=False)
    page = (tmp_path / "site" / "models" / MODEL / LAYER / "2" / "index.html").read_text()
    data = json.loads((tmp_path / "site" / "models" / MODEL / LAYER / "2.json").read_text())
    assert "Toy statistic" in page and f"../../../../blobs/{art.files['image.png']}.png" in page
    assert data["toy_stat"]["summary"]["statistic"] == 0.25
    assert (tmp_path / "site" / "blobs" / f"{art.files['image.png']}.png").is_file()


# ---- dead units -------------------------------------------------------------------------------

def examples(top: float, bottom: float, counts: list[int], dataset: str = "samples") -> Artifact:
    entry = {"value": top}
    key = ArtifactKey.for_params("m", "l", 0, "dataset_examples", {"dataset": dataset})
    return Artifact(key, {"dataset": dataset}, {"top": [entry], "bottom": [{"value": bottom}],
                                                "histogram": {"edges": list(range(len(counts) + 1)),
                                                              "counts": counts}}, {}, time.time())


@pytest.mark.parametrize("art, dead", [
    (examples(0.0, 0.0, [40, 0]), "samples"),  # never active
    (examples(3.0, 3.0, [0, 40], "folder:x"), "folder:x"),  # the same on every image
    (examples(3.0, 1.0, [0, 40, 0]), "samples"),  # one non-empty bin
    (examples(3.0, 0.0, [30, 10]), None),
    (examples(3.0, 0.0, [1, 0]), None),  # one image: cannot tell
    (None, None),
])
def test_dead_on_names_the_dataset_a_unit_never_responds_to(art, dead):
    assert dead_on(art) == dead


def test_dead_units_are_said_as_dead_on_the_page_in_json_and_on_the_grid(root):
    with TestClient(create_app(root, registry=registry, on_demand=False)) as client:
        dead = client.get(f"/models/{MODEL}/{LAYER}/{DEAD}.json").json()
        html = client.get(f"/models/{MODEL}/{LAYER}/{DEAD}").text
        constant = client.get(f"/models/{MODEL}/{LAYER}/{CONSTANT}.json").json()
        live = client.get(f"/models/{MODEL}/{LAYER}/{min(FULL_UNITS)}.json").json()
        grid = client.get(f"/models/{MODEL}/{LAYER}.json").json()
        grid_html = client.get(f"/models/{MODEL}/{LAYER}").text
    assert dead["dead"] is True and dead["dead_on"] == "samples" and constant["dead"] is True
    assert live["dead"] is False and live["dead_on"] is None
    assert "not active on samples" in html
    details = html[html.index('<details class="inactive-fv">'):]
    assert "show the feature visualization anyway" in details[:200]
    assert dead["feature_vis"]["positive"]["images"][0]["url"] in details  # still there, on request
    tiles = {u["unit"]: u for u in grid["units"]}
    assert tiles[DEAD]["dead"] and tiles[CONSTANT]["dead_on"] == "samples" and not tiles[1]["dead"]
    tile = grid_html[grid_html.index(f'href="/models/{MODEL}/{LAYER}/{DEAD}"'):]
    tile = tile[:tile.index("</li>")]
    assert "not active on samples" in tile and "<img" not in tile
