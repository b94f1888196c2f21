"""Lucid's and Lucent's library under their names: each objective and parameterization against
a direct computation of what Lucent's documentation says, improving under optimization, with
Lucent's shapes; `render` with a custom `param_f` and optimizer; transforms on integer images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microtome.optvis import objectives as O
from microtome.optvis import param as P
from microtome.optvis import transforms as T
from microtome.optvis.render import render
from tests.toy_models import Toy


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_direction_and_direction_neuron_are_cosine_similarities():
    acts = {"l": torch.randn(3, 4, 5, 5)}
    vec = torch.tensor([1.0, -2.0, 0.5, 0.0])
    got = O.direction("l", vec)(acts)
    want = [sum(_cos(acts["l"][b, :, i, j], vec) for i in range(5) for j in range(5)) / 25
            for b in range(3)]
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)
    neuron = O.direction_neuron("l", vec)(acts)
    assert torch.allclose(neuron, torch.tensor([_cos(acts["l"][b, :, 2, 2], vec) for b in range(3)]),
                          atol=1e-5)
    only = O.direction("l", vec, batch=1)(acts)
    assert only[0] == 0 and only[2] == 0 and torch.isclose(only[1], got[1])
    assert repr(O.direction_neuron("l", vec, x=1, y=2)) == "direction_neuron(l, [4], x=1, y=2)"


@pytest.mark.parametrize("make", [O.direction, O.direction_neuron])
def test_direction_objectives_rise_towards_one(make):
    obj = make("relu1", [1.0, -1.0, 0, 0, 1.0, 0, 0, 0])
    before = render(Toy(), obj, P.ImageParam(32), transforms=[], steps=1).values
    after = render(Toy(), obj, P.ImageParam(32), transforms=[], steps=40).values
    assert float(after) > float(before) and float(after) <= 1.0


def _lucent_alignment(t: torch.Tensor, decay_ratio: float) -> float:
    accum = 0.0
    for d in [1, 2, 3, 4]:
        for i in range(t.shape[0] - d):
            accum += float(((t[i] - t[i + d]) ** 2).mean()) / decay_ratio ** float(d)
    return accum


def test_alignment_and_channel_interpolate_against_lucents_loops():
    t = torch.randn(6, 4, 3, 3)
    values = O.alignment("l", decay_ratio=3)({"l": t})
    assert values.shape == (6,)
    assert float(values.sum()) == pytest.approx(_lucent_alignment(t, 3), rel=1e-5)
    interp = O.channel_interpolate("l", 1, "m", 2)({"l": t, "m": 2 * t})
    w = torch.arange(6) / 5
    want = (1 - w) * t[:, 1].mean((1, 2)) + w * 2 * t[:, 2].mean((1, 2))
    assert torch.allclose(interp, want, atol=1e-6)


def test_alignment_is_a_penalty():
    t = torch.randn(4, 6, 5, 5)
    values = O.alignment("l")({"l": t})
    assert (values > 0).all()
    assert float(O.alignment("l")({"l": t[:1].expand(4, -1, -1, -1)}).abs().max()) == 0
    assert torch.allclose(O.alignment("l")({"l": 2 * t}), 4 * values)  # squared distances


def _alignments(sign: int, sd: float, steps: int = 5) -> list[float]:
    """The alignment penalty on Toy's relu1 of a batch of 3 images rendered to maximize
    `sign * alignment(relu1)` from images drawn with `sd`, before and after each step."""
    model = Toy()
    torch.manual_seed(0)
    result = render(model, sign * O.alignment("relu1"), steps=steps, thresholds=range(1, steps + 1),
                    param_f=lambda: P.image(32, batch=3, sd=sd))
    torch.manual_seed(0)
    start = P.image(32, batch=3, sd=sd)[1]().detach()
    with torch.no_grad():  # measured by Lucent's loop, not by the objective under test
        return [_lucent_alignment(model.relu1(model.conv1(x)), 2)
                for x in [start] + [result.snapshots[i] for i in range(1, steps + 1)]]


def test_maximizing_minus_alignment_pulls_neighbours_together():
    pulled, pushed = _alignments(-1, sd=0.5), _alignments(+1, sd=0.5)  # images that differ
    assert pulled[0] == pytest.approx(pushed[0])  # the same start
    assert all(b < a for a, b in zip(pulled, pulled[1:])), pulled  # falls at every step
    assert all(b > a for a, b in zip(pushed, pushed[1:])), pushed  # the opposite sign pushes
    # from the standard start (images almost alike) Adam's first steps overshoot either way,
    # but the penalty ends far lower with - than with +
    assert 5 * _alignments(-1, sd=0.01)[-1] < _alignments(+1, sd=0.01)[-1]


def test_interpolation_with_alignment_improves_and_keeps_neighbours_alike():
    obj = O.channel_interpolate("relu2", 1, "relu2", 4) - 0.5 * O.alignment("relu2")
    kw = dict(param_f=P.ImageParam(32, batch=5, seed=1), transforms=[])
    before = render(Toy(), obj, steps=1, **kw)
    after = render(Toy(), obj, steps=40, **kw)
    assert after.images.shape == (5, 3, 32, 32)
    assert float(after.values.sum()) > float(before.values.sum())
    # the two ends maximize different units: the first image the first unit, the last the second
    acts = {}
    model = Toy()
    model.relu2.register_forward_hook(lambda m, i, o: acts.__setitem__("relu2", o))
    with torch.no_grad():
        model(after.images)
    means = acts["relu2"].mean((2, 3))  # [5, 6]
    assert means[0, 1] > means[4, 1] and means[4, 4] > means[0, 4]


def test_lowres_tensor_is_an_interpolation_of_its_parameter():
    params, image_f = P.lowres_tensor((2, 3, 32, 32), (2, 3, 8, 8))
    assert [tuple(p.shape) for p in params] == [(2, 3, 8, 8)]
    assert image_f().shape == (2, 3, 32, 32)
    want = F.interpolate(params[0], size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(image_f(), want, atol=1e-6)
    _, shifted = P.lowres_tensor((1, 3, 32, 32), (1, 3, 8, 8), offset=[0, 0, 2, True])
    assert shifted().shape == (1, 3, 32, 32)
    with pytest.raises(Exception, match="same rank"):
        P.lowres_tensor((3, 32, 32), (1, 3, 8, 8))


def test_render_takes_lowres_and_cppn_parameterizations_and_an_optimizer():
    model, obj = Toy(), O.channel("conv2", 3)

    def lowres():
        params, image_f = P.lowres_tensor((1, 3, 32, 32), (1, 3, 8, 8))
        return params, P.to_valid_rgb(image_f, decorrelated=True)

    for param_f, optimizer in [(lowres, None),
                               (lambda: P.cppn(32), lambda ps: torch.optim.Adam(ps, lr=0.005)),
                               (lambda: P.image(32), lambda ps: torch.optim.SGD(ps, lr=0.5))]:
        torch.manual_seed(0)
        before = render(model, obj, param_f=param_f, optimizer=optimizer, steps=1, transforms=[])
        torch.manual_seed(0)
        after = render(model, obj, param_f=param_f, optimizer=optimizer, steps=30, transforms=[])
        assert after.images.shape == (1, 3, 32, 32)
        assert float(after.values) > float(before.values)
    params, image_f = P.cppn(24, num_output_channels=3)
    first = image_f()
    assert first.shape == (1, 3, 24, 24) and torch.allclose(first, torch.full_like(first, 0.5))


def test_transforms_accept_integer_images():
    torch.manual_seed(0)
    x = (torch.rand(2, 3, 40, 40) * 255).round().to(torch.uint8)
    for name, t in {"pad": T.pad(4), "jitter": T.jitter(5), "scale": T.random_scale([1.1]),
                    "rotate": T.random_rotate([10]),
                    "standard": T.compose(T.standard_transforms())}.items():
        torch.manual_seed(1)
        y = t(x)
        torch.manual_seed(1)
        ref = t(x.float() / 255) * 255
        assert y.dtype == torch.uint8 and y.shape == ref.shape, name
        assert float((y.float() - ref).abs().max()) <= 0.5 + 1e-3, name
    assert int(T.pad(2)(x)[0, 0, 0, 0]) == 128  # the fill 0.5, in 0..255 units


def test_deepdream_is_lucids_name_for_the_layer_objective():
    acts = {"l": torch.randn(2, 4, 3, 3)}
    assert O.deepdream is O.layer
    assert torch.allclose(O.deepdream("l")(acts), acts["l"].pow(2).mean((1, 2, 3)))
