"""The activation atlas: planted clusters come out as separate regions, the layout is the same
on a rebuild, class atlases filter it, and its pages (HTML, JSON, cells, classes, comparison,
static export) show what the store holds.

The model is `colour_net` (tests/toy_models.py): its layer `colour` holds, at every pixel, the
excess of each colour over the other two, and its logit c reads unit c. Photos of three
dominant colours plant three clusters of activation vectors; each class is a colour.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from microtome.cli import main
from microtome.errors import MicrotomeError, NotFound
from microtome.optvis import objectives as O
from microtome.data import get_dataset
from microtome.store import Store
from microtome.techniques import atlas_layout as L
from microtome.techniques.atlas import collect
from microtome.techniques.builtin import ATLAS, atlas_params
from microtome.web import create_app
from microtome.web.export import export
from tests.toy_models import colour_net

MODEL, ENTRY, LAYER = "colour_net", "tests.toy_models:colour_net", "colour"
COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1)}
PHOTOS = 8  # per colour


def photos(root: Path) -> str:
    """Noisy photos of each dominant colour in sub-folders named by it; the dataset's name."""
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(PHOTOS):
            pixels = np.clip(0.65 * np.array(rgb) + rng.uniform(0, 0.35, (32, 32, 3)), 0, 1)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return f"folder:{root}"


def atlas_doc(store: Store, klass: int | None = None) -> dict:
    [art] = [a for a in store.find(MODEL, LAYER, None, ATLAS) if a.params.get("class") == klass]
    return json.loads(store.read_file(art, "atlas.json"))


SMALL = ["--grid", "8", "--levels", "2", "--positions", "6", "--preset", "quick"]  # few cells: few renders


