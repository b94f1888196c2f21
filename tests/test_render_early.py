"""The early-layer schedule: units with tiny receptive fields reach their known optimum.

A toy first layer whose unit is a 3x3, stride-2 checkerboard detector (its optimum, a pixel
checkerboard, tiles the image, so the channel mean can reach the single-patch maximum) is
optimized as a model's stem is: the standard transforms' resampling and the FFT's 1/f scaling
hold back a pattern of the highest frequency, and the last steps in pixel space reach it. The
pieces are checked against their definitions: `pixel_logits` starts at the image it is given,
`saturation` bounds the pixels, and the schedule applies by the measured receptive field.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from microtome.optvis import objectives as O
from microtome.optvis import param
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from microtome.optvis.schedule import Schedule
from microtome.techniques import feature_vis as fv


class Checkerboard(nn.Module):
    """`stem`: one unit, the ReLU of a 3x3 stride-2 conv whose weights are +1 where (i + j) is
    even and -1 elsewhere, on all three colours, no bias: on the pixel checkerboard (1 where
    (y + x) is even, 0 elsewhere) every patch gives 15 (5 even pixels x 3 colours), the
    maximum; a grey image gives 1.5."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, stride=2, bias=False)
        sign = torch.tensor([[1.0 if (i + j) % 2 == 0 else -1.0 for j in range(3)]
                             for i in range(3)])
        with torch.no_grad():
            self.conv.weight.copy_(sign.expand(1, 3, 3, 3))
        self.stem = nn.ReLU()

    def forward(self, x):
        return self.stem(self.conv(x))


OPTIMUM = 15.0


def _peak(model, images: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(images).amax())


def test_polishing_reaches_a_checkerboard_that_the_transforms_hold_back():
    model = Checkerboard()
    kw = dict(steps=96, lr=0.05)
    plain = render(model, O.channel("stem", 0), ImageParam(32, seed=0), **kw)
    early = render(model, O.channel("stem", 0), ImageParam(32, saturation=5.0, seed=0),
                   schedule=Schedule(polish_steps=24, polish_lr=0.2), **kw)
    bound = torch.sigmoid(torch.tensor(5.0))
    assert _peak(model, early.images) >= 0.9 * OPTIMUM * float(2 * bound - 1)
    assert _peak(model, early.images) > _peak(model, plain.images) + 1.0
    assert float(early.images.max()) <= float(bound) + 1e-6  # within the bound, never clipped
    assert float(early.images.min()) >= 1 - float(bound) - 1e-6


@pytest.mark.parametrize("saturation", [None, 5.0])
def test_pixel_logits_start_at_the_image_and_move_every_pixel(saturation):
    images = torch.rand(2, 3, 8, 8) * 0.98 + 0.01
    if saturation is not None:
        lo = 1 / (1 + math.exp(saturation))
        images = images.clamp(lo + 1e-4, 1 - lo - 1e-4)
    params, make_image = param.pixel_logits(images, saturation)
    assert torch.allclose(make_image(), images, atol=1e-5)
    make_image()[:, :, 3, 5].sum().backward()  # one pixel's gradient reaches its logit only
    (grad,) = [p.grad for p in params]
    assert grad.shape == (2, 3, 8, 8)
    assert int(grad.ne(0).sum()) == 6


def test_saturation_bounds_the_standard_parameterization():
    params, make_image = param.image(16, batch=1, saturation=2.0)
    with torch.no_grad():
        params[0].mul_(1e4)  # logits far beyond the bound
    x = make_image().detach()
    bound = float(torch.sigmoid(torch.tensor(2.0)))
    assert float(x.max()) <= bound + 1e-6 and float(x.min()) >= 1 - bound - 1e-6
    assert float(x.max()) > bound - 1e-3  # and reaches it


def test_the_schedule_applies_by_the_measured_receptive_field():
    from microtome.optvis import objectives as O
    from microtome.optvis.render import _layer_kind
    from microtome.optvis.schedule import LayerSchedule
    from tests.toy_models import tiny_net

    model, spec = tiny_net()
    params = fv.fv_params("quick", "positive")
    assert params["early_field"] == 8

    def kind(layer, stored):
        return _layer_kind(model, spec, [O.channel(layer, 0)], params["size"],
                           LayerSchedule.from_params(stored), torch.device("cpu"))

    assert kind("conv1", params) == "early"  # 3x3: field 3
    assert kind("conv2", params) == "early"  # 3x3 s2, 3x3: 7
    narrow = {**params, "early_field": 5}
    assert kind("conv2", narrow) == "local"  # 7 <= 72
    assert kind("conv2", {**narrow, "local_field": 6}) is None
    old = {k: v for k, v in params.items() if k not in fv.EARLY_LAYERS}
    assert kind("conv1", old) is None  # params stored before it
    before_local = {k: v for k, v in narrow.items() if not k.startswith("local_")}
    assert kind("conv2", before_local) is None
    schedule = LayerSchedule.from_params(params)
    early = schedule.render_kwargs("early", params["steps"])
    assert early["steps"] == 2 * params["steps"] and early["saturation"] == 5.0
    # every step in pixel space, untransformed: nothing left to polish
    assert early["polish_steps"] == 0 and early["transforms"] == []
    assert early["fft"] is False and early["decorrelated"] is False
    before_pixels = LayerSchedule.from_params({k: v for k, v in params.items() if k != "early_image"})
    polished = before_pixels.render_kwargs("early", params["steps"])
    assert polished["polish_steps"] == 2 * params["steps"] // 8 and "fft" not in polished
    local = schedule.render_kwargs("local", params["steps"])
    assert local["steps"] == params["steps"] and local["polish_steps"] == params["steps"] // 8
    assert "saturation" not in local
    assert local["polish_lr"] == params["local_polish_lr"]
    assert fv._render_kwargs(old)["schedule"].layers is None
    assert fv._render_kwargs(params)["schedule"].layers == schedule
    assert fv._render_kwargs(params)["schedule"].polish_steps == 0  # not stored: the layers decide
    assert fv._render_kwargs(params)["schedule"].lr_final is None  # stored params have no schedule of lr
    assert fv._render_kwargs({**params, "lr_final": 0.01})["schedule"].lr_final == 0.01


@pytest.mark.parametrize("size,stride", [(37, 1), (38, 1), (37, 2), (38, 2)])
def test_same_conv_pads_in_the_conv_as_tensorflow_does(size, stride):
    """SameConv2d (efficientnet_lite's): its output equals the explicit TensorFlow SAME padding
    (total max((ceil(n/s) - 1)·s + k - n, 0), the extra pixel at the bottom/right), whether it
    pads in the conv (symmetric) or with F.pad (asymmetric)."""
    import torch.nn.functional as F

    from microtome.zoo.efficientnet_lite import SameConv2d

    torch.manual_seed(0)
    conv = SameConv2d(6, 6, 5, stride, groups=6, bias=False)
    x = torch.randn(2, 6, size, size)
    total = max((math.ceil(size / stride) - 1) * stride + 5 - size, 0)
    pads = [total // 2, total - total // 2] * 2
    expected = F.conv2d(F.pad(x, pads), conv.weight, None, stride, 0, 1, 6)
    out = conv(x)
    assert out.shape == expected.shape == (2, 6, math.ceil(size / stride), math.ceil(size / stride))
    assert torch.allclose(out, expected, atol=1e-5)
