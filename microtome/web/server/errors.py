"""Errors as pages or JSON: `error_response(request, renderer, status, message, suggestions)`.

User errors are `MicrotomeError`s carrying their HTTP status (a busy worker's carry
`retry_after`, sent as Retry-After); the router's own (unknown path 404, wrong method 405) are
Starlette's. `on_error` is the app's one handler for both; `RejectTraversal` answers 404 to a
path trying to leave its folder before any route or file is looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from microtome.errors import MicrotomeError
from microtome.web.present.templating import Renderer, to_json
from microtome.web.server.endpoint import JSON, wants_json

TITLES = {400: "bad request", 403: "forbidden", 404: "not found", 405: "method not allowed", 409: "conflict",
          413: "too large", 415: "unsupported media type", 500: "server error", 503: "busy"}
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

    def __init__(self, app: ASGIApp, renderer: Renderer):
        self.app = app
        self.renderer = renderer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _suspicious(scope):
            request = Request(scope)
            response = error_response(request, self.renderer, 404, f"no such page {request.url.path!r}")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def on_error(request: Request, exc: Exception) -> Response:
    """The one error handler: a `MicrotomeError` (its status, message and suggestions) or an
    HTTP error of the router (unknown path: 404, wrong method: 405), as a page or as JSON."""
    renderer: Renderer = request.app.state.renderer
    if isinstance(exc, MicrotomeError):
        retry = getattr(exc, "retry_after", None)  # a busy worker: 503 with Retry-After
        headers = {"Retry-After": str(retry)} if retry is not None else None
        return error_response(request, renderer, exc.status, exc.message, exc.suggestions, headers)
    assert isinstance(exc, StarletteHTTPException)
    message = NO_PAGE if exc.status_code == 404 else str(exc.detail)
    return error_response(request, renderer, exc.status_code, message,
                          headers=getattr(exc, "headers", None))


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
