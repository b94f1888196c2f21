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
from microtome.optvis.render import render
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
    result = render(model, [O.channel(LAYER, u) for u in UNITS], spec=spec, size=128, steps=256, seed=0)
    fv_acts = _channel_means(model, spec, result.images)  # [8, C]

    best_photo = photo_acts.max(0).values  # [C]
    reached = fv_acts[torch.arange(len(UNITS)), UNITS]
    assert torch.allclose(reached, result.values, rtol=1e-4, atol=1e-4)
    assert bool((reached > best_photo[UNITS]).all()), (reached, best_photo[UNITS])

    z = (fv_acts - photo_acts.mean(0)) / (photo_acts.std(0) + 1e-6)  # [8, C]
    hits = int((z.argmax(1) == torch.tensor(UNITS)).sum())
    assert hits >= 6, f"target unit was the most activated for only {hits} of 8: {z.argmax(1).tolist()}"
