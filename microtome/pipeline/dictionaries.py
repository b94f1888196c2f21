"""A store's dictionaries (trained SAEs) as layers of the models it holds.

An SAE is stored as the layer-level artifact `(model, BASE, None, "sae", params)` with the file
`sae.pt` and meta `{name, features, k, explained_variance, l0, dead_fraction, dataset, epochs,
weights_sha256, ...}`; its features are the layer `BASE.NAME` (`block10.sae`).

- `stored_dictionaries(store, model) -> [Dictionary]`: what the store holds, one per layer id.
- `spec_with_dictionaries(spec, store) -> spec`: the layers added, nothing loaded (to check
  names before loading weights).
- `with_dictionaries(model, spec, store) -> (model, spec)`: the SAEs attached to a loaded model.
Every place that loads a model for a store goes through these, so a feature layer works
everywhere a unit layer does. Importing this module imports no torch (the web reads it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from microtome.store import Store
from microtome.store.keys import Artifact

if TYPE_CHECKING:  # the web reads this module and never imports torch
    from microtome.zoo.spec import ModelSpec

TECHNIQUE = "sae"
WEIGHTS_FILE = "sae.pt"
SUMMARY_FIELDS = ("features", "k", "explained_variance", "l0", "dead_fraction", "dataset")


@dataclass(frozen=True)
class Dictionary:
    """One stored SAE: its base layer, its name (the layer is `base.name`) and its artifact."""

    base: str
    name: str
    artifact: Artifact

    @property
    def layer_id(self) -> str:
        return f"{self.base}.{self.name}"

    @property
    def meta(self) -> dict[str, Any]:
        return self.artifact.meta

    def summary(self) -> dict[str, Any]:
        """The layer JSON's `"sae"` block."""
        return {name: self.meta.get(name) for name in SUMMARY_FIELDS}


def stored_dictionaries(store: Store, model: str) -> list[Dictionary]:
    """The SAEs stored for `model`, in layer order of training; when two artifacts claim one
    layer id (a retrain racing another), the newest wins."""
    return dictionaries_in(store.find(model=model, unit=None, technique=TECHNIQUE))


def dictionaries_in(artifacts: Iterable[Artifact]) -> list[Dictionary]:
    """The SAEs among `artifacts` (any techniques), one per layer id, the newest winning."""
    found: dict[str, Dictionary] = {}
    for art in sorted((a for a in artifacts if a.key.technique == TECHNIQUE), key=lambda a: a.created):
        entry = Dictionary(art.key.layer, str(art.meta.get("name", "sae")), art)
        found[entry.layer_id] = entry
    return list(found.values())


def dictionary_for(store: Store, model: str, layer_id: str) -> Dictionary | None:
    """The stored SAE whose features are `layer_id`, if any."""
    return next((d for d in stored_dictionaries(store, model) if d.layer_id == layer_id), None)


def spec_with_dictionaries(spec: ModelSpec, store: Store | None) -> ModelSpec:
    """`spec` with a layer for each SAE `store` holds for it (no weights read)."""
    from microtome.zoo.sae import with_dictionary_layer

    for entry in stored_dictionaries(store, spec.id) if store is not None else []:
        if entry.layer_id not in spec.layer_ids and entry.base in spec.layer_ids:
            spec = with_dictionary_layer(spec, entry.base, int(entry.meta["features"]), entry.name)
    return spec


def dictionary_payloads(store: Store | None, model: str) -> tuple[tuple[str, str, bytes], ...]:
    """`(base, name, sae.pt bytes)` of every stored SAE of `model`: what a worker (maybe a Ray
    actor without the store) needs to attach them."""
    if store is None:
        return ()
    return tuple((d.base, d.name, store.read_file(d.artifact, WEIGHTS_FILE))
                 for d in stored_dictionaries(store, model))


def attach_payloads(model, spec: ModelSpec, payloads) -> tuple[Any, ModelSpec]:
    """Attach `(base, name, bytes)` SAEs to a loaded model; layers it has already are kept."""
    from microtome.zoo.sae import TopKSAE, attach_dictionary, sae_layer_id

    for base, name, data in payloads:
        if sae_layer_id(base, name) not in spec.layer_ids and base in spec.layer_ids:
            model, spec = attach_dictionary(model, spec, base, TopKSAE.from_bytes(data), name)
    return model, spec


def with_dictionaries(model, spec: ModelSpec, store: Store | None) -> tuple[Any, ModelSpec]:
    """The loaded `model` (changed in place) and `spec` with every SAE `store` holds for it."""
    return attach_payloads(model, spec, dictionary_payloads(store, spec.id))


def check_retrain(store: Store, spec: ModelSpec, base: str, params: dict[str, Any]) -> None:
    """Refuse to train an SAE whose layer name is taken by one trained otherwise: its features'
    artifacts would describe the old SAE (`microtome sae --force` replaces it and them)."""
    from microtome.errors import MicrotomeError
    from microtome.techniques.builtin import sae_name

    held = dictionary_for(store, spec.id, f"{base}.{sae_name(params)}")
    if held is not None and held.artifact.params != params:
        changed = sorted(k for k in {**params, **held.artifact.params}
                         if params.get(k) != held.artifact.params.get(k))
        raise MicrotomeError(
            f"{spec.id}/{held.layer_id} exists, trained with other params ({', '.join(changed)} differ); "
            f"`microtome sae {spec.id} {base} ... --force` replaces it and every artifact of its features")


def forget_dictionary(store: Store, model: str, layer_id: str) -> int:
    """Remove the SAE whose features are `layer_id` and every artifact of that layer; the count."""
    held = dictionary_for(store, model, layer_id)
    keys = [a.key for a in store.find(model=model, layer=layer_id)]
    if held is not None:
        keys += [a.key for a in store.find(model=model, layer=held.base, unit=None, technique=TECHNIQUE)
                 if str(a.meta.get("name", "sae")) == held.name]
    return store.forget(keys)


def dictionary_version(store: Store | None, model: str) -> tuple[tuple[str, str], ...]:
    """`(layer id, sha256 of sae.pt)` of the stored SAEs (from the index: a blob's name is its
    sha256): part of the loaded-model cache's key (pipeline/models.py), so that a model loaded
    before an SAE was (re)trained is not used after."""
    if store is None:
        return ()
    return tuple((d.layer_id, str(d.artifact.files.get(WEIGHTS_FILE))) for d in stored_dictionaries(store, model))


def load_with_dictionaries(model: str, weights: str, store: Store | None, device: str = "cpu"):
    """`load_model(model, weights)` with the store's SAEs attached: `(nn.Module, ModelSpec)`."""
    from microtome.zoo import load_model

    net, spec = load_model(model, weights=weights, device=device)
    return with_dictionaries(net, spec, store)