def atlas_cli(dataset: str, store: Path, *extra: str):
    result = CliRunner().invoke(main, ["atlas", ENTRY, LAYER, "--dataset", dataset, "--store", str(store),
                                       *SMALL, *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with the atlas of colour_net/colour and its class atlas of "red", by `microtome atlas`."""
    root = tmp_path_factory.mktemp("atlas")
    dataset = photos(root / "photos")
    result = atlas_cli(dataset, root / "store")
    assert re.search(r"cells per level 4x4: \d+, 8x8: \d+", result.output) and "stage times: collect" in result.output
    atlas_cli(dataset, root / "store", "--class", "red")
    store = Store(root / "store", create=False)
    yield root, dataset, store
    store.close()


# ---- the layout ---------------------------------------------------------------------------------

def test_planted_clusters_come_out_as_separate_regions():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 24)) * 3
    truth = np.repeat(np.arange(4), 150)
    vectors = centres[truth] + rng.normal(size=(600, 24)) * 0.3
    points = L.layout(vectors - vectors.mean(0), seed=0)
    assert points.shape == (600, 2) and points.min() >= 0 and points.max() <= 1
    cx, cy = L.bin_points(points, 10)
    cells = {}
    for x, y, t in zip(cx, cy, truth):
        cells.setdefault((x, y), set()).add(int(t))
    assert all(len(held) == 1 for held in cells.values())  # no cell mixes two clusters
    regions = [{cell for cell, held in cells.items() if t in held} for t in range(4)]
    assert all(regions) and sum(map(len, regions)) == len(cells)  # each cluster its own cells
    again = L.layout(vectors - vectors.mean(0), seed=0)
    assert np.array_equal(points, again)  # seeded: the same layout


def test_levels_halve_towards_the_finest_and_bad_ones_are_refused():
    assert L.level_grids(20, 3) == [5, 10, 20] and L.level_grids(7, 1) == [7]
    with pytest.raises(MicrotomeError, match="distinct levels"):
        L.level_grids(2, 4)


def test_a_vector_favours_the_class_its_attribution_pushes_most():
    classes = np.array([[3, 5], [3, 5], [7, 1]])
    scores = np.array([[0.2, 0.9], [0.5, -1.0], [-0.1, -0.3]])
    assert L.favoured(classes, scores).tolist() == [5, 3, -1]


def test_classes_resolve_by_index_or_name():
    labels = {1: "goldfish, Carassius auratus", 2: "great white shark"}
    assert L.resolve_class(labels, "1") == 1 and L.resolve_class(labels, "Goldfish") == 1
    assert L.resolve_class(labels, "great white shark") == 2
    with pytest.raises(NotFound, match="did you mean"):
        L.resolve_class(labels, "goldfsh")
    with pytest.raises(NotFound):
        L.resolve_class(labels, "9")


def test_the_cossim_objective_is_dot_times_cosine_power_relative_to_a_reference():
    acts = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])  # [1, 2, 1, 2]: mean vector (2, 2)
    obj = O.direction_cossim("l", [1.0, 0.0], reference=[1.0, 0.0], cossim_pow=2)
    m = torch.tensor([1.0, 2.0])  # (2, 2) - (1, 0)
    expected = m[0] * (m[0] / m.norm()) ** 2
    assert torch.allclose(obj({"l": acts}), expected.view(1))
    assert float(O.direction_cossim("l", [-1.0, 0.0], [1.0, 0.0], 3)({"l": acts})) < 0  # sign kept


# ---- the technique on a toy layer ------------------------------------------------------------------

def test_the_toy_atlas_separates_the_colours(built):
    _, _, store = built
    doc = atlas_doc(store)
    photo_colour = {int(k): v["label"] for k, v in doc["photos"].items()}
    assert [level["grid"] for level in doc["levels"]] == [4, 8]
    assert len(doc["vectors"]["photo"]) == 3 * PHOTOS * 6
    finest = doc["levels"][-1]
    held: dict[str, set] = {}
    points = np.array(doc["layout"]["points"])
    cx, cy = L.bin_points(points, finest["grid"])
    for x, y, photo in zip(cx, cy, doc["vectors"]["photo"]):
        held.setdefault(photo_colour[photo], set()).add((int(x), int(y)))
    assert not held["red"] & held["green"] and not held["red"] & held["blue"] and not held["green"] & held["blue"]
    for level in doc["levels"]:  # each cell's top class is its photos' colour
        for cell in level["cells"]:
            colours = {photo_colour[doc["vectors"]["photo"][v]] for v in cell["photos"]}
            assert len(colours) == 1 and cell["classes"][0][0] == list(COLOURS).index(colours.pop())
    [art] = [a for a in store.find(MODEL, LAYER, None, ATLAS) if a.params.get("class") is None]
    assert all(f"icons/{i}/{c['x']}-{c['y']}.png" in art.files for i, level in enumerate(doc["levels"])
               for c in level["cells"])
    assert set(art.meta["seconds"]) == {"collect", "layout", "render"} and art.meta["cells"] == [
        len(level["cells"]) for level in doc["levels"]]


def test_a_rebuild_gives_the_same_cells(built):
    """Collect and lay out again, in a fresh model: every vector lands in the same cell."""
    _, dataset, store = built
    first = atlas_doc(store)
    [art] = [a for a in store.find(MODEL, LAYER, None, ATLAS) if a.params.get("class") is None]
    model, spec = colour_net()
    vectors, _ = collect(model, spec, LAYER, get_dataset(dataset), art.params)
    mean = vectors.activations.mean(0)
    points = L.layout(vectors.activations - mean, art.params["seed"], art.params["neighbors"], art.params["min_dist"])
    assert np.round(points, 4).tolist() == first["layout"]["points"]
    for level in first["levels"]:
        cx, cy = L.bin_points(points, level["grid"])
        stored = L.bin_points(np.array(first["layout"]["points"]), level["grid"])
        assert np.array_equal(cx, stored[0]) and np.array_equal(cy, stored[1])
        cells = L.summarize(vectors, points, level["grid"], art.params["min_count"], mean)
        assert [(c.x, c.y, len(c.members)) for c in cells] == [(c["x"], c["y"], c["count"]) for c in level["cells"]]


def test_build_plans_the_atlas_only_when_named_and_as_microtome_atlas_stores_it(built):
    from microtome.pipeline.plan import parse_techniques, plan, select
    from microtome.pipeline.pipeline import resolve
    from microtome.store import ArtifactKey

    _, dataset, store = built
    assert ATLAS not in parse_techniques("all")
    spec = resolve(ENTRY).spec
    [task] = plan(store, spec, select(spec, [LAYER], None, [ATLAS], "quick", get_dataset(dataset).name))
    [item] = task.items
    assert task.layers == (LAYER,) and item.unit is None and item.params == atlas_params("quick", get_dataset(dataset).name)
    small = atlas_params("quick", get_dataset(dataset).name, grid=8, levels=2, positions=6)
    assert store.has(ArtifactKey.for_params(MODEL, LAYER, None, ATLAS, small))  # what the command stored
