"""The URL table: `routes() -> [Route(path, view, template)]`, and how a view's answer is sent.

`endpoint(route, state)` turns a view (views.py) into a request handler: it passes the URL's
path values (a final `.json` cut off: the twin) and the query values the view names, renders
the view's data with the route's template or as JSON (a `.json` URL, or an Accept header
asking for JSON), and keeps rendered pages until the store changes (pages showing a render
job are not kept: they change as it runs). Errors are `MicrotomeError`s carrying their HTTP
status (or Starlette's own); `error_response` renders them as a page or as
`{"error", "status", "suggestions"}`.
"""

from __future__ import annotations

import inspect
import re

import anyio
from functools import cached_property
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from microtome.web.pages import atlas, circuit, search, views
from microtome.web.server.forms import MB, parse_form, read_body
from microtome.web.present.state import AppState
from microtome.web.server.templating import Renderer, to_json
from microtome.web.pages.views import Redirect
from microtome.web.pages import inspect_views

JSON = "application/json"
MAX_UPLOAD = 10 * MB  # a photo to search by
MAX_NOTE_FORM = 64 << 10  # a note is at most 4 KB of text (store.notes.MAX_NOTE_BYTES), escaped in a form
NO_STORE = {"Cache-Control": "no-store"}
TITLES = {400: "bad request", 403: "forbidden", 404: "not found", 405: "method not allowed", 409: "conflict",
          413: "too large", 415: "unsupported media type", 500: "server error", 503: "busy"}
HEADER_VALUES = {"if_none_match": "if-none-match", "authorization": "authorization"}  # view parameter -> header


@dataclass(frozen=True)
class Route:
    """`path` (Starlette syntax) answered by `view`. `template` renders its data as HTML (None:
    JSON only); `cached` keeps the answer until the store changes; `twin` lets the last path
    value end in `.json`; `registry` loads the model registry first if the answer needs it."""

    path: str
    view: Callable[..., Any]
    template: str | None = None
    cached: bool = True
    twin: bool = True
    registry: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    methods: tuple[str, ...] = ("GET",)
    body_limit: int = 0  # > 0: read the body (a form, at most this many bytes) and pass its fields
    threaded: bool = False  # run the view off the event loop (it computes: search by photo)

    @cached_property
    def last_value(self) -> str | None:
        """The path value that a `.json` suffix ends (None: the path has no trailing value)."""
        m = re.search(r"\{(\w+)\}$", self.path)
        return m[1] if m else None

    @cached_property
    def query_names(self) -> tuple[str, ...]:
        """The view's keyword parameters besides the state: path, query or header values."""
        return tuple(inspect.signature(self.view).parameters)[1:]


def routes() -> list[Route]:
    """Every page of the web microscope, in matching order (`/static` is mounted apart)."""
    unit_path = "/models/{model}/{layer}/{unit}"
    return [
        Route("/", views.index, "index.html"),
        Route("/index.json", views.index, "index.html"),
        Route("/.json", views.index, "index.html"),
        Route("/models", views.models_root, cached=False, registry=False),
        Route("/models/{model}/inspect", inspect_views.form, "inspect.html", cached=False),
        Route("/models/{model}/inspect.json", inspect_views.form, "inspect.html", cached=False),
        Route("/models/{model}/inspect/{job}", inspect_views.job, "inspect.html", cached=False, headers=NO_STORE),
        Route("/models/{model}/inspect/{job}/{name}", inspect_views.file, cached=False, twin=False),
        Route("/models/{model}", views.model, "model.html"),
        Route("/models/{model}/{layer}", views.layer, "layer.html"),
        *atlas_routes(),
        Route("/models/{model}/{layer}/{unit}", views.unit, "unit.html"),
        Route("/jobs/{model}/{layer}/{unit}", views.job, cached=False, headers=NO_STORE),
        Route("/jump", views.jump, cached=False),
        Route("/jump.json", views.jump, cached=False),
        *(Route(path, search.search, "search.html", cached=False, threaded=True)  # reads a store-wide index
          for path in ("/search", "/search.json")),
        *(Route(path, search.search_photo, "search.html", cached=False, registry=False, methods=("POST",),
                body_limit=MAX_UPLOAD, threaded=True, headers=NO_STORE) for path in ("/search", "/search.json")),
        Route(unit_path + "/circuit", circuit.circuit, "circuit.html"),
        Route(unit_path + "/circuit.json", circuit.circuit, "circuit.html"),
        Route(unit_path + "/notes", views.add_note, cached=False, methods=("POST",), body_limit=MAX_NOTE_FORM),
        Route("/blobs/{name}", views.blob, cached=False, twin=False, registry=False),
    ]


