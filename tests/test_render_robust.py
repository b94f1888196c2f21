"""The renderer never fails silently, never depends on its batch, and shares a model safely:
a dead-start unit reaches its known optimum with the redirected gradient (and stays at 0
without), forward values are bitwise unchanged, a unit's image is the same alone or anywhere in
a batch, and two threads rendering with one model get the serial results."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from microtome.optvis import objectives as O
from microtome.optvis.invariant import batch_invariant
from microtome.optvis.param import ImageParam
from microtome.optvis.redirect import redirected_grad, redirected_relus
from microtome.optvis.render import render
from microtome.optvis.schedule import Schedule
from microtome.techniques import feature_vis as fv

ACTIVATIONS = {
    "nn.ReLU6": nn.ReLU6(),
    "F.relu6": F.relu6,
    "clamp": lambda x: x.clamp(0, 6),
    "torch.clamp": lambda x: torch.clamp(x, min=0.0, max=6.0),
    "nn.Hardtanh": nn.Hardtanh(0.0, 6.0),
}


class DeadStart(nn.Module):
    """One unit seeing the whole 8x8 image, `act(20·mean(red) - 12)`: 0 at the grey initial
    image (red ≈ 0.5 -> -2), and its optimum is the ReLU6 cap 6, reached where mean(red) ≥ 0.9."""

    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 8)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0] = 20.0 / 64
            self.conv.bias.fill_(-12.0)
        self.act = act
        self.out = nn.Identity()

    def forward(self, x):
        return self.out(self.act(self.conv(x)))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_dead_unit_reaches_its_optimum_only_with_redirection(name):
    model = DeadStart(ACTIVATIONS[name])
    kw = dict(param_f=ImageParam(8, seed=0), transforms=[], steps=300, lr=0.1)
    start = render(model, "out:0", ImageParam(8), transforms=[], steps=1,
                   schedule=Schedule(redirect_steps=0))
    assert float(start.values[0]) == 0.0  # dead at the initial image
    without = render(model, "out:0", schedule=Schedule(redirect_steps=0), **kw)
    assert float(without.values[0]) == 0.0
    redirected = render(model, "out:0", **kw)
    assert float(redirected.values[0]) >= 5.9  # the optimum, 6, within 2%


def test_a_unit_in_gelus_trap_escapes_only_through_the_gate():
    """Oracle: `gelu(20·mean(red) - 12)` is at -2 on the grey initial image, below GELU's minimum
    (-0.75), where ascent lowers it towards the flat 0 at -inf; it grows with red, to gelu(8) = 8
    at pure red. With the gate's gradient it gets past 6 (mean red >= 0.9, as the ReLU6 unit
    above); with GELU's own (redirection off) it stays below 0. The objective reads the GELU
    itself (`act`), the module the renderer gates."""
    model = DeadStart(nn.GELU())
    kw = dict(param_f=ImageParam(8, seed=0), transforms=[], steps=300, lr=0.1)
    trapped = render(model, "act:0", schedule=Schedule(redirect_steps=0), **kw)
    assert float(trapped.values[0]) < 0
    freed = render(model, "act:0", **kw)
    assert float(freed.values[0]) >= 6.0
    minimized = render(model, -O.channel("act", 0), **kw)  # asked for less: GELU's own gradient,
    assert float(minimized.values[0]) == pytest.approx(0.17, abs=0.005)  # to its minimum, -0.170
    assert "forward" not in vars(model.act)  # the renderer gated its private copy's GELU only


def test_the_gated_gelu_gradient_against_hand_values():
    from microtome.optvis.redirect import gated_gelu_grad

    x = torch.tensor([-2.0, -2.0, -0.5, 3.0])
    grad = torch.tensor([-1.0, 1.0, -1.0, -1.0])  # of a loss to minimize: -1 asks for more output
    own = torch.func.grad(lambda v: (F.gelu(v) * grad).sum())(x)
    got = gated_gelu_grad(x, grad)
    gate = 0.5 * (1 + torch.erf(torch.tensor(-2.0) / 2 ** 0.5))
    assert float(got[0]) == pytest.approx(-float(gate)) and float(own[0]) > 0  # trapped: the gate, not GELU's
    assert torch.allclose(got[1:], own[1:])  # asked for less, or above the minimum: GELU's own


class Mixed(nn.Module):
    """Every intercepted form: F.relu6, nn.ReLU(inplace), F.relu, clamp, hardtanh, torch.relu."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        h = F.relu6(self.c1(x))
        h = self.relu(self.c2(h)) + F.relu(h[:, :, 1:-1, 1:-1] - 1, inplace=True)
        return torch.relu(F.hardtanh(h.clamp(min=0.05), 0.0, 0.3) - 0.1)


