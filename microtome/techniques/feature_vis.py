"""Feature visualization and DeepDream as techniques: `(model, spec, layer, units, params) -> [ArtifactResult]`.

Variants per unit: `positive` (channel), `negative` (minus the channel), `neuron` (centre
position) and `diversity` (a set of 4 images of the channel pushed apart in style). Units of
a layer render together: one batch for the single-image variants, one for the diversity sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.images import png_bytes
from microtome.optvis import objectives as O
from microtome.optvis.param import ImageParam
from microtome.optvis.render import Progress, render
from microtome.optvis.schedule import LayerSchedule, Schedule
from microtome.techniques.base import ArtifactResult, Job
from microtome.techniques.builtin import (
    DEEPDREAM,
    DIVERSITY_SET,
    DIVERSITY_WEIGHT,
    EARLY_LAYERS,
    FEATURE_VIS,
    FV_VARIANTS,
    dream_params,
    fv_params,
)
from microtome.zoo.hooks import forward_to
from microtome.zoo.spec import ModelSpec

VARIANTS = FV_VARIANTS


def _objectives(layer: str, unit: int, variant: str) -> list[O.Objective]:
    if variant == "positive":
        return [O.channel(layer, unit)]
    if variant == "negative":
        return [-O.channel(layer, unit)]
    if variant == "neuron":
        return [O.neuron(layer, unit)]
    grouped = O.diversity(layer, group=DIVERSITY_SET)
    return [O.channel(layer, unit) + DIVERSITY_WEIGHT * grouped] * DIVERSITY_SET


TRANSFORM_SETS = {"standard": None, "none": []}  # stored name -> render's `transforms`


def _render_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `render` arguments that stored params decide (`param_f`, `steps`, `lr`, `transforms`,
    `schedule`): every one of them is passed (params stored before `sharpen_steps` or the layer
    schedules existed rendered without them). The layer schedule (`optvis.schedule`) comes from
    the params too; `render` measures the layer's receptive field and applies it, so any caller
    rendering with these kwargs gets the build's image."""
    name = params.get("transforms", "standard")
    if name not in TRANSFORM_SETS:
        raise MicrotomeError(f"unknown transforms {name!r} in params; valid: {', '.join(TRANSFORM_SETS)}")
    image = ImageParam(params["size"], fft=params.get("fft", True),
                       decorrelated=params.get("decorrelated", True), seed=params["seed"])
    schedule = Schedule(lr_final=params.get("lr_final"), sharpen_steps=params.get("sharpen_steps", 0),
                        layers=LayerSchedule.from_params(params))
    return {"param_f": image, "steps": params["steps"], "lr": params["lr"],
            "transforms": TRANSFORM_SETS[name], "schedule": schedule}


