"""The web microscope: `create_app(store, ...) -> FastAPI`, every page also as `.json`.

Routes (routes.py): `/` models; `/models/M` layer graph; `/models/M/L` unit grid (`?variant=`,
`?page=`); `/models/M/L/U` unit page; `/jump?q=` the jump box; `/jobs/M/L/U.json` on-demand
render status; `/search?q=` units by label (search.py), `POST /search` units by photo;
`/models/M/L/U/circuit` a unit's circuit (circuit.py); `POST /models/M/L/U/notes` a note
(with the notes token); `/blobs/<sha256>[.ext]` images (immutable); `/static/...`. Each page is a view
function (views.py) of one shared `AppState` (state.py). User errors are `MicrotomeError`s
carrying their HTTP status; one handler renders them as a page or as
`{"error", "status", "suggestions"}`. The app never imports torch to serve a page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from microtome.errors import Busy, MicrotomeError
from microtome.pipeline.models import ModelService
from microtome.store import Store
from microtome.web.catalog import Registry
from microtome.web.inspect_jobs import InspectJobs
from microtome.web.photo import PhotoSearcher
from microtome.web.render_queue import JobFn, RenderQueue, default_job
from microtome.zoo.registry import registered_cards
from microtome.web.routes import endpoint, error_response, routes, wants_json
from microtome.web.state import AppState
from microtome.web.inspect_views import post_routes  # POST: its body is read by the view's own handler

STATIC_DIR = Path(__file__).parent / "static"
NO_PAGE = "no such page; pages are /, /models/MODEL, /models/MODEL/LAYER and /models/MODEL/LAYER/UNIT"


def _suspicious(scope: Scope) -> bool:
    """A path trying to leave its folder: dot segments, backslashes, NULs, encoded slashes or dots."""
    path = scope.get("path", "")
    raw = bytes(scope.get("raw_path") or b"").lower()
    segments = path.split("/")
    return (".." in segments or "." in segments or "\\" in path or "\x00" in path
            or any(bad in raw for bad in (b"%2f", b"%5c", b"%00", b"%2e")))


class RejectTraversal:
    """Answers 404 to suspicious paths before any route (or file) is looked at."""

    def __init__(self, app: ASGIApp, state: AppState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _suspicious(scope):
            request = Request(scope)
            response = error_response(request, self.state.renderer, 404, f"no such page {request.url.path!r}")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def on_error(request: Request, exc: Exception) -> Response:
    """The one error handler: a `MicrotomeError` (its status, message and suggestions) or an
    HTTP error of the router (unknown path: 404, wrong method: 405), as a page or as JSON."""
    state: AppState = request.app.state.microtome
    if isinstance(exc, MicrotomeError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
        return error_response(request, state.renderer, exc.status, exc.message, exc.suggestions, headers)
    assert isinstance(exc, StarletteHTTPException)
    message = NO_PAGE if exc.status_code == 404 else str(exc.detail)
    return error_response(request, state.renderer, exc.status_code, message,
                          headers=getattr(exc, "headers", None))


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
    app.state.microtome, app.state.owns_store = state, owns
    app.state.store, app.state.catalog, app.state.queue = st, state.catalog, queue
    app.add_exception_handler(MicrotomeError, on_error)
    app.add_exception_handler(StarletteHTTPException, on_error)
    app.add_middleware(RejectTraversal, state=state)
    for route in routes():
        app.add_api_route(route.path, endpoint(route, state), methods=list(route.methods), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for path, handler in post_routes(state, wants_json):  # inspect a photo: POST the form
        app.add_api_route(path, handler, methods=["POST"], include_in_schema=False)
    return app


__all__ = ["create_app", "wants_json"]