def atlas_routes() -> list[Route]:
    """The activation atlas's pages (web/atlas.py), matched before unit pages."""
    path = "/models/{model}/{layer}/atlas"
    return [Route(path, atlas.atlas, "atlas.html"), Route(path + ".json", atlas.atlas, "atlas.html"),
            Route(path + "/class/{klass}", atlas.class_atlas, "atlas.html"),
            Route(path + "/compare/{a}/{b}", atlas.compare, "atlas_compare.html"),
            Route(path + "/{level}/{x}/{y}", atlas.cell, "atlas_cell.html")]


def wants_json(request: Request) -> bool:
    """A `.json` URL, or an Accept header asking for JSON rather than HTML."""
    if request.url.path.endswith(".json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def arguments(route: Route, request: Request, form: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """(the view's keyword arguments, whether the path asked for the `.json` twin): path values,
    then form fields, then query values, and the headers the view names (HEADER_VALUES)."""
    values: dict[str, Any] = dict(request.path_params)
    suffix = route.path.endswith(".json")
    last = route.last_value
    if route.twin and last is not None and str(values[last]).endswith(".json"):
        values[last], suffix = str(values[last])[:-5], True
    for name in route.query_names:
        if name in HEADER_VALUES:
            values[name] = request.headers.get(HEADER_VALUES[name])
        elif name not in values and form is not None and name in form:
            values[name] = form[name]
        elif name not in values and name in request.query_params:
            values[name] = request.query_params[name]
    return values, suffix


def _answer(route: Route, state: AppState, values: dict[str, Any], as_json: bool) -> tuple[Any, bool]:
    """(the view's answer, rendered when it is page data; whether it may be kept)."""
    result = route.view(state, **values)
    if isinstance(result, (Redirect, Response)):
        return result, False
    if as_json or route.template is None:
        return (to_json(result), JSON), result.get("job") is None
    return (state.renderer.html(route.template, result).encode(), "text/html; charset=utf-8"), \
        result.get("job") is None


def _send(result: Any, request: Request, route: Route, suffix: bool) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, Redirect):
        if result.data is not None and wants_json(request):
            return Response(to_json(result.data), result.json_status, media_type=JSON)
        path, sep, query = result.url.partition("?")
        target = path + (".json" if suffix and result.data is None else "") + sep + query
        return RedirectResponse(target, status_code=result.status)
    body, media_type = result
    return Response(body, media_type=media_type, headers=dict(route.headers) or None)


def endpoint(route: Route, state: AppState) -> Callable[[Request], Awaitable[Response]]:
    """The request handler of `route` over `state`."""
    async def handle(request: Request) -> Response:
        form = None
        if route.body_limit:
            body = await read_body(request, route.body_limit)
            form = parse_form(request.headers.get("content-type", ""), body)
        values, suffix = arguments(route, request, form)
        if route.registry:
            await state.ready(values.get("model"))
        as_json = route.template is None or wants_json(request)
        if route.threaded:
            result, _ = await anyio.to_thread.run_sync(_answer, route, state, values, as_json)
        elif route.cached and state.cache is not None:
            key = (route.path, tuple(values.items()), as_json)
            result, _ = state.cache.get(key, lambda: _answer(route, state, values, as_json), keep=lambda v: v[1])
        else:
            result, _ = _answer(route, state, values, as_json)
        return _send(result, request, route, suffix)
    handle.__name__ = getattr(route.view, "__name__", "view")
    return handle


def error_response(request: Request, renderer: Renderer, status: int, message: str,
                   suggestions: Sequence[str] = (), headers: dict[str, str] | None = None) -> Response:
    """An error as JSON (when asked for) or as the error page, with its status."""
    data = {"error": message, "status": status, "suggestions": list(suggestions)}
    if wants_json(request):
        return Response(to_json(data), status, headers, media_type=JSON)
    page = {**data, "page": "error", "title": TITLES.get(status, "error")}
    if headers and "Retry-After" in headers:  # the page retries by itself
        page["retry_after"] = headers["Retry-After"]
    return HTMLResponse(renderer.html("error.html", page, status=status), status, headers)
