"""The options several commands share, declared once: `(command) -> command` decorators.

`--store` has the store's own default (`microtome.store.DEFAULT_ROOT`) everywhere; a command
may say in its help what it reads the store for. Each factory fixes the flag, its type, its
default and its parameter name; `help` is the only thing a command may change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from microtome.store import DEFAULT_ROOT
from microtome.techniques.registry import PRESETS

Decorator = Callable[[Any], Any]

WEIGHTS_HELP = "default, random (untrained, explicit) or a local state dict file"
DATASET_HELP = "samples or folder:PATH"


def store_option(help: str = "artifact store directory") -> Decorator:
    """`--store` -> `store_root`: the artifact store's directory."""
    return click.option("--store", "store_root", default=DEFAULT_ROOT, show_default=True,
                        type=click.Path(file_okay=False), help=help)


def weights_option() -> Decorator:
    """`--weights` -> `weights`: default, random or a state dict file."""
    return click.option("--weights", default="default", show_default=True, help=WEIGHTS_HELP)


def device_option() -> Decorator:
    """`--device` -> `device`: a torch device name; cpu unless asked."""
    return click.option("--device", default="cpu", show_default=True)


def seed_option() -> Decorator:
    """`--seed` -> `seed`: the random seed of what the command makes."""
    return click.option("--seed", default=0, show_default=True, type=int)


def threads_option(help: str = "torch threads (default: torch's)") -> Decorator:
    """`--threads` -> `threads`: torch's thread count while the command runs (None: torch's)."""
    return click.option("--threads", default=None, type=click.IntRange(1), help=help)


def dataset_option() -> Decorator:
    """`--dataset` -> `dataset`: the photos a command reads (`microtome.data.get_dataset`)."""
    return click.option("--dataset", default="samples", show_default=True, help=DATASET_HELP)


def preset_option(help: str | None = None, default: str | None = "standard",
                  choices: Sequence[str] = PRESETS) -> Decorator:
    """`--preset` -> `preset`: one of the registry's presets (inspect has presets of its own)."""
    return click.option("--preset", default=default, show_default=default is not None,
                        type=click.Choice(list(choices)), help=help)


def layers_option(default: str | None, help: str) -> Decorator:
    """`--layers` -> `layers`: layer ids, comma-separated (what a command does with them, and
    what it does without, its help says)."""
    return click.option("--layers", default=default, show_default=default is not None, help=help)


def units_option() -> Decorator:
    """`--units` -> `units`: unit ranges applied to every layer."""
    return click.option("--units", default="all", show_default=True,
                        help="e.g. 0-7 or 0,3,5, applied to every layer")


def apply(command: Any, options: Sequence[Decorator]) -> Any:
    """`command` with `options`, listed in the order `--help` shows them."""
    for option in reversed(options):
        command = option(command)
    return command


def host_option() -> Decorator:
    """`--host` -> `host`: the address the web server listens on."""
    return click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")


def port_option() -> Decorator:
    """`--port` -> `port`: the web server's port."""
    return click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
