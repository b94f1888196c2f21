"""The "similar units" section and the CKA map in a real browser: a unit page of one toy lists
its permuted twin (matched, r 1), the link leads to the twin's page, which lists it back; the
model page draws the CKA map as an SVG with a cell per layer pair and a tooltip per cell."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from microtome.cli import main
from microtome.store import Store
from microtome.web import create_app
from tests.compare_toys import CONV1_PERM
from tests.web_fixtures import ARTIFACTS, LiveServer, broken_images, put_feature_vis, registry


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-browser") / "store"
    out = CliRunner().invoke(main, ["compare", "tests.toy_models:tiny_net", "tests.compare_toys:tiny_net_perm",
                                    "--preset", "quick", "--store", str(root)])
    assert out.exit_code == 0, out.output
    with Store(root, create=False) as store:  # one similar unit has a thumbnail, the others placeholders
        put_feature_vis(store, "tiny_net_perm", "conv1", list(CONV1_PERM).index(2), ("positive",), trained=False)
    with LiveServer(create_app(root, registry=registry, on_demand=False)) as live:
        yield live


def test_similar_units_and_the_cka_map_render(site, page):
    twin = list(CONV1_PERM).index(2)
    page.goto(f"{site.url}/models/tiny_net/conv1/2")
    section = page.locator("#similar")
    assert section.is_visible()
    first = section.locator("li").first
    assert "tiny_net_perm" in first.inner_text() and "matched" in first.inner_text().lower()
    assert first.locator("img").count() == 1  # the twin's feature vis
    assert section.locator(".placeholder").count() >= 1  # the others have none built: placeholders
    assert broken_images(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "similar-section.png"), full_page=True)
    first.locator("a").click()
    page.wait_for_url(f"**/models/tiny_net_perm/conv1/{twin}")
    back = page.locator("#similar li").first.inner_text()
    assert "tiny_net" in back and "conv1:2" in back

    page.goto(f"{site.url}/models/tiny_net")
    assert page.locator("svg.cka").is_visible()
    assert page.locator("svg.cka > rect").count() == 9  # 3 layers x 3 layers
    assert page.locator("svg.cka > rect.paired").count() == 3
    assert "CKA 1" in page.locator("svg.cka > rect").first.locator("title").text_content()
    page.locator("#similarity").screenshot(path=str(ARTIFACTS / "cka-map.png"))
