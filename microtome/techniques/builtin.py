"""The built-in techniques, declared as data: `BUILTINS`, in run order (registry.py reads them).

Each entry names its runner by import path; the modules that hold the runners import torch,
this one does not. Preset tables live here, next to the declaration that uses them, and the
technique modules import them from here. The params below are part of every stored artifact's
key: changing one orphans what stores hold (tests/test_registry.py pins their hashes).
"""

from __future__ import annotations

from typing import Any

from microtome.errors import unknown
from microtome.optvis.schedule import LAYER_SCHEDULE
from microtome.techniques.declaration import LAYER, Params, Role, Section, Technique, check_preset

FEATURE_VIS = "feature_vis"
DEEPDREAM = "deepdream"
DATASET_EXAMPLES = "dataset_examples"
TUNING = "tuning"
CONNECTIONS = "connections"

FV_VARIANTS = ("positive", "negative", "neuron", "diversity")
FV_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 64, "size": 96},
    "standard": {"steps": 256, "size": 128},
    "full": {"steps": 1024, "size": 160},
}
DREAM_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 64, "size": 128},
    "standard": {"steps": 256, "size": 224},
    "full": {"steps": 512, "size": 320},
}
DIVERSITY_SET = 4
DIVERSITY_WEIGHT = 20.0
EXAMPLES_K = {"quick": 8, "standard": 16, "full": 32}
TUNING_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"orientations": 8, "frequencies": [0.02, 0.05, 0.1, 0.2], "phases": 4,
              "curvatures": [0.0, 0.03125, 0.0625, 0.125], "hues": 12, "line_width": 2.0},
    "standard": {"orientations": 16, "frequencies": [0.01, 0.02, 0.04, 0.08, 0.16, 0.32],
                 "phases": 6, "curvatures": [0.0, 0.015625, 0.03125, 0.0625, 0.125, 0.25],
                 "hues": 24, "line_width": 2.0},
    "full": {"orientations": 32,
             "frequencies": [0.01, 0.017, 0.029, 0.048, 0.082, 0.14, 0.24, 0.4], "phases": 8,
             "curvatures": [0.0, 0.0078125, 0.015625, 0.03125, 0.046875, 0.0625, 0.125, 0.25],
             "hues": 36, "line_width": 2.0},
}
# `images`: dataset images for gradient attribution (spread evenly over the dataset);
# `top`: entries per list.
CONNECTIONS_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"top": 8, "images": 16},
    "standard": {"top": 8, "images": 32},
    "full": {"top": 8, "images": 64},
}
OPTIMIZATION = {"lr": 0.05}  # shared by feature vis and DeepDream
# Feature vis of layers with small receptive fields (efficientnet_lite0's stem to block4 at
# 128 px) polishes its last steps in pixel space, early layers with more steps: the schedule is
# declared once, in optvis/schedule.py, and stored in every feature-vis artifact's params.
EARLY_LAYERS = LAYER_SCHEDULE.as_params()  # early_field, polish_every, ... (optvis/schedule.py)
IMAGE_MODEL = {"fft": True, "decorrelated": True, "transforms": "standard"}


def fv_params(preset: str, variant: str, seed: int = 0, input_size: int | None = None,
              fixed_size: bool = False) -> Params:
    """The params of one feature-visualization artifact (they determine the image exactly).

    A model whose input is smaller than the preset's size (`input_size`, the card's: a 32 px
    ViT) renders at its input size: larger, a ViT reads more patch tokens than it was trained
    on, through resampled position embeddings, and its channel objective (the mean over all of
    them) asks the image to fill a grid 16 times as large (docs/tiny-vit.md measures both).
    A `fixed_size` model (one that takes only its input size) renders at its input size."""
    check_preset(preset)
    if variant not in FV_VARIANTS:
        raise unknown("variant", variant, FV_VARIANTS)
    size = FV_PRESETS[preset]["size"]
    params = {"preset": preset, "variant": variant, **FV_PRESETS[preset],
              "size": _render_size(size, input_size, fixed_size), **OPTIMIZATION,
              "seed": seed, **IMAGE_MODEL, **EARLY_LAYERS}
    if variant == "diversity":
        params.update(images=DIVERSITY_SET, diversity_weight=DIVERSITY_WEIGHT)
    return params


def _render_size(preset_size: int, input_size: int | None, fixed_size: bool) -> int:
    if not input_size:
        return preset_size
    return input_size if fixed_size else min(preset_size, input_size)


def dream_params(preset: str, seed: int = 0) -> Params:
    """The params of one DeepDream artifact."""
    check_preset(preset)
    return {"preset": preset, **DREAM_PRESETS[preset], **OPTIMIZATION, "seed": seed,
            **IMAGE_MODEL, "objective": "layer"}


def _optimization_cost(params: dict[str, Any]) -> float:
    """Optimization steps x images x pixels, in rough seconds."""
    return params.get("images", 1) * params["steps"] * (params["size"] / 128) ** 2 * 0.01


