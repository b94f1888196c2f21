"""`microtome serve` and `microtome export`: the web microscope over a store, live or static.

serve: the app (`microtome.web.create_app`) under uvicorn, rendering missing units on
demand; export: the same pages as a static site for any web server (`microtome.web.export`).
"""

from __future__ import annotations

from pathlib import Path

import click

from microtome.cli.options import host_option, port_option, store_option


@click.command()
@store_option(help="the artifact store to serve")
@host_option()
@port_option()
@click.option("--render/--no-render", default=True, show_default=True,
              help="render missing units on demand (quick preset, CPU) or only serve what is built")
@click.option("--queue-size", default=64, show_default=True, type=click.IntRange(1),
              help="units that may wait for on-demand rendering before the server answers 503")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="log every request")
@click.option("--notes-token", default=None, envvar="MICROTOME_NOTES_TOKEN", metavar="TOKEN",
              help="accept notes (POST /models/M/L/U/notes) sent with `Authorization: Bearer TOKEN`; "
                   "without it notes are read-only [env: MICROTOME_NOTES_TOKEN]")
def serve(store_root: str, host: str, port: int, render: bool, queue_size: int, access_log: bool,
          notes_token: str | None) -> None:
    """Serve the web microscope: models, layer graphs, unit grids and unit pages (+ .json)."""
    import uvicorn

    from microtome.web import create_app

    if notes_token is not None and not notes_token.strip():
        raise click.BadParameter("the notes token must not be empty", param_hint="--notes-token")
    app = create_app(store_root, queue_size=queue_size, on_demand=render, notes_token=notes_token)
    click.echo(f"microtome: serving {Path(store_root).resolve()} on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)


@click.command()
@store_option(help="the artifact store to export")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="folder for the static site (created; existing files are overwritten)")
def export(store_root: str, out: str) -> None:
    """Write what is built as a static site with the server's URL scheme (+ .json twins)."""
    from microtome.web import export as run_export

    report = run_export(store_root, out, progress=True)
    click.echo(f"exported {report.pages} pages and {report.blobs} images of {len(report.models)} models "
               f"to {Path(out).resolve()}/index.html")


COMMANDS = (serve, export)
