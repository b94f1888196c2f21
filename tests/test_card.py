"""Model cards: plain data that round-trips through JSON, read without torch, with one layer
resolver and one unit check that the CLI, the web, the build and inspect share."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from microtome.errors import MicrotomeError, NotFound
from microtome.zoo.card import LayerCard, ModelCard, chain_edges
from microtome.zoo.registry import list_models, registered_card

# The keys of `ModelSpec.summary()` before the card existed: stores and the web read them.
SUMMARY_KEYS = {"id", "title", "input_size", "mean", "std", "value_range", "weights", "trained",
                "weights_source", "weights_sha256", "num_classes", "layers", "edges"}
LAYER_KEYS = {"id", "module", "kind", "channels", "size", "aliases"}


@pytest.mark.parametrize("name", list_models())
def test_registered_cards_round_trip_through_json(name):
    card = registered_card(name)
    data = json.loads(json.dumps(card.to_json()))
    assert ModelCard.from_json(data) == card
    assert SUMMARY_KEYS <= set(data) and all(LAYER_KEYS | {"units"} == set(layer) for layer in data["layers"])
    assert data["num_classes"] == len(card.class_names) == 1000
    assert all(layer["units"] == layer["channels"] for layer in data["layers"])


def test_a_summary_stored_before_cards_reads_as_a_card():
    old = {"id": "m", "title": "M", "input_size": 8, "trained": False, "num_classes": 10,
           "layers": [{"id": "a", "module": "0", "kind": "conv", "channels": 4, "size": [8, 8], "aliases": []}],
           "edges": []}
    card = ModelCard.from_json(old)
    assert card.layer("a") == LayerCard("a", "0", "conv", 4, (8, 8)) and card.layer("a").channels == 4
    assert card.num_classes == 10 and not card.trained and card.class_names == ()


def test_the_zoo_lists_cards_without_torch():
    code = ("import sys\nfrom microtome.zoo import get_card, list_models, registered_cards\n"
            "cards = registered_cards()\nassert list(cards) == list_models() and len(cards) >= 8\n"
            "assert get_card('googlenet').layer('mixed4c').id == 'inception4c'\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_the_web_lists_registered_models_without_a_subprocess_or_torch(tmp_path):
    code = f"""
import subprocess, sys
from fastapi.testclient import TestClient
from microtome.store import Store
from microtome.web import create_app
Store({str(tmp_path / "store")!r})
def refuse(*a, **k):
    raise AssertionError("a subprocess was started")
subprocess.run = subprocess.Popen = refuse
with TestClient(create_app({str(tmp_path / "store")!r})) as c:
    ids = [m["id"] for m in c.get("/.json").json()["models"]]
    assert "googlenet" in ids and "efficientnet_lite0" in ids, ids
    assert c.get("/models/googlenet/mixed4c.json").json()["layer"]["id"] == "inception4c"
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_imagenet_classes_and_torchvision_weights_are_torchvisions():
    from torchvision.models import get_weight
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from microtome.zoo.torchvision_cards import URL, WEIGHTS

    assert registered_card("googlenet").class_names == tuple(_IMAGENET_CATEGORIES)
    for model, (name, file) in WEIGHTS.items():
        assert get_weight(name).url == URL + file, model
        assert get_weight(name).url in registered_card(model).weights_source


def _clash() -> ModelCard:
    """Layer "b" is read from the module named "a" and has the alias "Head"; "head" is a layer id."""
    layers = (LayerCard("a", "x", "conv", 4, (8, 8)), LayerCard("b", "a", "conv", 6, (4, 4), ("Head",)),
              LayerCard("head", "y", "conv", 2, (2, 2)), LayerCard("logits", "z", "logits", 3, (1, 1)))
    return ModelCard("toy", "toy", 16, layers, chain_edges([layer.id for layer in layers]))


@pytest.mark.parametrize("name, expected", [
    ("a", "a"),  # a canonical id wins over another layer's module path
    ("x", "a"), ("Head", "b"),  # module path, alias (exact)
    ("head", "head"),  # exact before case-insensitive
    ("HEAD", "head"),  # case-insensitive: the id wins
    ("LOGITS", "logits"), ("Z", "logits"),
])
def test_one_layer_rule_for_every_caller(name, expected):
    from microtome.web.present.catalog import ModelView

    card = _clash()
    view = ModelView(card.id, card.to_json(), built=True)
    assert card.layer(name).id == expected
    assert view.layer(name)["id"] == expected  # the web resolves with the card


def test_unknown_layers_and_units_name_what_is_valid():
    card = _clash()
    with pytest.raises(NotFound, match="did you mean logits") as err:
        card.layer("logit")
    assert err.value.suggestions == ["logits"]
    assert card.unit("b", np.int64(5)) == (card.layer("b"), 5)  # numpy integers are units
    with pytest.raises(NotFound, match="b of toy has units 0-5"):
        card.unit("b", 6)
    with pytest.raises(MicrotomeError, match="not a whole number"):
        card.unit("b", True)
    assert card.units("b", "1-3,0")[1] == [1, 2, 3, 0] and card.units("head", None)[1] == [0, 1]
