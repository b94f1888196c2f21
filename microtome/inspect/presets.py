"""Parameters of `inspect` (torch-free, so that the web can read them without torch):
`inspect_params(preset, **overrides) -> {"preset", "steps", "size", "grid_size", ...}`, and the
choice of layers and groups (`check_layers(card, layers)`, the one check the CLI, the library and
the web make; `default_layers`, `spatial_layers`, `is_spatial`, `check_groups`).

`steps` is the optimization steps of every render, `size` the side of a group's feature
visualization and `grid_size` the side of an activation-grid cell's; `grid` the most cells
along a side of the activation grid; `top` the units listed per group, `dictionary_top` per
position of the semantic dictionary; `classes` the top classes attributed to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from microtome.errors import MicrotomeError, close_names
from microtome.zoo.card import LayerCard, ModelCard

INSPECT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 64, "size": 96, "grid_size": 64},
    "standard": {"steps": 256, "size": 128, "grid_size": 80},
    "full": {"steps": 512, "size": 160, "grid_size": 128},
}
COMMON: dict[str, Any] = {"grid": 7, "top": 8, "dictionary_top": 4, "classes": 5, "lr": 0.05,
                          "seed": 0}
DEFAULT_PRESET = "quick"
MAX_GRID = 7  # the grid is one render batch of up to MAX_GRID² images
MAX_GROUPS = 16
FLAT_KINDS = ("logits", "linear")


def is_spatial(kind: str, size: Sequence[int] | None) -> bool:
    """Whether a layer of `kind` with output `size` (H, W) has spatial positions to inspect."""
    return kind not in FLAT_KINDS and tuple(size or (1, 1)) != (1, 1)


def default_layer_ids(layers: Iterable[tuple[str, str, Sequence[int] | None]]) -> list[str]:
    """Of `(id, kind, size)` in the model's order, two spatial layers: one about 60% of the way
    up, and the last one (one when they coincide; none when no layer is spatial)."""
    spatial = [layer_id for layer_id, kind, size in layers if is_spatial(kind, size)]
    if not spatial:
        return []
    return list(dict.fromkeys([spatial[int(0.6 * (len(spatial) - 1))], spatial[-1]]))


def spatial_layers(card: ModelCard) -> list[LayerCard]:
    """The layers of `card` with spatial positions, in the model's order."""
    return [layer for layer in card.layers if is_spatial(layer.kind, layer.size)]


def default_layers(card: ModelCard) -> list[str]:
    """Two spatial layers: one about 60% of the way up, and the last one (`default_layer_ids`)."""
    picks = default_layer_ids((layer.id, layer.kind, layer.size) for layer in card.layers)
    if not picks:
        raise MicrotomeError(f"{card.id} has no layer with spatial positions to inspect")
    return picks


def check_layers(card: ModelCard, layers: str | Sequence[str] | None) -> list[str]:
    """Canonical ids of `layers` (a list, or comma-separated; None or "": `default_layers`), in
    the model's order; each must exist (`card.layer`) and have spatial positions."""
    if layers is None or (isinstance(layers, str) and not layers.strip()):
        return default_layers(card)
    names = [n.strip() for n in layers.split(",")] if isinstance(layers, str) else list(layers)
    found = [card.layer(n) for n in names if n]
    if not found:
        raise MicrotomeError(f"no layers in {layers!r}; name them, e.g. {','.join(default_layers(card))}")
    for layer in found:
        if not is_spatial(layer.kind, layer.size):
            raise MicrotomeError(f"layer {layer.id} of {card.id} is a flat vector ({layer.kind}); inspect needs "
                                 f"layers with spatial positions, e.g. {', '.join(default_layers(card))} "
                                 f"(`microtome layers {card.id}` shows their sizes)")
    ids = list(dict.fromkeys(layer.id for layer in found))
    return sorted(ids, key=card.index_of)


def check_groups(groups: int) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool) or not 1 <= groups <= MAX_GROUPS:
        raise MicrotomeError(f"groups must be a whole number from 1 to {MAX_GROUPS}, not {groups!r}")
    return groups


def inspect_params(preset: str = DEFAULT_PRESET, **overrides: Any) -> dict[str, Any]:
    """The preset's parameters with `overrides` (None values ignored); a MicrotomeError names
    an unknown preset, key or a bad value."""
    if preset not in INSPECT_PRESETS:
        raise MicrotomeError(f"no inspect preset {preset!r}; valid: " + ", ".join(INSPECT_PRESETS))
    params = {"preset": preset, **INSPECT_PRESETS[preset], **COMMON}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in params or key == "preset":
            near = close_names(key, [k for k in params if k != "preset"])
            hint = f"did you mean {', '.join(near)}?" if near else "valid: " + ", ".join(
                k for k in params if k != "preset")
            raise MicrotomeError(f"no inspect parameter {key!r}; {hint}", suggestions=near)
        params[key] = value
    for key in ("steps", "size", "grid_size", "grid", "top", "dictionary_top", "classes"):
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MicrotomeError(f"inspect parameter {key!r} must be a whole number ≥ 1, not {value!r}")
    if params["grid"] > MAX_GRID:
        raise MicrotomeError(f"inspect grid of {params['grid']} cells a side is too many; at most {MAX_GRID}")
    return params
