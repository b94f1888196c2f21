"""Blobs over HTTP: `serve(store, "<sha256>[.ext]") -> Response` with an immutable cache policy.

The name is checked against `^[0-9a-f]{64}(\\.[a-z0-9]{1,5})?$` before the store turns the sha
into a path (which it validates again), so no request can name a file outside `blobs/`. The
content type comes from the bytes themselves, not from the extension asked for.
"""

from __future__ import annotations

import re

from starlette.responses import FileResponse, Response

from microtome.errors import NotFound
from microtome.store import Store

NAME_RE = re.compile(r"([0-9a-f]{64})(\.[a-z0-9]{1,5})?")
CACHE = "public, max-age=31536000, immutable"  # content-addressed: a URL's bytes never change
INLINE_LIMIT = 4 << 20  # smaller blobs are answered from memory, larger ones streamed
HEADERS = {"Cache-Control": CACHE, "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox"}


def content_type(head: bytes) -> str:
    """The media type of a file from its first bytes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = head.lstrip()[:256].lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "image/svg+xml"
    if text.startswith((b"{", b"[")):
        return "application/json"
    return "application/octet-stream"


def serve(store: Store, name: str, if_none_match: str | None = None) -> Response:
    """The blob `name` (its sha256, optionally with an extension), or NotFound."""
    m = NAME_RE.fullmatch(name)
    if not m:
        raise NotFound(f"no blob {name[:80]!r}: a blob is named by its sha256 (64 hex digits), "
                       f"optionally with an extension such as .png")
    sha = m[1]
    etag = f'"{sha}"'
    path = store.blob_path(sha)  # NotFound if absent
    if if_none_match and etag in if_none_match:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE})
    size = path.stat().st_size
    if size > INLINE_LIMIT:
        with open(path, "rb") as f:
            kind = content_type(f.read(512))
        return FileResponse(path, media_type=kind, headers={**HEADERS, "ETag": etag})
    data = path.read_bytes()
    return Response(data, media_type=content_type(data[:512]), headers={**HEADERS, "ETag": etag})
