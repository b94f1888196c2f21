"""Rendering one page's data dict as HTML: `Renderer().html(template, data, href) -> str`.

The unit page's sections are the registry's techniques in `web_sections()` order
(`unit_sections()`, sections.py), each rendered by its own `section.template`.
`href(site_url) -> link` is how a page writes links: the server keeps site URLs as they are
(`server_href`); a static export maps them to relative file links (export.py). The JSON twin
is the same dict, dumped (`to_json`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from microtome.web.present.graph import circuit_svg, graph_svg
from microtome.web.present.sections import shown

Href = Callable[[str], str]
STATIC_DIR = Path(__file__).parents[1] / "static"  # beside templates/: CSS, JS, served at /static


def server_href(url: str) -> str:
    """Links on the live server are the site URLs themselves."""
    return url


def to_json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _shape(size: Any, channels: int) -> str:
    h, w = (list(size) + [1, 1])[:2] if size else (1, 1)
    return f"{channels}\u00d7{h}\u00d7{w}"


def _when(created: Any) -> str:
    """A note's time (seconds since the epoch) as `YYYY-MM-DD HH:MM UTC`."""
    if not isinstance(created, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(created))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Renderer:
    """The page templates (microtome/web/templates), autoescaped, strict about missing names."""

    def __init__(self) -> None:
        self.env = Environment(loader=PackageLoader("microtome.web", "templates"),
                               autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(pretty=_pretty, num=_number, when=_when)
        self.env.globals.update(shape=_shape, graph_svg=graph_svg, circuit_svg=circuit_svg, unit_sections=shown)

    def html(self, template: str, data: dict[str, Any], href: Href = server_href, *,
             static: bool = False, status: int = 200) -> str:
        """`static` marks a static export: no on-demand rendering, the jump box resolves in JS."""
        page = self.env.get_template(template)
        return page.render(d=data, href=href, static=static, status=status,
                           json_url=Markup(href(json_twin(data.get("url")))) if data.get("url") else None)


def json_twin(url: str) -> str:
    """The `.json` twin of a page URL: `/` -> `/index.json`, `/models/M/L?page=2` -> `/models/M/L.json?page=2`."""
    path, sep, query = url.partition("?")
    return (path.rstrip("/") or "/index") + ".json" + (sep + query if sep else "")
