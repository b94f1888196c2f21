"""Request bodies in memory: `read_body(request, limit) -> bytes`, `parse_form(content_type, body) -> {name: value}`.

A body over `limit` bytes is refused (413) from its Content-Length before anything is read,
and again while reading (a client may omit the header, or lie). Forms are parsed here, from
the bytes in memory, rather than by a multipart library that spools large parts to temporary
files: an upload is never written to disk. A value is a `str`, or for a file part `Upload`
(its bytes, file name and declared type).
"""

from __future__ import annotations

from email.message import Message
from urllib.parse import parse_qsl

from starlette.requests import Request

from microtome.errors import MicrotomeError
from microtome.web.present.values import MB, Upload

FormValue = str | Upload


def too_large(limit: int, size: int | None = None) -> MicrotomeError:
    got = f" (this one is {size / MB:.1f} MB)" if size is not None else ""
    return MicrotomeError(f"the request body is too large: at most {limit / MB:g} MB{got}", status=413)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (MicrotomeError 413 otherwise), kept in memory."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise MicrotomeError(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        if int(declared) > limit:
            raise too_large(limit, int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _params(header: str, value: str) -> Message:
    msg = Message()
    msg[header] = value
    return msg


def parse_form(content_type: str, body: bytes) -> dict[str, FormValue]:
    """The fields of a urlencoded or multipart form (the first value of a repeated name)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MicrotomeError(f"cannot read the form: {exc}") from None
        out: dict[str, FormValue] = {}
        for name, value in pairs:
            out.setdefault(name, value)
        return out
    if kind == "multipart/form-data":
        boundary = _params("content-type", content_type).get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise MicrotomeError("a multipart form needs a boundary in its Content-Type")
        return _multipart(body, boundary.encode("latin-1"))
    raise MicrotomeError(f"send a form (multipart/form-data or application/x-www-form-urlencoded), "
                         f"not {kind or 'a body without a Content-Type'}", status=415)


def _multipart(body: bytes, boundary: bytes) -> dict[str, FormValue]:
    """Parts between `--boundary` lines: headers, a blank line, the content (RFC 7578)."""
    delimiter = b"--" + boundary
    out: dict[str, FormValue] = {}
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise MicrotomeError("cannot read the multipart form: no parts between its boundaries")
    for piece in pieces[1:-1]:  # before the first: preamble; after the last ("--"): epilogue
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        head, sep, content = piece.partition(b"\r\n\r\n")
        if not sep:
            raise MicrotomeError("cannot read the multipart form: a part has no header")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = _params("content-disposition", headers.get("content-disposition", ""))
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in out:
            continue
        filename = disposition.get_param("filename", header="content-disposition")
        if filename is not None:
            out[name] = Upload(content, str(filename), headers.get("content-type", ""))
        else:
            out[name] = content.decode("utf-8", errors="replace")
    return out
