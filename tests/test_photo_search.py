"""Search by photo: percentiles against brute force; a cat photo finds cat classes and units."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from microtome.pipeline.executors import Execution
from microtome.pipeline.pipeline import build
from microtome.store import Store
from microtome.techniques.photo_search import percentile, search_photo
from microtome.zoo import load_model


def test_percentile_matches_counting_below():
    rng = np.random.default_rng(0)
    samples = rng.gamma(2.0, 1.0, 5000)
    counts, edges = np.histogram(samples, bins=64)
    for value in (0.1, 0.5, 1.0, 2.0, 3.5, 7.0):
        brute = 100.0 * float((samples < value).mean())
        assert abs(percentile(value, edges.tolist(), counts.tolist()) - brute) < 1.0, value
    assert percentile(-1.0, edges.tolist(), counts.tolist()) == 0.0
    assert percentile(1e9, edges.tolist(), counts.tolist()) == 100.0
    assert percentile(1.0, [0.0, 1.0], [0]) == 0.0  # an empty histogram says nothing


@pytest.mark.slow
def test_a_cat_photo_finds_cat_classes_and_cat_logits(tmp_path):
    store = Store(tmp_path / "store")
    build(store, "efficientnet_lite0", layers="logits", units="280-290,960-970",
          techniques="dataset_examples", preset="quick", execution=Execution(progress=False))
    histograms = {"logits": {a.key.unit: (a.meta["histogram"]["edges"], a.meta["histogram"]["counts"])
                             for a in store.find(model="efficientnet_lite0", technique="dataset_examples")}}
    model, spec = load_model("efficientnet_lite0")
    found = search_photo(model, spec, Image.fromarray(skimage.data.chelsea()), histograms, top=5)
    labels = [p["label"] for p in found["predictions"]]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(labels), labels
    cats = {281, 282, 285}
    assert cats & {row["unit"] for row in found["layers"]["logits"]}, found["layers"]["logits"]
    assert all(0 <= row["percentile"] <= 100 for row in found["layers"]["logits"])
