"""The web microscope: `create_app(store, ...) -> FastAPI`, every page also as `.json`.

Routes (routes.py, one table; each page also at its `.json` twin): `/` models; `/models/M`
layer graph; `/models/M/L` unit grid (`?variant=`, `?page=`); `/models/M/L/U` unit page;
`/jump?q=` the jump box; `/jobs/M/L/U.json` on-demand render status; `/search?q=` units by
label (search.py), `POST /search` units by photo;
`/models/M/L/U/circuit` a unit's circuit (circuit.py); `POST /models/M/L/U/notes` a note
(with the notes token); `/models/M/inspect` (and `POST`) inspect a photo; `/models/M/L/atlas`
the activation atlas; `/blobs/<sha256>[.ext]` images (immutable); `/static/...`. Each page is a
view function (pages/) of one shared `AppState` (present/state.py). User errors are
`MicrotomeError`s carrying their HTTP status; one handler (errors.py) renders them as a page or
as `{"error", "status", "suggestions"}`. The app never imports torch to serve a page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from microtome.errors import MicrotomeError
from microtome.pipeline.models import ModelService
from microtome.store import Store
from microtome.web.jobs.inspect_jobs import InspectJobs
from microtome.web.jobs.photo import PhotoSearcher
from microtome.web.jobs.render_queue import JobFn, RenderQueue, default_job
from microtome.web.present.catalog import Registry
from microtome.web.present.state import AppState
from microtome.web.present.templating import STATIC_DIR
from microtome.web.server.endpoint import endpoint
from microtome.web.server.errors import RejectTraversal, on_error
from microtome.web.server.routes import routes
from microtome.zoo.registry import registered_cards


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model registry in the background, run the render queue, close an owned store."""
    state: AppState = app.state.microtome
    state.catalog.preload()
    if state.queue is not None:
        state.queue.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(state.inspector.stop)
        if state.queue is not None:
            await anyio.to_thread.run_sync(state.queue.stop)
        if app.state.owns_store:
            state.store.close()


def create_app(store: str | Path | Store, render_job: JobFn | None = None, queue_size: int = 64, *,
               registry: Registry | None = registered_cards, on_demand: bool = True,
               render_techniques: tuple[str, ...] | None = None, notes_token: str | None = None,
               photo: PhotoSearcher | None = None) -> FastAPI:
    """The app over an existing store (a path is opened, and closed at shutdown).

    `render_job(model, layer, unit)` computes and stores a unit's artifacts on demand (default:
    the build pipeline's `build_unit`, quick preset, CPU); a unit page missing any of
    `render_techniques` (default: the techniques the registry declares `on_demand`) queues it.
    `registry() -> {id: card JSON}` lists registered models that are browsable before they are
    built (None: only the store's). `on_demand=False` serves only what is built. Rendering,
    photo search and inspection load models from one `ModelService` over the store."""
    owns = not isinstance(store, Store)
    st = Store(store, create=False) if owns else store
    models = ModelService(st)
    queue = RenderQueue(render_job or default_job(st, models), queue_size) if on_demand else None
    state = AppState.over(st, registry, queue=queue, render_techniques=render_techniques, notes_token=notes_token,
                          photo=photo or PhotoSearcher(models=models), inspector=InspectJobs(models=models))
    app = FastAPI(title="microtome", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    renderer = state.renderer
    app.state.microtome, app.state.owns_store, app.state.renderer = state, owns, renderer
    app.state.store, app.state.catalog, app.state.queue = st, state.catalog, queue
    app.add_exception_handler(MicrotomeError, on_error)
    app.add_exception_handler(StarletteHTTPException, on_error)
    app.add_middleware(RejectTraversal, renderer=renderer)
    for route in routes():
        for path, twin in route.paths():
            app.add_api_route(path, endpoint(route, state, renderer, twin), methods=list(route.methods),
                              include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


__all__ = ["create_app"]
