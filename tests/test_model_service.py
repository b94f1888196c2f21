"""The one model service: a retrained SAE (`microtome sae --force`) is a new model for
inspection, and the cache key follows weights and device while equal keys share one load."""

from __future__ import annotations

import threading

import torch
from click.testing import CliRunner

from microtome.cli import main
from microtome.inspect.photo import inspect_photo
from microtome.pipeline.dictionaries import WEIGHTS_FILE, stored_dictionaries
from microtome.pipeline.models import ModelService
from microtome.store import Store
from microtome.zoo.sae import TopKSAE
from tests.inspect_toys import stripes

TOY = "tests.toy_models:tiny_net"  # conv2: 16 channels, 8x8


def _train(store: str, *extra: str) -> None:
    out = CliRunner().invoke(main, ["sae", TOY, "conv2", "--epochs", "2", "--store", store, "--threads", "1",
                                    *extra], catch_exceptions=False)
    assert out.exit_code == 0, out.output


def _attached(loaded) -> TopKSAE:
    return loaded.model.microtome_dictionaries["conv2_sae"]


def _stored(store: Store) -> TopKSAE:
    [sae] = stored_dictionaries(store, "tiny_net")
    return TopKSAE.from_bytes(store.read_file(sae.artifact, WEIGHTS_FILE))


def _dictionary(loaded) -> list:
    result = inspect_photo(loaded.model, loaded.spec, stripes(32), ["conv2.sae"], groups=2, renders=False)
    return result["layers"]["conv2.sae"]["dictionary"]


def test_an_inspection_after_a_forced_retrain_uses_the_new_sae(tmp_path):
    root = str(tmp_path / "store")
    _train(root)
    store = Store(root)
    service = ModelService(store)
    first = service.get(TOY)
    assert "conv2.sae" in first.spec.layer_ids
    assert torch.equal(_attached(first).W_dec, _stored(store).W_dec)
    before = _dictionary(first)
    assert service.get(TOY) is first  # nothing changed: the same loaded model
    _train(root, "--force", "--seed", "1", "--k", "8")  # another SAE under the same layer name
    second = service.get(TOY)
    assert second is not first and second.spec.layer("conv2.sae").channels == 64
    assert _attached(second).k == 8 and torch.equal(_attached(second).W_dec, _stored(store).W_dec)
    assert not torch.equal(_attached(second).W_dec, _attached(first).W_dec)
    after = _dictionary(second)
    assert after != before
    assert all(len(position["units"]) <= 8 for position in after)  # at most k features fire per position


def test_the_key_follows_weights_and_device_and_equal_keys_share_one_load(tmp_path):
    from tests.toy_models import tiny_net

    calls = []

    def load(model: str, weights: str, device: str):
        calls.append((model, weights, device))
        return tiny_net()

    service = ModelService(load=load, maxsize=2)
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(tiny_net()[0].state_dict(), a)
    b.write_bytes(a.read_bytes())
    key = service.key(TOY, "random", "cpu")
    assert key != service.key(TOY, "random", "cuda") and key != service.key(TOY, str(a), "cpu")
    assert service.key(TOY, str(a)) == service.key(TOY, str(b))  # same bytes, same weights
    assert service.key(TOY, str(a)).weights.startswith("sha256:")
    b.write_bytes(a.read_bytes() + b"\0")
    assert service.key(TOY, str(a)) != service.key(TOY, str(b))
    got = []
    threads = [threading.Thread(target=lambda: got.append(service.get(TOY, "random"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and all(g is got[0] for g in got)  # one load for four callers at once
    service.get(TOY, "random", "meta")
    service.get(TOY, str(a))
    assert len(calls) == 3 and service.loaded()[0].device == "meta"  # the least recent is first
    assert service.get(TOY, "random") is not got[0] and len(calls) == 4  # it was evicted (maxsize 2)


def test_the_app_renders_searches_and_inspects_with_one_service(tmp_path):
    from microtome.web import create_app

    store = Store(tmp_path / "store")
    state = create_app(store, registry=None).state.microtome
    assert state.inspector.models is state.photo.models and state.inspector.models.store is store
