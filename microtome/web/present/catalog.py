"""What the web app can show: model summaries from the store and the registry, and name resolution.

`Catalog(store, registry).model(id) -> ModelView`; `ModelView.layer(name) -> layer dict` (ids,
module paths and aliases); `ModelView.unit(layer, text) -> int`. Unknown names raise NotFound
whose suggestions are full shorthands (`M/L`, `M/L:U`) that the jump box resolves.

Summaries written by the build (`store.put_model`) win over the registry's; the registry's
(`microtome.zoo`, which imports torch) are computed once, in a subprocess (registry.py), so
this process never imports torch to serve pages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from microtome.errors import MicrotomeError, NotFound, close_names, unknown
from microtome.store import Store
from microtome.web.present.cache import StoreCache

log = logging.getLogger(__name__)

Registry = Callable[[], dict[str, dict[str, Any]]]  # () -> {model id: spec summary}


@dataclass
class ModelView:
    """One model's summary plus lookup tables; `built` is True when the summary is in the store."""

    id: str
    summary: dict[str, Any]
    built: bool
    layers: list[dict[str, Any]] = field(init=False)
    _names: dict[str, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = list(self.summary.get("layers", []))
        names: dict[str, dict[str, Any]] = {}
        for layer in reversed(self.layers):  # earlier layers win a clash
            for name in (layer.get("module"), *layer.get("aliases", ())):
                if name:
                    names[name] = layer
        for layer in self.layers:  # canonical ids win over every other name
            names[layer["id"]] = layer
        self._names = names

    @property
    def title(self) -> str:
        return self.summary.get("title") or self.id

    @property
    def trained(self) -> bool:
        return bool(self.summary.get("trained", True))

    @property
    def layer_ids(self) -> list[str]:
        return [layer["id"] for layer in self.layers]

    def find_layer(self, name: str) -> dict[str, Any] | None:
        """The layer called `name` (id, module path or alias; case-insensitive as a last resort)."""
        if name in self._names:
            return self._names[name]
        lowered = {k.lower(): v for k, v in self._names.items()}
        return lowered.get(name.lower())

    def layer(self, name: str) -> dict[str, Any]:
        layer = self.find_layer(name)
        if layer is None:
            err = unknown("layer", name, self.layer_ids, where=self.id,
                          hint=f"/models/{self.id} shows the layer graph")
            err.suggestions = [f"{self.id}/{s}" for s in err.suggestions]
            raise err
        return layer

    def unit(self, layer: dict[str, Any], text: str | int) -> int:
        """`text` as a unit index of `layer`; NotFound naming the valid range otherwise."""
        channels = int(layer["channels"])
        where = f"{self.id}/{layer['id']}"
        try:
            unit = int(text)
        except (TypeError, ValueError):
            raise NotFound(f"no unit {text!r} in {where}: a unit is a channel index, 0-{channels - 1}",
                           suggestions=[f"{where}:0"]) from None
        if not 0 <= unit < channels:
            near = min(max(unit, 0), channels - 1)
            raise NotFound(f"unit {unit} is out of range: {where} has {channels} units, 0-{channels - 1}",
                           suggestions=list(dict.fromkeys([f"{where}:{near}", f"{where}:0"])))
        return unit


class Catalog:
    """Model summaries (store first, registry second) and per-technique counts, cached.

    Store reads are cached until the store changes (cache.py), so a page view costs two
    `stat` calls, not a query, for what rarely changes."""

    def __init__(self, store: Store, registry: Registry | None):
        self.store = store
        self._registry_fn = registry
        self._registry: dict[str, dict[str, Any]] | None = None
        self.registry_error: str | None = None
        self._registry_lock = threading.Lock()
        self._cache = StoreCache(store.root, maxsize=16)

    def store_models(self) -> dict[str, ModelView]:
        return self._cache.get("models", lambda: {m: ModelView(m, s, True) for m, s in self.store.models().items()})

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """{model: {layer: {technique: artifact count}}}."""
        def compute() -> dict[str, dict[str, dict[str, int]]]:
            out: dict[str, dict[str, dict[str, int]]] = {}
            for (m, layer, technique), n in self.store.stats().items():
                out.setdefault(m, {}).setdefault(layer, {})[technique] = n
            return out
        return self._cache.get("stats", compute)

    # -- the registry --

    @property
    def registry_loaded(self) -> bool:
        return self._registry is not None or self._registry_fn is None

    def registry(self) -> dict[str, dict[str, Any]]:
        """Summaries of the registered models, loaded on first use (blocking; see `preload`)."""
        if self._registry_fn is None:
            return {}
        with self._registry_lock:
            if self._registry is None:
                try:
                    self._registry = dict(self._registry_fn())
                except MicrotomeError as exc:
                    log.warning("model registry unavailable: %s", exc.message)
                    self.registry_error = exc.message
                    self._registry = {}
            return self._registry

    def preload(self) -> threading.Thread:
        """Load the registry in a background thread, so the first page view does not wait."""
        thread = threading.Thread(target=self.registry, name="microtome-registry", daemon=True)
        thread.start()
        return thread

    def needs_registry(self, model: str | None) -> bool:
        """True when answering about `model` (None: about all models) needs the registry loaded."""
        if self.registry_loaded:
            return False
        return model is None or model not in self.store_models()

    # -- lookups --

    def all_models(self) -> list[ModelView]:
        """Built models (store order), then registered models not built yet (registry order)."""
        stored = self.store_models()
        rest = [ModelView(m, s, False) for m, s in self.registry().items() if m not in stored]
        return [*stored.values(), *rest]

    def find_model(self, model_id: str) -> ModelView | None:
        stored = self.store_models()
        if model_id in stored:
            return stored[model_id]
        summary = self.registry().get(model_id)
        return ModelView(model_id, summary, False) if summary is not None else None

    def model_ids(self) -> list[str]:
        return [m.id for m in self.all_models()]

    def model(self, model_id: str) -> ModelView:
        found = self.find_model(model_id)
        if found is None:
            found = self.find_model(model_id.lower())
        if found is None:
            raise unknown("model", model_id, self.model_ids(), hint="/ lists them")
        return found

    def layer_anywhere(self, name: str) -> list[tuple[ModelView, dict[str, Any]]]:
        """Every (model, layer) a bare layer name resolves to, across all models."""
        hits = []
        for model in self.all_models():
            layer = model.find_layer(name)
            if layer is not None:
                hits.append((model, layer))
        return hits

    def near_layers(self, name: str) -> list[str]:
        """`M/L` shorthands of layers in any model whose id is close to `name`."""
        out = []
        for model in self.all_models():
            out += [f"{model.id}/{layer_id}" for layer_id in close_names(name, model.layer_ids, n=2)]
        return out[:8]
