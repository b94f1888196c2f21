"""The suite's shared fixtures, and its setup.

Setup: the repository root on `sys.path`, so that tests can name the custom model entry point
`tests.toy_models:tiny_net` however pytest was started (`pytest` or `python -m pytest`).

Fixtures (every shared fixture lives here; test modules import helpers, never fixtures):
- `store_root`: a private, writable copy of the fixture store (`tests/web_fixtures.py`).
- `client`: the web app over a copy of the fixture store, read-only use (one per module): the
  real registry's summaries, no on-demand rendering. A module whose app differs (another
  store, a toy model) defines its own `client`.
- `browser`: Chromium driven by Playwright (one per module); `page`: a fresh page in a new
  context, 1280×900, that fails its test on a JavaScript error or an `alert()`.

Every test that uses `browser` (directly or through `page`) is marked slow and is skipped only
where no Chromium is installed and not under CI: under CI (which installs Chromium) a missing
browser fails the test instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests: slow, and skipped only off CI where Chromium is missing."""
    missing = not Path(CHROMIUM).exists() and not os.environ.get("CI")
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium); "
                                                        "under CI a missing browser fails instead"))


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    """A private copy of the fixture store at `tmp_path/store` (a test that writes gets its own)."""
    from tests.web_fixtures import store_copy

    return store_copy(tmp_path / "store")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A `TestClient` of the web app over a copy of the fixture store (module-wide: read, don't write)."""
    from fastapi.testclient import TestClient

    from microtome.web import create_app
    from tests.web_fixtures import registry, store_copy

    root = store_copy(tmp_path_factory.mktemp("web") / "store")
    with TestClient(create_app(root, registry=registry, on_demand=False)) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium (Playwright's sync API), launched once per module."""
    from playwright import sync_api as playwright  # a test dependency (pyproject [test]): never skipped

    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; the test fails if any page it loads throws or opens an `alert()`
    (`page.dialogs` lists the alerts' messages, for a test of escaping)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()
    assert errors == [], errors  # no JavaScript errors on any page
    assert dialogs == [], dialogs  # and no alert(): escaped content never runs
