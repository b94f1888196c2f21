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
from microtome.data import get_dataset
from microtome.errors import MicrotomeError, NotFound
from microtome.optvis import objectives as O
from microtome.store import Store
from microtome.techniques import atlas_layout as L
from microtome.techniques.atlas import collect
from microtome.techniques.builtin import ATLAS, atlas_params
from microtome.web import create_app
from microtome.web.server.export import export
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


slow = pytest.mark.slow  # UMAP compiles itself (numba) once per process: ~20 s


# ---- the layout ---------------------------------------------------------------------------------

@slow
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


def test_a_vector_favours_the_classes_its_attribution_pushes_up():
    classes = [[3, 5], [3, 5], [7, 1]]
    scores = [[0.2, 0.9], [0.5, -1.0], [-0.1, -0.3]]
    assert L.favours(classes, scores, 5) == [True, False, False]
    assert L.favours(classes, scores, 3) == [True, True, False]
    assert L.favoured_counts(classes, scores) == {3: 2, 5: 1}


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
    tokens = torch.tensor([[[50.0, -50.0], [1.0, 2.0], [3.0, 2.0], [2.0, 1.0], [2.0, 3.0]]])  # class + 2×2 patches
    assert torch.allclose(obj({"l": tokens}), expected.view(1))  # the class token left out


# ---- the technique on a toy layer ------------------------------------------------------------------

@slow
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


@slow
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


@slow
def test_build_plans_the_atlas_only_when_named_and_as_microtome_atlas_stores_it(built):
    from microtome.pipeline.pipeline import resolve
    from microtome.pipeline.plan import parse_techniques, plan, select
    from microtome.store import ArtifactKey

    _, dataset, store = built
    assert ATLAS not in parse_techniques("all")
    spec = resolve(ENTRY).spec
    [task] = plan(store, spec, select(spec, [LAYER], None, [ATLAS], "quick", get_dataset(dataset).name))
    [item] = task.items
    name = get_dataset(dataset).name
    assert task.layers == (LAYER,) and item.unit is None and item.params == atlas_params("quick", name)
    small = atlas_params("quick", name, grid=8, levels=2, positions=6)
    assert store.has(ArtifactKey.for_params(MODEL, LAYER, None, ATLAS, small))  # what the command stored


