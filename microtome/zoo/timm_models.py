"""timm models by name, the torch side: `timm_spec(Source) -> ModelSpec` for `timm:NAME[.TAG]`.

The card is derived from the model (zoo/derive.py) built once per process with random weights:
input size, mean/std, interpolation and crop from `timm.data.resolve_model_data_config`, class
names from a `class_names` attribute or timm's `ImageNetInfo` for an ImageNet head. Default
weights are timm's own: the pretrained config's Hugging Face hub repo (from the hub cache when
`HF_HUB_OFFLINE` is set or the machine is offline) or its URL (torch hub's cache);
`locate_default` finds the file before anything is built or written, so a missing one is a
MicrotomeError naming it and `--weights PATH`/`--weights random`, and its sha256 and hub id@revision
are the weights' identity on the card.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from microtome.errors import MicrotomeError, unknown
from microtome.zoo.card import ModelCard, chain_edges
from microtome.zoo.derive import attach_views, derive_layers, takes_other_sizes
from microtome.zoo.imagenet import imagenet_labels
from microtome.zoo.sources import Source
from microtome.zoo.spec import ModelSpec
from microtome.zoo.weights_file import load_strict, sha256_file

ALTERNATIVES = "pass --weights PATH (a local .safetensors/.pth/.bin state dict) or --weights random (untrained)"


def no_inplace(model: nn.Module) -> nn.Module:
    """Make in-place activations out-of-place, so an exposed output is never overwritten later."""
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    return model


def create(source: Source) -> nn.Module:
    """`timm.create_model(NAME[.TAG])` with random weights (seed 0), in-place activations off,
    `dynamic_img_size`/`dynamic_img_pad` where the family takes them (renders at any size, padded
    to whole patches; the same outputs at
    the model's own size)."""
    import timm

    if not timm.is_model(source.name):
        raise unknown("timm model", source.name, timm.list_models(), hint="`timm.list_models('*vit*')` lists them")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            try:  # any image size where the family allows it (ViTs: position embeddings resampled)
                model = timm.create_model(source.full_name, pretrained=False, dynamic_img_size=True,
                                          dynamic_img_pad=True)
            except TypeError:
                model = timm.create_model(source.full_name, pretrained=False)
        except RuntimeError as exc:  # an unknown tag
            raise MicrotomeError(f"timm cannot make {source.ref}: {exc}") from exc
    return no_inplace(model.eval())


def class_names(model: nn.Module) -> tuple[str, ...]:
    """A `class_names` attribute, else ImageNet's names when timm recognises the head's subset."""
    if getattr(model, "class_names", None):
        return tuple(str(c) for c in model.class_names)
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None:
        return ()
    if subset == "imagenet-1k":
        return imagenet_labels()  # the same order, torchvision's short names
    return tuple(d.split(",")[0] for d in ImageNetInfo(subset).label_descriptions())


def describe(model: nn.Module, model_id: str, title: str, source: str, weights_source: str) -> ModelCard:
    """The card of a timm model (or any module carrying a timm `pretrained_cfg`)."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    names = class_names(model)
    size = int(cfg["input_size"][-1])
    layers = derive_layers(model, size, has_classes=bool(names))
    return ModelCard(
        id=model_id, title=title, source=source, input_size=size, layers=layers,
        edges=chain_edges([layer.id for layer in layers]), class_names=names,
        num_classes=int(getattr(model, "num_classes", 0) or 0) if names else len(names),
        mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), weights_source=weights_source,
        interpolation=str(cfg.get("interpolation") or ""), crop_pct=cfg.get("crop_pct"),
        fixed_size=not takes_other_sizes(model, size), description=f"timm {type(model).__name__} `{source}`")


def _hub_files(cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """(where, files in order of preference) of a pretrained config, as timm resolves it."""
    from timm.models._builder import _resolve_pretrained_source

    load_from, loc = _resolve_pretrained_source(cfg)
    if load_from == "hf-hub":
        repo, file = loc if isinstance(loc, tuple) else (loc, "")
        files = [file] if file.endswith(".safetensors") else [f for f in (
            file.replace(".bin", ".safetensors") if file else "", "model.safetensors",
            file or "pytorch_model.bin") if f]
        return f"hf-hub:{repo}", list(dict.fromkeys(files))
    if load_from == "url":
        return f"url:{loc}", [loc]
    if load_from == "file":
        return f"file:{loc}", [loc]
    return "", []


def locate_default(source: Source, cfg: dict[str, Any]) -> tuple[str, Path]:
    """(weights source text, local file) of timm's default weights of `source`; downloads when
    online, reads the caches offline; a MicrotomeError naming what was looked for otherwise."""
    where, files = _hub_files(cfg)
    if not files:
        raise MicrotomeError(f"timm has no pretrained weights for {source.ref}; {ALTERNATIVES}")
    if where.startswith("file:"):
        return where, Path(files[0])
    if where.startswith("url:"):
        from timm.models._hub import download_cached_file

        try:
            return where, Path(download_cached_file(files[0], check_hash=False, progress=False))
        except Exception as exc:
            raise MicrotomeError(f"the default weights of {source.ref} ({files[0]}) are not in torch hub's "
                                 f"cache ({torch.hub.get_dir()}) and cannot be downloaded: {exc}. "
                                 f"{ALTERNATIVES}", status=503) from exc
    path = _hub_file(source, where.removeprefix("hf-hub:"), files)
    revision = path.parent.name if path.parent.parent.name == "snapshots" else ""
    return where + (f"@{revision}" if revision else ""), path  # the hub id and the revision read


def _hub_file(source: Source, repo: str, files: list[str]) -> Path:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    for file in files:  # the cache first: no network, no retries
        cached = try_to_load_from_cache(repo, file)
        if isinstance(cached, str):
            return Path(cached)
    errors = []
    if not constants.HF_HUB_OFFLINE:
        for file in files:
            try:
                return Path(hf_hub_download(repo, file))
            except Exception as exc:  # noqa: BLE001 - missing file, offline, HTTP errors alike
                if isinstance(exc, LocalEntryNotFoundError):  # unreachable: no other file will come
                    errors.append(f"the hub could not be reached for {file}")
                    break
                errors.append(f"{file}: {type(exc).__name__}")
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "; ".join(errors)
    raise MicrotomeError(
        f"the default weights of {source.ref} were not found: looked for {' or '.join(files)} of the "
        f"Hugging Face hub repo {repo} in the hub cache ({constants.HF_HUB_CACHE}) and could not "
        f"download them ({why}). {ALTERNATIVES}", status=503)


@lru_cache(maxsize=16)
def _card(source: Source) -> ModelCard:
    model = create(source)
    cfg = model.pretrained_cfg
    where, _ = _hub_files(cfg)
    name = source.name if not source.tag else source.full_name
    return describe(model, source.id, f"{name} (timm)", f"timm:{cfg.get('architecture', source.name)}"
                    + (f".{cfg['tag']}" if cfg.get("tag") else ""), where or "timm: no pretrained weights")


def timm_spec(source: Source) -> ModelSpec:
    """A `timm:` model's spec: its derived card (default weights: timm's, not yet located) and
    builder; `extra["locate_default"]() -> (weights source, file)` finds the default weights."""
    card = _card(source)
    cfg: dict[str, Any] = {}

    def build() -> nn.Module:
        model = create(source)
        cfg.update(model.pretrained_cfg)
        return attach_views(model, card.layers)

    def locate() -> tuple[str, Path]:
        if not cfg:
            cfg.update(create(source).pretrained_cfg)
        return locate_default(source, cfg)

    def load_default(model: nn.Module) -> str:
        import timm

        _, path = locate()
        try:  # timm's own loader (its checkpoint filters), reading the located file from the cache
            state = timm.create_model(source.full_name, pretrained=True).state_dict()
        except Exception as exc:
            raise MicrotomeError(f"timm could not load the default weights of {source.ref}: {exc}. "
                                 f"{ALTERNATIVES}") from exc
        load_strict(model, state, str(path))
        return sha256_file(path)

    return ModelSpec(card, build, load_default, extra={"locate_default": locate})


def module_card(model: nn.Module, model_id: str, source: str) -> ModelCard:
    """The card of a bare module from an entry point: timm's description when it carries a
    `pretrained_cfg`, else `input_size`, `mean`, `std` and `class_names` attributes (224 and
    ImageNet's mean/std when absent)."""
    no_inplace(model)
    if isinstance(getattr(model, "pretrained_cfg", None), dict):
        return describe(model, model_id, model_id, source, source)
    names = tuple(str(c) for c in getattr(model, "class_names", ()) or ())
    size = int(getattr(model, "input_size", 224))
    layers = derive_layers(model, size, has_classes=bool(names))
    card = ModelCard(id=model_id, title=model_id, source=source, input_size=size, layers=layers,
                     edges=chain_edges([layer.id for layer in layers]), class_names=names,
                     weights_source=source, fixed_size=not takes_other_sizes(model, size))
    fields = {k: tuple(getattr(model, k)) for k in ("mean", "std") if hasattr(model, k)}
    return dataclasses.replace(card, **fields) if fields else card
