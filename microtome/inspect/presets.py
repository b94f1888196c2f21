"""Parameters of `inspect` (torch-free, so that the web can read them without torch):
`inspect_params(preset, **overrides) -> {"preset", "steps", "size", "grid_size", ...}`.

`steps` is the optimization steps of every render, `size` the side of a group's feature
visualization and `grid_size` the side of an activation-grid cell's; `grid` the most cells
along a side of the activation grid; `top` the units listed per group, `dictionary_top` per
position of the semantic dictionary; `classes` the top classes attributed to.
"""

from __future__ import annotations

from typing import Any

from microtome.errors import MicrotomeError, close_names

INSPECT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 64, "size": 96, "grid_size": 64},
    "standard": {"steps": 256, "size": 128, "grid_size": 80},
    "full": {"steps": 512, "size": 160, "grid_size": 128},
}
COMMON: dict[str, Any] = {"grid": 7, "top": 8, "dictionary_top": 4, "classes": 5, "lr": 0.05,
                          "seed": 0}
DEFAULT_PRESET = "quick"
MAX_GRID = 7  # the grid is one render batch of up to MAX_GRID² images


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
