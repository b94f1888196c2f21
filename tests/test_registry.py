"""The technique registry: declarations every stage reads, a plug-in technique end to end, and
the params (hence store keys) of the built-ins pinned to what stores already hold."""

from __future__ import annotations

import threading

import pytest
import torch

from microtome.errors import MicrotomeError
from microtome.pipeline.executors import Execution
from microtome.pipeline.pipeline import build
from microtome.pipeline.plan import parse_techniques, plan, select
from microtome.runtime import torch_threads
from microtome.store import Store
from microtome.store.keys import param_hash
from microtome.techniques.registry import (
    Context,
    Technique,
    registered,
    technique,
    technique_ids,
    techniques,
    web_sections,
)
from microtome.zoo import get_spec
from tests.plugin_technique import TOY_MEAN

MODEL = "tests.toy_models:tiny_net"
QUIET = Execution(progress=False)

# param hashes of every built-in artifact at each preset, as stores built before the registry
# hold them (computed with the code before it): a change here orphans stored artifacts
PINNED = {
    # changed deliberately by the early-layer schedule, then by the local-layer schedule and the
    # standard preset's 256 steps (issue 8, `EARLY_LAYERS`, `FV_PRESETS`); the stores' older
    # artifacts keep their keys (`BEFORE_EARLY_LAYERS`, `BEFORE_LOCAL_LAYERS`) and builds render
    # the new ones; then by early layers' pixel images (issue 17, `early_image`: `BEFORE_PIXEL_EARLY`)
    "feature_vis/quick": ["5c8741b3c2e3861b", "16767375808fed3f", "e0f426b9c45ad315", "f7508391ae8ea11f"],
    "feature_vis/standard": ["9b8637ebf0d1e6d5", "2a50e0205d362465", "3d438a029d63c1b8", "e5b3d2af401c143a"],
    "feature_vis/full": ["8b5befda2db60b39", "3bd96a5bc21a2436", "1903e40f46fe5687", "51702c75da8ee626"],
    "deepdream/quick": ["44cf66e8cb952cc5"], "deepdream/standard": ["898be60e3dd6bdf8"],
    "deepdream/full": ["5865bfa4aca6e065"],
    "dataset_examples/quick": ["e82f37e48f08a601"], "dataset_examples/standard": ["0de3df8ee3bcc354"],
    "dataset_examples/full": ["9902d3a39ef8fa48"],
    "tuning/quick": ["d3621e8d16dd8877"], "tuning/standard": ["32c43ae6180d74a0"],
    "tuning/full": ["2b4b68bf46f8be62"],
    "connections/quick": ["f20c61d9776f7068"], "connections/standard": ["1fab55e6ba0c5981"],
    "connections/full": ["346a360c16921c42"],
}


BEFORE_EARLY_LAYERS = {
    "quick": ["fc91cdd2db2d2289", "e1b68d2a9f893d4b", "ce9a276fc257ac1d", "f0d797da398c7c33"],
    "standard": ["182b004f524d37b9", "d59ebda6298980c7", "ceed7b737ab02477", "0a80a04aa60eef7d"],
    "full": ["ddf025df91dcffd7", "0c38804a099177c2", "a7821cb39285521d", "a7a0f1c2b81ccb64"],
}


BEFORE_PIXEL_EARLY = {
    "quick": ["474932b3e0090b36", "fc4cc30f39a095f0", "40dd7655cf1f9549", "29a531c6e7ed8fd3"],
    "standard": ["e2823b136d5c818c", "8527b46ab956503b", "483dcded427a0595", "a2a17788c6d4639d"],
    "full": ["e8ccadde76a26e05", "fecda91aed9279bb", "b02f518175922997", "b23a1829ed1e853a"],
}


BEFORE_LOCAL_LAYERS = {
    "quick": ["d34a801161bb572c", "2c996d9960a0c335", "c43d1a22fd4e2163", "c054587f8d8eec78"],
    "standard": ["c1d357d9145a2879", "667057f313dc0002", "2a56eba0900aa4fe", "a0bea01b407c19a8"],
    "full": ["075d09c463314400", "e9b2c14aa112e833", "51e42723b1fd35b8", "6c6e245b89e5cc18"],
}
FORMER_STEPS = {"standard": 512}  # the standard preset's steps before 256


def _former(params: dict, preset: str, dropped, steps: bool = True) -> dict:
    """`params` without the keys `dropped(key)` names, with the preset's former steps."""
    old = {k: v for k, v in params.items() if not dropped(k)}
    if preset in FORMER_STEPS and steps:
        old["steps"] = FORMER_STEPS[preset]
    return old


def test_feature_vis_params_before_the_layer_schedules_keep_their_keys():
    from microtome.techniques.builtin import EARLY_LAYERS

    size = get_spec("efficientnet_lite0").input_size
    for before, dropped, steps in (
            (BEFORE_EARLY_LAYERS, lambda k: k in EARLY_LAYERS, True),
            (BEFORE_LOCAL_LAYERS, lambda k: k.startswith(("local_", "early_")) and k != "early_field",
             True),
            (BEFORE_PIXEL_EARLY, lambda k: k == "early_image", False)):
        for preset, hashes in before.items():
            params = technique("feature_vis").params(Context(preset, "samples", 0, size))
            old = [_former(p, preset, dropped, steps) for p in params]
            assert [param_hash(p) for p in old] == hashes, preset


