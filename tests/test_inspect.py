"""Inspect a photo: groups separate two textures, attribution equals the hand computation on
a linear toy, the real model finds the cat, and the command line writes its files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy.optimize import linear_sum_assignment

from microtome.errors import MicrotomeError
from microtome.images import to_pil
from microtome.inspect.groups import neuron_groups
from microtome.inspect.photo import inspect_photo
from tests.inspect_toys import LINEAR_W, linear_net, red_green, stripes, texture_net


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_groups_of_two_textures_separate_their_regions():
    model, spec = texture_net()
    result = inspect_photo(model, spec, stripes(), "texture", groups=2, renders=False)
    entry = result["layers"]["texture"]
    maps = np.array([g["map"] for g in entry["groups"]])  # [2, 16, 16]
    assert maps.shape == (2, 16, 16) and (maps >= 0).all()
    owner = maps.argmax(0)  # [16, 16]: which group is strongest where
    truth = [np.zeros((16, 16), bool), np.zeros((16, 16), bool)]
    truth[0][:, :8] = True  # horizontal stripes
    truth[1][:, 8:] = True  # vertical stripes
    iou = np.array([[_iou(owner == g, t) for t in truth] for g in range(2)])
    rows, cols = linear_sum_assignment(-iou)
    assert iou[rows, cols].min() >= 0.8, iou
    for g, t in zip(rows, cols):  # each group's direction lives on its texture's units
        units = {u["unit"] for u in entry["groups"][g]["units"][:4]}
        assert units == ({0, 1, 2, 3} if t == 0 else {4, 5, 6, 7}), (g, units)
    assert entry["explained"] > 0.9
    assert entry["dictionary"][0]["units"][0]["unit"] in {0, 1, 2, 3}  # top-left: horizontal
    assert len(entry["grid"]) == 49 and all(len(c["box"]) == 4 for c in entry["grid"])


def test_attribution_on_a_linear_toy_equals_the_hand_computation():
    model, spec = linear_net()
    result = inspect_photo(model, spec, red_green(), "a,b", groups=2, renders=False)
    a, b = result["layers"]["a"], result["layers"]["b"]
    w = np.array(LINEAR_W)
    half = 32 * 16  # positions in each half
    # by hand: layer a is (1, 0) on the red half, (0, 1) on the green half; layer b is W a
    red_a = _find(a, [1, 0])
    green_a = _find(a, [0, 1])
    b_left = _find(b, np.array([2, 1]) / math.sqrt(5))  # W (1, 0)
    b_right = _find(b, [0, 1])  # W (0, 1) = (0, 3)
    matrix = np.array(a["attribution"]["groups"])  # [K_a, K_b]
    assert a["attribution"]["next"] == "b"
    expected = {(red_a, b_left): half * math.sqrt(5), (red_a, b_right): half * 1.0,
                (green_a, b_left): half * 3 / math.sqrt(5), (green_a, b_right): half * 3.0}
    for (i, j), value in expected.items():
        assert matrix[i, j] == pytest.approx(value, rel=1e-2), (i, j)
    # the same by the formula, from the returned maps and directions: Σ map_i · u_j W d_i
    for i, gi in enumerate(a["groups"]):
        for j, gj in enumerate(b["groups"]):
            by_formula = np.sum(gi["map"]) * np.array(gj["direction"]) @ w @ np.array(gi["direction"])
            assert matrix[i, j] == pytest.approx(by_formula, rel=1e-3, abs=1e-3)
    # classes: logit c = mean over positions of b_c, so group i's share is half/N · W[c, i]
    for entry in (a["attribution"]["classes"]):
        c = entry["class"]
        assert entry["groups"][red_a] == pytest.approx(0.5 * w[c, 0], rel=1e-2)
        assert entry["groups"][green_a] == pytest.approx(0.5 * w[c, 1], rel=1e-2)
        assert entry["total"] == pytest.approx(0.5 * (w[c, 0] + w[c, 1]), rel=1e-4)
        assert np.sum(entry["map"]) == pytest.approx(entry["total"], rel=1e-4)
    assert b["attribution"]["next"] is None and b["attribution"]["groups"] == []
    assert [p["class"] for p in result["predictions"]] == [1, 0]  # b's mean is (1, 2)


def _find(entry: dict, direction) -> int:
    """The group whose direction is `direction` (cosine > 0.99)."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    sims = [float(np.dot(g["direction"], d)) for g in entry["groups"]]
    assert max(sims) > 0.99, sims
    return int(np.argmax(sims))


