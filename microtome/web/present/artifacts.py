"""Stored artifacts as JSON-ready views: `view(artifact) -> {technique, params, meta, images, ...}`.

Images are linked as `/blobs/<sha256><ext>` (content-addressed, so the URL never goes stale).
`pick(artifacts)` groups one unit's artifacts by technique (and variant, as the technique
registry declares them) and keeps, per group, the most expensive preset (`full` > `standard` >
`quick`), then the newest. `dead_on(dataset examples)` names the dataset a unit is never
active on. Nothing here reads the store: the views ask it, then lay out what it answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from microtome.store import Artifact, Store
from microtome.techniques.registry import Role, by_role, find

PRESET_RANK = {"quick": 0, "standard": 1, "full": 2}
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")

# "top_3_heat.png", "bottom-0.png", "quantile_2_1.png", "top/3/crop.png": group, index, role
_INDEXED = re.compile(r"^(?P<group>[a-z]+(?:_[a-z]+)*?)_(?P<index>\d+)(?:_(?P<role>[a-z0-9_]+))?$")


def blob_url(sha: str, name: str = "") -> str:
    """The URL of a blob, with the extension of its file name when it is an image type."""
    ext = _ext(name)
    return f"/blobs/{sha}{ext if ext in IMAGE_EXTS or ext == '.json' else ''}"


def _ext(name: str) -> str:
    """The lower-case extension of a file name ("" if none); cheaper than PurePosixPath."""
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def group_key(artifact: Artifact) -> str:
    """`technique`, or `technique:<variant>` for a technique with variants (its first variant
    when the params name none): `Technique.group`. Unregistered techniques group by id."""
    entry = find(artifact.key.technique)
    return entry.group(artifact.params) if entry is not None else artifact.key.technique


def _rank(artifact: Artifact) -> tuple[int, float]:
    return PRESET_RANK.get(str(artifact.params.get("preset")), -1), artifact.created


def pick(artifacts: Iterable[Artifact]) -> dict[str, Artifact]:
    """The best artifact per `group_key`."""
    best: dict[str, Artifact] = {}
    for art in artifacts:
        key = group_key(art)
        if key not in best or _rank(art) > _rank(best[key]):
            best[key] = art
    return best


def images(artifact: Artifact) -> list[dict[str, str]]:
    """Its image files in a stable order (numbered files by number), as {name, url}."""
    def order(name: str) -> tuple:
        return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
    names = sorted((n for n in artifact.files if _ext(n) in IMAGE_EXTS), key=order)
    return [{"name": n, "url": blob_url(artifact.files[n], n)} for n in names]


def image_url(artifact: Artifact | None, name: str = "image.png") -> str | None:
    """The URL of one file of `artifact` (or of its first image when it has no `name`)."""
    if artifact is None:
        return None
    if name in artifact.files:
        return blob_url(artifact.files[name], name)
    found = images(artifact)
    return found[0]["url"] if found else None


def _small(value: Any) -> bool:
    """Worth showing inline in HTML: scalars, and short lists/dicts of scalars."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return not isinstance(value, str) or len(value) < 300
    if isinstance(value, (list, dict)):
        items = value.values() if isinstance(value, dict) else value
        return len(value) <= 12 and all(isinstance(v, (str, int, float, bool)) or v is None for v in items)
    return False


def view(artifact: Artifact) -> dict[str, Any]:
    """A JSON-ready view: key, params, full meta, images, provenance, and `summary` (the small
    meta entries that an HTML page shows inline; big ones such as curves stay in the JSON)."""
    meta = artifact.meta
    return {
        "technique": artifact.key.technique,
        "params_hash": artifact.key.params_hash,
        "params": artifact.params,
        "meta": meta,
        "summary": {k: v for k, v in meta.items() if k != "provenance" and _small(v)},
        "provenance": meta.get("provenance", {}),
        "images": images(artifact),
        "files": {n: blob_url(sha, n) for n, sha in artifact.files.items()},
        "created": artifact.created,
    }


EXAMPLE_GROUPS = ("top", "bottom", "quantiles")
EXAMPLE_INFO = {"q": "quantile", "value": "activation", "activation": "activation", "class_name": "class",
                "path": "image", "position": "position", "error": "error"}  # meta key -> label, in the order shown