def test_builtin_params_hash_as_before():
    size = get_spec("efficientnet_lite0").input_size
    for name, hashes in PINNED.items():
        tid, preset = name.split("/")
        got = [param_hash(p) for p in technique(tid).params(Context(preset, "samples", 0, size))]
        assert got == hashes, name


def test_declarations_drive_order_and_lookups():
    assert technique_ids()[0] == "dataset_examples"  # feature vis reads its best examples
    assert technique("feature_vis").reads == ("dataset_examples",)
    assert [t.id for t in web_sections()] == ["feature_vis", "deepdream", "dataset_examples", "tuning",
                                             "connections", "sae", "labels", "similar", "atlas"]
    assert technique("feature_vis").group({"variant": "neuron"}) == "feature_vis:neuron"
    assert technique("feature_vis").group({}) == "feature_vis:positive"
    assert technique("tuning").group({}) == "tuning"
    with pytest.raises(MicrotomeError, match="did you mean feature_vis"):
        technique("feature_viz")
    with pytest.raises(MicrotomeError, match="already registered"):
        with registered(Technique(id="tuning", title="again", runner="x:y", params=lambda ctx: [{}])):
            pass
    with pytest.raises(MicrotomeError, match="not registered before it"):
        with registered(Technique(id="late", title="late", runner="x:y", params=lambda ctx: [{}],
                                  reads=("nothing_yet",))):
            pass
    assert "late" not in technique_ids()


def test_the_registry_is_torch_free():
    import subprocess
    import sys
    code = ("import sys; import microtome.techniques.registry as r; r.techniques(); "
            "import microtome.techniques.base; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_plugin_technique_is_planned_built_and_stored(tmp_path):
    store = Store(tmp_path / "store")
    with registered(TOY_MEAN):
        assert "toy_mean" in parse_techniques("all")
        spec = get_spec(MODEL)
        tasks = plan(store, spec, select(spec, "conv1", "0-4", "toy_mean", "quick"))
        assert [len(t.items) for t in tasks] == [2, 2, 1]  # units_per_task=2
        summary = build(store, MODEL, layers="conv1", units="0-4", techniques="toy_mean", preset="quick",
                        weights="random", execution=QUIET)
        assert summary.recorded == summary.planned == 5 and not summary.failed
        arts = store.find(model="tiny_net", technique="toy_mean")
        assert sorted(a.key.unit for a in arts) == [0, 1, 2, 3, 4]
        assert all("swatch.png" in a.files and "mean_on_grey" in a.meta for a in arts)
        again = build(store, MODEL, layers="conv1", units="0-4", techniques="toy_mean", preset="quick",
                      weights="random", execution=QUIET)
        assert again.planned == 0
        _shown_and_exported(store, tmp_path / "site")
    assert "toy_mean" not in technique_ids()
    assert store.verify().ok


def _shown_and_exported(store: Store, site):
    """The plug-in's section on the unit page (HTML and JSON) and in the static export."""
    import json

    from fastapi.testclient import TestClient

    from microtome.web import create_app, export

    art = store.find(model="tiny_net", layer="conv1", unit=3, technique="toy_mean")[0]
    with TestClient(create_app(store, on_demand=False, registry=None)) as client:
        page = client.get("/models/tiny_net/conv1/3")
        data = client.get("/models/tiny_net/conv1/3.json").json()
    assert page.status_code == 200 and "Mean activation on a grey image" in page.text
    assert f"/blobs/{art.files['swatch.png']}.png" in page.text
    assert data["toy_mean"]["summary"]["mean_on_grey"] == art.meta["mean_on_grey"]
    assert "toy_mean" not in data["missing"]
    export(store, site, progress=False)
    exported = json.loads((site / "models/tiny_net/conv1/3.json").read_text())
    assert exported["toy_mean"]["summary"]["mean_on_grey"] == art.meta["mean_on_grey"]
    html = next(p for p in (site / "models/tiny_net/conv1/3").parent.glob("3*") if p.suffix != ".json")
    html = html / "index.html" if html.is_dir() else html
    assert "Mean activation on a grey image" in html.read_text()


def test_torch_threads_restores_and_nests():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    seen = []

    def worker():
        with torch_threads(1):
            seen.append(torch.get_num_threads())
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1] * 4 and torch.get_num_threads() == before


def test_every_technique_declares_what_the_stages_need():
    for t in techniques():
        assert t.scope in ("unit", "layer") and t.section.title and t.units_per_task >= 1
        params = t.params(Context("quick", compare=("efficientnet_lite1",)))  # `similar` needs a peer
        assert params and all(isinstance(p, dict) for p in params)
        assert all(t.cost(p) >= 0 for p in params)
        assert callable(t.load_runner())
