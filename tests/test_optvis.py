"""The feature-visualization library against oracles: objectives rise, transforms keep shape and
range, the FFT image equals a direct inverse DFT, a known filter's visualization is the filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.optvis import objectives as O
from microtome.optvis import param
from microtome.optvis import transforms as T
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from tests.toy_models import Toy


def _value(model, obj, steps, batch=None, **kw):
    return render(model, obj, ImageParam(32, batch=batch), transforms=[], steps=steps, lr=0.05,
                  **kw).values


OBJECTIVES = {
    "channel": O.channel("conv2", 3),
    "neuron": O.neuron("conv2", 3),
    "direction": O.direction("relu1", [1, -1, 0, 0, 1, 0, 0, 0]),
    "layer": O.layer("relu1"),
    "class_logit": O.class_logit(2, layer="fc"),
    "negative channel": -O.channel("relu1", 0),
    "tv": -O.tv(),
    "l1": -O.l1(),
    "l2": -O.l2(),
    "blur": -O.blur(),
    "combination": O.channel("conv2", 1) - 0.1 * O.tv() + O.neuron("relu1", 2) / 2,
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_rises_in_a_few_steps(name):
    model = Toy()
    before = _value(model, OBJECTIVES[name], steps=1)
    after = _value(model, OBJECTIVES[name], steps=12)
    assert float(after.mean()) > float(before.mean())


def test_diversity_pushes_a_batch_apart():
    model = Toy()
    obj = O.channel("relu2", 1) + 10 * O.diversity("relu1")
    before = render(model, obj, ImageParam(32, batch=3), transforms=[], steps=1).values
    after = render(model, obj, ImageParam(32, batch=3), transforms=[], steps=15).values
    assert after.shape == (3,)
    assert float(after.sum()) > float(before.sum())
    div = O.diversity("relu1")
    acts = {"relu1": torch.randn(3, 8, 5, 5)}
    same = {"relu1": acts["relu1"][:1].repeat(3, 1, 1, 1)}
    assert torch.allclose(div(same), torch.full((3,), -1.0), atol=1e-5)  # identical images: -1
    assert bool((div(acts) > -1).all())


def test_objective_arithmetic_and_descriptions():
    obj = O.channel("block10", 5) - 0.1 * O.tv()
    assert repr(obj) == "channel(block10, 5) - 0.1·tv()"
    acts = {"block10": torch.ones(2, 8, 4, 4) * 3, "input": torch.zeros(2, 3, 4, 4)}
    assert torch.allclose(obj(acts), torch.full((2,), 3.0))
    total = sum([O.channel("block10", 1), O.channel("block10", 2)])
    assert repr(total) == "channel(block10, 1) + channel(block10, 2)"
    assert torch.allclose((2 * O.channel("block10", 1) / 4)(acts), torch.full((2,), 1.5))
    assert torch.allclose((-O.channel("block10", 1))(acts), torch.full((2,), -3.0))
    assert repr(O.parse("block10:5")) == "channel(block10, 5)"
    assert repr(O.parse("-block10:5")) == "-channel(block10, 5)"
    assert repr(O.parse("block10:5:neuron")) == "neuron(block10, 5)"
    assert repr(O.parse("block10")) == "layer(block10)"
    with pytest.raises(MicrotomeError, match="not an integer"):
        O.parse("block10:five")


def test_transforms_keep_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    assert T.pad(12)(x).shape == (2, 3, 88, 88)
    assert T.jitter(8)(x).shape == (2, 3, 57, 57)
    assert T.random_rotate([10])(x).shape == x.shape
    scaled = T.random_scale([1.1])(x)  # a zoom about the centre, per image: same size
    assert scaled.shape == (2, 3, 64, 64)
    centre = x[..., 22:42, 22:42]
    zoomed = T.random_scale([1.0 + 1e-6])(x)[..., 22:42, 22:42]
    assert torch.allclose(zoomed, centre, atol=1e-4)
    standard = T.compose(T.standard_transforms())
    for _ in range(5):
        y = standard(x)
        assert y.shape == (2, 3, 78, 78)  # 64 + 2·12 - 7 - 3
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # rotating by 0 and scaling by 1 are the identity
    assert torch.equal(T.random_rotate([0])(x), x)
    assert torch.equal(T.random_scale([1.0])(x), x)
    # jitter crops a window of each image
    y = T.jitter(3)(x)
    for k in range(2):
        assert any(torch.equal(y[k], x[k, :, i:i + 62, j:j + 62]) for i in range(3) for j in range(3))


def test_warp_is_the_standard_chain_in_one_resampling():
    """The renderer's one-resampling warp against the five transforms it replaces, step by step:
    the same random draws (per image) give the same size always, and the same pixels whenever
    the chain itself resamples only once (no scale, or no rotation), close ones otherwise."""
    from microtome.optvis.randomness import PerImage

    x = torch.rand(3, 3, 40, 40)
    cases = [([1.0], T.STANDARD_ANGLES), (T.STANDARD_SCALES, [0]),
             (T.STANDARD_SCALES, T.STANDARD_ANGLES)]
    for scales, angles in cases:
        chain = T.compose([T.pad(12, value=0.5), T.jitter(8), T.random_scale(scales),
                           T.random_rotate(angles), T.jitter(4)])
        warp = T.warp(12, 8, scales, angles, 4, fill=0.5)
        for seed in range(4):
            expected = chain(x, PerImage.from_seeds([seed, seed + 10, seed + 20]))
            got = warp(x, PerImage.from_seeds([seed, seed + 10, seed + 20]))
            assert got.shape == expected.shape == (3, 3, 40 + 24 - 7 - 3, 40 + 24 - 7 - 3)
            assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0
            if len(scales) == 1 or angles == [0]:
                assert torch.allclose(got, expected, atol=1e-4)
            else:  # two interpolations against one: close, not equal
                assert float((got - expected).abs().mean()) < 0.05
    with pytest.raises(MicrotomeError, match="pad_width >= jitter_before"):
        T.warp(4, 8, [1.0], [0], 4)


class ConvBN(nn.Module):
    """conv -> BN -> relu -> conv -> BN -> out; with `leak`, the first conv's raw output is added
    before `out`."""

    def __init__(self, leak: bool = False):
        super().__init__()
        torch.manual_seed(2)
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            nn.init.uniform_(bn.weight, 0.5, 2)
            nn.init.uniform_(bn.bias, -1, 1)
        self.out = nn.Identity()
        self.leak = leak
        self.eval()

    def forward(self, x):
        h = self.conv1(x)
        y = self.bn2(self.conv2(torch.relu(self.bn1(h))))
        return self.out(y + h if self.leak else y)


def test_fast_model_computes_the_same_and_gives_the_model_back():
    from microtome.optvis.render import _fast_model
    from microtome.zoo.hooks import forward_to

    x = torch.rand(2, 3, 12, 12)
    for leak in (False, True):
        model = ConvBN(leak)
        params = {name: (p, p.clone()) for name, p in model.named_parameters()}
        expected = forward_to(model, x, {"out": "out"})["out"]
        with _fast_model(model, {"out": "out"}, torch.rand(1, 3, 12, 12)) as channels_last:
            got = forward_to(model, x.contiguous(memory_format=torch.channels_last)
                             if channels_last else x, {"out": "out"})["out"]
            # folded, unless the raw conv output is read elsewhere: then the model as it is
            assert ("forward" in model.bn1.__dict__) == (not leak)
        assert torch.allclose(got, expected, atol=1e-5)
        assert all("forward" not in m.__dict__ for m in model.modules())
        for name, p in model.named_parameters():
            assert p is params[name][0] and torch.equal(p, params[name][1])
        assert render(model, "out:1", ImageParam(16), steps=3).values.shape == (1,)


def test_fft_image_equals_direct_inverse_dft():
    torch.manual_seed(0)
    h, w, decay = 6, 8, 1.0
    params, make = param.fft_image((1, 1, h, w), sd=1.0, decay=decay)
    image = make().detach()[0, 0].double().numpy()
    spectrum = torch.view_as_complex(params[0].detach())[0, 0].numpy()  # [H, W//2+1]
    # direct: x[n, m] = Re(sum_ky sum_kx c_kx s(f) X[ky, kx] e^{2πi(ky n/H + kx m/W)}) / sqrt(HW) / 4
    expected = np.zeros((h, w))
    for ky in range(h):
        for kx in range(w // 2 + 1):
            fy = (ky if ky <= (h - 1) // 2 else ky - h) / h  # numpy's fftfreq convention
            fx = kx / w
            f = math.sqrt(fx * fx + fy * fy)
            scale = 1.0 / max(f, 1.0 / max(h, w)) ** decay
            c = 1.0 if kx == 0 or (w % 2 == 0 and kx == w // 2) else 2.0
            n, m = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            phase = np.exp(2j * math.pi * (ky * n / h + kx * m / w))
            expected += (c * scale * spectrum[ky, kx] * phase).real
    expected /= math.sqrt(h * w) * 4.0
    np.testing.assert_allclose(image, expected, atol=1e-5)


def test_spectrum_scale_is_one_over_f():
    s = param.spectrum_scale(16, 16, decay=1.0)
    assert float(s[0, 0]) == pytest.approx(16.0)  # DC capped at 1/max(h, w)
    assert float(s[0, 4]) == pytest.approx(4.0)  # f = 4/16
    assert float(param.spectrum_scale(16, 16, decay=2.0)[0, 4]) == pytest.approx(16.0)


def test_valid_rgb_and_decorrelation():
    torch.manual_seed(0)
    for fft in (True, False):
        _, make = param.image(24, batch=2, fft=fft)
        x = make().detach()
        assert x.shape == (2, 3, 24, 24) and float(x.min()) > 0 and float(x.max()) < 1
    # decorrelation is a fixed invertible colour map
    x = torch.randn(1, 3, 4, 4)
    y = param.decorrelate(x)
    m = torch.tensor(param.COLOR_CORRELATION_SVD_SQRT)
    m = m / m.norm(dim=0).max()
    assert torch.allclose(y[0, :, 1, 2], m @ x[0, :, 1, 2], atol=1e-6)


def _oriented_filter(angle_deg: float, size: int = 11) -> torch.Tensor:
    """A zero-mean odd Gabor (an oriented edge) `[size, size]`."""
    r = torch.arange(size, dtype=torch.float32) - size // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    t = math.radians(angle_deg)
    u = x * math.cos(t) + y * math.sin(t)
    g = torch.exp(-(x * x + y * y) / (2 * (size / 4) ** 2)) * torch.sin(2 * math.pi * u / size)
    return g - g.mean()


@pytest.mark.parametrize("fft", [True, False])
@pytest.mark.parametrize("angle", [30.0, 120.0])
def test_visualization_of_a_known_filter_is_the_filter(angle, fft):
    filt = _oriented_filter(angle)
    model = nn.Sequential(nn.Conv2d(3, 1, 11, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(filt.expand(3, -1, -1).unsqueeze(0) / 3)
    size = 21
    result = render(model, O.neuron("0", 0), ImageParam(size, fft=fft, seed=3), transforms=[],
                    steps=64)
    out = size - 11 + 1
    c = out // 2
    patch = result.images[0].mean(0)[c:c + 11, c:c + 11]  # receptive field of the centre unit
    r = np.corrcoef(patch.flatten().numpy(), filt.flatten().numpy())[0, 1]
    assert abs(r) >= 0.5 and r > 0


def test_render_is_reproducible_frozen_and_leaves_no_hooks():
    model = Toy()
    model.conv1.weight.requires_grad_(True)
    a = render(model, "relu2:1", ImageParam(32, seed=7), steps=3)
    b = render(model, "relu2:1", ImageParam(32, seed=7), steps=3)
    c = render(model, "relu2:1", ImageParam(32, seed=8), steps=3)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert model.conv1.weight.requires_grad and model.conv1.weight.grad is None
    assert all(not m._forward_hooks for m in model.modules())

    def broken(acts):
        raise RuntimeError("objective failed")

    with pytest.raises(RuntimeError, match="objective failed"):
        render(model, O.Objective(broken, "broken", ["relu1"]), ImageParam(32), steps=2)
    assert all(not m._forward_hooks for m in model.modules())


def test_render_batch_progress_and_thresholds():
    model = Toy()
    calls = []
    result = render(model, [O.channel("relu2", u) for u in range(3)], ImageParam(32), steps=6,
                    thresholds=(2, 6), progress=lambda s, n, v: calls.append((s, n, v.shape)))
    assert result.images.shape == (3, 3, 32, 32)
    assert result.values.shape == (3,)
    assert [c[0] for c in calls] == list(range(1, 7)) and calls[0][2] == (3,)
    assert set(result.snapshots) == {2, 6}
    with pytest.raises(MicrotomeError):
        render(model, [O.channel("relu2", 0), O.channel("relu2", 1)], ImageParam(batch=3), steps=1)


def test_render_stops_the_forward_pass_at_the_target_layer():
    model = Toy()
    seen = []
    model.fc.register_forward_hook(lambda *a: seen.append("fc"))
    try:
        render(model, "relu1:0", ImageParam(32), steps=2)
        assert seen == []
        render(model, O.class_logit(1, layer="fc"), ImageParam(32), steps=1)
        assert seen
    finally:
        model.fc._forward_hooks.clear()


def test_grouped_diversity_equals_diversity_of_each_group():
    acts = {"l": torch.randn(6, 5, 3, 3)}
    grouped = O.diversity("l", group=3)(acts)
    first = O.diversity("l")({"l": acts["l"][:3]})
    second = O.diversity("l")({"l": acts["l"][3:]})
    assert torch.allclose(grouped, torch.cat([first, second]), atol=1e-6)
    with pytest.raises(MicrotomeError):
        O.diversity("l", group=4)(acts)


def test_the_default_image_is_image_param_and_the_schedule_is_one_object():
    from microtome.optvis.schedule import LAYER_SCHEDULE, Schedule

    model = Toy()
    default = render(model, "relu2:1", steps=2)
    said = render(model, "relu2:1", ImageParam(128, seed=0), steps=2)
    assert default.images.shape == (1, 3, 128, 128) and torch.equal(default.images, said.images)
    torch.manual_seed(0)
    alone = ImageParam(16, batch=2, seed=1)()[1]().detach()  # [2, 3, 16, 16], its own generators
    torch.manual_seed(1)
    assert torch.equal(ImageParam(16, batch=2, seed=1)()[1](), alone)
    assert not torch.equal(ImageParam(16, batch=2, seed=2)()[1](), alone)
    with pytest.raises(MicrotomeError, match=r"Schedule\(layers=None\)"):
        render(model, "relu2:1", ImageParam(16), steps=1, schedule=None)
    with pytest.raises(MicrotomeError, match="Schedule"):
        render(model, "relu2:1", ImageParam(16), steps=1, schedule=LAYER_SCHEDULE)
    with pytest.raises(MicrotomeError, match="2 seeds for 3 images"):
        render(model, "relu2:1", ImageParam(16, batch=3, seeds=[1, 2]), steps=1)
    assert Schedule().layers == LAYER_SCHEDULE