class Tokens(torch.nn.Module):
    """A toy token layer: a class token and 4×4 patches of a 16 px image, `[B, 1 + 16, 6]`."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 6, 4, stride=4)
        self.cls = torch.nn.Parameter(torch.full((1, 1, 6), 100.0))  # far from every patch token
        self.blocks = torch.nn.Identity()  # the token layer's hook point
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x):
        patches = self.patch(x).flatten(2).transpose(1, 2)  # [B, 16, 6]
        tokens = self.blocks(torch.cat([self.cls.expand(len(x), -1, -1), patches], 1))  # [B, 17, 6]
        return self.head(tokens[:, 1:].relu().mean(1))  # [B, 3]


TINY = {"grid": 4, "levels": 1, "positions": 4, "steps": 4, "size": 16}  # seconds, not minutes


@slow
def test_token_layers_and_sae_layers_have_atlases_too(built):
    from microtome.techniques.atlas import atlas
    from microtome.zoo.sae import TopKSAE, attach_dictionary
    from microtome.zoo.spec import LayerSpec, ModelSpec

    _, dataset, _ = built
    data = get_dataset(dataset)
    torch.manual_seed(0)
    spec = ModelSpec(id="tokens", title="Token toy", build=Tokens, input_size=16,
                     layers=(LayerSpec("blocks", "blocks", "tokens", 6, (4, 4)),), edges=(), labels=tuple(COLOURS),
                     weights_source="random", weights_sha256=None)
    result = atlas(Tokens(), spec, "blocks", data, atlas_params("quick", data.name, **TINY))
    doc = json.loads(result.files["atlas.json"])
    assert doc["positions_grid"] == [4, 4] and len(doc["vectors"]["photo"]) == 3 * PHOTOS * 4
    assert len(doc["mean"]) == 6 and result.meta["cells"][0] > 0 and max(doc["mean"]) < 50  # no class token
    assert all(0 <= x < 4 and 0 <= y < 4 for x, y in doc["vectors"]["position"])
    model, base = colour_net()
    torch.manual_seed(0)
    model, spec = attach_dictionary(model, base, LAYER, TopKSAE(3, 6, 2))
    result = atlas(model, spec, "colour.sae", data, atlas_params("quick", data.name, **TINY))
    doc = json.loads(result.files["atlas.json"])
    assert len(doc["mean"]) == 6 and doc["layer"] == "colour.sae"  # the SAE's features are the vectors
    assert all(u < 6 for c in doc["levels"][0]["cells"] for u, _ in c["units"])
    assert max(s for row in doc["vectors"]["scores"] for s in row) > 0  # attribution through the base layer


@slow
def test_the_build_runner_makes_the_planned_atlas_and_ticks_its_stages(built):
    from microtome.techniques.atlas import run_atlas
    from microtome.techniques.base import Item, Job

    _, dataset, _ = built
    data = get_dataset(dataset)
    model, spec = colour_net()
    params = atlas_params("quick", data.name, **TINY)
    ticks: list[float] = []
    job = Job(model, spec, "cpu", ATLAS, (LAYER,), [Item(LAYER, None, params)], dataset=lambda name: data,
              tick=ticks.append)
    [result] = run_atlas(job)
    assert (result.layer, result.unit, result.technique, result.params) == (LAYER, None, ATLAS, params)
    assert abs(sum(ticks) - 1.0) < 1e-6 and min(ticks) >= 0


# ---- the pages -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(built):
    _, _, store = built
    with TestClient(create_app(store, registry=None, on_demand=False)) as c:
        yield c


def get(client: TestClient, url: str, status: int = 200):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:300])
    return r


ATLAS_URL = f"/models/{MODEL}/{LAYER}/atlas"


@slow
def test_the_atlas_page_and_its_json_show_every_cell_of_every_level(client, built):
    from tests.web_fixtures import links

    data = get(client, ATLAS_URL + ".json").json()
    assert {"model", "layer", "dataset", "levels", "layout"} <= set(data)
    assert data["model"]["id"] == MODEL and data["layer"]["id"] == LAYER and data["dataset"].startswith("folder:")
    assert data["layout"]["method"] == "umap" and data["layout"]["seed"] == 0
    assert len(data["layout"]["points"]) == 3 * PHOTOS * 6
    doc = atlas_doc(built[2])
    for level, stored in zip(data["levels"], doc["levels"]):
        assert level["grid"] == stored["grid"] and len(level["cells"]) == len(stored["cells"])
        for cell in level["cells"]:
            assert {"x", "y", "count", "image", "direction", "classes", "units"} <= set(cell)
            assert len(cell["direction"]) == 3 and cell["image"].startswith("/blobs/")
            assert {"class", "label", "score"} <= set(cell["classes"][0]) and cell["classes"][0]["label"] in COLOURS
            assert all(u["url"] == f"/models/{MODEL}/{LAYER}/{u['unit']}" for u in cell["units"])
    html = get(client, ATLAS_URL).text
    hrefs, srcs = links(html)
    shown = [(level["level"], c["x"], c["y"], c["image"]) for level in data["levels"] for c in level["cells"]]
    assert [f"{ATLAS_URL}/{i}/{x}/{y}" for i, x, y, _ in shown] == [h for h in hrefs if re.match(rf"{ATLAS_URL}/\d", h)]
    assert [image for *_, image in shown] == [s for s in srcs if s.startswith("/blobs/")]  # the page is its JSON
    assert html.count('class="atlas-level"') == len(data["levels"]) and "/static/atlas.js" in html


@slow
def test_a_cell_page_shows_its_icon_photos_units_and_classes(client):
    data = get(client, ATLAS_URL + ".json").json()
    cell = max(data["levels"][-1]["cells"], key=lambda c: c["count"])
    url = f"{ATLAS_URL}/1/{cell['x']}/{cell['y']}"
    page = get(client, url + ".json").json()
    assert (page["x"], page["y"], page["count"], page["image"]) == (cell["x"], cell["y"], cell["count"], cell["image"])
    assert page["classes"][0]["class"] == cell["classes"][0]["class"] and page["level"] == 1
    assert page["photos"] and all(p["image"].startswith("/blobs/") and 0 <= p["box"][0] < 100 for p in page["photos"])
    assert {p["label"] for p in page["photos"]} == {page["classes"][0]["label"]}  # a colour's cell: its photos
    assert page["parent"]["url"].startswith(f"{ATLAS_URL}/0/") and page["children"] == []
    html = get(client, url).text
    assert page["units"][0]["url"] in html and page["photos"][0]["image"] in html and 'class="atlas-mark"' in html
    get(client, f"{ATLAS_URL}/2/0/0", 404)
    get(client, f"{ATLAS_URL}/0/99/0.json", 404)


@slow
def test_class_atlases_filter_the_layout_and_two_compare(client, built):
    whole = get(client, ATLAS_URL + ".json").json()
    assert get(client, f"{ATLAS_URL}/class/red", 200).url.path.endswith(f"{ATLAS_URL}/class/0")  # a name redirects
    red = get(client, f"{ATLAS_URL}/class/0.json").json()
    assert red["klass"]["label"] == "red" and red["klass"]["icons"] == "class"  # built by `--class red`
    green = get(client, f"{ATLAS_URL}/class/1.json").json()
    assert green["klass"]["icons"] == "whole atlas"  # not built: the whole atlas's cells
    cells = lambda d, i: {(c["x"], c["y"]) for c in d["levels"][i]["cells"]}  # noqa: E731
    assert cells(green, 1) < cells(whole, 1)  # not the whole atlas, only part of it
    doc = atlas_doc(built[2])
    colour = {int(k): v["label"] for k, v in doc["photos"].items()}
    cx, cy = L.bin_points(np.array(doc["layout"]["points"]), 8)
    favour = L.favours(doc["vectors"]["classes"], doc["vectors"]["scores"], 1)
    greens = {(int(x), int(y)) for x, y, p, f in zip(cx, cy, doc["vectors"]["photo"], favour)
              if colour[p] == "green" and f}
    assert greens and greens & cells(whole, 1) <= cells(green, 1)  # the green photos' vectors' cells
    assert len(green["layout"]["points"]) == green["klass"]["vectors"] == sum(favour)
    assert cells(red, 1) and not cells(red, 1) & greens  # its own cells: red vectors only
    pair = get(client, f"{ATLAS_URL}/compare/red/green").url.path
    assert pair.endswith(f"{ATLAS_URL}/compare/0/1")
    compared = get(client, f"{ATLAS_URL}/compare/0/1.json").json()
    assert [s["label"] for s in compared["sides"]] == ["red", "green"] and compared["shared"] == []
    assert "green" in get(client, f"{ATLAS_URL}/compare/0/1").text
    assert "did you mean" in get(client, f"{ATLAS_URL}/class/gren.json", 404).json()["error"]


@slow
def test_the_layer_page_and_the_model_graph_link_the_atlas(client):
    assert get(client, f"/models/{MODEL}/{LAYER}.json").json()["atlas"] == ATLAS_URL
    assert f'href="{ATLAS_URL}"' in get(client, f"/models/{MODEL}/{LAYER}").text
    assert f'href="{ATLAS_URL}"' in get(client, f"/models/{MODEL}").text
    assert get(client, f"/models/{MODEL}/logits.json").json()["atlas"] is None
    assert "microtome atlas" in get(client, f"/models/{MODEL}/logits/atlas.json", 404).json()["error"]


@slow
def test_the_atlas_pages_do_not_import_torch(built):
    import subprocess
    import sys

    _, _, store = built
    code = f"""