def _unscheduled(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Render `kwargs` without the layer schedule (the rest of the schedule kept)."""
    return {**kwargs, "schedule": replace(kwargs["schedule"], layers=None)}


def variant_objectives(layer: str, units: Sequence[int], variant: str) -> list[O.Objective]:
    """The objectives of `variant` for `units` of `layer`, one per image (4 per diversity set)."""
    return [o for u in units for o in _objectives(layer, u, variant)]


def render_variant(model: nn.Module, spec: ModelSpec, layer_id: str, units: Sequence[int],
                   params: Mapping[str, Any], *, schedule: bool = True,
                   device: str | torch.device = "cpu", progress: Progress | None = None):
    """Render one variant of `units` exactly as the build does with `params` (`fv_params`):
    the same objectives, seeds, schedule and so the same images (`schedule=False`: without the
    layer schedule, which is then not the build's image). Returns the `RenderResult`."""
    layer = spec.layer(layer_id).id
    kwargs = _render_kwargs(params) if schedule else _unscheduled(_render_kwargs(params))
    return render(model, variant_objectives(layer, units, params["variant"]), spec=spec,
                  **kwargs, device=device, progress=progress)


def _unit_maxima(model: nn.Module, spec: ModelSpec, layer: str, images: torch.Tensor,
                 units: Sequence[int]) -> list[float]:
    """Image i's maximum activation of unit units[i] over positions (the dataset examples' measure)."""
    with torch.no_grad():
        act = forward_to(model, spec.preprocess(images), {layer: spec.layer(layer).module})[layer]
    flat = act.flatten(2) if act.dim() == 4 else act.unsqueeze(2)  # [N, C, HW]
    return [float(flat[i, u].max()) for i, u in enumerate(units)]


def feature_vis(model: nn.Module, spec: ModelSpec, layer_id: str, units: Sequence[int],
                params_list: Sequence[Mapping[str, Any]], *, device: str | torch.device = "cpu",
                best_examples: Mapping[int, float] | None = None,
                progress: Progress | None = None) -> list[ArtifactResult]:
    """Render `units` x `params_list` (all of one preset and seed; any variants) in two batches.

    `best_examples` maps a unit to its best dataset example's maximum activation; the quality
    figure is the visualization's maximum activation relative to it."""
    layer = spec.layer(layer_id).id
    for u in units:
        spec.unit(layer, u)
    groups: dict[bool, list[tuple[int, dict]]] = {False: [], True: []}
    for u in units:
        for p in params_list:
            groups[p["variant"] == "diversity"].append((u, dict(p)))
    results = []
    for diverse, jobs in groups.items():
        if not jobs:
            continue
        first = jobs[0][1]
        if any(_render_kwargs(p) != _render_kwargs(first) for _, p in jobs):
            raise MicrotomeError("feature_vis renders one batch per kind: all params must share "
                                 "size, steps, lr, seed, fft, decorrelated and transforms")
        objectives = [o for u, p in jobs for o in _objectives(layer, u, p["variant"])]
        rendered = render(model, objectives, spec=spec, **_render_kwargs(first),
                          device=device, progress=progress)
        per_job = DIVERSITY_SET if diverse else 1
        target_units = [u for u, _ in jobs for _ in range(per_job)]
        maxima = _unit_maxima(model, spec, layer, rendered.images, target_units)
        for j, (u, p) in enumerate(jobs):
            sl = slice(j * per_job, (j + 1) * per_job)
            images, values = rendered.images[sl], rendered.values[sl].tolist()
            best = (best_examples or {}).get(u)
            peak = maxima[sl]
            sign = -1.0 if p["variant"] == "negative" else 1.0
            meta = {"objective": rendered.objectives[sl.start],
                    "activation": values if diverse else values[0],
                    "max_activation": peak if diverse else peak[0],
                    "quality": (max(peak) * sign / best if best and best > 0 and sign > 0 else None),
                    "best_example_activation": best}
            files = ({f"{i}.png": png_bytes(img) for i, img in enumerate(images)} if diverse
                     else {"image.png": png_bytes(images[0])})
            results.append(ArtifactResult(layer, u, FEATURE_VIS, p, files, meta))
    return results


def deepdream(model: nn.Module, spec: ModelSpec, layer_id: str, params: Mapping[str, Any], *,
              device: str | torch.device = "cpu", progress: Progress | None = None) -> ArtifactResult:
    """DeepDream of one layer: maximize its mean squared activation from noise."""
    layer = spec.layer(layer_id).id
    obj = O.layer(layer)
    rendered = render(model, obj, spec=spec, **_unscheduled(_render_kwargs(params)),
                      device=device, progress=progress)
    return ArtifactResult(layer, None, DEEPDREAM, dict(params),
                          {"image.png": png_bytes(rendered.images[0])},
                          {"objective": repr(obj), "value": float(rendered.values[0])})


def run_feature_vis(job: Job) -> list[ArtifactResult]:
    """The feature-vis runner: one layer's units, all planned variants; quality against the
    best stored dataset example of each unit (the technique reads `dataset_examples`)."""
    layer = job.layers[0]
    params_list = job.distinct_params()
    best = {}
    for unit in job.units:
        tops = [float(m["top"][0]["value"]) for m in job.input_metas("dataset_examples", layer, unit)
                if m.get("top")]
        if tops:
            best[unit] = max(tops)
    return feature_vis(job.model, job.spec, layer, job.units, params_list, device=job.device,
                       best_examples=best, progress=job.step_progress())


def run_deepdream(job: Job) -> list[ArtifactResult]:
    """The DeepDream runner: one layer, one artifact per planned params."""
    return [deepdream(job.model, job.spec, item.layer, item.params, device=job.device,
                      progress=job.step_progress())
            for item in job.items]


__all__ = ["EARLY_LAYERS", "VARIANTS", "deepdream", "dream_params", "feature_vis", "fv_params",
           "render_variant", "run_deepdream", "run_feature_vis", "variant_objectives"]
