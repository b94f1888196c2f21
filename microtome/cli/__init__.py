"""The `microtome` command line: thin click commands over library functions.

`main` is the group (`[project.scripts] microtome = "microtome.cli:main"`, or
`python -m microtome.cli`). Each module holds the commands of one room: `models` (models,
layers, render, sheet), `store` (build, status, verify, gc, pack, unpack, techniques, note),
`sae`, `compare`, `atlas`, `inspect`, `serve` (serve, export) and `demo`; `options` declares
the options they share. Every command parses, calls a function a notebook can call as well,
and prints. A `MicrotomeError` (bad model, layer, unit, path...) prints its message and exits
with code 2; nothing is written in that case. Importing this package imports no torch.
"""

from __future__ import annotations

import click

from microtome.cli import atlas, compare, demo, inspect, models, sae, serve, store
from microtome.errors import MicrotomeError


class _Group(click.Group):
    """Turns user errors from any command into a message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MicrotomeError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="microtome")
def main() -> None:
    """microtome: a microscope for vision models."""
    from microtome.runtime import keep_freed_memory

    keep_freed_memory()  # this process exists to run the command: see its docstring


for _module in (models, store, sae, serve, inspect, compare, atlas, demo):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
