"""The URL table: `routes() -> [Route]`, one declaration per page, POST pages included.

A route with `twin` answers at its path and at its `.json` twin, both generated from the one
declaration (`Route.paths()`): `/` -> `/index.json` and `/.json`; `/search` -> `/search.json`;
`/models/{model}` -> `/models/{model}.json`. A route with `pages` is part of the static export:
`pages(state)` lists the path and query values of each page the export writes (export.py walks
the table). How an answer is sent (HTML, JSON, redirect, 202, error) is endpoint.py's.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from microtome.web.pages import atlas, circuit, inspect_views, search, views
from microtome.web.present.state import AppState
from microtome.web.present.values import MAX_UPLOAD
from microtome.web.server import site

MAX_NOTE_FORM = 64 << 10  # a note is at most 4 KB of text (store.notes.MAX_NOTE_BYTES), escaped in a form
NO_STORE = {"Cache-Control": "no-store"}
Pages = Callable[[AppState], Iterable[Mapping[str, str]]]


@dataclass(frozen=True)
class Route:
    """`path` (Starlette syntax) answered by `view`. `template` renders its data as HTML (None:
    JSON only); `cached` keeps the answer until the store changes; `twin` adds the `.json` twin;
    `registry` loads the model registry first if the answer needs it; `pages` lists the pages
    of a static export (None: the export has none: POST, on-demand, server-only pages)."""

    path: str
    view: Callable[..., Any]
    template: str | None = None
    cached: bool = True
    twin: bool = True
    registry: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    methods: tuple[str, ...] = ("GET",)
    body_limit: int = 0  # > 0: read the body (a form, at most this many bytes) and pass its fields
    threaded: bool = False  # run the view off the event loop (it computes or reads a store-wide index)
    pages: Pages | None = None

    def paths(self) -> list[tuple[str, bool]]:
        """(URL path, is the `.json` twin), twins first: a trailing `{value}` would take `.json` in."""
        if not self.twin:
            return [(self.path, False)]
        twins = ["/index.json", "/.json"] if self.path == "/" else [self.path + ".json"]
        return [*((p, True) for p in twins), (self.path, False)]

    @cached_property
    def query_names(self) -> tuple[str, ...]:
        """The view's keyword parameters besides the state: path, query, form or header values."""
        return tuple(inspect.signature(self.view).parameters)[1:]

    @cached_property
    def path_names(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.path))


def routes() -> list[Route]:
    """Every page of the web microscope, in matching order (`/static` is mounted apart)."""
    unit_path = "/models/{model}/{layer}/{unit}"
    inspect_path = "/models/{model}/inspect"
    return [
        Route("/", views.index, "index.html", pages=site.one),
        Route("/models", views.models_root, cached=False, twin=False, registry=False),
        Route(inspect_path, inspect_views.form, "inspect.html", cached=False),
        Route(inspect_path, inspect_views.start, "inspect.html", cached=False, methods=("POST",),
              body_limit=MAX_UPLOAD, threaded=True, headers=NO_STORE),
        Route(inspect_path + "/{job}", inspect_views.job, "inspect.html", cached=False, headers=NO_STORE),
        Route(inspect_path + "/{job}/{name}", inspect_views.file, cached=False, twin=False),
        Route("/models/{model}", views.model, "model.html", pages=site.models),
        Route("/models/{model}/{layer}", views.layer, "layer.html", pages=site.grids),
        *atlas_routes(),
        Route(unit_path, views.unit, "unit.html", pages=site.units),
        Route("/jobs/{model}/{layer}/{unit}", views.job, cached=False, headers=NO_STORE),
        Route("/jump", views.jump, cached=False),
        Route("/search", search.search, "search.html", cached=False, threaded=True,  # reads a store-wide index
              pages=site.one),
        Route("/search", search.search_photo, "search.html", cached=False, registry=False, methods=("POST",),
              body_limit=MAX_UPLOAD, threaded=True, headers=NO_STORE),
        Route(unit_path + "/circuit", circuit.circuit, "circuit.html", pages=site.circuits),
        Route(unit_path + "/notes", views.add_note, cached=False, twin=False, methods=("POST",),
              body_limit=MAX_NOTE_FORM),
        Route("/blobs/{name}", views.blob, cached=False, twin=False, registry=False),
    ]


def atlas_routes() -> list[Route]:
    """The activation atlas's pages (pages/atlas.py), matched before unit pages."""
    path = "/models/{model}/{layer}/atlas"
    return [Route(path, atlas.atlas, "atlas.html", pages=site.atlases),
            Route(path + "/class/{klass}", atlas.class_atlas, "atlas.html", pages=site.class_atlases),
            Route(path + "/compare/{a}/{b}", atlas.compare, "atlas_compare.html"),
            Route(path + "/{level}/{x}/{y}", atlas.cell, "atlas_cell.html", pages=site.atlas_cells)]
