"""Labels: a unit that fires only on one class is labelled with it (from labelled examples, or
from the model's predictions when the dataset has no labels); logits unit k names class k."""

from __future__ import annotations

import pytest

from microtome.pipeline.executors import Execution
from microtome.pipeline.pipeline import build
from microtome.store import Store
from microtome.techniques.labels import _class_groups
from microtome.zoo import get_spec
from tests.toy_models import COLOURS, colour_images

QUIET = Execution(progress=False)
COLOUR_NET = "tests.toy_models:colour_net"


def _labels(store: Store, model: str, layer: str, unit: int) -> list[dict]:
    arts = store.find(model=model, layer=layer, unit=unit, technique="labels")
    assert len(arts) == 1
    return arts[0].meta["labels"]


def test_labelled_examples_name_the_class_a_unit_fires_on(tmp_path):
    images = colour_images(tmp_path / "images")
    store = Store(tmp_path / "store")
    summary = build(store, COLOUR_NET, layers="colour,logits", techniques="dataset_examples,labels",
                    preset="quick", dataset=f"folder:{images}", execution=QUIET)
    assert not summary.failed, summary.failed
    for unit, colour in enumerate(COLOURS):
        found = _labels(store, "colour_net", "colour", unit)
        assert found[0]["label"] == colour and found[0]["source"] == "examples", found
        assert found[0]["lift"] >= 2.0 and 0 < found[0]["score"] <= 1
        logits = _labels(store, "colour_net", "logits", unit)
        assert logits[0] == {"label": colour, "score": 1.0, "source": "connections"}
        assert any(e["label"] == colour and e["source"] == "examples" for e in logits)


def test_unlabelled_examples_are_labelled_by_the_models_predictions(tmp_path):
    images = colour_images(tmp_path / "images", folders=False)
    store = Store(tmp_path / "store")
    build(store, COLOUR_NET, layers="colour", techniques="dataset_examples,labels", preset="quick",
          dataset=f"folder:{images}", execution=QUIET)
    for unit, colour in enumerate(COLOURS):
        found = _labels(store, "colour_net", "colour", unit)
        assert found and found[0]["label"] == colour and found[0]["source"] == "predictions", found


def test_imagenet_classes_count_for_their_wordnet_ancestors():
    spec = get_spec("efficientnet_lite0")
    groups = _class_groups(("tabby", "Egyptian cat", "espresso"), spec)
    assert "cat" in groups[0] and "cat" in groups[1] and "cat" not in groups[2]
    assert groups[0][0] == "tabby"


@pytest.mark.slow
def test_logits_units_of_real_weights_name_their_class(tmp_path):
    """On efficientnet_lite0's real weights and scikit-image's photos: logits unit k's first
    label is class k, and for a cat class the model's own predictions on its top photos agree."""
    spec = get_spec("efficientnet_lite0")
    units = [281, 285, 967]  # tabby, Egyptian cat, espresso
    store = Store(tmp_path / "store")
    summary = build(store, "efficientnet_lite0", layers="logits", units=units,
                    techniques="dataset_examples,labels", preset="quick", execution=QUIET)
    assert not summary.failed, summary.failed
    for k in units:
        found = _labels(store, "efficientnet_lite0", "logits", k)
        assert found[0]["label"] == spec.labels[k]
    predicted = [e["label"] for e in _labels(store, "efficientnet_lite0", "logits", 285)
                 if e["source"] == "predictions"]
    assert {"cat", "Egyptian cat", "tabby", "feline"} & set(predicted), predicted
