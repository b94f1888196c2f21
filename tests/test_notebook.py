"""Notebooks: results display themselves through the IPython display protocol, `microtome.show`
shows a unit's card from a store, progress bars are widgets in a kernel, and the tutorial runs
top to bottom in a real Jupyter kernel (nbclient).

Kernels run with OMP_WAIT_POLICY=PASSIVE unless the environment says otherwise, as the benches
do: with OpenMP's default (spinning) policy, a render step on a 2-core machine that another
process shares waits on its second thread, up to 20 times slower.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from PIL import Image

import microtome
from microtome.display import MIN_TILE, Figure, render_figure
from microtome.errors import MicrotomeError, NotFound
from microtome.inspect.photo import Inspection, inspect_photo
from microtome.notebook import UnitCard, show, unit_card
from microtome.optvis import objectives as O
from microtome.optvis.reducer import ChannelReducer, sparse_channels_to_rgb
from microtome.optvis.render import RenderResult
from tests.inspect_toys import stripes, texture_net
from tests.web_fixtures import FULL_UNITS, LABELS, LAYER, MODEL, make_store

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = make_store(tmp_path_factory.mktemp("nb") / "store")
    yield st
    st.close()


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def as_uint8(images: torch.Tensor) -> np.ndarray:  # [N, 3, H, W] in [0, 1] -> [N, H, W, 3]
    return (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


# ---- pictures, without a kernel ------------------------------------------------------------------
def test_a_figure_shows_each_image_enlarged_whole_with_its_caption():
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fig = Figure(images, ["a", "b\nsecond line", "c"])
    sheet = decode(fig._repr_png_())
    factor = MIN_TILE // 32
    for i, want in enumerate(as_uint8(images)):
        x = 3 + i * (MIN_TILE + 6)
        tile = sheet[:MIN_TILE, x:x + MIN_TILE]
        assert np.array_equal(tile, want.repeat(factor, 0).repeat(factor, 1)), i
    html = fig._repr_html_()
    assert html.count("<img") == 3 and "b<br>second line" in html
    tags = [part.split("'")[0] for part in html.split("src='data:image/png;base64,")[1:]]
    assert np.array_equal(decode(base64.b64decode(tags[1])), as_uint8(images)[1])  # unscaled in HTML


def test_a_figure_takes_arrays_pil_images_and_png_bytes():
    hwc = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 4).astype(np.uint8)
    gray = np.linspace(0, 1, 20).reshape(4, 5)
    pil = Image.fromarray(hwc)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    fig = Figure([hwc, gray, pil, buf.getvalue(), np.stack([hwc, hwc])])
    assert len(fig) == 6
    for i in (0, 2, 3, 4, 5):
        assert np.array_equal(fig.images[i], hwc)
    assert np.array_equal(fig.images[1][..., 0], (gray * 255 + 0.5).astype(np.uint8))
    with pytest.raises(MicrotomeError, match="2 captions for 1 images"):
        Figure(hwc, ["x", "y"])
    with pytest.raises(MicrotomeError, match=r"\[H, W, 3\]"):
        Figure(np.zeros((4, 5, 7)))


def test_a_render_result_is_captioned_with_its_objectives_and_values():
    result = RenderResult(torch.rand(2, 3, 16, 16), torch.tensor([1.23456, -7.0]),
                          objectives=["channel(block10, 5)", "-channel(block10, 5)"])
    fig = render_figure(result)
    assert fig.captions == ["channel(block10, 5)\n= 1.235", "-channel(block10, 5)\n= -7"]
    assert np.array_equal(fig.images[1], as_uint8(result.images)[1])
    assert "channel(block10, 5)<br>= 1.235" in result._repr_html_()
    assert decode(result._repr_png_()).shape[1] == 2 * (MIN_TILE + 6)


def test_an_objective_shows_its_description_and_layers():
    html = (O.channel("block10", 5) - 0.1 * O.tv())._repr_html_()
    assert "channel(block10, 5) - 0.1·tv()" in html and "block10, input" in html and "maximized" in html


def test_a_fitted_reducer_shows_its_factor_maps():
    acts = torch.rand(2, 6, 7, 5, generator=torch.Generator().manual_seed(1))  # [B, H, W, C] >= 0
    reducer = ChannelReducer(3, "NMF", max_iter=3000, random_state=0)
    assert "not fitted" in reducer._repr_html_()
    maps = reducer.fit_transform(acts)  # [2, 6, 7, 3]
    from microtome.display import reducer_figure

    fig = reducer_figure(reducer, maps, sparse_channels_to_rgb)
    assert fig.captions == ["all factors", "factor 0", "factor 1", "factor 2"]
    first = maps[0, ..., 1].numpy()
    assert np.array_equal(fig.images[2][..., 0], (first / first.max() * 255 + 0.5).astype(np.uint8))
    assert reducer._repr_html_().count("<img") == 4
    flat = ChannelReducer(2, "PCA")
    flat.fit_transform(np.random.default_rng(0).normal(size=(40, 6)))
    assert "components [2, 6]" in flat._repr_html_()


def test_an_inspection_shows_the_inspect_page_in_a_frame():
    model, spec = texture_net()
    result = inspect_photo(model, spec, stripes(), "texture", groups=2, renders=False)
    assert isinstance(result, Inspection) and isinstance(result, dict)
    html = result._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "Inspect texture_net" in html
    assert html.count("data:image/png;base64,") >= 3  # the photo and the groups' maps, inside
    json.dumps({k: v for k, v in result.items() if k != "files"})  # still JSON-ready


# ---- a unit's card from a store -------------------------------------------------------------
def test_show_gives_a_units_card_with_its_pictures_labels_and_link(store):
    card = show(f"{MODEL}/{LAYER}:0", store=store.root)
    assert isinstance(card, UnitCard) and card.shorthand == f"{MODEL}/{LAYER}:0"
    html = card._repr_html_()
    assert f"http://127.0.0.1:8000/models/{MODEL}/{LAYER}/0" in html and f"{MODEL}/{LAYER}:0" in html
    assert card.labels[:2] == [label for label, _, _ in LABELS[0]]
    assert all(label in html for label, _, _ in LABELS[0])
    # every feature visualization and top example of the unit, as the store holds it
    page = card.data
    wanted = [im["url"] for v in page["feature_vis"].values() for im in v["images"]]
    top = next(g for g in page["dataset_examples"]["groups"] if g["name"] == "top")
    wanted += [row["overlay"]["image"] for row in top["rows"]]
    assert len(wanted) >= 7 and 0 in FULL_UNITS
    for url in wanted:
        sha = url.removeprefix("/blobs/").split(".")[0]
        assert base64.b64encode(store.read(sha)).decode() in html, url
    other = unit_card(f"{MODEL}/{LAYER}:0", store, base_url="http://example.test:9000/")
    assert other.url == f"http://example.test:9000/models/{MODEL}/{LAYER}/0"


def test_show_names_what_is_wrong(store, tmp_path):
    with pytest.raises(NotFound, match="did you mean block10") as err:
        show(f"{MODEL}/blok10:0", store=store.root)
    assert f"{MODEL}/block10:0" in err.value.suggestions
    with pytest.raises(MicrotomeError, match="names no unit"):
        show(f"{MODEL}/{LAYER}", store=store.root)
    with pytest.raises(NotFound, match="no store at"):
        show(f"{MODEL}/{LAYER}:0", store=tmp_path / "nothing")


def test_import_microtome_and_show_a_card_import_no_torch(store):
    code = ("import sys, microtome\nassert 'torch' not in sys.modules\n"
            f"card = microtome.show({f'{MODEL}/{LAYER}:1'!r}, store={str(store.root)!r})\n"
            "assert 'dog' in card._repr_html_()\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert microtome.show is show


# ---- in a kernel -------------------------------------------------------------------------------
def run_notebook(nb: nbformat.NotebookNode, cwd: Path, monkeypatch, timeout: int = 600) -> float:
    """Execute `nb` in place in a python3 kernel started in `cwd`; the seconds it took."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    monkeypatch.setenv("TMPDIR", str(cwd))  # what the notebook builds is cleaned up with cwd
    started = time.monotonic()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return time.monotonic() - started