def test_forward_values_and_live_gradients_are_bitwise_unchanged():
    model = Mixed()
    x = torch.rand(4, 3, 12, 12, requires_grad=True)
    y = model(x)
    (gx,) = torch.autograd.grad(y.sum(), x)
    with redirected_relus(), batch_invariant():
        y2 = model(x)
        (gx2,) = torch.autograd.grad(y2.sum(), x)
    assert torch.equal(y, y2)
    assert bool(gx.ne(0).flatten(1).any(1).all())  # every image has a live gradient ...
    assert torch.equal(gx, gx2)  # ... which the redirection leaves as it is


def test_redirected_gradient_against_hand_values():
    x = torch.tensor([[-1.0, -1.0, 7.0, 7.0], [-1.0, 3.0, 7.0, 7.0]])  # [B=2, 4]
    g = torch.tensor([[-1.0, 1.0, -1.0, 1.0], [-1.0, 0.0, -1.0, 1.0]])
    got = redirected_grad(x, g, 0.0, 6.0)
    # image 0: ordinary gradient 0 everywhere -> redirected: only moves back into (0, 6) pass
    assert got[0].tolist() == [-1.0, 0.0, 0.0, 1.0]
    # image 1: ordinary gradient 0 too (the unit inside has grad 0) -> redirected
    assert got[1].tolist() == [-1.0, 0.0, 0.0, 1.0]
    live = redirected_grad(x, torch.ones(2, 4), 0.0, 6.0)  # image 1 is live: ordinary
    assert live[1].tolist() == [0.0, 1.0, 0.0, 0.0] and live[0].tolist() == [0.0, 0.0, 1.0, 1.0]


