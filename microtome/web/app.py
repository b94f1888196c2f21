"""The web microscope: `create_app(store, ...) -> FastAPI`, every page also as `.json`.

Routes: `/` models; `/models/M` layer graph; `/models/M/L` unit grid (`?variant=`, `?page=`);
`/models/M/L/U` unit page; `/jump?q=` the jump box; `/jobs/M/L/U.json` on-demand render status;
`/blobs/<sha256>[.ext]` images (immutable); `/static/...`. Each page route builds one data dict
(pages.py), then renders it as HTML or returns it as JSON. User errors are `MicrotomeError`s
carrying their HTTP status; one handler renders them as a page or as
`{"error", "status", "suggestions"}`. The app never imports torch to serve a page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from microtome.errors import MicrotomeError, NotFound
from microtome.store import Store
from microtome.web import blobs
from microtome.web.cache import StoreCache
from microtome.web.catalog import Catalog, ModelView, Registry
from microtome.web.jump import resolve
from microtome.web.pages import Pages, layer_url, unit_url
from microtome.web.registry import load_registry
from microtome.web.render_queue import JobFn, QueueFull, RenderQueue, default_job
from microtome.web.templating import Renderer, to_json

STATIC_DIR = Path(__file__).parent / "static"
TITLES = {400: "bad request", 404: "not found", 405: "method not allowed", 500: "server error",
          503: "busy"}


def _split_json(segment: str) -> tuple[str, bool]:
    return (segment[:-5], True) if segment.endswith(".json") else (segment, False)


def wants_json(request: Request) -> bool:
    """A `.json` URL, or an Accept header asking for JSON rather than HTML."""
    if request.url.path.endswith(".json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _suspicious(scope: Scope) -> bool:
    """A path trying to leave its folder: dot segments, backslashes, NULs, encoded slashes or dots."""
    path = scope.get("path", "")
    raw = bytes(scope.get("raw_path") or b"").lower()
    segments = path.split("/")
    return (".." in segments or "." in segments or "\\" in path or "\x00" in path
            or any(bad in raw for bad in (b"%2f", b"%5c", b"%00", b"%2e")))


class _RejectTraversal:
    """Answers 404 to suspicious paths before any route (or file) is looked at."""

    def __init__(self, app: ASGIApp, reject: Callable[[Request], Response]):
        self.app = app
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _suspicious(scope):
            await self.reject(Request(scope))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(store: str | Path | Store, render_job: JobFn | None = None, queue_size: int = 64, *,
               registry: Registry | None = load_registry, on_demand: bool = True,
               render_techniques: tuple[str, ...] = ("feature_vis",)) -> FastAPI:
    """The app over an existing store (a path is opened, and closed at shutdown).

    `render_job(model, layer, unit)` computes and stores a unit's artifacts on demand (default:
    the build pipeline's `build_unit`, quick preset, CPU); a unit page missing any of
    `render_techniques` queues it. `registry() -> {id: summary}` lists registered models that
    are browsable before they are built (None: only the store's). `on_demand=False` serves
    only what is built."""
    owns = not isinstance(store, Store)
    st = Store(store, create=False) if owns else store
    catalog = Catalog(st, registry)
    pages = Pages(st, catalog)
    renderer = Renderer()
    page_cache = StoreCache(st.root, maxsize=512)
    queue = RenderQueue(render_job or default_job(st), queue_size) if on_demand else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog.preload()
        if queue is not None:
            queue.start()
        try:
            yield
        finally:
            if queue is not None:
                await anyio.to_thread.run_sync(queue.stop)
            if owns:
                st.close()

    app = FastAPI(title="microtome", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.catalog, app.state.queue = st, catalog, queue

    # -- responses --

    def error_response(request: Request, status: int, message: str, suggestions: Sequence[str] = (),
                       headers: dict[str, str] | None = None) -> Response:
        data = {"error": message, "status": status, "suggestions": list(suggestions)}
        if wants_json(request):
            return Response(to_json(data), status, headers, media_type="application/json")
        page = {**data, "page": "error", "title": TITLES.get(status, "error")}
        if headers and "Retry-After" in headers:  # the page retries by itself
            page["retry_after"] = headers["Retry-After"]
        return HTMLResponse(renderer.html("error.html", page, status=status), status, headers)

    def respond(request: Request, template: str, key: tuple, build: Callable[[], dict[str, Any]],
                as_json: bool) -> Response:
        """The page `key` as HTML or JSON from `build()`'s data, cached until the store changes
        (pages showing a render job are not cached: they change as the job runs)."""
        as_json = as_json or wants_json(request)

        def compute() -> tuple[bytes, bool]:
            data = build()
            body = to_json(data) if as_json else renderer.html(template, data).encode()
            return body, data.get("job") is None
        body, _ = page_cache.get((*key, as_json), compute, keep=lambda value: value[1])
        return Response(body, media_type="application/json" if as_json else "text/html; charset=utf-8")

    def redirect(url: str, as_json: bool) -> Response:
        path, sep, query = url.partition("?")
        return RedirectResponse(path + (".json" if as_json else "") + sep + query, status_code=302)

    def resolve_path(model: str, layer: str | None = None,
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

    async def ready(model: str | None) -> None:
        """Load the registry (off the event loop) if answering about `model` needs it."""
        if catalog.needs_registry(model):
            await anyio.to_thread.run_sync(catalog.registry)

    @app.exception_handler(MicrotomeError)
    async def on_user_error(request: Request, exc: MicrotomeError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFull) else None
        return error_response(request, exc.status, exc.message, exc.suggestions, headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "no such page; pages are /, /models/MODEL, /models/MODEL/LAYER and /models/MODEL/LAYER/UNIT" \
            if exc.status_code == 404 else str(exc.detail)
        return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def on_bad_request(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 400, f"bad request: {exc.errors()[0].get('msg', exc)}")

    def not_found(request: Request) -> Response:
        return error_response(request, 404, f"no such page {request.url.path!r}")

    app.add_middleware(_RejectTraversal, reject=not_found)

    # -- pages --

    @app.get("/")
    @app.get("/index.json")
    @app.get("/.json")
    async def index(request: Request) -> Response:
        await ready(None)
        return respond(request, "index.html", ("index",), lambda: {**pages.index(), "url": "/"},
                       request.url.path != "/")

    @app.get("/models")
    async def models_root() -> Response:
        return RedirectResponse("/", status_code=302)

    @app.get("/models/{model}")
    async def model_page(request: Request, model: str) -> Response:
        name, as_json = _split_json(model)
        await ready(name)
        view = catalog.model(name)
        if view.id != name:
            return redirect(f"/models/{view.id}", as_json)
        return respond(request, "model.html", ("model", view.id),
                       lambda: {**pages.model(view.id), "url": f"/models/{view.id}"}, as_json)

    @app.get("/models/{model}/{layer}")
    async def layer_page(request: Request, model: str, layer: str, variant: str = "positive",
                         page: str = "1") -> Response:
        name, as_json = _split_json(layer)
        await ready(model)
        view, found, _ = resolve_path(model, name)
        if not page.isdigit():
            raise MicrotomeError(f"page must be a number from 1, got {page!r}")
        if (view.id, found["id"]) != (model, name):
            return redirect(layer_url(view.id, found["id"], variant, int(page)), as_json)
        url = layer_url(view.id, found["id"], variant, int(page))
        return respond(request, "layer.html", ("layer", url),
                       lambda: {**pages.layer(view.id, found["id"], variant, int(page)), "url": url}, as_json)

    @app.get("/models/{model}/{layer}/{unit}")
    async def unit_page(request: Request, model: str, layer: str, unit: str) -> Response:
        text, as_json = _split_json(unit)
        await ready(model)
        view, found, index = resolve_path(model, layer, text)
        if (view.id, found["id"], str(index)) != (model, layer, text):
            return redirect(unit_url(view.id, found["id"], index), as_json)
        key = (view.id, found["id"], index)

        def build() -> dict[str, Any]:
            data = pages.unit(*key)
            if queue is not None and any(t in data["missing"] for t in render_techniques):
                queue.submit(key)  # QueueFull: 503 with Retry-After
                data["job"] = queue.status(key)
            return data
        return respond(request, "unit.html", ("unit", *key), build, as_json)

    @app.get("/jobs/{model}/{layer}/{unit}")
    async def job_status(model: str, layer: str, unit: str) -> Response:
        text, _ = _split_json(unit)
        await ready(model)
        view, found, index = resolve_path(model, layer, text)
        key = (view.id, found["id"], index)
        status = queue.status(key) if queue is not None else {"state": "none", "position": None}
        return Response(to_json(status), media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/jump")
    @app.get("/jump.json")
    async def jump(request: Request, q: str = "", m: str = "") -> Response:
        await ready(None)
        target = {"query": q, **resolve(catalog, q, m or None)}
        if wants_json(request):
            return Response(to_json(target), media_type="application/json")
        return RedirectResponse(target["url"], status_code=302)

    @app.get("/blobs/{name}")
    async def blob(request: Request, name: str) -> Response:
        return blobs.serve(st, name, request.headers.get("if-none-match"))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


__all__ = ["create_app", "wants_json"]
