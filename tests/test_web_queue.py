"""On-demand rendering: a unit page with nothing built queues one job per unit (deduplicated),
the queue is bounded (503 + Retry-After), `/jobs/M/L/U.json` reports progress, and the page
shows the artifacts once the job has stored them. The job is a fake that writes PNGs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient

from microtome.errors import Busy, MicrotomeError
from microtome.store import Store
from microtome.web import create_app
from microtome.web.jobs.render_queue import RenderQueue
from tests.web_fixtures import MODEL, FakeRenderer, registry

UNBUILT = [f"/models/{MODEL}/block10/{u}" for u in (50, 51, 52)]


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def store(store_root):
    with Store(store_root, create=False) as st:
        yield st


def status(client: TestClient, unit_url: str) -> dict:
    r = client.get(unit_url.replace("/models/", "/jobs/", 1) + ".json")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    return r.json()


def test_a_missing_unit_is_rendered_once_and_the_page_fills_in(store):
    gate = threading.Event()
    fake = FakeRenderer(store, gate)
    with TestClient(create_app(store, render_job=fake, registry=registry)) as client:
        first = client.get(UNBUILT[0] + ".json").json()
        assert first["feature_vis"] == {} and first["job"]["state"] in ("queued", "running")
        html = client.get(UNBUILT[0]).text  # a second visitor shares the job
        assert 'data-job="/jobs/efficientnet_lite0/block10/50.json"' in html and "fills in by itself" in html
        assert fake.started.wait(10)
        assert status(client, UNBUILT[0])["state"] == "running"
        assert status(client, UNBUILT[0])["position"] == 0
        gate.set()
        wait_for(lambda: status(client, UNBUILT[0])["state"] == "done")
        assert fake.calls == [(MODEL, "block10", 50)]  # two visits, one job
        after = client.get(UNBUILT[0] + ".json").json()
        assert set(after["feature_vis"]) == {"positive", "negative", "neuron", "diversity"} and after["job"] is None
        assert after["dataset_examples"]["groups"] and after["labels"][0]["label"] == "fake label 50"
        assert after["connections"] is not None and after["missing"] == ["tuning"]  # not on demand
        assert client.get(after["feature_vis"]["positive"]["images"][0]["url"]).status_code == 200
        assert "data-job" not in client.get(UNBUILT[0]).text
        assert fake.calls == [(MODEL, "block10", 50)]


def test_a_model_not_in_the_store_renders_on_demand(store):
    fake = FakeRenderer(store)
    with TestClient(create_app(store, render_job=fake, registry=registry)) as client:
        url = "/models/resnet50/layer1_0/3"
        assert client.get(url + ".json").json()["model"]["built"] is False
        wait_for(lambda: status(client, url)["state"] == "done")
        data = client.get(url + ".json").json()
        assert data["model"]["built"] is True and "positive" in data["feature_vis"]


def test_a_full_queue_answers_503_with_retry_after(store):
    gate = threading.Event()
    fake = FakeRenderer(store, gate)
    with TestClient(create_app(store, render_job=fake, queue_size=1, registry=registry)) as client:
        assert client.get(UNBUILT[0]).status_code == 200
        assert fake.started.wait(10)  # job 50 runs (and blocks), the queue is empty
        assert client.get(UNBUILT[1]).status_code == 200  # job 51 waits: the queue is full
        assert status(client, UNBUILT[1]) | {"url": None} == {
            "model": MODEL, "layer": "block10", "unit": 51, "state": "queued", "position": 1, "error": None,
            "queue_length": 1, "url": None, "artifacts": 0}
        r = client.get(UNBUILT[2])
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert "render queue is full" in r.text
        assert f'<meta http-equiv="refresh" content="{r.headers["retry-after"]}">' in r.text
        r = client.get(UNBUILT[2] + ".json")
        assert r.status_code == 503 and r.json()["status"] == 503 and "retry-after" in r.headers
        assert client.get(UNBUILT[0]).status_code == 200  # a queued or running unit still answers
        assert client.get(f"/models/{MODEL}/block10/1").status_code == 200  # built units too
        gate.set()
        wait_for(lambda: status(client, UNBUILT[1])["state"] == "done")
        assert client.get(UNBUILT[2]).status_code == 200
    assert [c[2] for c in fake.calls] == [50, 51, 52]


def test_a_failing_job_is_reported_and_not_retried_at_once(store):
    def broken(model: str, layer: str, unit: int) -> None:
        calls.append(unit)
        raise MicrotomeError("no weights for this model here")
    calls: list[int] = []
    with TestClient(create_app(store, render_job=broken, registry=registry)) as client:
        client.get(UNBUILT[0])
        wait_for(lambda: status(client, UNBUILT[0])["state"] == "error")
        assert status(client, UNBUILT[0])["error"] == "no weights for this model here"
        html = client.get(UNBUILT[0]).text
        assert "Rendering this unit failed: no weights for this model here" in html
        assert calls == [50]


def test_job_status_of_unknown_units_is_404_and_idle_units_are_none(store):
    with TestClient(create_app(store, render_job=FakeRenderer(store), registry=registry)) as client:
        assert client.get(f"/jobs/{MODEL}/block10/999.json").status_code == 404
        assert client.get(f"/jobs/{MODEL}/blok10/1.json").json()["suggestions"][0] == f"{MODEL}/block10:1"
        assert status(client, f"/models/{MODEL}/block10/1")["state"] == "none"


def test_without_on_demand_nothing_is_queued(store):
    fake = FakeRenderer(store)
    with TestClient(create_app(store, render_job=fake, registry=registry, on_demand=False)) as client:
        assert client.get(UNBUILT[0] + ".json").json()["job"] is None
        assert status(client, UNBUILT[0])["state"] == "none"
    assert fake.calls == []


def test_the_worker_thread_starts_and_stops_with_the_app(store):
    app = create_app(store, render_job=FakeRenderer(store), registry=registry)
    before = {t.name for t in threading.enumerate()}
    assert "microtome-render" not in before
    with TestClient(app):
        assert any(t.name == "microtome-render" for t in threading.enumerate())
    assert not any(t.name == "microtome-render" and t.is_alive() for t in threading.enumerate())


# ---- the queue itself -------------------------------------------------------------------

def test_queue_runs_jobs_in_order_one_at_a_time_and_dedups():
    running, seen, gate = [], [], threading.Event()

    def job(model: str, layer: str, unit: int) -> None:
        running.append(unit)
        assert len(running) == 1
        gate.wait(10)
        seen.append(unit)
        running.pop()
    q = RenderQueue(job, maxsize=3)
    q.start()
    try:
        jobs = [q.submit(("m", "l", u)) for u in (0, 1, 2, 1, 0)]
        assert jobs[1] is jobs[3] and jobs[0] is jobs[4]
        wait_for(lambda: q.status(("m", "l", 0))["state"] == "running")
        assert [q.status(("m", "l", u))["position"] for u in (0, 1, 2)] == [0, 1, 2]
        q.submit(("m", "l", 3))
        with pytest.raises(Busy) as full:
            q.submit(("m", "l", 4))
        assert full.value.status == 503 and full.value.retry_after >= 1
        gate.set()
        wait_for(lambda: q.status(("m", "l", 3))["state"] == "done")
        assert seen == [0, 1, 2, 3]
    finally:
        q.stop()


def test_queue_stop_drops_waiting_jobs_with_a_reason():
    gate = threading.Event()
    q = RenderQueue(lambda *key: gate.wait(10), maxsize=4)
    q.start()
    q.submit(("m", "l", 0))
    wait_for(lambda: q.status(("m", "l", 0))["state"] == "running")
    q.submit(("m", "l", 1))  # waits behind job 0, which holds the worker until the gate opens
    stopping = threading.Thread(target=q.stop)
    stopping.start()  # stop() drops the waiting job at once, then waits for the running one
    wait_for(lambda: q.status(("m", "l", 1))["state"] != "queued")
    gate.set()
    stopping.join(10)
    assert not stopping.is_alive()
    dropped = q.status(("m", "l", 1))
    assert (dropped["state"], dropped["error"]) == ("error", "the server stopped before rendering it")
    assert q.status(("m", "l", 0))["state"] == "done"  # the running job was let finish
    with pytest.raises(MicrotomeError) as refused:  # and a stopped queue refuses new jobs, saying why
        q.submit(("m", "l", 2))
    assert refused.value.status == 503 and refused.value.retry_after >= 1
    assert "shutting down" in refused.value.message


def test_serving_pages_does_not_import_torch(store_root):
    """The app answers every kind of page without torch (only on-demand rendering may load it)."""
    code = f"""
import json, sys
from fastapi.testclient import TestClient
from microtome.web import create_app
app = create_app({str(store_root)!r}, registry=None)
with TestClient(app) as c:
    for url in ["/", "/models/{MODEL}", "/models/{MODEL}/block10", "/models/{MODEL}/block10/1",
                "/models/{MODEL}/block10/1.json", "/jump?q={MODEL}/block10:2", "/models/nope"]:
        c.get(url)
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
