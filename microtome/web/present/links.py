"""Site URLs and the small summaries pages link with: `unit_url(m, l, u) -> "/models/m/l/u"`.

Every page writes site URLs (`/models/M/L/U`, `/blobs/<sha>.png`); the renderer maps them for
a static export. `Exported` (a static export's units) limits unit links to what is exported.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from microtome.web.present.catalog import ModelView
from microtome.zoo.sources import is_entry_point

Exported = dict[tuple[str, str], list[int]]  # (model, layer) -> sorted units in a static export


def model_url(m: str) -> str:
    return f"/models/{m}"


def layer_url(m: str, layer: str, variant: str = "positive", page: int = 1, sort: str = "unit",
              label: str = "") -> str:
    query = [f"variant={variant}"] if variant != "positive" else []
    query += [f"page={page}"] if page != 1 else []
    query += [f"sort={quote(sort)}"] if sort != "unit" else []
    query += [f"label={quote(label)}"] if label else []
    return f"/models/{m}/{layer}" + ("?" + "&".join(query) if query else "")


def unit_url(m: str, layer: str, unit: int) -> str:
    return f"/models/{m}/{layer}/{unit}"


def model_brief(model: ModelView) -> dict[str, Any]:
    s = model.summary
    return {"id": model.id, "title": model.title, "url": model_url(model.id), "trained": model.trained,
            "weights": s.get("weights"), "built": model.built, "input_size": s.get("input_size"),
            "num_classes": s.get("num_classes"), "weights_source": s.get("weights_source"),
            "source": s.get("source") or "", "weights_identity": weights_identity(s)}


def weights_identity(summary: dict[str, Any]) -> dict[str, Any]:
    """Which weights a model card names, as `{kind, label, sha256, hub_id, path, url, seed}`.

    kind: "random" (untrained; `seed` 0 for a source or registered model, the loader's, None for
    an entry point, which seeds itself), "file" (`--weights PATH`: its path and sha256), "hub"
    (a Hugging Face hub repo, `hub_id`), "url" (a download, `url`) or "default" (a package's or
    torchvision's own, named by `weights_source`). `label` is the short text the pages show."""
    weights, where = str(summary.get("weights") or "default"), str(summary.get("weights_source") or "")
    sha = summary.get("weights_sha256") or None
    out: dict[str, Any] = {"kind": "default", "label": where or "default weights", "sha256": sha,
                           "hub_id": None, "path": None, "url": None, "seed": None}
    short = f" (sha256 {sha[:12]}…)" if sha else ""
    if weights == "random" or not summary.get("trained", True):
        seed = None if is_entry_point(str(summary.get("source") or "")) else 0
        out.update(kind="random", sha256=None, seed=seed,
                   label="untrained: random weights" + (f", seed {seed}" if seed is not None else ""))
    elif weights != "default":
        out.update(kind="file", path=weights, label=f"file {PurePath(weights).name}{short}")
    elif where.startswith("hf-hub:"):
        out.update(kind="hub", hub_id=where.removeprefix("hf-hub:"), label=f"{where}{short}")
    elif where.startswith(("url:", "file:")):
        kind, _, loc = where.partition(":")
        out.update(kind=kind, **{"url" if kind == "url" else "path": loc}, label=f"{loc}{short}")
    else:
        out.update(label=f"{out['label']}{short}")
    return out


def layer_brief(model: ModelView, layer: dict[str, Any]) -> dict[str, Any]:
    return {"id": layer["id"], "kind": layer.get("kind"), "module": layer.get("module"),
            "aliases": list(layer.get("aliases") or ()), "channels": layer["channels"],
            "size": list(layer.get("size") or (1, 1)), "url": layer_url(model.id, layer["id"])}


def unit_link(exported: Exported | None, m: str, layer: str, unit: int) -> str | None:
    """The unit's URL, or None when a static export does not hold it."""
    if exported is not None and unit not in exported.get((m, layer), ()):
        return None
    return unit_url(m, layer, unit)


def neighbours(exported: Exported | None, m: str, layer: dict[str, Any],
               unit: int) -> tuple[str | None, str | None]:
    """(previous, next) unit URLs: the adjacent channels, or in an export the adjacent exported units."""
    if exported is None:
        prev = unit_url(m, layer["id"], unit - 1) if unit > 0 else None
        nxt = unit_url(m, layer["id"], unit + 1) if unit + 1 < layer["channels"] else None
        return prev, nxt
    units = exported.get((m, layer["id"]), [])
    before = [u for u in units if u < unit]
    after = [u for u in units if u > unit]
    return (unit_url(m, layer["id"], before[-1]) if before else None,
            unit_url(m, layer["id"], after[0]) if after else None)
