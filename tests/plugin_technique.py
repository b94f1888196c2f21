"""A technique that lives in the test suite only: the mean activation of each unit on grey.

`TOY_MEAN` is its declaration; `run_toy_mean` its runner `(Job) -> [ArtifactResult]`.
Registering it (`with registered(TOY_MEAN):`) is all it takes for the build to plan, run and
store it, and for the web and the export to show it.
"""

from __future__ import annotations

import torch

from microtome.images import png_bytes
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.registry import Section, Technique
from microtome.zoo.hooks import forward_to


def run_toy_mean(job: Job) -> list[ArtifactResult]:
    layer = job.layers[0]
    size = job.items[0].params["size"]
    grey = torch.full((1, 3, size, size), 0.5)  # [1, 3, S, S]
    with torch.no_grad():
        act = forward_to(job.model, job.spec.preprocess(grey), {layer: job.spec.layer(layer).module})[layer]
    means = act.flatten(2).mean(2)[0] if act.dim() == 4 else act[0]  # [C]
    results = []
    for item in job.items:
        value = float(means[item.unit])
        swatch = torch.full((3, 8, 8), min(max(value, 0.0), 1.0))  # [3, 8, 8]
        results.append(ArtifactResult(layer, item.unit, TOY_MEAN.id, item.params,
                                      {"swatch.png": png_bytes(swatch)}, {"mean_on_grey": value}))
        job.tick(1.0 / len(job.items))
    return results


TOY_MEAN = Technique(
    id="toy_mean", title="Mean on grey", runner="tests.plugin_technique:run_toy_mean",
    params=lambda ctx: [{"preset": ctx.preset, "size": 16}], units_per_task=2,
    section=Section("Mean activation on a grey image", order=60, anchor="toy-mean"))
