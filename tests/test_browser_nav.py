"""Navigation in a real browser (Chromium driven by Playwright) over a live uvicorn: search by
label from the header box, open a result, open its circuit, click a node; a note holding a
script tag is inert (no dialog, no script node); the note form sends the token as a header."""

from __future__ import annotations

import pytest

from microtome.store import Store
from microtome.store.notes import add_note
from microtome.web import create_app
from tests.web_fixtures import LAYER, MODEL, LiveServer, registry, served_export, store_copy

TOKEN = "browser-token"
EVIL = "<script>alert('pwned')</script><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = Store(store_copy(tmp_path_factory.mktemp("browser-nav") / "store"), create=False)
    add_note(store, MODEL, LAYER, 2, EVIL)
    with LiveServer(create_app(store, registry=registry, on_demand=False, notes_token=TOKEN)) as live:
        yield live
    store.close()


def test_search_from_the_box_then_result_circuit_and_node(site, page):
    page.goto(site.url + f"/models/{MODEL}")
    page.fill("form.search input[name=q]", "sports car")
    page.press("form.search input[name=q]", "Enter")
    page.wait_for_url("**/search?q=sports+car")
    results = page.locator("ul.results a.result")
    assert results.count() == 1
    results.first.click()
    page.wait_for_url(f"**/models/{MODEL}/{LAYER}/2")
    assert "sports car" in page.locator(".unit-facts").inner_text()
    page.click("a.circuit-link")
    page.wait_for_url(f"**/models/{MODEL}/{LAYER}/2/circuit")
    assert page.locator("svg.circuit a.cnode").count() > 5
    assert page.locator("svg.circuit path.edge").count() > 5
    page.click(f"svg.circuit a.cnode[data-node='{MODEL}/block9:2'] rect.frame")
    page.wait_for_url(f"**/models/{MODEL}/block9/2")
    assert page.locator("h1").inner_text().startswith(f"{MODEL}/block9:2")


def test_a_script_note_is_inert_text(site, page):
    page.goto(site.url + f"/models/{MODEL}/{LAYER}/2")
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)
    assert page.locator(".note-text").first.inner_text() == EVIL  # shown as the text it is
    scripts = page.evaluate("() => Array.from(document.scripts).map(s => s.src || s.textContent)")
    assert len(scripts) == 1 and scripts[0].endswith("/static/microtome.js"), scripts
    assert page.locator("#notes img").count() == 0
    assert page.dialogs == []


def test_the_note_form_sends_the_token_and_shows_the_note(site, page):
    page.goto(site.url + f"/models/{MODEL}/{LAYER}/3")
    page.click(".note-form summary")
    page.fill(".note-form textarea", "wrong token first")
    page.fill(".note-form input[name=token]", "nope")
    page.click(".note-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('.note-msg').textContent.length > 0")
    assert "token" in page.locator(".note-msg").inner_text()
    page.fill(".note-form textarea", "a <b>hotdog</b> unit")
    page.fill(".note-form input[name=token]", TOKEN)
    with page.expect_navigation():
        page.click(".note-form button[type=submit]")
    assert page.locator(".note-text").inner_text() == "a <b>hotdog</b> unit"


def test_the_static_export_searches_labels_in_the_browser(tmp_path, page):
    with served_export(tmp_path, page, f"/models/{MODEL}/"):
        page.fill("form.search input[name=q]", "dog")
        page.press("form.search input[name=q]", "Enter")
        page.wait_for_url("**/search/?q=dog")
        page.wait_for_selector("#static-results a.result")
        assert page.locator("#static-results a.result").count() == 3
        assert "3 units" in page.locator("#static-count").inner_text()
        page.locator("#static-results a.result").first.click()
        page.wait_for_url(f"**/models/{MODEL}/{LAYER}/1/")
        assert page.locator("h1").inner_text().startswith(f"{MODEL}/{LAYER}:1")

