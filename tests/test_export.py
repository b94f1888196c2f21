"""The static export: same URL scheme as the server, served by `python -m http.server`; links
followed from `/` reach every exported unit, and every link and image resolves."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urljoin, urlparse

import pytest
from click.testing import CliRunner

from microtome.store import Store
from microtome.web import export
from microtome.web.cli import export as export_command
from tests.web_fixtures import BUILT_UNITS, LAYER, MODEL, UNTRAINED, links, static_server, store_copy


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


def test_export_command_and_refusals(tmp_path):
    root = store_copy(tmp_path / "store")
    result = CliRunner().invoke(export_command, ["--store", str(root), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and (tmp_path / "site" / "index.html").is_file()
    again = CliRunner().invoke(export_command, ["--store", str(root), "--out", str(tmp_path / "site")])
    assert again.exit_code == 0  # re-exporting over an export is fine
    from microtome.cli import main
    refused = CliRunner().invoke(main, ["export", "--store", str(root), "--out", str(root)])
    assert refused.exit_code == 2 and "holds a store" in refused.output
    missing = CliRunner().invoke(main, ["export", "--store", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no store" in missing.output