class Small(nn.Module):
    """A 3-channel 3x3 first conv (the batch-dependent backward kernel), BN, ReLU6, a 3x3 conv."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 2, bias=False), nn.BatchNorm2d(16)
        self.act1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(16, 12, 3)
        self.act2 = nn.ReLU()
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-0.2, 0.2)
            self.bn1.running_var.uniform_(0.5, 2)
        self.eval()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.bn1(self.conv1(x)))))


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) * 255


def test_a_unit_is_the_same_alone_or_anywhere_in_a_batch():
    model, kw = Small(), dict(param_f=ImageParam(48, seed=5), steps=60)
    obj = lambda u: O.channel("act2", u)  # noqa: E731
    alone = render(model, [obj(4)], **kw).images[0]
    second = render(model, [obj(0), obj(4), obj(7)], **kw).images[1]
    last = render(model, [obj(u) for u in (0, 1, 2, 3, 5, 6, 7, 4)], **kw).images[7]
    assert _diff(alone, second) <= 1 and _diff(alone, last) <= 1
    other_seed = render(model, [obj(4)], ImageParam(48, seed=6), steps=60).images[0]
    assert _diff(alone, other_seed) > 1  # the seed does matter


def _decoded(result) -> dict[str, np.ndarray]:
    import io

    from PIL import Image

    return {k: np.asarray(Image.open(io.BytesIO(v)), dtype=np.int16) for k, v in result.files.items()}


def test_feature_vis_and_diversity_sets_do_not_depend_on_their_batch():
    from tests.toy_models import tiny_net

    model, spec = tiny_net()
    params = [dict(fv.fv_params("quick", v, seed=2), steps=30, size=32) for v in fv.VARIANTS]
    runs = {n: fv.feature_vis(model, spec, "conv2", units, params)
            for n, units in {"alone": [5], "second": [1, 5, 9], "last": list(range(7)) + [5]}.items()}
    for variant in fv.VARIANTS:
        images = {n: [_decoded(r) for r in rs if r.unit == 5 and r.params["variant"] == variant][0]
                  for n, rs in runs.items()}
        for name in ("second", "last"):
            for f, img in images["alone"].items():
                assert int(np.abs(img - images[name][f]).max()) <= 1, (variant, name, f)


def test_two_threads_render_with_one_model_as_serial_runs_do():
    model = Small()
    before = {n: (p, p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    jobs = {"a": ([O.channel("act2", u) for u in range(3)], 1), "b": (["act1:2"], 2)}

    def go(objs, seed):
        return render(model, objs, ImageParam(40, seed=seed), steps=25)

    serial = {k: go(*v) for k, v in jobs.items()}
    results: dict[str, object] = {}
    threads = [threading.Thread(target=lambda k=k, v=v: results.__setitem__(k, go(*v)))
               for k, v in jobs.items() for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in jobs:
        assert torch.equal(results[k].images, serial[k].images)
        assert torch.equal(results[k].values, serial[k].values)
    for n, p in model.named_parameters():
        same, value, flag = before[n]
        assert p is same and torch.equal(p, value) and p.requires_grad == flag
    assert all(not (m._forward_hooks or "forward" in m.__dict__) for m in model.modules())
    assert model.conv1.weight.is_contiguous()  # not left channels_last


def test_stored_params_decide_the_image():
    from tests.toy_models import tiny_net

    model, spec = tiny_net()
    # no layer schedule (its early kind renders in pixel space whatever fft/decorrelated say)
    base = dict(fv.fv_params("quick", "positive", seed=1), steps=8, size=32, early_field=0,
                local_field=None)
    images = {}
    for change in ({}, {"fft": False}, {"decorrelated": False}, {"transforms": "none"}):
        (r,) = fv.feature_vis(model, spec, "conv1", [0], [{**base, **change}])
        images[str(change)] = r.files["image.png"]
    assert len(set(images.values())) == 4
    early = dict(fv.fv_params("quick", "positive", seed=1), steps=8, size=32)  # conv1: early
    pictures = {kind: fv.feature_vis(model, spec, "conv1", [0], [{**early, "early_image": kind}])[0]
                .files["image.png"] for kind in ("pixels", "fft")}
    assert pictures["pixels"] != pictures["fft"]
    with pytest.raises(Exception, match="transforms"):
        fv.feature_vis(model, spec, "conv1", [0], [{**base, "transforms": "fancy"}])


def test_sharpening_steps_use_whole_pixel_shifts_of_the_same_size():
    from microtome.optvis import transforms as T

    x = torch.rand(2, 3, 40, 40)
    sharp = T.compose(T.sharp_transforms())(x)
    assert sharp.shape == T.compose(T.standard_transforms())(x).shape
    # a whole-pixel crop of the padded image: every value is one of the input's or the fill
    values = set(x.flatten().tolist()) | {0.5}
    assert set(sharp.flatten().tolist()) <= values
    model, kw = Small(), dict(param_f=ImageParam(40, seed=1), steps=12)
    plain = render(model, "act2:3", **kw).images
    assert torch.equal(render(model, "act2:3", schedule=Schedule(sharpen_steps=0), **kw).images,
                       plain)
    assert not torch.equal(render(model, "act2:3", schedule=Schedule(sharpen_steps=4), **kw).images,
                           plain)
