"""Tuning curves against oracles: toy units with a known preferred orientation or hue, the
stimuli against their defining geometry, and the technique's artifacts."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from microtome.errors import MicrotomeError, NotFound
from microtome.techniques import stimuli
from microtome.techniques.tuning import TUNING_PRESETS, check_sweep, tuning, tuning_curves, unit_response
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges

SIZE = 33  # odd, so the image's geometric centre is the pixel the units read
SWEEP = {"orientations": 12, "frequencies": [0.075, 0.15, 0.3], "phases": 4,
         "curvatures": [0.0, 0.0625], "hues": 12, "line_width": 2.0}


def gabor(theta: float, odd: bool, size: int = 11, freq: float = 0.15, sigma: float = 2.5
          ) -> torch.Tensor:
    """A Gabor kernel `[size, size]` whose stripes run along `theta` degrees (x right, y up):
    even (a light bar on the centre line) or odd (an edge detector)."""
    c = (size - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    x, y = cols.float(), -rows.float()
    t = math.radians(theta)
    across = -x * math.sin(t) + y * math.cos(t)
    envelope = torch.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    carrier = torch.sin if odd else torch.cos
    kernel = envelope * carrier(2 * math.pi * freq * across)
    return kernel - kernel.mean() * (not odd)  # even: no response to uniform grey


def oriented_units(theta: float):
    """Response `[N, 3, S, S] -> [N, 2]`: ReLU of an even and an odd Gabor at the centre."""
    weight = torch.stack([gabor(theta, False), gabor(theta, True)])[:, None]  # [2, 1, 11, 11]
    weight = weight.expand(-1, 3, -1, -1) / 3

    def response(images: torch.Tensor) -> torch.Tensor:
        out = F.relu(F.conv2d(images, weight, padding=5))  # [N, 2, S, S]
        return out[:, :, SIZE // 2, SIZE // 2]
    return response


def angle_gap(a: float, b: float, period: float) -> float:
    d = (a - b) % period
    return min(d, period - d)


# ---- stimuli -------------------------------------------------------------------------------
@pytest.mark.parametrize("theta", [0.0, 30.0, 45.0, 100.0, 150.0])
def test_gratings_are_constant_along_their_orientation(theta):
    images, table = stimuli.gratings(SIZE, [theta], [0.05], [0.0, 37.0])
    assert images.shape == (2, 3, SIZE, SIZE) and set(table) == {"orientation", "frequency", "phase"}
    assert images.min() >= 0 and images.max() <= 1
    im = images[:, 0]  # [N, S, S], grey
    gx = (im[:, 1:-1, 2:] - im[:, 1:-1, :-2]) / 2  # x to the right
    gy = -(im[:, 2:, 1:-1] - im[:, :-2, 1:-1]) / 2  # y up: rows go down
    t = math.radians(theta)
    along = math.cos(t) * gx + math.sin(t) * gy
    across = -math.sin(t) * gx + math.cos(t) * gy
    assert along.abs().max() < 0.02 * across.abs().max()


def test_hue_zero_is_red_and_the_hexcone_is_right():
    rgb = stimuli.hue_to_rgb([0, 60, 120, 240, 360])
    assert torch.equal(rgb, torch.tensor([[1., 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    images, table = stimuli.hue_patches(SIZE, [0.0, 120.0])
    assert images.shape == (4, 3, SIZE, SIZE) and table["disk"].tolist() == [0, 0, 1, 1]
    assert torch.equal(images[0, :, 0, 0], torch.tensor([1., 0, 0]))  # uniform red
    c = SIZE // 2
    assert torch.equal(images[3, :, c, c], torch.tensor([0., 1, 0]))  # green disk...
    assert torch.equal(images[3, :, 0, 0], torch.tensor([0.5, 0.5, 0.5]))  # ...on grey


def test_edges_and_lines_polarity_and_range():
    e, _ = stimuli.edges(SIZE, [0.0, 90.0])  # polarity +1 first: white on the normal's side
    assert e[0, 0, 0].eq(1).all() and e[0, 0, -1].eq(0).all()  # θ=0: white above
    assert e[1, 0, :, 0].eq(1).all() and e[1, 0, :, -1].eq(0).all()  # θ=90: white on the left
    assert torch.equal(e[2], 1 - e[0])
    lines, table = stimuli.lines(SIZE, [0.0], width=1.0)
    assert table["polarity"].tolist() == [1.0, -1.0]
    c = SIZE // 2
    assert lines[0, 0, c].eq(1).all() and lines[0, 0, c - 2].eq(0).all()  # a one-pixel bar
    assert torch.equal(lines[1], 1 - lines[0])


def test_curves_are_circles_through_the_centre_and_straight_at_zero():
    orientations = [0.0, 40.0, 200.0]
    images, table = stimuli.curves(SIZE, orientations, [0.0, 0.1, 0.25], polarities=(1,))
    straight, _ = stimuli.lines(SIZE, orientations, polarities=(1,))
    assert torch.allclose(images[table["curvature"] == 0], straight)
    # brute force: distance to the circle of radius R centred at R n
    x, y = stimuli.coords(SIZE)
    for image, theta, k in zip(images, table["orientation"], table["curvature"]):
        if k == 0:
            continue
        t, r = math.radians(theta), 1 / float(k)
        cx, cy = -r * math.sin(t), r * math.cos(t)
        dist = ((torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r).abs())
        assert torch.allclose(image[0], (1.5 - dist).clamp(0, 1), atol=1e-4)


# ---- tuning curves against known units -----------------------------------------------------
@pytest.mark.parametrize("theta", [30.0, 75.0, 150.0])
def test_oriented_filter_peaks_at_its_angle(theta):
    curves = tuning_curves(oriented_units(theta), SIZE, SWEEP)
    fam = curves["families"]
    step = 180 / SWEEP["orientations"]
    even_g = fam["gratings"]["response"][0]  # [O, F]
    o, f = divmod(int(even_g.argmax()), even_g.shape[1])
    assert angle_gap(float(fam["gratings"]["orientation"][o]), theta, 180) <= step
    assert float(fam["gratings"]["frequency"][f]) == 0.15
    even_lines = fam["lines"]["response"][0]  # [2, O]: a light bar on the centre line
    p, o = divmod(int(even_lines.argmax()), even_lines.shape[1])
    assert p == 0 and angle_gap(float(fam["lines"]["orientation"][o]), theta, 180) <= step
    odd_edges = fam["edges"]["response"][1].amax(0)  # [O], best polarity
    assert angle_gap(float(fam["edges"]["orientation"][odd_edges.argmax()]), theta, 180) <= step


def test_colour_opponent_units_peak_at_their_hue():
    def response(images):  # [N, 3, S, S] -> [N, 2]: red-cyan and blue-yellow
        r, g, b = images.mean((2, 3)).unbind(1)
        return torch.stack([r - (g + b) / 2, b - (r + g) / 2], 1)

    curves = tuning_curves(response, SIZE, SWEEP)
    hues = curves["families"]["hues"]
    step = 360 / SWEEP["hues"]
    for unit, expected in ((0, 0.0), (1, 240.0)):
        patch = hues["response"][unit][0]  # [H], uniform patches
        assert angle_gap(float(hues["hue"][patch.argmax()]), expected, 360) <= step


def test_chunks_do_not_change_the_curves():
    sweep = {**SWEEP, "orientations": 4, "hues": 6}
    whole = tuning_curves(oriented_units(30.0), SIZE, sweep, chunk=512)
    chunked = tuning_curves(oriented_units(30.0), SIZE, sweep, chunk=7)
    for family in whole["responses"]:
        assert torch.allclose(whole["responses"][family], chunked["responses"][family], atol=1e-6)


# ---- the technique -------------------------------------------------------------------------
def toy_model_and_spec(theta: float = 30.0) -> tuple[nn.Module, ModelSpec]:
    conv = nn.Conv2d(3, 4, 11, padding=5, bias=False)
    with torch.no_grad():
        conv.weight.normal_(0, 0.05)
        conv.weight[0] = gabor(theta, False).expand(3, -1, -1) / 3
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    ids = ["conv", "relu", "logits"]
    layers = (LayerSpec("conv", "0", "conv", 4, (SIZE, SIZE)),
              LayerSpec("relu", "1", "conv", 4, (SIZE, SIZE), aliases=("act",)),
              LayerSpec("logits", "4", "logits", 3, (1, 1)))
    spec = ModelSpec(id="toy", title="toy", build=lambda: model, input_size=SIZE, layers=layers,
                     edges=chain_edges(ids), labels=("a", "b", "c"), weights_source="test",
                     weights_sha256=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return model.eval(), spec


def test_technique_gives_one_artifact_per_unit_with_plot_and_json_meta():
    model, spec = toy_model_and_spec(30.0)
    results = tuning(model, spec, "act", [0, 2], params=TUNING_PRESETS["quick"])
    assert [(r.layer, r.unit, r.technique) for r in results] == [("relu", 0, "tuning"),
                                                                 ("relu", 2, "tuning")]
    for r in results:
        for name in ("plot.png", "preferred.png"):
            with Image.open(io.BytesIO(r.files[name])) as im:
                im.verify()
        json.dumps(r.meta, allow_nan=False)
        assert json.loads(json.dumps(r.params)) == r.params == check_sweep(TUNING_PRESETS["quick"])
        with Image.open(io.BytesIO(r.files["preferred.png"])) as im:
            assert im.size == (SIZE, SIZE)
    step = 180 / TUNING_PRESETS["quick"]["orientations"]
    assert angle_gap(results[0].meta["preferred"]["orientation"], 30.0, 180) <= step
    best = results[0].meta["preferred_stimulus"]
    width = {"width": 2.0} if best["family"] in ("lines", "curves") else {}
    image = stimuli.draw(best["family"], SIZE, {k: [v] for k, v in best["params"].items()}, **width)
    # the preferred stimulus really gives the recorded response
    direct = unit_response(model, spec, "relu")(image)[0, 0]
    assert direct.item() == pytest.approx(best["response"], rel=1e-4)
    curve = results[0].meta["families"]["gratings"]["response"]
    assert len(curve) == 8 and len(curve[0]) == 4  # orientations x frequencies


def test_unit_response_reads_vectors_and_errors_say_what_to_do():
    model, spec = toy_model_and_spec()
    images = torch.rand(5, 3, SIZE, SIZE)
    assert unit_response(model, spec, "logits")(images).shape == (5, 3)
    assert unit_response(model, spec, "conv")(images).shape == (5, 4)
    with pytest.raises(NotFound, match="0-3"):
        tuning(model, spec, "relu", [4])
    with pytest.raises(NotFound, match="relu"):
        tuning(model, spec, "rlu", [0])
    with pytest.raises(MicrotomeError, match="orientations"):
        tuning(model, spec, "relu", [0], params={"orientation": 8})
    with pytest.raises(MicrotomeError, match="frequencies"):
        check_sweep({"frequencies": [0.1, -1]})
    model.train()
    with pytest.raises(MicrotomeError, match="eval"):
        unit_response(model, spec, "relu")
