"""Paths that try to leave the store get a 404 and read nothing.

Sent raw over a socket to a live uvicorn (an HTTP client library would normalize the `..`
away before sending), while a Python audit hook records every file the process opens."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import pytest

from microtome.web import create_app
from tests.web_fixtures import MODEL, LiveServer, registry, store_copy

SECRET = "TOPSECRET-do-not-serve"
_opened: list[str] = []
_recording: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if _recording and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only inside `recording`


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paths")
    root = store_copy(tmp / "store")
    (tmp / "secret.txt").write_text(SECRET)
    with LiveServer(create_app(root, registry=registry, on_demand=False)) as live:
        yield live, tmp


def raw_get(port: int, path: str, accept: str = "text/html") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.putheader("Accept", accept)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


ATTEMPTS = [
    "/models/../../etc/passwd",
    "/models/../secret.txt",
    "/models/%2e%2e/%2e%2e/etc/passwd",
    "/models/%2E%2E/secret.txt",
    "/models/..%2f..%2fsecret.txt",
    f"/models/{MODEL}/..%2F..%2F..%2F..%2Fsecret.txt",
    f"/models/{MODEL}/block10/..%2f..%2f..%2fsecret.txt",
    "/blobs/../index.sqlite",
    "/blobs/..%2findex.sqlite",
    "/blobs/%2e%2e%2findex.sqlite",
    "/blobs/..%5cindex.sqlite",
    "/blobs/..\\index.sqlite",
    "/blobs/../../secret.txt",
    "/blobs/%2e%2e/%2e%2e/secret.txt",
    "/blobs/index.sqlite",
    "/blobs/%00",
    "/static/../app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e/%2e%2e/store/index.sqlite",
    "/jobs/../../etc/passwd",
    "/jump/../../etc/passwd",
    "//etc/passwd",
]


@pytest.mark.parametrize("path", ATTEMPTS)
def test_paths_leaving_the_store_are_404_and_read_nothing(server, path):
    live, tmp = server
    raw_get(live.port, "/warm-up-the-404-page")
    _opened.clear()
    _recording.append(True)
    try:
        status, body = raw_get(live.port, path)
        json_status, json_body = raw_get(live.port, path, accept="application/json")
    finally:
        _recording.clear()
    assert status == 404 and json_status == 404, (path, status, body[:200])
    for text in (body, json_body):
        assert SECRET.encode() not in text and b"root:" not in text and b"SQLite format" not in text
    assert b'"status":404' in json_body
    touched = [p for p in _opened if p.startswith(str(tmp)) or p.startswith("/etc")]
    assert touched == [], f"{path} opened {touched}"


def test_the_store_and_static_files_still_work(server):
    """Also shows that the audit hook sees the server's reads (so the test above is not vacuous)."""
    live, tmp = server
    status, body = raw_get(live.port, f"/models/{MODEL}/block10/1.json")
    assert status == 200
    image = json.loads(body)["feature_vis"]["positive"]["images"][0]["url"]
    _opened.clear()
    _recording.append(True)
    try:
        assert raw_get(live.port, image)[0] == 200
    finally:
        _recording.clear()
    assert any(p.startswith(str(tmp / "store" / "blobs")) for p in _opened), _opened
    assert raw_get(live.port, "/static/microtome.css")[0] == 200
