"""Train a TopK sparse autoencoder on a layer into a store:
`train_sae_into_store(store, model, layer, ...) -> SaeResult`; its features become the layer
`LAYER.sae` (`LAYER.saeN` for an explicit width N) of the model in that store.

Resumable: the activation vectors and the training state after every epoch are kept under
`STORE/checkpoints/sae-MODEL-LAYER-PARAMSHASH/`; calling again with the same arguments after an
interruption continues from there (`SaeInterrupted` names the folder), and the folder is
removed once the SAE is stored. Retraining under a name that exists with other params is
refused unless `force`, which replaces the SAE and removes every artifact of its features
(never a stale page). Every name is checked before anything is loaded or written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microtome.errors import MicrotomeError
from microtome.store import Artifact, ArtifactKey, Store


class SaeInterrupted(KeyboardInterrupt):
    """Training was interrupted; the same call continues from the checkpoints in `folder`."""

    def __init__(self, folder: Path):
        super().__init__(str(folder))
        self.folder = folder


@dataclass
class SaePlan:
    """What one training will make, checked, nothing loaded: the store, the SAE artifact's key
    and params, its layer id, its checkpoint folder, and the SAE stored already under the same
    params."""

    store: Store
    model: str
    weights: str
    spec: Any  # ModelSpec with the store's dictionary layers
    own: Any  # ModelSpec: the model's own layers (what the store's model summary starts from)
    base: str  # the layer the SAE reads
    params: dict[str, Any]
    data: Any  # the Dataset the SAE reads
    key: ArtifactKey
    layer_id: str  # `base.sae` or `base.saeN`
    folder: Path
    held: Artifact | None

    @property
    def resumes(self) -> bool:
        """Whether training continues from checkpoints an interrupted run left."""
        return (self.folder / "state.pt").is_file() or (self.folder / "vectors.pt").is_file()


@dataclass
class SaeResult:
    """What the training recorded (or found): the layer id, the SAE's meta (features, k,
    explained variance, L0, dead fraction, vectors, epochs...), and when `force` replaced an
    SAE of the same name, how many artifacts of the old one were removed."""

    model: str
    layer_id: str
    meta: dict[str, Any]
    stored_already: bool = False
    replaced: int | None = None


def plan_sae(store: Store | str, model: str, layer: str, *, features: int | None = None,
             k: int | None = None, epochs: int | None = None, dataset: str = "samples",
             max_vectors: int | None = None, weights: str = "default", seed: int = 0,
             force: bool = False) -> SaePlan:
    """Check every name and option, then open (or make) the store. Unless `force`, a name
    taken by an SAE trained otherwise is refused here."""
    from microtome.data import get_dataset
    from microtome.pipeline.dictionaries import check_retrain, spec_with_dictionaries
    from microtome.pipeline.pipeline import check_weights, existing_store, resolve
    from microtome.techniques.builtin import sae_name, sae_params, sae_width
    from microtome.techniques.registry import Role, by_role

    plain = resolve(model, weights).spec  # the model's own layers
    spec = spec_with_dictionaries(plain, store if isinstance(store, Store) else existing_store(store))
    base = spec.layer(layer)
    if base.kind == "sae":
        raise MicrotomeError(f"{base.id} is a dictionary layer already; train on a unit layer such as "
                             f"{base.id.rsplit('.', 1)[0]}")
    if features == 4 * base.channels:
        features = None  # the default width: the layer LAYER.sae
    data = get_dataset(dataset)
    params = sae_params("standard", data.name, seed, features=features, k=k, epochs=epochs,
                        max_vectors=max_vectors)
    width = sae_width(params, base.channels)
    if not 0 < params["k"] <= width:
        raise MicrotomeError(f"--k must be in 1..{width} (the number of features), got {params['k']}")
    store = store if isinstance(store, Store) else Store(store)
    check_weights(store, spec)
    key = ArtifactKey.for_params(spec.id, base.id, None, by_role(Role.FEATURES).id, params)
    held = store.get(key)
    if held is None and not force:
        check_retrain(store, spec, base.id, params)
    folder = store.root / "checkpoints" / f"sae-{spec.id}-{base.id}-{key.params_hash}"
    return SaePlan(store, model, weights, spec, plain, base.id, params, data, key,
                   f"{base.id}.{sae_name(params)}", folder, held)


def train_sae_into_store(store: Store | str, model: str, layer: str, *, features: int | None = None,
                         k: int | None = None, epochs: int | None = None, dataset: str = "samples",
                         max_vectors: int | None = None, weights: str = "default", seed: int = 0,
                         force: bool = False, device: str = "cpu",
                         progress: Callable[[float], None] | None = None,
                         started: Callable[[SaePlan], None] | None = None) -> SaeResult:
    """Train an SAE on `layer` of `model` and record it in `store` (nothing to do when the same
    params are stored). `progress(fraction)` ticks during training, each tick the share of the
    whole just done (they add up to 1); `started(plan)` is called once, just before training
    (after every check). An interruption raises `SaeInterrupted`, whose folder the same call
    continues from."""
    plan = plan_sae(store, model, layer, features=features, k=k, epochs=epochs, dataset=dataset,
                    max_vectors=max_vectors, weights=weights, seed=seed, force=force)
    if plan.held is not None:
        return SaeResult(plan.own.id, plan.layer_id, plan.held.meta, stored_already=True)
    if started is not None:
        started(plan)
    trained = _train(plan, device, progress)
    replaced = _store(plan, trained, replace=force)
    shutil.rmtree(plan.folder, ignore_errors=True)
    return SaeResult(plan.own.id, plan.layer_id, trained["meta"], replaced=replaced)


def _train(plan: SaePlan, device: str, progress: Callable[[float], None] | None) -> dict:
    """`{"files", "meta"}` of the trained SAE; an interruption raises `SaeInterrupted`."""
    from microtome.techniques.sae import fit
    from microtome.zoo import load_model

    try:
        net, _ = load_model(plan.model, weights=plan.weights, device=device)
        result = fit(net, plan.spec, plan.base, plan.data, plan.params, device,
                     tick=progress or (lambda fraction: None), checkpoints=plan.folder)
    except KeyboardInterrupt:
        raise SaeInterrupted(plan.folder) from None
    return {"files": result.files, "meta": result.meta}


def _store(plan: SaePlan, trained: dict, replace: bool) -> int | None:
    """Record the SAE (replacing one of the same name when asked: the count of artifacts of the
    old one removed) and the summary of the model's own layers with the store's dictionaries,
    the new one among them."""
    from microtome.pipeline.dictionaries import dictionary_for, forget_dictionary, spec_with_dictionaries
    from microtome.pipeline.pipeline import provenance

    store, spec, removed = plan.store, plan.own, None
    if replace and dictionary_for(store, spec.id, plan.layer_id) is not None:
        removed = forget_dictionary(store, spec.id, plan.layer_id)
    meta = {**trained["meta"], "provenance": provenance(spec, "standard", int(plan.params["seed"]))}
    store.put(plan.key, plan.params, trained["files"], meta)
    store.put_model(spec.id, spec_with_dictionaries(spec, store).summary())
    return removed
