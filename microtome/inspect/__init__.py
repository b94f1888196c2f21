"""Inspect a photo, the building blocks of interpretability (Olah et al. 2018):
`inspect_photo(model, spec, image, layers, groups) -> {"predictions", "layers", "files", ...}`.

A stage of its own, torch-side: it reads `zoo`, `optvis`, `data` and nothing of `store`,
`pipeline` or `web`. Importing the package imports no torch (`presets` is torch-free, for
pages); `inspect_photo` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["inspect_photo"]


def __getattr__(name: str) -> Any:
    if name == "inspect_photo":
        from microtome.inspect.photo import inspect_photo

        return inspect_photo
    raise AttributeError(f"module 'microtome.inspect' has no attribute {name!r}")
