"""microtome: a microscope for vision models.

Stages of the data flow, imports pointing one way:
zoo, optvis -> techniques, data -> store -> build -> web; cli.py and notebook.py on top.
Importing the package imports nothing else (no torch): `microtome.show` loads on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)
__all__ = ["__version__", "show"]


def __getattr__(name: str) -> Any:
    if name == "show":
        from microtome.notebook import show

        return show
    raise AttributeError(f"module 'microtome' has no attribute {name!r}")
