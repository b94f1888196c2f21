"""How a view's answer is sent: `endpoint(route, state, renderer, twin) -> request handler`.

The handler passes the view the URL's path values, the form's fields (a POST), the query values
and the headers the view names; it renders the view's data with the route's template or as
JSON (the `.json` twin, or an Accept header asking for JSON), and keeps rendered pages until
the store changes (pages showing a render job are not kept: they change as it runs). A
`Redirect` is a redirect (or its JSON), an `Accepted` a 202 with its page or its JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from microtome.web.present.state import AppState
from microtome.web.present.templating import Renderer, to_json
from microtome.web.present.values import Accepted, Redirect
from microtome.web.server.forms import parse_form, read_body
from microtome.web.server.routes import Route

JSON = "application/json"
HTML = "text/html; charset=utf-8"
HEADER_VALUES = {"if_none_match": "if-none-match", "authorization": "authorization"}  # view parameter -> header


def wants_json(request: Request) -> bool:
    """A `.json` URL, or an Accept header asking for JSON rather than HTML."""
    if request.url.path.endswith(".json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def arguments(route: Route, request: Request, form: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The view's keyword arguments: path values, then form fields, then query values, and the
    headers the view names (HEADER_VALUES)."""
    values: dict[str, Any] = dict(request.path_params)
    for name in route.query_names:
        if name in HEADER_VALUES:
            values[name] = request.headers.get(HEADER_VALUES[name])
        elif name not in values and form is not None and name in form:
            values[name] = form[name]
        elif name not in values and name in request.query_params:
            values[name] = request.query_params[name]
    return values


def _answer(route: Route, state: AppState, renderer: Renderer, values: dict[str, Any],
            as_json: bool) -> tuple[Any, bool]:
    """(the view's answer, rendered when it is page data; whether it may be kept)."""
    result = route.view(state, **values)
    if isinstance(result, (Redirect, Accepted, Response)):
        return result, False
    if as_json or route.template is None:
        return (to_json(result), JSON), result.get("job") is None
    return (renderer.html(route.template, result).encode(), HTML), result.get("job") is None


def _send(result: Any, request: Request, route: Route, renderer: Renderer, twin: bool) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, Redirect):
        if result.data is not None and wants_json(request):
            return Response(to_json(result.data), result.json_status, media_type=JSON)
        path, sep, query = result.url.partition("?")
        target = path + (".json" if twin and result.data is None else "") + sep + query
        return RedirectResponse(target, status_code=result.status)
    if isinstance(result, Accepted):
        headers = {**route.headers, "Location": result.url}
        if wants_json(request) or route.template is None:
            return Response(to_json(result.data), result.status, headers, media_type=JSON)
        return Response(renderer.html(route.template, result.page), result.status, headers, media_type=HTML)
    body, media_type = result
    return Response(body, media_type=media_type, headers=dict(route.headers) or None)


def endpoint(route: Route, state: AppState, renderer: Renderer, twin: bool = False
             ) -> Callable[[Request], Awaitable[Response]]:
    """The request handler of `route` over `state`; `twin`: it answers the route's `.json` twin."""
    async def handle(request: Request) -> Response:
        form = None
        if route.body_limit:
            body = await read_body(request, route.body_limit)
            form = parse_form(request.headers.get("content-type", ""), body)
        values = arguments(route, request, form)
        if route.registry:
            await state.ready(values.get("model"))
        as_json = route.template is None or wants_json(request)
        if route.threaded:
            result, _ = await anyio.to_thread.run_sync(_answer, route, state, renderer, values, as_json)
        elif route.cached and state.cache is not None:
            key = (route.path, tuple(values.items()), as_json)
            result, _ = state.cache.get(key, lambda: _answer(route, state, renderer, values, as_json),
                                        keep=lambda v: v[1])
        else:
            result, _ = _answer(route, state, renderer, values, as_json)
        return _send(result, request, route, renderer, twin)
    handle.__name__ = getattr(route.view, "__name__", "view")
    return handle
