"""On-demand building with the real pipeline: an unbuilt unit's page fills in its feature vis,
dataset examples, connections and labels, made over the dataset the store was built with (a
labelled folder, not the default sample photos); without that dataset the feature vis is
still built and the job says what was not. `store_dataset` finds a store's dataset;
`build --variants` builds only the variants asked for."""

from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient

from microtome.errors import MicrotomeError
from microtome.pipeline.executors import Execution
from microtome.pipeline.models import ModelService
from microtome.pipeline.pipeline import build, build_unit, store_dataset
from microtome.pipeline.plan import plan, select
from microtome.store import Store
from microtome.web import create_app
from microtome.zoo import get_spec
from tests.toy_models import COLOURS, colour_images
from tests.web_fixtures import put

COLOUR_NET = "tests.toy_models:colour_net"
QUIET = Execution(progress=False, threads=1)


def _done(client: TestClient, unit: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/colour_net/colour/{unit}.json").json()
        if job["state"] in ("done", "error"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_an_unbuilt_unit_fills_in_over_the_stores_dataset(tmp_path):
    images = colour_images(tmp_path / "images")
    dataset = f"folder:{images}"
    store = Store(tmp_path / "store")
    summary = build(store, COLOUR_NET, layers="logits", techniques="dataset_examples", preset="quick",
                    dataset=dataset, execution=QUIET)  # the store's dataset: a labelled folder
    assert summary.recorded == 3 and store_dataset(store, "colour_net", "colour") == dataset
    models = ModelService(store)

    def job(model: str, layer: str, unit: int) -> None:  # the app's default job, for an entry point
        build_unit(store, COLOUR_NET, layer, unit, models=models, threads=1)
    with TestClient(create_app(store, render_job=job, registry=None)) as client:
        first = client.get("/models/colour_net/colour/1.json").json()
        assert first["dataset_examples"] is None and first["labels"] == []
        assert first["job"]["state"] in ("queued", "running")
        job_status = _done(client, 1)
        assert job_status["error"] is None
        after = client.get("/models/colour_net/colour/1.json").json()
        assert job_status["artifacts"] == after["artifacts"] == len(store.find("colour_net", "colour", 1))
    assert set(after["feature_vis"]) == {"positive", "negative", "neuron", "diversity"}
    assert after["dataset_examples"]["params"]["dataset"] == dataset
    assert after["dataset_examples"]["groups"][0]["rows"]  # its top examples
    labels = {(e["label"], e["source"]) for e in after["labels"]}  # the folder's classes: not in samples
    assert after["labels"][0]["label"] == COLOURS[1] and (COLOURS[1], "examples") in labels
    assert after["connections"] is not None and after["job"] is None
    assert "dataset_examples" not in after["missing"] and "labels" not in after["missing"]


def test_without_the_stores_dataset_feature_vis_is_built_and_the_job_says_what_was_not(tmp_path):
    images = colour_images(tmp_path / "images", per_class=2)
    store = Store(tmp_path / "store")
    build(store, COLOUR_NET, layers="logits", techniques="dataset_examples", preset="quick",
          dataset=f"folder:{images}", execution=QUIET)
    shutil.rmtree(images)
    with pytest.raises(MicrotomeError, match="dataset_examples, connections, labels of colour:2 not built"):
        build_unit(store, COLOUR_NET, "colour", 2, threads=1)
    built = {a.key.technique for a in store.find("colour_net", "colour", 2)}
    assert built == {"feature_vis"}


def test_store_dataset_prefers_the_layer_then_the_model_then_other_models(tmp_path):
    store = Store(tmp_path / "store")
    assert store_dataset(store, "m") is None
    put(store, "other", "a", 0, "labels", {"dataset": "folder:/x"}, {})
    assert store_dataset(store, "m", "a") == "folder:/x"
    for unit in range(3):  # the model's: the most common name wins
        put(store, "m", "b", unit, "dataset_examples", {"dataset": "folder:/y" if unit else "folder:/z"}, {})
    put(store, "m", "c", 0, "connections", {"dataset": "samples"}, {})
    put(store, "m", "c", 0, "feature_vis", {"variant": "positive"}, {})  # no dataset: not looked at
    assert store_dataset(store, "m", "b") == "folder:/y"
    assert store_dataset(store, "m", "c") == "samples"
    assert store_dataset(store, "m", "d") == "samples"  # the model's other layers, fewest artifacts first


def test_build_variants_plans_only_those(tmp_path):
    spec = get_spec("efficientnet_lite0")
    store = Store(tmp_path / "store")
    chosen = select(spec, "block10", "0-2", "feature_vis,connections", "quick", variants="positive,neuron")
    tasks = plan(store, spec, chosen)
    fv = [item.params["variant"] for t in tasks if t.technique == "feature_vis" for item in t.items]
    assert sorted(fv) == ["neuron"] * 3 + ["positive"] * 3
    assert sum(len(t.items) for t in tasks if t.technique == "connections") == 3  # no variants: all
    everything = plan(store, spec, select(spec, "block10", "0", "feature_vis", "quick"))
    assert sum(len(t.items) for t in everything) == 4
    with pytest.raises(MicrotomeError, match="did you mean positive"):
        select(spec, "block10", "0", "feature_vis", "quick", variants="positve")
    with pytest.raises(MicrotomeError, match="has variants"):
        select(spec, "block10", "0", "labels", "quick", variants="positive")
