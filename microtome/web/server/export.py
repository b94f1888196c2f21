"""A static copy of the web microscope: `export(store, out_dir) -> ExportReport`.

Same URL scheme as the server, as folders with an `index.html` each: `DIR/index.html`,
`DIR/models/M/index.html`, `DIR/models/M/L/index.html` (other grid pages and variants as
`DIR/models/M/L/<variant>-<page>.html`), `DIR/models/M/L/U/index.html`, a unit's circuit (when
it has connections) `DIR/models/M/L/U/circuit/index.html`; the JSON twins as files beside them
(`DIR/index.json`, `DIR/models/M.json`, `DIR/models/M/L.json`, `DIR/models/M/L/U.json`,
`DIR/models/M/L/U/circuit.json`, `DIR/search.json`); images as `DIR/blobs/<sha256>.png`;
`DIR/search/index.html` searches the exported units' labels (`DIR/search/labels.json`) in
JavaScript (`static/search.js`), as the server's `/search?q=` does. Searching by photo
and writing notes need the server: the export shows notes, without the forms. Links are relative, so the site
works from any folder of any static web server. Only what is built is exported: the grid and
prev/next link only exported units, and the jump box resolves in JavaScript over the JSON twins.
Which pages there are is the route table's word (routes.py: each route's `pages`, server/site.py).
"""

from __future__ import annotations

import posixpath
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tqdm.auto import tqdm

from microtome.errors import MicrotomeError
from microtome.store import Store
from microtome.techniques.registry import Role, by_role
from microtome.web.present.artifacts import blob_url
from microtome.web.present.labels import by_unit, labels_of, thumbnail
from microtome.web.present.links import Exported, unit_link
from microtome.web.present.state import AppState
from microtome.web.present.templating import STATIC_DIR, Href, Renderer, json_twin, to_json
from microtome.web.present.values import Data, Redirect
from microtome.web.server.routes import Route, routes

__all__ = ["STATIC_DIR", "ExportReport", "export", "site_target", "static_href"]


@dataclass
class ExportReport:
    """What `export` wrote: models, page files (HTML and JSON counted once per page), images."""

    out: Path
    models: list[str] = field(default_factory=list)
    pages: int = 0
    units: int = 0
    blobs: int = 0


def grid_file(variant: str, page: int) -> str | None:
    """The file name of a grid page inside its layer folder (None: the folder's index.html)."""
    return None if (variant, page) == ("positive", 1) else f"{variant}-{page}"


def site_target(url: str) -> tuple[str, bool]:
    """(path relative to the site root, is a folder) of a site URL in the export."""
    path, _, query = url.partition("?")
    path = path.strip("/")
    as_json = path.endswith(".json")
    if as_json:
        path = path[:-5]
    parts = path.split("/") if path else []
    if parts[:1] in (["blobs"], ["static"]):
        return path, False
    if len(parts) == 3 and parts[0] == "models":  # a layer grid: variant and page live in the file name
        q = parse_qs(query)
        name = grid_file(q.get("variant", ["positive"])[0], int(q.get("page", ["1"])[0]))
        if name is not None:
            return f"{path}/{name}.{'json' if as_json else 'html'}", False
    if as_json:
        return (path or "index") + ".json", False
    return path, True


def static_href(page_dir: str) -> Href:
    """`href` for a page written in folder `page_dir` (relative to the site root)."""
    def href(url: str) -> str:
        target, is_dir = site_target(url)
        rel = posixpath.relpath(target or ".", page_dir or ".")
        return (rel.rstrip("/") + "/" if rel != "." else "./") if is_dir else rel
    return href


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