def window(sheet: tuple[int, int], region: tuple[int, int, int, int]) -> dict[str, list[float]]:
    """CSS background `size` and `position` (in %) that show just `region` (left, top, width,
    height) of an image of `sheet` (width, height) pixels in a box of any size: `size` scales
    the image so the region fills the box; background-position p % puts the image's point p %
    on the box's point p %, so the region's corner at the box's corner takes
    p = offset / (image - region) (any p when they are equal)."""
    def percent(offset: int, whole: int, part: int) -> float:
        return round(100 * offset / (whole - part), 6) if whole > part else 0.0
    (sheet_w, sheet_h), (left, top, width, height) = sheet, region
    return {"size": [round(100 * sheet_w / width, 6), round(100 * sheet_h / height, 6)],
            "position": [percent(left, sheet_w, width), percent(top, sheet_h, height)]}


def sprite_tile(artifact: Artifact, tile: Any) -> dict[str, Any] | None:
    """Where tile `tile` of the artifact's heat sprite (`meta["heat_sprite"]`: `{file, tiles,
    columns, tile: [H, W], pad}`, techniques/example_files.heat_sprite) lies, as the CSS
    background of a box showing just that tile (`window`): `{url, size, position}`. None when
    the artifact has no such sprite or tile."""
    layout = artifact.meta.get("heat_sprite")
    try:
        name, tiles, columns = layout["file"], int(layout["tiles"]), int(layout["columns"])
        (height, width), pad = (int(v) for v in layout["tile"]), int(layout["pad"])
    except (TypeError, KeyError, ValueError):
        return None
    if name not in artifact.files or not isinstance(tile, int) or not 0 <= tile < tiles or min(
            columns, height, width) < 1 or pad < 0:
        return None
    row, column = divmod(tile, columns)
    sheet = (columns * (width + 2 * pad), -(-tiles // columns) * (height + 2 * pad))
    region = (column * (width + 2 * pad) + pad, row * (height + 2 * pad) + pad, width, height)
    return {"url": blob_url(artifact.files[name], name), **window(sheet, region)}


def _view_crop(artifact: Artifact, info: dict, image: dict[str, str]) -> dict[str, Any] | None:
    """An example's crop shown as the region `box` of its whole view `image` (entries with
    `crop_from: "image"`): the image dict with the CSS `window`; None if the facts are missing."""
    view = artifact.meta.get("view")
    size, box = view.get("size") if isinstance(view, dict) else None, info.get("box")
    if not isinstance(size, int) or not (isinstance(box, list) and len(box) == 4
                                         and all(isinstance(v, int) for v in box)):
        return None
    top, left, bottom, right = box
    if not (0 <= top < bottom <= size and 0 <= left < right <= size):
        return None
    return {**image, "role": "crop", "window": window((size, size), (left, top, right - left, bottom - top))}


def _row(artifact: Artifact, index: int, files: dict[str, str], info: Any) -> dict[str, Any]:
    """One example: the whole image with its heat map laid over it (`overlay`: the heat map a
    file of its own in stores built before sprites, else a tile of the unit's sprite), other
    images (the receptive-field crop: a file, or a `window` of the whole view) by role, and its
    small facts (`info`)."""
    images = [{"role": role, "name": name, "url": blob_url(artifact.files[name], name)}
              for role, name in files.items() if name in artifact.files]
    by_role = {im["role"]: im for im in images}
    crop = None
    if isinstance(info, dict) and info.get("crop_from") == "image" and "image" in by_role:
        crop = _view_crop(artifact, info, by_role["image"])
    overlay = None
    tile = sprite_tile(artifact, info.get("heat_tile")) if isinstance(info, dict) else None
    if "image" in by_role and tile is not None:
        overlay = {"image": by_role["image"]["url"], "heat_sprite": tile}
        images = [im for im in images if im["role"] != "image"]
    elif "image" in by_role and "heat" in by_role:
        overlay = {"image": by_role["image"]["url"], "heat": by_role["heat"]["url"]}
        images = [im for im in images if im["role"] not in ("image", "heat")]
    if crop is not None:  # the view is shown as the crop (and under the heat map, if any)
        images = [crop] + [im for im in images if im["role"] != "image"]
    order = {"crop": 0, "image": 1, "heat": 2}
    images.sort(key=lambda im: order.get(im["role"], 3))
    if isinstance(info, dict):
        known = {EXAMPLE_INFO[k]: info[k] for k in EXAMPLE_INFO
                 if k in info and info[k] is not None and _small(info[k])}
        info = known or {k: v for k, v in info.items() if k != "files" and _small(v)}
    return {"index": index, "overlay": overlay, "images": images, "info": info}


def examples_view(artifact: Artifact) -> dict[str, Any]:
    """Dataset examples laid out for a page, tolerant of what is there.

    Groups `top`, `bottom`, `quantiles` come from meta entries that name their files
    (`{"files": {"crop": "top_0_crop.png", "image": ...}, "heat_tile": 3, "value": ...}`, as
    techniques/examples.py writes them; before heat sprites, `files` named a "heat" file too);
    the sprite itself is not listed among the other images; numbered files that no entry names (`top_3.png`,
    `top_3_heat.png`) are grouped by their names; other images (the histogram) are listed
    apart, and `meta["histogram"]` with `counts` is kept for an inline chart."""
    meta = artifact.meta
    used: set[str] = set()
    groups = []
    for name in EXAMPLE_GROUPS:
        entries = meta.get(name)
        if not isinstance(entries, list):
            continue
        rows = []
        for i, entry in enumerate(entries):
            files = entry.get("files") if isinstance(entry, dict) else None
            if isinstance(files, dict):
                files = {str(k): str(v) for k, v in files.items()}
                used.update(files.values())
                rows.append(_row(artifact, i, files, entry))
        if rows:
            groups.append({"name": name, "rows": rows})
    sprite = meta.get("heat_sprite")
    if isinstance(sprite, dict) and isinstance(sprite.get("file"), str):
        used.add(sprite["file"])  # shown tile by tile in the rows
    named = {g["name"] for g in groups}
    loose: dict[str, dict[int, dict[str, str]]] = {}
    other = []
    for image in images(artifact):
        if image["name"] in used:
            continue
        stem = image["name"].rsplit(".", 1)[0].replace("/", "_").replace("-", "_").lower()
        m = _INDEXED.match(stem)
        if m and m["group"] not in named:
            loose.setdefault(m["group"], {}).setdefault(int(m["index"]), {})[m["role"] or "image"] = image["name"]
        else:
            other.append(image)
    order = {"top": 0, "bottom": 1}
    for name in sorted(loose, key=lambda g: (order.get(g, 2), g)):
        entries = meta.get(name) if isinstance(meta.get(name), list) else []
        groups.append({"name": name, "rows": [
            _row(artifact, i, loose[name][i], entries[i] if i < len(entries) else None)
            for i in sorted(loose[name])]})
    hist = meta.get("histogram")
    histogram = hist if isinstance(hist, dict) and isinstance(hist.get("counts"), list) else None
    return {"groups": groups, "other": other, "histogram": histogram}


def dead_on(examples: Artifact | None) -> str | None:
    """The dataset a unit is never active on, from its dataset examples (None: active, or not
    known): its best example's activation is 0, or its activation is the same on every image
    (min == max, or a histogram with one non-empty bin over more than one image)."""
    if examples is None:
        return None
    meta = examples.meta
    dataset = str(examples.params.get("dataset") or meta.get("dataset") or "the dataset")
    top, bottom = meta.get("top"), meta.get("bottom")
    best = top[0].get("value") if isinstance(top, list) and top and isinstance(top[0], dict) else None
    worst = bottom[0].get("value") if isinstance(bottom, list) and bottom and isinstance(bottom[0], dict) else None
    if isinstance(best, (int, float)) and (best == 0 or best == worst):
        return dataset
    hist = meta.get("histogram")
    if isinstance(hist, dict) and isinstance(hist.get("counts"), list):
        counts = [c for c in hist["counts"] if isinstance(c, (int, float))]
        edges = hist.get("edges") if isinstance(hist.get("edges"), list) else []
        if sum(counts) > 1 and (sum(1 for c in counts if c) == 1 or (len(edges) > 1 and edges[0] == edges[-1])):
            return dataset
    return None


def thumbnails(store: Store, model: str, units: Iterable[tuple[str, int]],
               variant: str = "positive") -> dict[tuple[str, int], str | None]:
    """Unit-image (feature-vis) URLs of many units at once, by (layer, unit), for grids and links.

    The store's `find` takes one unit per query: one indexed lookup per unit is much faster
    than reading a whole layer (measured: 16 units 1 ms, a 1280-unit layer 100+ ms)."""
    image = by_role(Role.UNIT_IMAGE)
    group = image.group({"variant": variant})
    return {(layer, unit): image_url(pick(store.find(model, layer, unit, image.id)).get(group))
            for layer, unit in dict.fromkeys(units)}


def inactive(store: Store, model: str, layer: str, units: Iterable[int]) -> dict[int, str]:
    """The units of `units` never active on their dataset: {unit: dataset} (artifacts.dead_on)."""
    out, examples = {}, by_role(Role.EXAMPLES).id
    for unit in units:
        dataset = dead_on(pick(store.find(model, layer, unit, examples)).get(examples))
        if dataset is not None:
            out[unit] = dataset
    return out