import sys
from fastapi.testclient import TestClient
from microtome.web import create_app
with TestClient(create_app({str(store.root)!r}, registry=None, on_demand=False)) as c:
    for url in ["{ATLAS_URL}", "{ATLAS_URL}.json", "{ATLAS_URL}/class/1", "{ATLAS_URL}/compare/0/1"]:
        assert c.get(url).status_code == 200, url
    cell = c.get("{ATLAS_URL}.json").json()["levels"][0]["cells"][0]
    assert c.get("{ATLAS_URL}/0/%d/%d" % (cell["x"], cell["y"])).status_code == 200
print("torch" in sys.modules, "umap" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False False"


@slow
def test_the_static_export_holds_the_atlas_and_its_links_resolve(built, tmp_path):
    from tests.web_fixtures import links

    _, _, store = built
    out = tmp_path / "site"
    export(store, out, progress=False)
    base = out / "models" / MODEL / LAYER / "atlas"
    data = json.loads((out / "models" / MODEL / LAYER / "atlas.json").read_text())
    assert (base / "index.html").is_file() and (base / "class" / "0" / "index.html").is_file()
    for i, level in enumerate(data["levels"]):
        for c in level["cells"]:
            assert (base / str(i) / str(c["x"]) / str(c["y"]) / "index.html").is_file()
    for page in [base / "index.html", next(base.glob("1/*/*/index.html"))]:
        hrefs, srcs = links(page.read_text())
        for target in hrefs + srcs:
            if not target.startswith(("#", "http", "data:")):
                resolved = (page.parent / target.split("#")[0])
                assert resolved.exists(), (page, target)


@slow  # and skipped only where no Chromium is installed, never under CI (tests/conftest.py)
def test_in_chromium_the_atlas_zooms_hovers_and_clicks_through_to_a_unit(built, browser):
    from tests.web_fixtures import LiveServer

    _, _, store = built
    errors: list[str] = []
    with LiveServer(create_app(store, registry=None, on_demand=False)) as live:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(live.url + ATLAS_URL)
        shown = lambda: page.evaluate(  # noqa: E731
            "Array.from(document.querySelectorAll('.atlas-level')).findIndex(l => !l.hidden)")
        assert shown() == 0 and "4×4" in page.inner_text(".atlas-where")
        page.click("[data-zoom='1']")
        assert shown() == 1 and "8×8" in page.inner_text(".atlas-where")
        page.click("[data-zoom='-1']")
        box = page.locator(".atlas-view").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -100)
        page.wait_for_function("!document.querySelector('.atlas-level[data-level=\"1\"]').hidden")
        page.focus(".atlas-view")
        page.keyboard.press("-")
        assert shown() == 0
        cell = page.locator(".atlas-level:not([hidden]) a.atlas-cell").first
        cell.hover()
        assert page.is_visible(".atlas-tip") and "vectors" in page.inner_text(".atlas-tip")
        cell.click()
        page.wait_for_url(f"**{ATLAS_URL}/0/*/*")
        page.locator(".atlas-units a").first.click()
        page.wait_for_url(f"**/models/{MODEL}/{LAYER}/*")
        page.close()
    assert errors == []