class _Site:
    """Writes pages (HTML and JSON twin) under `out`."""

    def __init__(self, out: Path, renderer: Renderer, bar: tqdm):
        self.out, self.renderer, self.bar = out, renderer, bar
        self.pages = 0

    def page(self, template: str, data: Data | Redirect) -> None:
        """Write a page (where its `url` says, as `site_target` maps it) and its JSON twin."""
        if isinstance(data, Redirect):  # pragma: no cover - the export asks for canonical names only
            raise MicrotomeError(f"export: a page redirects to {data.url}; the export lists canonical pages only")
        target, is_dir = site_target(data["url"])
        page_dir, html_name = (target, "index.html") if is_dir else posixpath.split(target)
        html = self.renderer.html(template, data, static_href(page_dir), static=True)
        _write(self.out / page_dir / html_name, html)
        json_target, _ = site_target(json_twin(data["url"]))
        _write(self.out / json_target, to_json(data))
        self.pages += 1
        self.bar.update(1)


def _built_units(store: Store, model: str) -> tuple[Exported, set[str]]:
    """Units with any artifact, per layer, and the blob URLs that the model's pages can show."""
    units: Exported = {}
    urls: set[str] = set()
    for art in store.find(model):
        if art.key.unit is not None:
            units.setdefault((model, art.key.layer), []).append(art.key.unit)
        urls.update(blob_url(sha, name) for name, sha in art.files.items())
    return {k: sorted(set(v)) for k, v in units.items()}, urls


def pages(state: AppState) -> list[tuple[Route, dict[str, str]]]:
    """Every page of the static site: each route of the table that has `pages`, with the values
    of each of its pages (server/site.py), in the table's order."""
    return [(route, dict(values)) for route in routes() if route.pages is not None and route.template
            for values in route.pages(state)]


def export(store: str | Path | Store, out_dir: str | Path, progress: bool = True) -> ExportReport:
    """Write the static site of every model in `store` to `out_dir` (created; files overwritten)."""
    out = Path(out_dir)
    if (out / "index.sqlite").exists():
        raise MicrotomeError(f"{out} holds a store (index.sqlite); export into another folder")
    owns = not isinstance(store, Store)
    st = Store(store, create=False) if owns else store
    try:
        state = AppState.over(st, registry=None)  # only what is built
        models = state.catalog.all_models()
        built = {m.id: _built_units(st, m.id) for m in models}
        state.exported = {k: v for units, _ in built.values() for k, v in units.items()}
        listed = pages(state)
        report = ExportReport(out=out, models=[m.id for m in models],
                              units=sum(len(units) for units in state.exported.values()))
        with tqdm(total=len(listed), desc="export", unit="page", disable=not progress, dynamic_ncols=True) as bar:
            site = _Site(out, state.renderer, bar)
            for route, values in listed:
                site.page(route.template, route.view(state, **values))
            _write(out / "search" / "labels.json", to_json(search_index(state, static_href("search"))))
            report.pages = site.pages
        for urls in (u for _, u in built.values()):
            for url in urls:
                report.blobs += _copy_blob(st, url, out)
        shutil.copytree(STATIC_DIR, out / "static", dirs_exist_ok=True)
        return report
    finally:
        if owns:
            st.close()


def search_index(state: AppState, href: Href) -> list[dict[str, Any]]:
    """Every exported unit that has labels, as static/search.js reads it: model, layer, unit,
    shorthand, `url` and thumbnail `image` (through `href`), and `labels` (best first, as the unit's
    JSON has them); search.js ranks them by present/labels.py's rule."""
    units = []
    labelled = state.store.find(technique=by_role(Role.UNIT_LABELS).id)
    for (m, layer, unit), art in sorted(by_unit(labelled).items()):
        url = unit_link(state.exported, m, layer, unit)
        labels = labels_of(art)
        if url is not None and labels:
            image = thumbnail(state.store, m, layer, unit)
            units.append({"model": m, "layer": layer, "unit": unit, "shorthand": f"{m}/{layer}:{unit}",
                          "url": href(url), "image": href(image) if image else None, "labels": labels})
    return units


def _copy_blob(store: Store, url: str, out: Path) -> int:
    """Copy the blob behind `url` (`/blobs/<sha><ext>`) unless an equal-sized copy exists; 1 if copied."""
    name = url.rsplit("/", 1)[1]
    src = store.blob_path(name[:64])
    dest = out / "blobs" / name
    if dest.exists() and dest.stat().st_size == src.stat().st_size:
        return 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return 1
