"""`microtome.show(x)` in a notebook: a unit from a store as a card, or images as a figure.

`show("efficientnet_lite0/block10:5", store=DIR) -> UnitCard`: what the unit page
(`/models/M/L/U`) shows, read from the store the same way (`web.pages.views.unit_page`, torch-free):
its feature visualizations, top dataset examples with their activations, labels, notes, the
techniques still missing, and a link to its page on a running `microtome serve` (`base_url`).
The card's images are inside it (`data:` URLs), so a saved notebook keeps them.
`show(images, captions)` is `display.Figure` (Lucid's `show(array)`). Either displays itself as
the last line of a cell; elsewhere in a cell, `IPython.display.display(show(...))`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from microtome.display import Figure, data_url
from microtome.errors import MicrotomeError
from microtome.techniques.registry import Role, by_role

DEFAULT_BASE_URL = "http://127.0.0.1:8000"  # `microtome serve`'s default address
FEATURE_VIS_ORDER = ("positive", "negative", "neuron", "diversity")
TOP_EXAMPLES = 8
TOP_LABELS = 5
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".webp": "image/webp", ".svg": "image/svg+xml"}
_TILE = "display:inline-block;margin:0 6px 6px 0;vertical-align:top;text-align:center;font-size:11px"


class UnitCard:
    """One unit of a store as a notebook card (`_repr_html_`); `data` is the unit page's `.json`."""

    def __init__(self, data: dict[str, Any], images: dict[str, bytes], base_url: str):
        self.data = data
        self.images = images  # blob URL -> file contents
        self.base_url = base_url.rstrip("/")

    @property
    def shorthand(self) -> str:
        return str(self.data["shorthand"])

    @property
    def url(self) -> str:
        """The unit's page on `microtome serve` at `base_url`."""
        return self.base_url + self.data["url"]

    @property
    def labels(self) -> list[str]:
        return [str(entry["label"]) for entry in (self.data.get("labels") or [])]

    def __repr__(self) -> str:
        labels = ", ".join(self.labels[:TOP_LABELS]) or "no labels"
        return f"<UnitCard {self.shorthand}: {labels}; {self.url}>"

    def _img(self, url: str, caption: str, width: int = 96) -> str:
        data = self.images.get(url)
        if data is None:
            return ""
        mime = _MIME.get(Path(url).suffix.lower(), "application/octet-stream")
        return (f"<figure style='{_TILE}'><img src='{data_url(data, mime)}' width={width} "
                f"alt='{escape(caption)}'><figcaption style='max-width:{width}px;overflow-wrap:anywhere'>"
                f"{escape(caption)}</figcaption></figure>")

    def _feature_vis(self) -> str:
        variants = self.data.get(by_role(Role.UNIT_IMAGE).id) or {}
        tiles = []
        for variant in sorted(variants, key=lambda v: (FEATURE_VIS_ORDER + (v,)).index(v)):
            for i, image in enumerate(variants[variant].get("images", [])):
                tiles.append(self._img(image["url"], variant if i == 0 else f"{variant} {i}"))
        return "".join(tiles)

    def _examples(self) -> str:
        examples = self.data.get(by_role(Role.EXAMPLES).id) or {}
        top = next((g for g in examples.get("groups", []) if g.get("name") == "top"), None)
        tiles = []
        for row in (top or {}).get("rows", [])[:TOP_EXAMPLES]:
            url = (row.get("overlay") or {}).get("image") or next(
                (im["url"] for im in row.get("images", [])), None)
            info = row.get("info") or {}
            act = info.get("activation")
            name = str(info.get("image", ""))
            caption = f"{name} {act:.3g}" if isinstance(act, (int, float)) else name
            tiles.append(self._img(url, caption.strip(), 80) if url else "")
        return "".join(tiles)

    def _html_rows(self) -> list[str]:
        d = self.data
        labels = ", ".join(escape(label) for label in self.labels[:TOP_LABELS])
        rows = [f"<div style='font-size:1.1em;margin-bottom:4px'><a href='{escape(self.url)}' target='_blank'>"
                f"<b>{escape(self.shorthand)}</b></a> <span style='color:#777'>{escape(d['model']['title'])}, "
                f"{escape(d['layer']['kind'])} layer of {d['layer']['channels']} units"
                f"{'' if d['model'].get('trained', True) else ' (untrained: random weights)'}</span></div>"]
        if labels:
            rows.append(f"<div><b>labels</b>: {labels}</div>")
        if d.get("dead"):
            rows.append(f"<div>never active on {escape(str(d.get('dead_on')))}</div>")
        for title, body in (("feature visualization", self._feature_vis()), ("top dataset examples", self._examples())):
            if body:
                rows.append(f"<div style='margin-top:4px'><b>{title}</b></div><div>{body}</div>")
        for note in d.get("notes") or []:
            rows.append(f"<div><b>note</b>: {escape(str(note.get('text', '')))}</div>")
        if d.get("missing"):
            rows.append(f"<div style='color:#777'>not built yet: {escape(', '.join(d['missing']))}</div>")
        return rows

    def _repr_html_(self) -> str:
        return ("<div class='microtome-unit' style='font:12px/1.4 system-ui,sans-serif;border:1px solid #ddd;"
                f"border-radius:4px;padding:6px;max-width:900px'>{''.join(self._html_rows())}</div>")


