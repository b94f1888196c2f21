"""Any torchvision classification model by name, the torch side: `torchvision_spec(Source) -> ModelSpec`.

`torchvision:NAME[.TAG]`: `torchvision.models.get_model(NAME)`, TAG a member of its weights
enum (`IMAGENET1K_V2`; none: `DEFAULT`). The card is derived from the model (zoo/derive.py);
input size, mean/std, interpolation and crop come from the weights' transforms, class names
from their `meta["categories"]`. Default weights are torchvision's own (torch hub's cache, a
download when online); `locate_default` finds the file first, so a missing one is a
MicrotomeError naming it and the alternatives.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from microtome.errors import MicrotomeError, unknown
from microtome.zoo.card import ModelCard, chain_edges
from microtome.zoo.derive import attach_views, derive_layers, takes_other_sizes
from microtome.zoo.sources import Source
from microtome.zoo.spec import ModelSpec
from microtome.zoo.timm_models import ALTERNATIVES, no_inplace
from microtome.zoo.weights_file import load_strict, sha256_file


def weights_of(source: Source):
    """The torchvision weights enum member `source` names (its tag, or the enum's DEFAULT)."""
    from torchvision import models as tvm

    if source.name not in tvm.list_models():
        raise unknown("torchvision model", source.name, tvm.list_models(),
                      hint="`torchvision.models.list_models()` lists them")
    enum = tvm.get_model_weights(source.name)
    if not source.tag:
        return enum.DEFAULT
    if source.tag not in enum.__members__:
        raise unknown(f"weights of torchvision {source.name}", source.tag, list(enum.__members__))
    return enum[source.tag]


def create(source: Source) -> nn.Module:
    from torchvision import models as tvm

    weights = weights_of(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tvm.get_model(source.name, weights=None, num_classes=len(weights.meta["categories"]))
    return no_inplace(model.eval())


def _cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


@lru_cache(maxsize=16)
def _card(source: Source) -> ModelCard:
    weights = weights_of(source)
    preset = weights.transforms()
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    model = create(source)
    names = tuple(weights.meta["categories"])
    layers = derive_layers(model, crop, has_classes=True)
    return ModelCard(
        id=source.id, title=f"{source.name} (torchvision)", source=f"torchvision:{source.name}.{weights.name}",
        input_size=crop, layers=layers, edges=chain_edges([layer.id for layer in layers]),
        class_names=names, mean=tuple(preset.mean), std=tuple(preset.std),
        weights_source=f"torchvision {weights} ({weights.url})",
        interpolation=preset.interpolation.value, crop_pct=round(crop / resize, 4),
        fixed_size=not takes_other_sizes(model, crop),
        description=f"torchvision {type(model).__name__} `{source.name}`")


def locate_default(source: Source) -> tuple[str, Path]:
    """(weights source text, local file) of torchvision's weights for `source`."""
    weights = weights_of(source)
    path = _cached_file(weights.url)
    if not path.is_file():
        try:
            torch.hub.download_url_to_file(weights.url, str(path), progress=False)
        except Exception as exc:
            raise MicrotomeError(f"the default weights of {source.ref} ({weights}) were not found: looked "
                                 f"for {path} (torch hub's cache) and could not download {weights.url}: "
                                 f"{exc}. {ALTERNATIVES}", status=503) from exc
    return f"torchvision {weights} ({weights.url})", path


def torchvision_spec(source: Source) -> ModelSpec:
    """A `torchvision:` model's spec: derived card, builder, default weights' loader and locator."""
    card = _card(source)

    def build() -> nn.Module:
        return attach_views(create(source), card.layers)

    def load_default(model: nn.Module) -> str:
        _, path = locate_default(source)
        load_strict(model, weights_of(source).get_state_dict(progress=False, check_hash=True), str(path))
        return sha256_file(path)

    return ModelSpec(card, build, load_default, extra={"locate_default": lambda: locate_default(source)})
