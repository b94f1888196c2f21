"""An SAE layer in a real browser (Chromium driven by Playwright) over a live uvicorn: the model
page links the feature layer, its page shows the SAE's figures and the grid's images load, a
feature's page lists its decoder loadings, and one of them leads to the base layer's unit."""

from __future__ import annotations

import pytest

from microtome.web import create_app
from tests.web_fixtures import LAYER, MODEL, LiveServer, add_sae, broken_images, registry, store_copy


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = add_sae(store_copy(tmp_path_factory.mktemp("browser-sae") / "store"))
    with LiveServer(create_app(store, registry=registry, on_demand=False)) as live:
        yield live
    store.close()


def test_an_sae_layer_and_a_feature_in_the_browser(site, page):
    page.goto(site.url + f"/models/{MODEL}")
    page.click(f"a[href='/models/{MODEL}/block10.sae']")
    page.wait_for_url(f"**/models/{MODEL}/block10.sae")
    facts = page.locator("#sae")
    assert "explained variance 0.812" in facts.inner_text()
    assert "mean L0 15.5" in facts.inner_text()
    assert page.locator("ul.grid img").count() == 4
    assert broken_images(page) == []
    page.click(f"ul.grid a[href='/models/{MODEL}/block10.sae/0']")
    page.wait_for_url(f"**/models/{MODEL}/block10.sae/0")
    loadings = page.locator("ul.sae-loadings li")
    assert loadings.count() == 3
    assert "block10:64" in loadings.first.inner_text()
    page.click(f"ul.sae-loadings a[href='/models/{MODEL}/{LAYER}/64']")
    page.wait_for_url(f"**/models/{MODEL}/{LAYER}/64")
    assert page.locator("h1").inner_text().startswith(f"{MODEL}/{LAYER}:64")
