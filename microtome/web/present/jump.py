"""The jump box: `resolve(catalog, query, model=None) -> {url, model, layer, unit}`.

Accepted: `M/L:U`, `M/L/U`, `M/L`, `M`, `L:U` and `L` (inside model `model`, or when only one
model has such a layer), a permalink (`/models/M/L/U`, with or without scheme and host), and
layer names as ids, module paths or aliases (Lucid's `mixed4c`). Unknown names raise
NotFound with suggestions written as whole queries, so each one is itself a jump.
"""

from __future__ import annotations

import re
from typing import Any

from microtome.errors import MicrotomeError, NotFound, close_names
from microtome.web.present.catalog import Catalog, ModelView
from microtome.web.present.links import layer_url, model_url, unit_url

EXAMPLE = "efficientnet_lite0/block10:5"


def _target(model: ModelView, layer: dict[str, Any] | None = None, unit_text: str | None = None) -> dict[str, Any]:
    if layer is None:
        return {"url": model_url(model.id), "model": model.id, "layer": None, "unit": None}
    if unit_text is None:
        return {"url": layer_url(model.id, layer["id"]), "model": model.id, "layer": layer["id"], "unit": None}
    unit = model.unit(layer, unit_text)
    return {"url": unit_url(model.id, layer["id"], unit), "model": model.id, "layer": layer["id"], "unit": unit}


def _model(catalog: Catalog, name: str, rest: str) -> ModelView:
    """The model `name`; on a typo, suggestions keep the rest of the query (`rest`)."""
    try:
        return catalog.model(name)
    except NotFound as exc:
        exc.suggestions = [s + rest for s in exc.suggestions]
        raise


def _bare_layer(catalog: Catalog, name: str, unit_text: str | None) -> dict[str, Any]:
    """`L` or `L:U` with no model given: the one model that has such a layer."""
    hits = catalog.layer_anywhere(name)
    tail = f":{unit_text}" if unit_text is not None else ""
    if len(hits) == 1:
        return _target(hits[0][0], hits[0][1], unit_text)
    if hits:
        options = [f"{m.id}/{layer['id']}{tail}" for m, layer in hits]
        raise NotFound(f"{name!r} is a layer of several models; say which: {', '.join(options[:6])}",
                       suggestions=options)
    near = [s + tail for s in catalog.near_layers(name)]
    near_models = close_names(name, catalog.model_ids(), n=3) if unit_text is None else []
    raise NotFound(f"no model or layer called {name!r}" + (f"; did you mean {', '.join(near_models + near)}?"
                                                           if near or near_models else f"; try e.g. {EXAMPLE}"),
                   suggestions=near_models + near)


def resolve(catalog: Catalog, query: str, model: str | None = None) -> dict[str, Any]:
    """Where `query` points; `model` is the page's model, for `L:U` and `L` typed inside it."""
    q = (query or "").strip()
    if not q:
        raise MicrotomeError(f"type a model, layer or unit, e.g. {EXAMPLE}")
    q = re.sub(r"^[a-z]+://[^/]*", "", q).split("?")[0].split("#")[0].strip("/")
    q = re.sub(r"\.json$", "", q)
    if q.startswith("models/"):
        q = q[len("models/"):]
    head, colon, unit_text = q.rpartition(":") if ":" in q else (q, "", None)
    parts = [p for p in head.split("/") if p]
    if unit_text is None and len(parts) == 3:
        parts, unit_text = parts[:2], parts[2]
    if not parts or len(parts) > 2 or (colon and not unit_text):
        raise NotFound(f"cannot read {query!r}: write MODEL/LAYER:UNIT, LAYER:UNIT, MODEL/LAYER or MODEL, "
                       f"e.g. {EXAMPLE}")
    tail = f":{unit_text}" if unit_text is not None else ""
    if len(parts) == 2:
        m = _model(catalog, parts[0], f"/{parts[1]}{tail}")
        try:
            layer = m.layer(parts[1])
        except NotFound as exc:
            exc.suggestions = [s + tail for s in exc.suggestions]
            raise
        return _target(m, layer, unit_text)
    name = parts[0]
    context = catalog.find_model(model) if model else None
    if unit_text is None:
        found = catalog.find_model(name) or catalog.find_model(name.lower())
        if found is not None:
            return _target(found)
    if context is not None:
        layer = context.find_layer(name)
        if layer is not None:
            return _target(context, layer, unit_text)
        if unit_text is not None:
            try:
                context.layer(name)
            except NotFound as exc:  # the context model's near layers, as whole queries
                exc.suggestions = [s + tail for s in exc.suggestions]
                raise
    return _bare_layer(catalog, name, unit_text)


def resolve_path(catalog: Catalog, model: str, layer: str | None = None,
                 unit: str | None = None) -> tuple[ModelView, dict[str, Any] | None, int | None]:
    """(model view, layer dict or None, unit or None) of a URL's segments; on a typo, the
    suggestions keep the rest of the path (`M/blok10/5` suggests `M/block10:5`)."""
    tail_layer = f"/{layer}" if layer is not None else ""
    tail_unit = f":{unit}" if unit is not None else ""
    try:
        view = catalog.model(model)
    except NotFound as exc:
        exc.suggestions = [s + tail_layer + tail_unit for s in exc.suggestions]
        raise
    if layer is None:
        return view, None, None
    try:
        found = view.layer(layer)
    except NotFound as exc:
        exc.suggestions = [s + tail_unit for s in exc.suggestions]
        raise
    return view, found, (view.unit(found, unit) if unit is not None else None)
