"""The static export: same URL scheme as the server, served by `python -m http.server`; links
followed from `/` reach every exported unit, and every link and image resolves; no local link,
script, stylesheet or form of any exported page points at a file the export lacks; the static
search (static/search.js over search/labels.json) finds what the server's `/search?q=` finds,
in the same order (Node runs the script)."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse, urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from microtome.cli.serve import export as export_command
from microtome.store import Store
from microtome.web import create_app, export
from microtome.web.present.labels import Hit, find_labels, match
from microtome.web.server.export import STATIC_DIR
from tests.web_fixtures import BUILT_UNITS, LAYER, MODEL, UNTRAINED, links, registry, static_server, store_copy


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    root = store_copy(tmp / "store")
    report = export(root, tmp / "site", progress=False)
    return root, tmp / "site", report


@pytest.fixture(scope="module")
def served(exported):
    _, out, _ = exported
    with static_server(out) as base:
        yield base


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, b"", ""


def test_the_site_has_the_server_url_scheme(exported):
    root, out, report = exported
    assert report.models == [MODEL, UNTRAINED]
    assert (out / "index.html").is_file() and json.loads((out / "index.json").read_text())["page"] == "index"
    assert (out / "models" / MODEL / "index.html").is_file() and (out / "models" / f"{MODEL}.json").is_file()
    layer = out / "models" / MODEL / LAYER
    assert (layer / "index.html").is_file() and (out / "models" / MODEL / f"{LAYER}.json").is_file()
    assert (layer / "negative-1.html").is_file() and (layer / "neuron-1.json").is_file()
    head = out / "models" / MODEL / "head"
    assert (head / "positive-10.html").is_file() and not (head / "positive-11.html").exists()
    unit = json.loads((out / "models" / MODEL / LAYER / "3.json").read_text())
    assert unit["shorthand"] == f"{MODEL}/{LAYER}:3" and unit["job"] is None
    assert (layer / "3" / "index.html").is_file()
    assert not (layer / "99").exists()  # only what is built
    with Store(root, create=False) as store:
        built = {(a.key.layer, a.key.unit) for a in store.find(MODEL) if a.key.unit is not None}
        shas = {sha for a in store.find() for sha in a.files.values()}
    assert {(p.parent.name, int(p.name)) for p in (out / "models" / MODEL).glob("*/*") if p.is_dir()} == built
    assert {p.name[:64] for p in (out / "blobs").iterdir()} == shas
    assert report.units == len(built) + 3


def test_links_from_the_index_reach_every_unit_and_all_resolve(exported, served):
    _, out, report = exported
    seen: set[str] = set()
    todo = [served]
    pages = images = 0
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        status, body, kind = fetch(url)
        assert status == 200, url
        if not kind.startswith("text/html"):
            continue
        pages += 1
        hrefs, srcs = links(body.decode())
        for src in srcs:
            target = urljoin(url, src)
            if target not in seen:
                seen.add(target)
                s, data, k = fetch(target)
                assert s == 200 and k == "image/png" and data.startswith(b"\x89PNG"), (url, src)
                images += 1
        for href in hrefs:
            target = urljoin(url, href).split("#")[0]
            assert urlparse(target).netloc == urlparse(served).netloc, (url, href)  # relative links only
            todo.append(target)
    units = {u for u in seen if u.rstrip("/").rsplit("/", 1)[-1].isdigit()}
    assert len(units) == report.units
    assert served + f"models/{MODEL}/{LAYER}/{max(BUILT_UNITS)}/" in units
    assert pages >= report.pages - 10 and images > 50


def test_json_twins_are_served_next_to_their_pages(served):
    status, body, kind = fetch(served + f"models/{MODEL}/{LAYER}/1.json")
    assert status == 200 and json.loads(body)["connections"]["inputs"][0]["url"] == f"/models/{MODEL}/block9/1"
    status, body, _ = fetch(served + f"models/{MODEL}/head/positive-2.json")
    assert status == 200 and json.loads(body)["page_number"] == 2


def test_export_command_and_refusals(tmp_path, store_root):
    result = CliRunner().invoke(export_command, ["--store", str(store_root), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and (tmp_path / "site" / "index.html").is_file()
    again = CliRunner().invoke(export_command, ["--store", str(store_root), "--out", str(tmp_path / "site")])
    assert again.exit_code == 0  # re-exporting over an export is fine
    from microtome.cli import main
    refused = CliRunner().invoke(main, ["export", "--store", str(store_root), "--out", str(store_root)])
    assert refused.exit_code == 2 and "holds a store" in refused.output
    missing = CliRunner().invoke(main, ["export", "--store", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no store" in missing.output


class _Refs(HTMLParser):
    """Every URL an HTML page points at: href, src, action and data-index attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("href", "src", "action", "data-index") and v]


def broken_local_links(site: Path) -> tuple[int, list[tuple[str, str]]]:
    """(local links checked, [(page, link)] whose target the export lacks): a link checker.
    A folder link needs its index.html; a link from the site root ("/...") is broken, as the
    export must work from any folder."""
    checked, broken = 0, []
    for page in sorted(site.rglob("*.html")):
        parser = _Refs()
        parser.feed(page.read_text())
        here = page.parent.relative_to(site).as_posix()
        for ref in parser.refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or not parts.path:  # elsewhere, data:, or "#..."/"?q=" on this page
                continue
            checked += 1
            target = site / posixpath.normpath(posixpath.join(here, unquote(parts.path)))
            if target.is_dir():
                target = target / "index.html"
            inside = target.resolve().is_relative_to(site.resolve())
            if ref.startswith("/") or not inside or not target.is_file():
                broken.append((str(page.relative_to(site)), ref))
    return checked, broken


