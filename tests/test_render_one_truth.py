"""One truth for a unit's picture: a unit's image does not depend on its batch in any layer kind
of a real model (stem, a middle block, head, logits), the layer schedule follows the layer into
the library's `render` and the command line, and `microtome render --preset P` writes the
build's image at that preset and seed."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from microtome.cli import main
from microtome.images import png_bytes
from microtome.optvis import objectives as O
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from microtome.optvis.schedule import Schedule
from microtome.techniques import feature_vis as fv


def _levels(images: torch.Tensor) -> np.ndarray:
    """`[N, 3, H, W]` in [0, 1] -> the 8-bit levels a PNG stores."""
    return np.round(images.numpy() * 255).astype(np.int16)


@pytest.fixture(scope="module")
def lite0():
    from microtome.zoo import load_model

    return load_model("efficientnet_lite0")


@pytest.mark.slow
@pytest.mark.parametrize("layer, unit, others", [
    ("stem", 14, (3, 7, 21)),  # early: more steps and a pixel polish
    ("block2", 7, (0, 13)),  # local: a pixel polish
    ("block10", 5, (3, 7, 0, 1, 2)),
    ("head", 9, (0, 1)),
    ("logits", 1, (0, 2, 3)),  # a flat layer [B, 1000]
])
def test_a_unit_is_the_same_alone_or_anywhere_in_a_batch_in_every_layer_kind(lite0, layer, unit,
                                                                               others):
    model, spec = lite0
    kw = dict(param_f=ImageParam(64, seed=3), spec=spec, steps=10)
    alone = _levels(render(model, [O.channel(layer, unit)], **kw).images)[0]
    second = _levels(render(model, [O.channel(layer, u) for u in (others[0], unit, *others[1:])],
                            **kw).images)[1]
    last = _levels(render(model, [O.channel(layer, u) for u in (*others, unit)], **kw).images)[-1]
    assert int(np.abs(alone - second).max()) <= 1 and int(np.abs(alone - last).max()) <= 1
    reseeded = {**kw, "param_f": ImageParam(64, seed=4)}
    other_seed = _levels(render(model, [O.channel(layer, unit)], **reseeded).images)[0]
    assert int(np.abs(alone - other_seed).max()) > 1  # the seed does matter


def test_the_library_render_follows_the_layer_schedule():
    from tests.toy_models import tiny_net

    model, spec = tiny_net()
    scheduled = render(model, "conv1:0", ImageParam(32, seed=1), spec=spec, steps=8)
    assert scheduled.schedule == "early" and scheduled.steps == 16  # field 3 px: early
    plain = render(model, "conv1:0", ImageParam(32, seed=1), spec=spec, steps=8,
                   schedule=Schedule(layers=None))
    assert plain.schedule is None and plain.steps == 8
    assert not torch.equal(scheduled.images, plain.images)
    no_spec = render(model, "1:0", ImageParam(32, seed=1), steps=8)  # module paths: no field known
    assert no_spec.schedule is None and no_spec.steps == 8


def test_render_at_a_preset_is_the_build_image():
    from tests.toy_models import tiny_net

    model, spec = tiny_net()
    params = fv.fv_params("quick", "positive", seed=2)
    (built,) = fv.feature_vis(model, spec, "conv2", [5], [params])
    library = fv.render_variant(model, spec, "conv2", [5], params)
    stored = np.asarray(Image.open(io.BytesIO(built.files["image.png"])), dtype=np.int16)
    assert library.schedule == "early"
    mine = np.asarray(Image.open(io.BytesIO(png_bytes(library.images[0]))), dtype=np.int16)
    assert np.array_equal(mine, stored)


def test_the_command_line_renders_the_build_image_at_a_preset(tmp_path):
    from tests.toy_models import tiny_net

    model, spec = tiny_net()
    params = fv.fv_params("quick", "negative", seed=1, input_size=spec.input_size)  # as the build
    (built,) = fv.feature_vis(model, spec, "conv2", [3], [params])
    stored = np.asarray(Image.open(io.BytesIO(built.files["image.png"])), dtype=np.int16)
    runner = CliRunner()
    common = ["render", "tests.toy_models:tiny_net", "conv2:3", "--seed", "1", "--objective",
              "negative", "--weights", "random", "--store", str(tmp_path / "store")]
    out = tmp_path / "cli.png"
    result = runner.invoke(main, [*common, "-o", str(out), "--preset", "quick"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(out), dtype=np.int16), stored)
    # the same steps and size by hand: the same schedule, so the same image
    by_hand = tmp_path / "by_hand.png"
    result = runner.invoke(main, [*common, "-o", str(by_hand), "--steps", str(params["steps"]),
                                  "--size", str(params["size"])])
    assert result.exit_code == 0, result.output
    assert "early layer" in result.output
    assert np.array_equal(np.asarray(Image.open(by_hand), dtype=np.int16), stored)
    unscheduled = tmp_path / "plain.png"
    result = runner.invoke(main, [*common, "-o", str(unscheduled), "--preset", "quick",
                                  "--no-schedule"])
    assert result.exit_code == 0, result.output
    assert not np.array_equal(np.asarray(Image.open(unscheduled), dtype=np.int16), stored)
    clash = runner.invoke(main, [*common, "-o", str(tmp_path / "x.png"), "--preset", "quick",
                                 "--steps", "5"])
    assert clash.exit_code == 2 and "either --preset" in clash.output
    assert not (tmp_path / "x.png").exists()
