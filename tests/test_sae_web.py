"""SAE layers on the web: the model page lists `block10.sae` beside block10, its layer page and
JSON show the SAE's figures (`"sae"` with the exact names), a feature's page lists the base units
its decoder direction loads on (linked, strongest first), and a base unit's page links its
layer's dictionaries. The store holds a stored SAE's meta and fake feature-vis images: the web
never reads the weights."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from microtome.web import create_app
from tests.web_fixtures import LAYER, MODEL, SAE_FACTS, SAE_LOADINGS, add_sae, registry, store_copy


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    store = add_sae(store_copy(tmp_path_factory.mktemp("sae-web") / "store"))
    with TestClient(create_app(store, registry=registry, on_demand=False)) as c:
        yield c
    store.close()


def test_the_model_page_lists_the_feature_layer_beside_its_base(client):
    layers = [layer["id"] for layer in client.get(f"/models/{MODEL}.json").json()["layers"]]
    assert layers[layers.index(LAYER) + 1] == "block10.sae"
    assert "block10.sae" in client.get(f"/models/{MODEL}").text


def test_the_layer_page_and_json_show_the_sae(client):
    data = client.get(f"/models/{MODEL}/block10.sae.json").json()
    assert {name: data["sae"][name] for name in SAE_FACTS} == SAE_FACTS
    assert data["layer"]["kind"] == "sae" and data["layer"]["channels"] == 448
    assert data["units"][0]["image"] is not None  # the grid, as for any layer
    html = client.get(f"/models/{MODEL}/block10.sae").text
    assert "explained variance <b>0.812</b>" in html and "dead features <b>6.25%</b>" in html
    assert f'href="/models/{MODEL}/{LAYER}"' in html
    assert client.get(f"/models/{MODEL}/{LAYER}.json").json()["sae"] is None


def test_a_feature_page_lists_the_base_units_it_loads_on(client):
    data = client.get(f"/models/{MODEL}/block10.sae/0.json").json()
    assert [(e["unit"], e["weight"]) for e in data["sae"]["loadings"]] == [tuple(p) for p in SAE_LOADINGS]
    assert data["sae"]["loadings"][0]["url"] == f"/models/{MODEL}/{LAYER}/64"
    assert data["feature_vis"]["positive"]["images"]
    html = client.get(f"/models/{MODEL}/block10.sae/0").text
    assert "Decoder direction" in html and f'href="/models/{MODEL}/{LAYER}/64"' in html
    assert client.get(f"/models/{MODEL}/block10.sae/448").status_code == 404


def test_a_base_unit_page_links_its_dictionaries(client):
    data = client.get(f"/models/{MODEL}/{LAYER}/2.json").json()
    assert data["sae"]["feature"] is False
    assert data["sae"]["dictionaries"][0]["url"] == f"/models/{MODEL}/block10.sae"
    assert "sae" not in data["missing"]
    other = client.get(f"/models/{MODEL}/block9/0.json").json()
    assert other.get("sae") is None


def test_a_misspelt_feature_layer_suggests_it(client):
    response = client.get(f"/models/{MODEL}/block10.sea", headers={"accept": "application/json"})
    assert response.status_code == 404
    assert f"{MODEL}/block10.sae" in str(response.json())
