"""Build a layer's activation atlas (techniques/atlas.py) into a store:
`build_atlas_into_store(store, model, layer, ...) -> AtlasResult`.

The same artifact `microtome build MODEL --layers LAYER --techniques atlas` makes when the
options are at their defaults; other `grid`, `levels` or `positions` make another artifact
beside it, and `klass` a class atlas (the same layout, the cells of the vectors favouring that
class, their own icons). The stage times, cells per level and the icons' agreement with their
cells are kept in the artifact's meta. Every name is checked before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from microtome.store import ArtifactKey, Store

Stage = Callable[[str, float], None]  # (stage: collect, layout or render; the share of it just done)


@dataclass
class AtlasResult:
    """The atlas recorded (or found): its model and layer ids, the class index of a class
    atlas, and its meta (vectors, photos, grids, cells, seconds, agreement...)."""

    model: str
    layer: str
    klass: int | None
    meta: dict[str, Any]
    stored_already: bool = False

    @property
    def url(self) -> str:
        """Where the web microscope shows it."""
        return f"/models/{self.model}/{self.layer}/atlas" + (f"/class/{self.klass}" if self.klass is not None else "")


def build_atlas_into_store(store: Store | str, model: str, layer: str, *, dataset: str = "samples",
                           grid: int = 20, levels: int = 3, positions: int = 16, preset: str = "standard",
                           klass: str | int | None = None, weights: str = "default", seed: int = 0,
                           device: str = "cpu", stage: Stage | None = None) -> AtlasResult:
    """Build `layer`'s atlas of `model` over `dataset` and record it (nothing to do when the
    same params are stored). `klass`: a class label or index (a class atlas). `stage(name,
    fraction)` reports each stage's progress. An interruption stores nothing."""
    from microtome.data import get_dataset
    from microtome.pipeline.dictionaries import spec_with_dictionaries
    from microtome.pipeline.pipeline import check_weights, existing_store, resolve
    from microtome.techniques.atlas_layout import level_grids, resolve_class
    from microtome.techniques.builtin import atlas_params
    from microtome.techniques.registry import Role, by_role

    held_store = store if isinstance(store, Store) else existing_store(store)
    spec = spec_with_dictionaries(resolve(model, weights).spec, held_store)
    found = spec.layer(layer)
    level_grids(grid, levels)  # a bad combination fails before anything runs
    index = resolve_class(dict(enumerate(spec.labels)), klass) if klass is not None else None
    data = get_dataset(dataset)
    params = atlas_params(preset, data.name, seed, index, grid=grid, levels=levels, positions=positions)
    store = store if isinstance(store, Store) else Store(store)
    check_weights(store, spec)
    key = ArtifactKey.for_params(spec.id, found.id, None, by_role(Role.ATLAS_MAP).id, params)
    held = store.get(key)
    if held is not None:
        return AtlasResult(spec.id, found.id, index, held.meta, stored_already=True)
    meta = _build(store, model, weights, spec, found.id, data, params, device, stage)
    return AtlasResult(spec.id, found.id, index, meta)


def _build(store: Store, model: str, weights: str, spec, layer_id: str, data, params: dict[str, Any],
           device: str, stage: Stage | None) -> dict[str, Any]:
    """Run the three stages, then record the artifact and the model's summary; the meta."""
    from microtome.pipeline.dictionaries import load_with_dictionaries
    from microtome.pipeline.pipeline import provenance
    from microtome.techniques.atlas import atlas

    net, loaded = load_with_dictionaries(model, weights, store, device)
    result = atlas(net, loaded, layer_id, data, params, device, stage or (lambda name, fraction: None))
    meta = {**result.meta, "provenance": provenance(spec, params["preset"], int(params["seed"]))}
    store.put(ArtifactKey.for_params(spec.id, layer_id, None, result.technique, params), params, result.files, meta)
    store.put_model(spec.id, spec.summary())
    return meta