def test_signed_layers_are_factored_into_both_parts():
    rng = np.random.default_rng(0)
    directions = np.array([[1.0, -1.0, 0.0, 0.5], [0.0, 1.0, 1.0, -1.0]])  # [2, C], signed
    owner = rng.random((6, 6)) < 0.5  # disjoint supports: then [relu(A), relu(-A)] has rank 2
    maps = (0.2 + rng.random((2, 6, 6))) * np.stack([owner, ~owner])
    acts = np.einsum("khw,kc->chw", maps, directions)  # [C, H, W]
    groups = neuron_groups(torch.as_tensor(acts), 2)
    assert groups.signed and groups.explained > 0.99
    back = np.einsum("khw,kc->chw", groups.maps, groups.directions)
    np.testing.assert_allclose(back, acts, atol=1e-2)


def test_bad_arguments_are_clear_errors():
    model, spec = linear_net()
    with pytest.raises(MicrotomeError, match="no layer 'c'"):
        inspect_photo(model, spec, red_green(), "a,c", renders=False)
    with pytest.raises(MicrotomeError, match="flat vector"):
        inspect_photo(model, spec, red_green(), "logits", renders=False)
    with pytest.raises(MicrotomeError, match="cannot make 3 groups"):
        inspect_photo(model, spec, red_green(), "a", groups=3, renders=False)
    with pytest.raises(MicrotomeError, match="no inspect preset"):
        inspect_photo(model, spec, red_green(), "a", groups=2, preset="fast", renders=False)


def test_renders_fill_images_into_files():
    model, spec = texture_net()
    seen = []
    result = inspect_photo(model, spec, stripes(), "texture", groups=2, steps=3, size=32,
                           grid_size=16, grid=2, progress=lambda done, total: seen.append((done, total)))
    files = result.pop("files")
    json.dumps(result)  # JSON-ready once the files are out
    entry = result["layers"]["texture"]
    names = [g["image"] for g in entry["groups"]] + [c["image"] for c in entry["grid"]]
    assert len(entry["grid"]) == 4 and len(names) == 6
    for name in names + [entry["overlay"], result["photo"]] + [g["map_image"] for g in entry["groups"]]:
        assert files[name].startswith(b"\x89PNG"), name
    # two batches of three steps, doubled by the early layer's schedule (a 3x3 field)
    assert seen[-1] == (12, 12) and len(seen) == 12
    from microtome.inspect.html import inspect_html

    page = inspect_html(result, files)  # one file: the images inside
    assert "src='data:image/png;base64," in page and ".png" not in page


# ---- real weights ------------------------------------------------------------------------------
# The model's usual view of chelsea (centre crop) is all cat; the whole photo, letterboxed into
# 224 × 224 (rows 37-185, grey bars), shows the background on the right too. The cat, by hand:
CAT_BOX = (37, 0, 186, 190)  # (top, left, bottom, right) in the 224 px letterboxed view
CATS = {281, 282, 283, 284, 285, 286, 287}  # tabby ... lynx


def _letterboxed_chelsea() -> torch.Tensor:
    import skimage.data

    photo = Image.fromarray(skimage.data.chelsea()).resize((224, 149), Image.BILINEAR)
    canvas = torch.full((3, 224, 224), 0.5)
    canvas[:, 37:186] = torch.as_tensor(np.array(photo)).permute(2, 0, 1).float() / 255
    return canvas


def _share_inside(map_: np.ndarray, box) -> float:
    """The share of a map's mass `[H, W]` whose cells' centres are inside `box` (224 px)."""
    top, left, bottom, right = box
    h, w = map_.shape
    ys, xs = (np.arange(h) + 0.5) * 224 / h, (np.arange(w) + 0.5) * 224 / w
    inside = np.outer((ys >= top) & (ys < bottom), (xs >= left) & (xs < right))
    return float(map_[inside].sum() / map_.sum())


