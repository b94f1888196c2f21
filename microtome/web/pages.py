"""Each page's data: `Pages(store, catalog).unit(model, layer, unit) -> dict`, JSON-ready.

The same dict renders the HTML template and is the page's `.json` twin. Links in it are site
URLs (`/models/M/L/U`, `/blobs/<sha>.png`); the renderer maps them for a static export. With
`exported` set (a static export), units that are not exported get no link.
"""

from __future__ import annotations

from typing import Any

from microtome.errors import NotFound
from microtome.store import Store
from microtome.web import artifacts as A
from microtome.web.catalog import Catalog, ModelView

GRID_PAGE_SIZE = 128
MAX_CONNECTIONS = 16  # per direction shown on a unit page
TECHNIQUES = ("feature_vis", "deepdream", "dataset_examples", "tuning", "connections")

Exported = dict[tuple[str, str], list[int]]  # (model, layer) -> sorted units in a static export


def model_url(m: str) -> str:
    return f"/models/{m}"


def layer_url(m: str, layer: str, variant: str = "positive", page: int = 1) -> str:
    query = [f"variant={variant}"] if variant != "positive" else []
    query += [f"page={page}"] if page != 1 else []
    return f"/models/{m}/{layer}" + ("?" + "&".join(query) if query else "")


def unit_url(m: str, layer: str, unit: int) -> str:
    return f"/models/{m}/{layer}/{unit}"


def model_brief(model: ModelView) -> dict[str, Any]:
    s = model.summary
    return {"id": model.id, "title": model.title, "url": model_url(model.id), "trained": model.trained,
            "weights": s.get("weights"), "built": model.built, "input_size": s.get("input_size"),
            "num_classes": s.get("num_classes"), "weights_source": s.get("weights_source")}


def layer_brief(model: ModelView, layer: dict[str, Any]) -> dict[str, Any]:
    return {"id": layer["id"], "kind": layer.get("kind"), "module": layer.get("module"),
            "aliases": list(layer.get("aliases") or ()), "channels": layer["channels"],
            "size": list(layer.get("size") or (1, 1)), "url": layer_url(model.id, layer["id"])}


