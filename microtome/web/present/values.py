"""What a view exchanges with the server besides page data (a JSON-ready dict): `Upload` in,
`Redirect` or `Accepted` out. Views never see a request; the server (server/endpoint.py) turns
a form's file into an `Upload` and these answers into responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MB = 1 << 20
MAX_UPLOAD = 10 * MB  # a photo to search by or to inspect

Data = dict[str, Any]


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart form: its bytes, as sent."""

    data: bytes
    filename: str = ""
    content_type: str = ""


@dataclass(frozen=True)
class Redirect:
    """Go to `url` (302). `data` is the answer instead when JSON is asked for (the jump box);
    without it, a `.json` request is sent to the `.json` twin of `url`."""

    url: str
    data: Data | None = None
    status: int = 302
    json_status: int = 200


@dataclass(frozen=True)
class Accepted:
    """A POST that started work elsewhere (an inspection): `status` (202) with `Location: url`;
    `data` is the JSON answer, `page` the data of the page the route's template renders."""

    url: str
    data: Data
    page: Data
    status: int = 202