FEATURE_VIS_ENTRY = Technique(
    id=FEATURE_VIS, title="Feature visualization",
    runner="microtome.techniques.feature_vis:run_feature_vis",
    params=lambda ctx: [fv_params(ctx.preset, v, ctx.seed, ctx.input_size, ctx.fixed_size) for v in FV_VARIANTS],
    variants=FV_VARIANTS, cost=_optimization_cost, task_overhead=0.0, units_per_task=8,
    # single images and diversity sets render as separate batches
    batch_key=lambda params: params.get("variant") == "diversity",
    reads=(DATASET_EXAMPLES,), on_demand=True, roles=(Role.UNIT_IMAGE,),
    section=Section("Feature visualization", "sections/feature_vis.html", 10, "feature-vis"))

DEEPDREAM_ENTRY = Technique(
    id=DEEPDREAM, title="DeepDream", scope=LAYER,
    runner="microtome.techniques.feature_vis:run_deepdream",
    params=lambda ctx: [dream_params(ctx.preset, ctx.seed)],
    cost=_optimization_cost, task_overhead=0.0, units_per_task=1, roles=(Role.LAYER_IMAGE,),
    section=Section("DeepDream", "sections/deepdream.html", 20, "deepdream"))

DATASET_EXAMPLES_ENTRY = Technique(
    id=DATASET_EXAMPLES, title="Dataset examples",
    runner="microtome.techniques.examples:run_dataset_examples",
    params=lambda ctx: [{"dataset": ctx.dataset, "k": EXAMPLES_K[ctx.preset],
                         "size": ctx.input_size, "preset": ctx.preset}],
    all_layers=True, units_per_task=1 << 30, uses_dataset=True, on_demand=True, roles=(Role.EXAMPLES,),
    section=Section("Dataset examples", "sections/dataset_examples.html", 30, "dataset-examples",
                    data="microtome.web.present.sections:examples_section"))

TUNING_ENTRY = Technique(
    id=TUNING, title="Tuning curves",
    runner="microtome.techniques.tuning:run_tuning",
    params=lambda ctx: [_tuning_params(ctx.preset)],
    units_per_task=256,
    section=Section("Tuning curves", "sections/tuning.html", 40, "tuning"))

CONNECTIONS_ENTRY = Technique(
    id=CONNECTIONS, title="Connections",
    runner="microtome.techniques.connections:run_connections",
    params=lambda ctx: [{**CONNECTIONS_PRESETS[ctx.preset], "dataset": ctx.dataset, "preset": ctx.preset}],
    units_per_task=64, uses_dataset=True, on_demand=True, roles=(Role.CIRCUIT,),
    section=Section("Connections", "sections/connections.html", 50, "connections",
                    data="microtome.web.present.connections:connections_section"))


LABELS = "labels"
LABELS_ENTRY = Technique(
    id=LABELS, title="Labels",
    runner="microtome.techniques.labels:run_labels",
    params=lambda ctx: [{"preset": ctx.preset, "dataset": ctx.dataset, "top": 8}],
    units_per_task=256, uses_dataset=True, reads=(DATASET_EXAMPLES, CONNECTIONS), on_demand=True,
    roles=(Role.UNIT_LABELS,),
    section=Section("Labels", "sections/labels.html", 60, "labels", data="microtome.web.present.labels:labels_section"))


SAE = "sae"
# `features` 0: `expansion` × the layer's channels (the layer `LAYER.sae`); N: the layer `LAYER.saeN`
SAE_DEFAULTS: dict[str, Any] = {"features": 0, "expansion": 4, "k": 16, "lr": 0.003, "max_vectors": 200_000}
SAE_EPOCHS = {"quick": 5, "standard": 20, "full": 40}


def sae_params(preset: str, dataset: str = "samples", seed: int = 0, **overrides: Any) -> Params:
    """The params of one SAE artifact (what determines the trained SAE); `overrides` come from
    `microtome sae`'s options (features, k, epochs)."""
    check_preset(preset)
    params = {**SAE_DEFAULTS, "epochs": SAE_EPOCHS[preset], "dataset": dataset, "seed": seed}
    params.update({name: value for name, value in overrides.items() if value is not None})
    return params


def sae_width(params: dict[str, Any], channels: int) -> int:
    """The number of features of the SAE `params` describe on a layer of `channels` units."""
    return int(params["features"]) or int(params["expansion"]) * channels


def sae_name(params: dict[str, Any]) -> str:
    """The feature layer's name after its base: `sae` at the default width, else `saeN`."""
    return f"sae{int(params['features'])}" if int(params["features"]) else "sae"


SAE_ENTRY = Technique(
    id=SAE, title="Sparse autoencoder (dictionary features)", scope=LAYER,
    runner="microtome.techniques.sae:run_sae",
    params=lambda ctx: [sae_params(ctx.preset, ctx.dataset, ctx.seed)],
    cost=lambda params: 2.0 * params["epochs"], units_per_task=1, uses_dataset=True, in_all=False,
    roles=(Role.FEATURES,),
    section=Section("Dictionary", "sections/sae.html", 55, "sae", data="microtome.web.present.sae:feature_section"))