def _blob_urls(data: dict[str, Any]) -> list[str]:
    """The `/blobs/...` URLs of the images the card shows."""
    images, examples_id = by_role(Role.UNIT_IMAGE).id, by_role(Role.EXAMPLES).id
    urls = [im["url"] for variant in (data.get(images) or {}).values() for im in variant.get("images", [])]
    examples = data.get(examples_id) or {}
    for group in examples.get("groups", []):
        if group.get("name") == "top":
            for row in group.get("rows", [])[:TOP_EXAMPLES]:
                image = (row.get("overlay") or {}).get("image")
                urls += [image] if image else [im["url"] for im in row.get("images", [])[:1]]
    return [u for u in urls if isinstance(u, str) and u.startswith("/blobs/")]


def unit_card(target: str, store: Any = None, base_url: str = DEFAULT_BASE_URL) -> UnitCard:
    """The card of unit `target` (`M/L:U`, `M/L/U` or a permalink; layer aliases accepted) in
    `store` (a `Store` or its directory; default `./microtome-store`)."""
    from microtome.store import DEFAULT_ROOT, Store
    from microtome.web.pages.views import unit_page
    from microtome.web.present.jump import EXAMPLE, resolve
    from microtome.web.present.state import AppState

    owns = not isinstance(store, Store)
    st = Store(DEFAULT_ROOT if store is None else store, create=False) if owns else store
    try:
        state = AppState.over(st, registry=None)  # only what the store holds
        found = resolve(state.catalog, target)
        if found["unit"] is None:
            raise MicrotomeError(f"{target!r} names no unit; show takes MODEL/LAYER:UNIT, e.g. {EXAMPLE}")
        view = state.catalog.model(found["model"])
        data = unit_page(state, view, view.find_layer(found["layer"]), found["unit"])
        images = {url: st.read(url[len("/blobs/"):].split(".")[0]) for url in _blob_urls(data)}
        return UnitCard(data, images, base_url)
    finally:
        if owns:
            st.close()


def show(target: Any, store: Any = None, *, captions: Sequence[str] = (), title: str = "",
         columns: int | None = None, base_url: str = DEFAULT_BASE_URL) -> UnitCard | Figure:
    """A unit's card when `target` is a unit name (`store`, `base_url`: see `unit_card`), else
    a figure of the images `target` holds (`captions`, `title`, `columns`: see `Figure`)."""
    if isinstance(target, str):
        return unit_card(target, store, base_url)
    return Figure(target, captions, title=title, columns=columns)
