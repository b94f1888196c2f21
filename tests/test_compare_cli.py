"""`microtome compare` end to end on the toys: both sides recorded, a rerun does nothing, bad
names exit 2 with close names; `build --techniques similar --compare-with` makes the same
artifacts (so each finds the other's); status reports them; the web shows them both ways
(unit JSON `similar`, the unit page's section, the model page's CKA map)."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from microtome.cli import main
from microtome.pipeline.pipeline import build
from microtome.store import Store
from microtome.web import create_app
from tests.compare_toys import CONV1_PERM
from tests.web_fixtures import put_feature_vis, registry

TOY, PERM = "tests.toy_models:tiny_net", "tests.compare_toys:tiny_net_perm"
TWIN_OF_2 = list(CONV1_PERM).index(2)  # tiny_net_perm's conv1 unit that is tiny_net's conv1:2
SIMILAR_KEYS = {"model", "layer", "unit", "r", "matched", "url"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "store"
    out = CliRunner().invoke(main, ["compare", TOY, PERM, "--preset", "quick", "--store", str(root)])
    assert out.exit_code == 0, out.output
    with Store(root, create=False) as store:  # a thumbnail for one similar unit: tiny_net/conv1:2's twin
        put_feature_vis(store, "tiny_net_perm", "conv1", TWIN_OF_2, ("positive",), trained=False)
    return root, out.output


def test_compare_records_both_sides_and_a_rerun_does_nothing(compared):
    root, output = compared
    assert "conv1" in output and "1.000" in output
    store = Store(root, create=False)
    for model, units in (("tiny_net", 8), ("tiny_net_perm", 8)):
        found = store.find(model, "conv1", technique="similar")
        assert sorted(a.key.unit for a in found if a.key.unit is not None) == list(range(units))
    again = CliRunner().invoke(main, ["compare", TOY, PERM, "--preset", "quick", "--store", str(root)])
    assert again.exit_code == 0 and "nothing to do" in again.output


@pytest.mark.parametrize("args, message", [
    (["tests.toy_models:tiny_net", "efficientnet_lite9"], "did you mean efficientnet_lite"),
    (["efficientnet_lite0", "efficientnet_lite1", "--layers", "blok10=block14"], "did you mean block10"),
    (["efficientnet_lite0", "efficientnet_lite1", "--layers", "block10=blok14"], "did you mean block14"),
    (["efficientnet_lite0", "efficientnet_lite1", "--layers", "blok10"], "did you mean block10"),
    (["efficientnet_lite0", "efficientnet_lite1", "--dataset", "folder:/no/such/dir"], "/no/such/dir"),
])
def test_bad_names_exit_2_with_close_names_and_write_nothing(tmp_path, args, message):
    out = CliRunner().invoke(main, ["compare", *args, "--store", str(tmp_path / "s")])
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert not (tmp_path / "s").exists()


def test_build_makes_the_same_artifacts_and_status_reports_them(compared, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(compared[0], root)
    summary = build(str(root), TOY, techniques="similar", preset="quick", compare=[PERM])
    assert summary.planned == 0  # `compare` stored exactly what the build would
    fresh = build(str(tmp_path / "fresh"), TOY, techniques="similar", preset="quick", compare=[PERM])
    assert fresh.recorded == fresh.planned == 8 + 16 + 3 + 3 and not fresh.failed  # units, then layers
    store = Store(tmp_path / "fresh", create=False)
    art = store.find("tiny_net", "conv1", 2, "similar")[0]
    assert art.meta["matched"]["unit"] == list(CONV1_PERM).index(2) and art.meta["matched"]["r"] == pytest.approx(1.0)
    status = CliRunner().invoke(main, ["status", "--store", str(tmp_path / "fresh")])
    assert status.exit_code == 0 and "similar" in status.output
    assert "8/8" in status.output and "16/16" in status.output
    assert "similar: vs tiny_net_perm, 3 paired layers (18 images of samples)" in status.output
    bad = CliRunner().invoke(main, ["build", TOY, "--techniques", "similar", "--compare-with", "tiny_nett",
                                    "--store", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "no model 'tiny_nett'" in bad.output


@pytest.fixture(scope="module")
def client(compared):
    with TestClient(create_app(compared[0], registry=registry, on_demand=False)) as c:
        yield c


def test_unit_json_lists_similar_units_both_ways(client):
    for model, unit, twin in (("tiny_net", 2, list(CONV1_PERM).index(2)), ("tiny_net_perm", 5, CONV1_PERM[5])):
        other = "tiny_net_perm" if model == "tiny_net" else "tiny_net"
        similar = client.get(f"/models/{model}/conv1/{unit}.json").json()["similar"]
        assert similar and SIMILAR_KEYS <= set(similar[0])
        assert [e["r"] for e in similar] == sorted((e["r"] for e in similar), reverse=True)
        best = similar[0]
        assert (best["model"], best["layer"], best["unit"], best["matched"]) == (other, "conv1", twin, True)
        assert best["r"] == pytest.approx(1.0) and best["url"] == f"/models/{other}/conv1/{twin}"
        assert sum(e["matched"] for e in similar) == 1
        assert (best["image"] or "").startswith("/blobs/") == (model == "tiny_net")  # the twin's feature vis


def test_unit_page_shows_the_section_and_model_page_the_cka_map(client):
    html = client.get("/models/tiny_net/conv1/2").text
    assert 'id="similar"' in html and f'href="/models/tiny_net_perm/conv1/{list(CONV1_PERM).index(2)}"' in html
    assert "matched" in html and '<img src="/blobs/' in html
    model = client.get("/models/tiny_net_perm.json").json()["similarity"]
    assert [m["other"] for m in model] == ["tiny_net"]
    cka = model[0]["cka"]
    assert len(cka) == 3 and all(cka[i][i] == pytest.approx(1.0) for i in range(3))
    assert model[0]["pairs"] == [["conv1", "conv1"], ["conv2", "conv2"], ["logits", "logits"]]
    page = client.get("/models/tiny_net").text
    assert '<svg class="cka"' in page and page.count('class="paired"') == 3
    plain = client.get("/models/efficientnet_lite0.json").json()
    assert plain["similarity"] == []


def test_dictionary_feature_layers_are_compared_too(tmp_path):
    root = str(tmp_path / "store")
    sae = CliRunner().invoke(main, ["sae", TOY, "conv2", "--features", "32", "--k", "4", "--epochs", "2",
                                    "--store", root])
    assert sae.exit_code == 0, sae.output
    out = CliRunner().invoke(main, ["compare", TOY, PERM, "--preset", "quick", "--store", root])
    assert out.exit_code == 0, out.output
    assert "conv2.sae32    conv2" in out.output  # a feature layer pairs with its base's partner
    store = Store(root, create=False)
    features = [a for a in store.find("tiny_net", "conv2.sae32", technique="similar") if a.key.unit is not None]
    assert len(features) == 32 and all(a.meta["other_layer"] == "conv2" for a in features)
    with TestClient(create_app(root, registry=registry, on_demand=False)) as c:
        similar = c.get("/models/tiny_net/conv2.sae32/0.json").json()["similar"]
        assert similar and similar[0]["model"] == "tiny_net_perm" and similar[0]["layer"] == "conv2"
        assert similar[0]["url"].startswith("/models/tiny_net_perm/conv2/")
        maps = c.get("/models/tiny_net.json").json()["similarity"]
        assert "conv2.sae32" in maps[0]["layers"] and maps[0]["other_layers"] == ["conv1", "conv2", "logits"]
