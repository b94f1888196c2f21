"""The web microscope in a real browser (Chromium driven by Playwright) over a live uvicorn:
click through model -> layer -> unit, images load, the jump box and connection links work,
an unbuilt unit fills in without a reload, and the static export's jump box resolves in JS.
Saves a screenshot of a unit page to ci-artifacts/unit-page.png."""

from __future__ import annotations

import threading

import pytest

from microtome.store import Store
from microtome.web import create_app
from tests.web_fixtures import (
    ARTIFACTS,
    MODEL,
    FakeRenderer,
    LiveServer,
    broken_images,
    registry,
    served_export,
    store_copy,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = Store(store_copy(tmp_path_factory.mktemp("browser") / "store"), create=False)
    fake = FakeRenderer(store, gate=threading.Event(), delay=0.3)
    with LiveServer(create_app(store, render_job=fake, registry=registry)) as live:
        yield live, fake
        fake.gate.set()  # let a job still waiting finish, so the server stops at once
    store.close()


def test_click_through_to_a_unit_and_around(site, page):
    live, _ = site
    page.goto(live.url + "/")
    page.click(f"a[href='/models/{MODEL}']")
    page.wait_for_url(f"**/models/{MODEL}")
    assert page.locator("svg.graph a.node").count() == 19
    page.click("svg.graph a.node[data-layer='block10']")
    page.wait_for_url(f"**/models/{MODEL}/block10")
    assert page.locator("ul.grid li").count() == 112
    page.click(f"ul.grid a[href='/models/{MODEL}/block10/3']")
    page.wait_for_url(f"**/models/{MODEL}/block10/3")
    assert page.locator("#shorthand").inner_text() == f"{MODEL}/block10:3"
    assert page.locator("#feature-vis img").count() == 7 and page.locator("#dataset-examples img").count() > 10
    assert broken_images(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unit-page.png"), full_page=True)

    page.click("#connections a[href$='/block9/4']")  # a connection: the strongest input units
    page.wait_for_url(f"**/models/{MODEL}/block9/4")
    assert broken_images(page) == []
    page.click("a[rel=next]")
    page.wait_for_url(f"**/models/{MODEL}/block9/5")

    page.fill("form.jump input[name=q]", "block10:7")  # inside a model: LAYER:UNIT
    page.press("form.jump input[name=q]", "Enter")
    page.wait_for_url(f"**/models/{MODEL}/block10/7")
    page.fill("form.jump input[name=q]", "googlenet/mixed4c:1")  # Lucid's name for inception4c
    page.click("form.jump button")
    page.wait_for_url("**/models/googlenet/inception4c/1")
    assert page.locator(".badge.untrained").count() >= 1
    page.fill("form.jump input[name=q]", f"{MODEL}/blok10:7")
    page.press("form.jump input[name=q]", "Enter")
    page.wait_for_load_state()
    assert "did you mean" in page.content()
    page.click(f"ul.suggestions a:text-is('{MODEL}/block10:7')")
    page.wait_for_url(f"**/models/{MODEL}/block10/7")


def test_an_unbuilt_unit_fills_in_without_a_reload(site, page):
    live, fake = site
    page.goto(live.url + f"/models/{MODEL}/block10/77")
    assert page.locator("[data-job]").is_visible() and page.locator("#feature-vis img").count() == 0
    page.evaluate("window.__sameDocument = true")
    fake.gate.set()
    page.wait_for_selector("#feature-vis img", timeout=20_000)
    page.wait_for_selector("[data-job]", state="detached", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True  # filled in, not reloaded
    assert page.locator("#dataset-examples img").count() > 10  # and the dataset's sections
    assert "fake label 77" in page.locator("#labels").inner_text()
    assert "fake label 77" in page.locator("#unit-facts").inner_text()
    assert broken_images(page) == []


def test_copy_link_button_copies_the_permalink(site, browser):
    live, _ = site
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(live.url + f"/models/{MODEL}/block10/2")
    page.click("button.copy")
    page.wait_for_function("document.querySelector('button.copy').textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == live.url + f"/models/{MODEL}/block10/2"
    context.close()


def test_static_export_works_in_a_browser(tmp_path, page):
    with served_export(tmp_path, page):
        page.click(f"a[href='models/{MODEL}/']")
        page.click("svg.graph a.node[data-layer='block10']")
        page.click("ul.grid a >> nth=2")
        page.wait_for_url(f"**/models/{MODEL}/block10/2/")
        assert broken_images(page) == []
        page.fill("form.jump input[name=q]", "block10:5")
        page.press("form.jump input[name=q]", "Enter")
        page.wait_for_url(f"**/models/{MODEL}/block10/5/")
        page.fill("form.jump input[name=q]", "googlenet/mixed4c:2")
        page.press("form.jump input[name=q]", "Enter")
        page.wait_for_url("**/models/googlenet/inception4c/2/")
        page.fill("form.jump input[name=q]", f"{MODEL}/block10:99")  # not exported
        page.press("form.jump input[name=q]", "Enter")
        page.wait_for_function("document.querySelector('.jump-msg').textContent.includes('not in this export')")

