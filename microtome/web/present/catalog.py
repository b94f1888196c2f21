"""What the web app can show: model cards from the store and the registry, and name resolution.

`Catalog(store, registry).model(id) -> ModelView`; `ModelView.layer(name) -> layer dict` (ids,
module paths and aliases, resolved by the model's card: `ModelCard.layer`, the rule the CLI and
the build use); `ModelView.unit(layer, text) -> int` (checked by the card). Unknown names raise
NotFound whose suggestions are full shorthands (`M/L`, `M/L:U`) that the jump box resolves.

Cards written by the build (`store.put_model`) win over the registry's; the registry's are
read from `microtome.zoo` (`registered_cards`: plain data, no torch), once.
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
from microtome.zoo.card import ModelCard
from microtome.zoo.registry import registered_cards

log = logging.getLogger(__name__)

Registry = Callable[[], dict[str, dict[str, Any]]]  # () -> {model id: card JSON}


@dataclass
class ModelView:
    """One model's card (`summary` its JSON, `layers` its layer dicts); `built` is True when the
    card is in the store."""

    id: str
    summary: dict[str, Any]
    built: bool
    card: ModelCard = field(init=False, repr=False)
    layers: list[dict[str, Any]] = field(init=False)
    _by_id: dict[str, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.card = ModelCard.from_json({"id": self.id, **self.summary})
        self.layers = list(self.summary.get("layers", []))
        self._by_id = {layer["id"]: layer for layer in self.layers}

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
        """The layer called `name` (`ModelCard.find_layer`'s rule), as its dict."""
        found = self.card.find_layer(name)
        return None if found is None else self._by_id[found.id]

    def layer(self, name: str) -> dict[str, Any]:
        try:
            return self._by_id[self.card.layer(name, hint=f"/models/{self.id} shows the layer graph").id]
        except NotFound as err:
            err.suggestions = [f"{self.id}/{s}" for s in err.suggestions]
            raise

    def unit(self, layer: dict[str, Any], text: str | int) -> int:
        """`text` as a unit index of `layer` (checked by the card); NotFound naming the valid range
        and suggesting the nearest unit otherwise."""
        channels = int(layer["channels"])
        where = f"{self.id}/{layer['id']}"
        try:
            unit = int(text)
        except (TypeError, ValueError):
            raise NotFound(f"no unit {text!r} in {where}: a unit is a channel index, 0-{channels - 1}",
                           suggestions=[f"{where}:0"]) from None
        try:
            return self.card.unit(layer["id"], unit)[1]
        except NotFound:
            near = min(max(unit, 0), channels - 1)
            raise NotFound(f"unit {unit} is out of range: {where} has {channels} units, 0-{channels - 1}",
                           suggestions=list(dict.fromkeys([f"{where}:{near}", f"{where}:0"]))) from None


class Catalog:
    """Model summaries (store first, registry second) and per-technique counts, cached.

    Store reads are cached until the store changes (cache.py), so a page view costs two
    `stat` calls, not a query, for what rarely changes."""

    def __init__(self, store: Store, registry: Registry | None = registered_cards):
        self.store = store
        self._registry_fn = registry
        self._registry: dict[str, ModelView] | None = None
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

    def registry(self) -> dict[str, ModelView]:
        """The registered models (not built), read on first use (blocking; see `preload`)."""
        if self._registry_fn is None:
            return {}
        with self._registry_lock:
            if self._registry is None:
                try:
                    self._registry = {m: ModelView(m, s, False) for m, s in self._registry_fn().items()}
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
        rest = [view for m, view in self.registry().items() if m not in stored]
        return [*stored.values(), *rest]

    def find_model(self, model_id: str) -> ModelView | None:
        stored = self.store_models()
        if model_id in stored:
            return stored[model_id]
        return self.registry().get(model_id)

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
