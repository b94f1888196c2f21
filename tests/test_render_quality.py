"""Feature visualization on the real efficientnet_lite0 beats natural photos at their own game.

For 8 units of block10 (256 steps, 128 px, the standard stack), the activation reached is above
the unit's best activation over scikit-image's photos, and the target unit is the layer's most
activated unit relative to those photos' statistics (z-score) for at least 6 of the 8.
"""

from __future__ import annotations

import pytest
import torch

from microtome.data import get_dataset
from microtome.optvis import objectives as O
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from microtome.optvis.schedule import Schedule
from microtome.zoo import load_model
from microtome.zoo.hooks import forward_to

UNITS = list(range(8))
LAYER = "block10"


def _channel_means(model, spec, images: torch.Tensor) -> torch.Tensor:  # [N, 3, S, S] -> [N, C]
    with torch.no_grad():
        acts = forward_to(model, spec.preprocess(images), {LAYER: spec.layer(LAYER).module})
    return acts[LAYER].mean(dim=(2, 3))


@pytest.mark.slow
def test_feature_visualizations_beat_photos_on_efficientnet_lite0():
    model, spec = load_model("efficientnet_lite0")
    dataset = get_dataset("samples")
    photos = torch.cat([b.images for b in dataset.batches(spec.input_size, 32)])  # [P, 3, 224, 224]
    assert len(photos) >= 8
    photo_acts = _channel_means(model, spec, photos)  # [P, C]
    result = render(model, [O.channel(LAYER, u) for u in UNITS], ImageParam(128, seed=0), spec=spec,
                    steps=256)
    fv_acts = _channel_means(model, spec, result.images)  # [8, C]

    best_photo = photo_acts.max(0).values  # [C]
    reached = fv_acts[torch.arange(len(UNITS)), UNITS]
    assert torch.allclose(reached, result.values, rtol=1e-4, atol=1e-4)
    assert bool((reached > best_photo[UNITS]).all()), (reached, best_photo[UNITS])

    z = (fv_acts - photo_acts.mean(0)) / (photo_acts.std(0) + 1e-6)  # [8, C]
    hits = int((z.argmax(1) == torch.tensor(UNITS)).sum())
    assert hits >= 6, f"target unit was the most activated for only {hits} of 8: {z.argmax(1).tolist()}"


DEAD_START = [14, 26, 29]  # inactive at the initial image; photos drive them to 5.6, 6.0, 4.8


@pytest.mark.slow
def test_dead_start_stem_units_come_alive_at_the_standard_preset():
    """With the redirected ReLU gradient, `stem:14`, `:26`, `:29` come alive and their spatial
    mean (the channel objective) reaches at least their best scikit-image photo's (or ReLU6's
    cap, 6). Without it they stay at exactly 0. (Their best photo's single maximum can sit at
    the border, where the convolution's zero padding reaches values no image inside [0, 1] gives
    at every position: the mean is the measure a unit's picture is judged by.)"""
    model, spec = load_model("efficientnet_lite0")
    photos = torch.cat([b.images for b in get_dataset("samples").batches(spec.input_size, 32)])
    module = {"stem": spec.layer("stem").module}
    with torch.no_grad():
        best = forward_to(model, spec.preprocess(photos), module)["stem"].flatten(2).mean(2).max(0).values
    objs = [O.channel("stem", u) for u in DEAD_START]
    result = render(model, objs, ImageParam(128, seed=0), spec=spec, steps=256)
    assert result.schedule == "early" and result.steps == 512
    with torch.no_grad():
        mean = forward_to(model, spec.preprocess(result.images), module)["stem"].flatten(2).mean(2)
    reached = mean[torch.arange(3), DEAD_START]
    assert bool((result.values > 0).all()), result.values
    assert bool((reached >= torch.clamp(best[DEAD_START], max=6.0) - 1e-4).all()), (reached, best[DEAD_START])
    dead = render(model, objs, ImageParam(128, seed=0), spec=spec, steps=32,
                  schedule=Schedule(redirect_steps=0, layers=None))
    assert bool((dead.values == 0).all())


@pytest.mark.slow
def test_a_real_unit_is_the_same_alone_or_last_of_a_batch():
    """block2 of efficientnet_lite0 (its first conv has 3 input channels): the image of unit 5
    alone and last of 4 agree within 1/255 per pixel after 128 steps."""
    model, spec = load_model("efficientnet_lite0")
    kw = dict(param_f=ImageParam(64, seed=0), spec=spec, steps=128)
    alone = render(model, [O.channel("block2", 5)], **kw).images[0]
    last = render(model, [O.channel("block2", u) for u in (0, 1, 2, 5)], **kw).images[3]
    assert float((alone - last).abs().max()) * 255 <= 1.0