class Pages:
    """Builds the data of every page kind from one store and catalog."""

    def __init__(self, store: Store, catalog: Catalog, exported: Exported | None = None):
        self.store = store
        self.catalog = catalog
        self.exported = exported

    # -- links that exist --

    def _unit_link(self, m: str, layer: str, unit: int) -> str | None:
        if self.exported is not None and unit not in self.exported.get((m, layer), ()):
            return None
        return unit_url(m, layer, unit)

    def _neighbours(self, m: str, layer: dict[str, Any], unit: int) -> tuple[str | None, str | None]:
        if self.exported is None:
            prev = unit_url(m, layer["id"], unit - 1) if unit > 0 else None
            nxt = unit_url(m, layer["id"], unit + 1) if unit + 1 < layer["channels"] else None
            return prev, nxt
        units = self.exported.get((m, layer["id"]), [])
        before = [u for u in units if u < unit]
        after = [u for u in units if u > unit]
        return (unit_url(m, layer["id"], before[-1]) if before else None,
                unit_url(m, layer["id"], after[0]) if after else None)

    # -- pages --

    def index(self) -> dict[str, Any]:
        stats = self.catalog.stats()
        models = []
        for model in self.catalog.all_models():
            counts = {t: 0 for t in TECHNIQUES}
            for per_layer in stats.get(model.id, {}).values():
                for technique, n in per_layer.items():
                    counts[technique] = counts.get(technique, 0) + n
            counts = {t: n for t, n in counts.items() if n}
            models.append({**model_brief(model), "layers": len(model.layers),
                           "units": sum(int(layer["channels"]) for layer in model.layers),
                           "counts": counts, "artifacts": sum(counts.values())})
        return {"page": "index", "title": "Models", "models": models,
                "registry_error": self.catalog.registry_error}

    def model(self, m: str) -> dict[str, Any]:
        model = self.catalog.model(m)
        stats = self.catalog.stats().get(model.id, {})
        by_layer: dict[str, list] = {}
        for art in self.store.find(model.id, technique="deepdream"):  # one query for all layers
            by_layer.setdefault(art.key.layer, []).append(art)
        dreams = {lid: A.pick(arts)["deepdream"] for lid, arts in by_layer.items()}
        layers = []
        for layer in model.layers:
            counts = stats.get(layer["id"], {})
            built = sum(counts.values())
            layers.append({**layer_brief(model, layer), "deepdream": A.image_url(dreams.get(layer["id"])),
                           "counts": counts,
                           "built_label": f"{built} artifact{'s' if built != 1 else ''}" if built else ""})
        return {"page": "model", "title": model.title, "model": model_brief(model), "layers": layers,
                "edges": [list(e) for e in model.summary.get("edges", [])]}

    def layer(self, m: str, layer_name: str, variant: str = "positive", page: int = 1) -> dict[str, Any]:
        model = self.catalog.model(m)
        layer = model.layer(layer_name)
        if variant not in A.GRID_VARIANTS:
            raise NotFound(f"no variant {variant!r}: the grid shows {', '.join(A.GRID_VARIANTS)}",
                           suggestions=[f"{model.id}/{layer['id']}"])
        channels = int(layer["channels"])
        pages = max(1, -(-channels // GRID_PAGE_SIZE))
        if not 1 <= page <= pages:
            raise NotFound(f"no page {page} of {model.id}/{layer['id']}: it has pages 1-{pages} "
                           f"({channels} units, {GRID_PAGE_SIZE} per page)",
                           suggestions=[f"{model.id}/{layer['id']}"])
        start = (page - 1) * GRID_PAGE_SIZE
        units = []
        for unit in range(start, min(start + GRID_PAGE_SIZE, channels)):
            best = A.pick(self.store.find(model.id, layer["id"], unit, "feature_vis"))
            units.append({"unit": unit, "url": self._unit_link(model.id, layer["id"], unit),
                          "image": A.image_url(best.get(f"feature_vis:{variant}"))})
        index = model.layer_ids.index(layer["id"])
        dream = A.pick(self.store.find(model.id, layer["id"], None, "deepdream")).get("deepdream")
        lid = layer["id"]
        return {
            "page": "layer", "title": f"{model.id}/{lid}", "model": model_brief(model),
            "layer": {**layer_brief(model, layer), "deepdream": A.image_url(dream)},
            "variant": variant,
            "variants": [{"name": v, "url": layer_url(model.id, lid, v, 1), "current": v == variant}
                         for v in A.GRID_VARIANTS],
            "page_number": page, "pages": pages, "page_size": GRID_PAGE_SIZE,
            "page_links": [{"page": p, "url": layer_url(model.id, lid, variant, p)} for p in range(1, pages + 1)],
            "prev_page": layer_url(model.id, lid, variant, page - 1) if page > 1 else None,
            "next_page": layer_url(model.id, lid, variant, page + 1) if page < pages else None,
            "built": sum(1 for u in units if u["image"]),
            "units": units,
            "prev_layer": layer_brief(model, model.layers[index - 1]) if index > 0 else None,
            "next_layer": layer_brief(model, model.layers[index + 1]) if index + 1 < len(model.layers) else None,
        }

    def unit(self, m: str, layer_name: str, unit_text: str | int) -> dict[str, Any]:
        model = self.catalog.model(m)
        layer = model.layer(layer_name)
        unit = model.unit(layer, unit_text)
        lid = layer["id"]
        best = A.pick(self.store.find(model.id, lid, unit))
        dream = A.pick(self.store.find(model.id, lid, None, "deepdream")).get("deepdream")
        fv = {v: A.view(best[f"feature_vis:{v}"]) for v in A.VARIANTS if f"feature_vis:{v}" in best}
        examples = best.get("dataset_examples")
        tuning = best.get("tuning")
        conn = best.get("connections")
        present = {k.split(":")[0] for k in best}
        prev, nxt = self._neighbours(model.id, layer, unit)
        return {
            "page": "unit", "title": f"{model.id}/{lid}:{unit}", "model": model_brief(model),
            "layer": layer_brief(model, layer), "unit": unit, "shorthand": f"{model.id}/{lid}:{unit}",
            "url": unit_url(model.id, lid, unit), "prev": prev, "next": nxt,
            "feature_vis": fv,
            "deepdream": A.view(dream) if dream else None,
            "dataset_examples": {**A.view(examples), **A.examples_view(examples)} if examples else None,
            "tuning": A.view(tuning) if tuning else None,
            "connections": {**A.view(conn), **self._connections(model, conn.meta)} if conn else None,
            "missing": [t for t in TECHNIQUES if t not in present and not (t == "deepdream" and dream)],
            "job": None,
        }

    def _connections(self, model: ModelView, meta: dict[str, Any]) -> dict[str, Any]:
        """Inputs and outputs as linked units with their feature-vis thumbnails, and classes."""
        def units(entries: Any) -> list[dict[str, Any]]:
            out = []
            for entry in (entries if isinstance(entries, list) else [])[:MAX_CONNECTIONS]:
                if not isinstance(entry, dict):
                    continue
                layer = model.find_layer(str(entry.get("layer", "")))
                unit = entry.get("unit")
                ok = layer is not None and isinstance(unit, int) and 0 <= unit < int(layer["channels"])
                lid = layer["id"] if layer is not None else str(entry.get("layer"))
                thumb = None
                if ok:
                    fv = A.pick(self.store.find(model.id, lid, unit, "feature_vis")).get("feature_vis:positive")
                    thumb = A.image_url(fv)
                out.append({"layer": lid, "unit": unit, "weight": entry.get("weight"),
                            "shorthand": f"{model.id}/{lid}:{unit}",
                            "url": self._unit_link(model.id, lid, unit) if ok else None, "image": thumb})
            return out
        classes = [c for c in meta.get("classes") or [] if isinstance(c, dict)]
        return {"method": meta.get("method"), "inputs": units(meta.get("inputs")),
                "outputs": units(meta.get("outputs")), "classes": classes[:MAX_CONNECTIONS]}