@pytest.mark.slow
def test_chelsea_groups_cover_the_cat():
    import skimage.data

    from microtome.zoo import load_model

    model, spec = load_model("efficientnet_lite0")
    view = inspect_photo(model, spec, Image.fromarray(skimage.data.chelsea()), "head", groups=2,
                         renders=False)
    assert CATS & {p["class"] for p in view["predictions"]}, view["predictions"]
    result = inspect_photo(model, spec, _letterboxed_chelsea(), "block10,head", groups=6,
                           renders=False)
    assert CATS & {p["class"] for p in result["predictions"]}, result["predictions"]
    top, left, bottom, right = CAT_BOX
    box_area = (bottom - top) * (right - left) / 224 ** 2  # 0.56
    for layer_id in ("block10", "head"):
        shares = [_share_inside(np.array(g["map"]), CAT_BOX) for g in result["layers"][layer_id]["groups"]]
        assert sum(s >= 0.85 for s in shares) >= 3, (layer_id, shares)  # groups on the cat
    head = np.array([g["map"] for g in result["layers"]["head"]["groups"]]).sum(0)
    assert _share_inside(head, CAT_BOX) > box_area + 0.2
    cat = result["layers"]["head"]["attribution"]["classes"][0]
    assert cat["class"] in CATS and min(cat["groups"]) > 0  # every head group supports the cat


# ---- the command line -------------------------------------------------------------------------
def _main():
    from microtome.cli import main

    return main


def test_cli_writes_its_files_and_exits_2_on_bad_input(tmp_path):
    image = tmp_path / "stripes.png"
    to_pil(stripes()).save(image)
    out = tmp_path / "out"
    runner = CliRunner()
    model = "tests.inspect_toys:texture_net"
    done = runner.invoke(_main(), ["inspect", model, str(image), "--layers", "texture",
                                   "--groups", "2", "--steps", "2", "--size", "32", "--out", str(out)])
    assert done.exit_code == 0, done.output
    data = json.loads((out / "inspect.json").read_text())
    entry = data["layers"]["texture"]
    for name in [data["photo"], entry["overlay"]] + [g["image"] for g in entry["groups"]] \
            + [c["image"] for c in entry["grid"]]:
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    page = (out / "index.html").read_text()
    assert "<svg" in page and "texture" in page and "http" not in page.replace("http://www.w3.org", "")
    for args, message in (([model, str(image), "--layers", "textur"], "did you mean texture"),
                          ([model, str(image), "--layers", "logits"], "flat vector"),
                          ([model, str(tmp_path / "nope.png")], "no image file"),
                          (["no_such_model", str(image)], "no model"),
                          ([model, str(out / "inspect.json")], "cannot read")):
        bad = tmp_path / "bad"
        failed = runner.invoke(_main(), ["inspect", *args, "--out", str(bad)])
        assert failed.exit_code == 2, (args, failed.output)
        assert message in failed.output and not bad.exists(), (args, failed.output)


def test_page_escapes_labels_and_draws_the_flow():
    from microtome.inspect.html import inspect_html

    model, spec = linear_net()
    result = inspect_photo(model, spec, red_green(), "a,b", groups=2, renders=False)
    result.pop("files")
    result["predictions"][0]["label"] = "<script>alert(1)</script>"
    page = inspect_html(result)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<rect") == 2 + 2 + 2  # groups of a, groups of b, two classes
    assert "(not rendered)" in page and "<path" in page


def test_command_presets_and_page_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, microtome.cli, microtome.inspect, microtome.inspect.presets, "
            "microtome.inspect.html; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_direction_cossim_has_a_gradient_even_where_activations_point_away():
    from microtome.inspect.objectives import direction_cossim

    v = torch.tensor([1.0, -2.0, 0.5])
    acts = (-v).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone().requires_grad_(True)  # cos = -1 everywhere
    direction_cossim("l", v)({"l": acts}).sum().backward()
    grad = acts.grad[0, :, 0, 0]
    assert torch.allclose(grad / grad.norm(), v / v.norm(), atol=1e-4)  # uphill is along v
