"""Models loaded on demand, one cache: `ModelService(store).get(model, weights, device) -> Worker`.

Everything that loads a model while serving — the web's render queue (`build_unit`), photo
search, inspect jobs — asks one service, so a model is loaded once and every user sees the
same SAEs. An entry (a `pipeline.worker.Worker`: `.model`, `.spec`, datasets) is keyed by
`ModelKey(model, weights identity, device, SAE versions)`:
- weights identity: "random", "default" (with the card's sha256 when the card knows it) or
  the sha256 of a weights file (hashed once per file size and mtime);
- SAE versions: `(layer id, sha256 of sae.pt)` of every SAE the store holds for the model
  (read from the store's index, no file read), so a retrain (`microtome sae --force`) is a
  new key and the next `get` loads the model with the new SAE.
The cache is a small LRU (`maxsize` entries), thread-safe; a load runs under its lock, so two
threads asking for one model load it once. Importing this module imports no torch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from microtome.pipeline.dictionaries import dictionary_payloads, dictionary_version
from microtome.store import Store

MAXSIZE = 4  # loaded models kept; the web machine is small
LoadFn = Callable[[str, str, str], tuple[Any, Any]]  # (model, weights, device) -> (nn.Module, ModelSpec)


class ModelKey(NamedTuple):
    """What makes two loaded models the same: see the module docstring."""

    model: str
    weights: str
    device: str
    saes: tuple[tuple[str, str], ...]


class ModelService:
    """A thread-safe LRU of loaded models with `store`'s SAEs attached (see the module docstring).

    `load(model, weights, device) -> (nn.Module, ModelSpec)` replaces the zoo's loader (tests use
    toys); the store's SAEs are attached to what it returns either way."""

    def __init__(self, store: Store | None = None, *, maxsize: int = MAXSIZE, load: LoadFn | None = None):
        self.store, self.maxsize, self.load = store, maxsize, load
        self._cache: OrderedDict[ModelKey, Any] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, model: str, weights: str = "default", device: str = "cpu") -> ModelKey:
        """The cache key of `model` with `weights` on `device` as the store holds its SAEs now."""
        return ModelKey(model, weights_key(model, str(weights)), str(device),
                        dictionary_version(self.store, model_id(model)))

    def get(self, model: str, weights: str = "default", device: str = "cpu"):
        """The loaded model (a `Worker`), from the cache or loaded now (evicting the least recent)."""
        key = self.key(model, weights, device)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._load(model, str(weights), str(device))
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            return self._cache[key]

    def loaded(self) -> list[ModelKey]:
        """The keys held now, least recently used first."""
        with self._lock:
            return list(self._cache)

    def _load(self, model: str, weights: str, device: str):
        from microtome.pipeline.dictionaries import attach_payloads
        from microtome.pipeline.worker import Worker

        model = stored_source(self.store, model)
        payloads = dictionary_payloads(self.store, model_id(model))
        if self.load is None:
            return Worker(model, weights, device, dictionaries=payloads)
        net, spec = attach_payloads(*self.load(model, weights, device), payloads)
        return Worker.holding(net, spec, device)


def model_id(model: str) -> str:
    """The store's id of `model`: a registry id is one; an entry point's card says it (the
    entry point is called once per process for its card: `zoo.lookup.get_card`)."""
    from microtome.zoo.lookup import get_card
    from microtome.zoo.sources import canonical_id

    return canonical_id(model) or get_card(model).id


def stored_source(store: Store | None, model: str) -> str:
    """The name to load `model` by: a `timm-NAME`/`torchvision-NAME` id the store holds is loaded
    by its card's `source` (`timm:NAME.TAG`), so a page reloads the tag it was built with."""
    from microtome.zoo.sources import parse_source

    source = parse_source(model)
    if store is None or source is None or source.tag:
        return model
    held = str((store.model(source.id) or {}).get("source") or "")
    found = parse_source(held) if held.startswith(source.kind + ":") else None
    return held if found is not None and found.id == source.id else model


def weights_key(model: str, weights: str) -> str:
    """The weights' part of a cache key: "random", "default[:sha256]" (the registered card's,
    when it knows it) or "sha256:..." of a file."""
    if weights == "random":
        return weights
    if weights == "default":
        from microtome.zoo.registry import is_registered, registered_card

        sha = registered_card(model).weights_sha256 if is_registered(model) else None
        return f"default:{sha}" if sha else "default"
    path = Path(weights)
    if not path.is_file():
        return f"missing:{weights}"  # the load names the problem
    stat = path.stat()
    return f"sha256:{_file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """The file's sha256 (the zoo's `sha256_file`); `size` and `mtime_ns` are part of the cache
    key only, so a changed file is hashed again."""
    from microtome.zoo.weights_file import sha256_file

    return sha256_file(path)