SIMILAR = "similar"
# `images`: dataset images both models see (spread evenly over the dataset); `top`: similar
# units kept per unit; `pairing`: "depth" (stage-aware relative depth) or "A=B,..." pairs.
SIMILAR_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"images": 64, "top": 8},
    "standard": {"images": 250, "top": 8},
    "full": {"images": 1000, "top": 8},
}


def similar_params(preset: str, dataset: str, other: str, pairing: str = "depth",
                   images: int | None = None) -> Params:
    """The params of one `similar` artifact: this model's units against `other` (a model id
    or `module:function` entry point). `microtome compare` and `microtome build
    --compare-with` both use these, so either finds what the other stored."""
    check_preset(preset)
    params = {"preset": preset, "dataset": dataset, "other": other, "pairing": pairing,
              **SIMILAR_PRESETS[preset], "pool": "max"}
    if images is not None:
        params["images"] = int(images)
    return params


SIMILAR_ENTRY = Technique(
    id=SIMILAR, title="Similar units in other models",
    runner="microtome.techniques.similar:run_similar",
    params=lambda ctx: [similar_params(ctx.preset, ctx.dataset, other) for other in ctx.compare],
    all_layers=True, layer_summary=True, units_per_task=1 << 30, uses_dataset=True,
    cost=lambda params: 0.002 * params["images"] / 250, task_overhead=5.0, roles=(Role.SIMILAR_UNITS,),
    section=Section("Similar units in other models", "sections/similar.html", 70, "similar",
                    data="microtome.web.present.similar:similar_section"))


ATLAS = "atlas"
# the layout and its cells (any preset); `grid`: the finest level's side, `levels` halving from it;
# `classes`: the top predicted classes per photo each vector's attribution is taken toward
ATLAS_DEFAULTS: dict[str, Any] = {"positions": 16, "grid": 20, "levels": 3, "min_count": 3, "classes": 5,
                                  "neighbors": 20, "min_dist": 0.1, "top": 8, "photos": 6}
# the icons: `direction_cossim` of each cell's direction (relative to the dataset's mean)
ATLAS_RENDER: dict[str, dict[str, Any]] = {
    "quick": {"steps": 64, "size": 64},
    "standard": {"steps": 128, "size": 80},
    "full": {"steps": 256, "size": 96},
}
ATLAS_STAGES = {"collect": 0.2, "layout": 0.1, "render": 0.7}  # shares of a build's progress bar


def atlas_params(preset: str, dataset: str = "samples", seed: int = 0, klass: int | None = None,
                 **overrides: Any) -> Params:
    """The params of one atlas artifact; `overrides` come from `microtome atlas`'s options
    (grid, levels, positions); `klass` makes it the class atlas of that class index."""
    check_preset(preset)
    params = {"preset": preset, "dataset": dataset, "seed": seed, **ATLAS_DEFAULTS, **ATLAS_RENDER[preset],
              "lr": OPTIMIZATION["lr"], "objective": "direction_cossim", "cossim_pow": 2.0,
              "relative_to": "dataset_mean", "transforms": "standard"}
    params.update({name: value for name, value in overrides.items() if value is not None})
    if klass is not None:
        params.update({"class": int(klass), "min_count": 1})  # a class's vectors are few
    return params


def _atlas_cost(params: dict[str, Any]) -> float:
    """Rough seconds: about 300 icons, and a pass over the dataset (unknown here: ~1000 photos)."""
    return 300 * params["steps"] * (params["size"] / 64) ** 2 * 0.015 + 60.0


ATLAS_ENTRY = Technique(
    id=ATLAS, title="Activation atlas", scope=LAYER,
    runner="microtome.techniques.atlas:run_atlas",
    params=lambda ctx: [atlas_params(ctx.preset, ctx.dataset, ctx.seed)],
    cost=_atlas_cost, units_per_task=1, uses_dataset=True, in_all=False, roles=(Role.ATLAS_MAP,),
    section=Section("Activation atlas", order=80, anchor="atlas", unit_page=False))


def _tuning_params(preset: str) -> Params:
    """A preset's sweep with numbers as floats where the sweep takes floats (as `check_sweep`
    completes it; the stored key is of this form)."""
    sweep = dict(TUNING_PRESETS["standard"])
    sweep.update(TUNING_PRESETS[preset])
    sweep["frequencies"] = [float(v) for v in sweep["frequencies"]]
    sweep["curvatures"] = [float(v) for v in sweep["curvatures"]]
    sweep["line_width"] = float(sweep["line_width"])
    return sweep


# run order: dataset examples first (feature vis reads their best activations)
BUILTINS = (DATASET_EXAMPLES_ENTRY, FEATURE_VIS_ENTRY, DEEPDREAM_ENTRY, TUNING_ENTRY, CONNECTIONS_ENTRY,
            LABELS_ENTRY, SAE_ENTRY, SIMILAR_ENTRY, ATLAS_ENTRY)
