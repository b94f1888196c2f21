"""Search by photo over the web: the JSON and HTML answers, the upload limits (413 size and
bombs, 415 not an image), busy (503 + Retry-After) while the event loop keeps serving, nothing
written to the store or to disk; and (slow) a real cat photo against real EfficientNet-Lite0."""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

from microtome.store import Store
from microtome.web import create_app
from microtome.web.jobs.photo import PhotoSearcher
from tests.web_fixtures import FULL_UNITS, LAYER, MODEL, LiveServer, registry

MB = 1 << 20


def jpeg(array=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skimage.data.chelsea() if array is None else array).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width x height` pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


class FakeSearch:
    """A photo search without torch: every unit at the 50th percentile; optionally held by `gate`."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[tuple[str, tuple[int, int]]] = []
        self.gate, self.started = gate, threading.Event()

    def __call__(self, model, weights, image, histograms, top):
        self.calls.append((model, image.size))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        return {"predictions": [{"index": 281, "label": "tabby", "probability": 0.9}],
                "layers": {layer: [{"unit": u, "activation": 1.0 + u, "percentile": 50.0} for u in units][:top]
                           for layer, units in histograms.items()}}


@pytest.fixture
def fake(store_root):
    search = FakeSearch()
    with TestClient(create_app(store_root, registry=registry, on_demand=False, photo=PhotoSearcher(search))) as c:
        yield c, search, store_root


def post(client, url="/search.json", data: bytes | None = None, **kw):
    return client.post(url, files={"image": ("photo.jpg", jpeg() if data is None else data, "image/jpeg")}, **kw)


def test_a_photo_gives_each_built_model_its_classes_and_units(fake):
    client, search, _ = fake
    data = post(client).json()
    assert list(data["models"]) == [MODEL] and search.calls == [(MODEL, (451, 300))]
    found = data["models"][MODEL]
    assert found["predictions"][0]["label"] == "tabby"
    rows = found["layers"][LAYER]
    assert {r["unit"] for r in rows} == set(FULL_UNITS)  # the units with dataset-example histograms
    for row in rows:
        assert {"unit", "url", "activation", "percentile"} <= set(row)
        assert client.get(row["url"]).status_code == 200
    as_json = post(client, "/search", headers={"Accept": "application/json"})
    assert as_json.json()["models"][MODEL]["layers"] == found["layers"]
    html = post(client, "/search").text
    assert "tabby" in html and f'href="/models/{MODEL}/{LAYER}/0"' in html and "/blobs/" in html


def test_too_large_bodies_are_refused_with_413(fake):
    client, search, _ = fake
    r = post(client, data=b"\xff" * (10 * MB + 1))
    assert r.status_code == 413 and "10 MB" in r.json()["error"]

    def chunks():  # no Content-Length: the bytes read are counted
        for _ in range(11):
            yield b"\0" * MB
    r = client.post("/search.json", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert search.calls == []


def test_what_is_not_an_image_is_refused_with_415(fake):
    client, search, _ = fake
    for junk in (b"hello, not a photo", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, jpeg()[:200]):
        r = post(client, data=junk)
        assert r.status_code == 415, (junk[:20], r.text)
        assert "image" in r.json()["error"]
    assert "image" in post(client, "/search", data=b"text").text  # the HTML error page says so too
    assert client.post("/search.json", data={"q": "x"}).status_code == 400  # no file field
    assert search.calls == []


@pytest.mark.parametrize("size", [(100_000, 100_000), (7000, 7000)])
def test_decompression_bombs_are_refused_before_decoding(fake, size):
    client, search, _ = fake
    r = post(client, data=png_claiming(*size))
    assert r.status_code == 413, r.text
    assert "pixels" in r.json()["error"] and search.calls == []


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


def test_nothing_is_written_to_the_store_or_to_disk(fake, tmp_path, monkeypatch):
    client, search, root = fake
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a spooling form parser would write
    before = _snapshot(root)
    big = jpeg((skimage.data.astronaut()))  # a few hundred KB: past any in-memory spooling threshold
    photo = big + b"\0" * (3 * MB)  # trailing bytes after the JPEG's end are ignored by decoders
    assert post(client, data=photo).status_code == 200
    assert post(client, data=b"junk").status_code == 415
    assert _snapshot(root) == before
    assert list(spool.iterdir()) == []


def test_a_search_held_past_the_wait_is_503_with_retry_after_and_pages_still_served(store_root):
    gate = threading.Event()
    search = FakeSearch(gate)
    store = Store(store_root, create=False)
    app = create_app(store, registry=registry, on_demand=False, photo=PhotoSearcher(search, wait_s=0.2, mean_s=0.1))
    first: list[httpx.Response] = []
    with LiveServer(app) as live:
        worker = threading.Thread(target=lambda: first.append(
            httpx.post(live.url + "/search.json", files={"image": ("a.jpg", jpeg())}, timeout=60)))
        worker.start()
        assert search.started.wait(30)
        start = time.monotonic()
        busy = httpx.post(live.url + "/search.json", files={"image": ("b.jpg", jpeg())}, timeout=30)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        assert time.monotonic() - start >= 0.2  # it waited for the slot before giving up
        assert "try again" in busy.json()["error"]
        page = httpx.get(live.url + f"/models/{MODEL}/{LAYER}/1", timeout=10)  # the event loop is free
        assert page.status_code == 200
        gate.set()
        worker.join(30)
        assert first[0].status_code == 200
        assert httpx.post(live.url + "/search.json", files={"image": ("c.jpg", jpeg())},
                          timeout=30).status_code == 200
    store.close()


class QueuedSearch(FakeSearch):
    """A 90 ms search whose first call holds the slot until `queued` more searches wait for it;
    records how many ran at once."""

    def __init__(self, queued: int):
        super().__init__()
        self.queued, self.searcher, self.running, self.most, self.lined_up = queued, None, 0, 0, False
        self.count = threading.Lock()

    def __call__(self, *args):
        with self.count:
            self.running += 1
            self.most = max(self.most, self.running)
        first = len(self.calls) == 0
        deadline = time.monotonic() + 20
        while first and self.searcher._slot.waiting < self.queued and time.monotonic() < deadline:
            time.sleep(0.01)
        self.lined_up |= first and self.searcher._slot.waiting == self.queued
        time.sleep(0.09)
        try:
            return super().__call__(*args)
        finally:
            with self.count:
                self.running -= 1


def test_six_simultaneous_searches_wait_their_turn_and_all_succeed(store_root):
    search = QueuedSearch(queued=5)
    search.searcher = PhotoSearcher(search)
    store = Store(store_root, create=False)
    app = create_app(store, registry=registry, on_demand=False, photo=search.searcher)
    replies: list[int] = []
    with LiveServer(app) as live:
        go = threading.Barrier(6)

        def one(i: int) -> None:
            go.wait(10)
            r = httpx.post(live.url + "/search.json", files={"image": (f"{i}.jpg", jpeg())}, timeout=60)
            replies.append(r.status_code)
        workers = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    store.close()
    assert search.lined_up  # five searches waited while the first ran
    assert replies == [200] * 6 and len(search.calls) == 6 and search.most == 1


@pytest.mark.slow
def test_a_real_cat_photo_finds_cat_classes_and_cat_logits(tmp_path):
    from microtome.pipeline.executors import Execution
    from microtome.pipeline.pipeline import build

    store = Store(tmp_path / "store")
    build(store, "efficientnet_lite0", layers="logits", units="280-290,960-970",
          techniques="dataset_examples", preset="quick", execution=Execution(progress=False))
    with TestClient(create_app(store, registry=None, on_demand=False)) as client:
        r = post(client)
        assert r.status_code == 200, r.text
        found = r.json()["models"]["efficientnet_lite0"]
    store.close()
    labels = [p["label"] for p in found["predictions"]]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(labels), labels
    top = [row["unit"] for row in found["layers"]["logits"][:5]]
    assert {281, 282, 285} & set(top), found["layers"]["logits"]
    assert all(row["url"] == f"/models/efficientnet_lite0/logits/{row['unit']}" for row in found["layers"]["logits"])