def test_no_local_link_of_any_page_is_broken(exported, tmp_path):
    _, out, report = exported
    checked, broken = broken_local_links(out)
    assert broken == [] and checked > 20 * report.pages
    (out / "static" / "search.js").rename(tmp_path / "search.js")  # the oracle sees a missing file
    try:
        assert broken_local_links(out)[1][:1] == [("search/index.html", "../static/search.js")]
    finally:
        (tmp_path / "search.js").rename(out / "static" / "search.js")


def test_the_search_page_has_its_json_twin(exported):
    _, out, _ = exported
    twin = json.loads((out / "search.json").read_text())
    assert twin["page"] == "search" and twin["url"] == "/search" and twin["results"] == []
    assert '<script src="../static/search.js"' in (out / "search" / "index.html").read_text()


def test_the_static_search_finds_a_unit_by_its_label(exported):
    root, out, _ = exported
    units = json.loads((out / "search" / "labels.json").read_text())
    found = [u for u in units if any(match("sports car", e["label"]) is not None for e in u["labels"])]
    assert [u["shorthand"] for u in found] == [f"{MODEL}/{LAYER}:2"]
    page = out / "search" / found[0]["url"] / "index.html"
    assert page.is_file()
    assert json.loads(page.parent.with_suffix(".json").read_text())["shorthand"] == f"{MODEL}/{LAYER}:2"
    assert all((out / "search" / u["image"]).is_file() for u in units)
    with TestClient(create_app(root, registry=registry, on_demand=False)) as client:  # the server: the oracle
        for q in ("dog", "car", "o", "striped", "nothing like it"):
            served = {r["shorthand"] for r in client.get("/search.json", params={"q": q}).json()["results"]}
            static = {u["shorthand"] for u in units if any(match(q, e["label"]) is not None for e in u["labels"])}
            assert static == served, q


NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None and not os.environ.get("CI"),
                                reason="no Node.js to run static/search.js (apt-get install nodejs); "
                                       "under CI a missing Node fails instead")


def search_js(units: list[dict], queries: list[str]) -> dict[str, list[dict]]:
    """static/search.js's `findUnits(units, q)` for each query, run by Node."""
    code = ("const s = require(process.argv[1]); const d = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
            "console.log(JSON.stringify(Object.fromEntries(d.queries.map(q => [q, s.findUnits(d.units, q)]))));")
    out = subprocess.run([NODE or "node", "-e", code, str(STATIC_DIR / "search.js")], capture_output=True,
                         text=True, timeout=60, input=json.dumps({"units": units, "queries": queries}))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_node
def test_search_js_ranks_labels_as_search_py_does():
    labels = {("m", "a", 0): [("cat", 0.3), ("tiger cat", 0.9)], ("m", "a", 1): [("catamaran", 0.95)],
              ("m", "a", 2): [("Tiger  Cat", 0.2), ("cat food", 0.2)], ("m", "b", 10): [("tiger cat", 0.9)],
              ("m", "b", 9): [("bobcat", 0.9), ("car", 0.1)], ("l", "a", 3): [("\u00e9clair cat", 0.5)],
              ("m", "a", 4): [("wheel", "n/a")]}
    units = [{"model": m, "layer": layer, "unit": u, "shorthand": f"{m}/{layer}:{u}", "url": "", "image": None,
              "labels": [{"label": t, "score": sc, "source": "examples"} for t, sc in ls]}
             for (m, layer, u), ls in labels.items()]
    hits = [Hit(m, layer, u, t, sc if isinstance(sc, float) else 0.0, "examples")
            for (m, layer, u), ls in labels.items() for t, sc in ls]
    queries = ["cat", "tiger cat", "TIGER", "at", "ca", "\u00e9clair", "wheel", "car", "dog", ""]
    ranked = search_js(units, queries)
    for q in queries:
        expected = [(f"{h.model}/{h.layer}:{h.unit}", h.label, ("part", "words", "label")[rank])
                    for h, rank in find_labels(hits, q)]
        assert [(f["unit"]["shorthand"], f["label"], f["match"]) for f in ranked[q]] == expected, q
    assert [f["unit"]["shorthand"] for f in ranked["cat"]] == [  # whole words by score, then inside words
        "m/a:0", "m/b:10", "l/a:3", "m/a:2", "m/a:1", "m/b:9"]


@needs_node
def test_the_exported_index_finds_the_units_the_server_finds(exported):
    root, out, _ = exported
    units = json.loads((out / "search" / "labels.json").read_text())
    queries = ["dog", "car", "o", "wheel"]
    ranked = search_js(units, queries)
    with TestClient(create_app(root, registry=registry, on_demand=False)) as client:
        for q in queries:
            results = client.get("/search.json", params={"q": q}).json()["results"]
            served = [(r["shorthand"], r["label"]) for r in results]
            assert [(f["unit"]["shorthand"], f["label"]) for f in ranked[q]] == served, q
    first = ranked["dog"][0]["unit"]["url"]
    assert first == f"../models/{MODEL}/{LAYER}/1/" and (out / "search" / first / "index.html").is_file()