def outputs(cell) -> dict[str, object]:
    """{mime type: data} of a cell's displayed outputs (the last one of each type)."""
    found: dict[str, object] = {}
    for out in cell.get("outputs", []):
        found.update(out.get("data", {}))
    return found


def test_in_a_kernel_render_shows_a_png_and_show_a_card(store, tmp_path, monkeypatch):
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(c) for c in (
        "import numpy as np, microtome\nfrom microtome.optvis.render import render\n"
        "from microtome.optvis.param import ImageParam\n"
        "from tests.toy_models import tiny_net\nmodel, spec = tiny_net()\n"
        "result = render(model, ['conv2:1', 'conv2:2'], ImageParam(32), spec=spec, steps=4)\n"
        "np.save('images.npy', result.images.numpy())\nresult",
        f"microtome.show({f'{MODEL}/{LAYER}:0'!r}, store={str(store.root)!r})",
        "from microtome.optvis import objectives as O\nO.channel('conv2', 1) - 0.5 * O.tv()",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass",
    )])
    run_notebook(nb, tmp_path, monkeypatch, timeout=180)
    rendered, card, objective, bar = (outputs(c) for c in nb.cells)
    images = np.load(tmp_path / "images.npy")  # [2, 3, 32, 32]: what the kernel rendered
    sheet = decode(base64.b64decode(rendered["image/png"]))
    for i, want in enumerate(as_uint8(torch.from_numpy(images))):
        x = 3 + i * (MIN_TILE + 6)
        assert np.array_equal(sheet[:MIN_TILE, x:x + MIN_TILE], want.repeat(4, 0).repeat(4, 1))
    assert "channel(conv2, 1)" in rendered["text/html"] and "channel(conv2, 2)" in rendered["text/html"]
    assert f"{MODEL}/{LAYER}:0" in card["text/html"] and "golden retriever" in card["text/html"]
    assert f"/models/{MODEL}/{LAYER}/0" in card["text/html"]
    assert "channel(conv2, 1) - 0.5·tv()" in objective["text/html"]
    assert WIDGET in bar  # tqdm.auto draws a widget in a kernel


