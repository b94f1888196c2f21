"""The inspect page in a real browser (Chromium driven by Playwright) over a live uvicorn:
upload a photo, watch the progress fill in without a reload, see the group maps and
feature-vis thumbnails load, then click a unit link. A hand-set toy with tiny renders keeps
the inspection to seconds. Saves a screenshot to ci-artifacts/inspect-page.png."""

from __future__ import annotations

from microtome.images import to_pil
from tests.inspect_toys import stripes, toy_app, toy_store
from tests.web_fixtures import ARTIFACTS, LiveServer, broken_images

MODEL = "texture_net"


def test_upload_a_photo_see_groups_and_thumbnails_then_click_a_unit(tmp_path, page):
    photo = tmp_path / "stripes.png"
    to_pil(stripes()).save(photo)
    store = toy_store(tmp_path / "store")
    with LiveServer(toy_app(store)) as live:
        page.goto(f"{live.url}/models/{MODEL}")
        page.click("p.inspect-link a")
        page.wait_for_url(f"**/models/{MODEL}/inspect")
        page.set_input_files("input[name=image]", str(photo))
        page.fill("input[name=groups]", "2")
        page.click("form.inspect-form button[type=submit]")
        page.wait_for_url(f"**/models/{MODEL}/inspect/*")  # the job's own URL (history.replaceState)
        page.wait_for_selector("#inspect-result img.group-map", timeout=60_000)  # filled in without a reload
        assert page.locator("img.group-map").count() == 2 and page.locator("img.group-vis").count() == 2
        assert page.locator(".over.grid img").count() == 4 and page.locator(".flow-svg svg").count() == 1
        assert broken_images(page) == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inspect-page.png"), full_page=True)
        link = page.locator(".group .chips a.unit-link").first
        href = link.get_attribute("href")
        assert href.startswith(f"/models/{MODEL}/texture/")
        link.click()
        page.wait_for_url(f"**{href}")
        assert page.locator("h1").first.inner_text().strip().startswith(f"{MODEL}/texture:")
    store.close()