def test_the_tutorial_is_stored_without_outputs():
    nb = nbformat.read(TUTORIAL, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 10
    assert all(not c.outputs and c.execution_count is None for c in code)


def shows_pictures(source: str) -> bool:
    """The cell ends with `render(...)` or `microtome.show(images, ...)`, so it should show a PNG."""
    last = ast.parse(source).body[-1]
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)):
        return False
    call = last.value
    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
    return name == "render" or (name == "show" and not isinstance(call.args[0], ast.Constant))


@pytest.mark.slow
def test_the_tutorial_runs_top_to_bottom(tmp_path, monkeypatch):
    nb = nbformat.read(TUTORIAL, as_version=4)
    seconds = run_notebook(nb, tmp_path, monkeypatch, timeout=600)
    print(f"tutorial: {seconds:.0f} s")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    renders = [c for c in code if shows_pictures(c.source)]
    assert len(renders) >= 7
    for cell in renders:
        assert "image/png" in outputs(cell), cell.source
    last = outputs(code[-1])
    assert "efficientnet_lite0/block10:5" in last["text/html"] and "feature visualization" in last["text/html"]
    assert WIDGET in last  # the build's progress bar, a widget
    inspected = next(c for c in code if "inspect_photo(" in c.source)
    assert outputs(inspected)["text/html"].startswith("<iframe")
