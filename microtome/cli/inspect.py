"""`microtome inspect MODEL IMAGE`: the building blocks of one photo, written to a folder
(`microtome.inspect.folder.inspect_into_folder`); prints the top class, each layer's groups and
the page's path. A bad model, layer or image is a message and exit code 2, before anything is
loaded or written. Importing this module imports no torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from microtome.cli.options import device_option, layers_option, preset_option, threads_option, weights_option
from microtome.errors import MicrotomeError
from microtome.inspect.presets import DEFAULT_PRESET, INSPECT_PRESETS


@click.command("inspect")
@click.argument("model")
@click.argument("image")
@layers_option(None, help="layer ids, comma-separated (default: one ~60% up and the last spatial layer)")
@click.option("--groups", default=6, show_default=True, type=int, help="neuron groups per layer")
@preset_option(default=DEFAULT_PRESET, choices=list(INSPECT_PRESETS))
@click.option("--steps", default=None, type=click.IntRange(1), help="render steps (default: the preset's)")
@click.option("--size", default=None, type=click.IntRange(16, 1024), help="group image side (default: the preset's)")
@click.option("--out", default="inspect-out", show_default=True, type=click.Path(file_okay=False))
@weights_option()
@device_option()
@threads_option(help="torch threads (default: torch's); 1 is much faster on a busy machine")
@click.option("--no-render", is_flag=True, help="skip the feature visualizations")
@click.option("--inline", is_flag=True, help="images inside index.html (one file to share)")
@click.pass_context
def inspect_command(ctx: click.Context, model: str, image: str, layers: str | None, groups: int,
                    preset: str, steps: int | None, size: int | None, out: str, weights: str,
                    device: str, threads: int | None, no_render: bool, inline: bool) -> None:
    """The building blocks of a photo: semantic dictionary, neuron groups, attribution and
    activation grid of MODEL's layers on IMAGE (a file or a scikit-image sample name)."""
    from microtome.runtime import torch_threads

    try:
        with torch_threads(threads):
            _run(model, image, out, layers=layers, groups=groups, preset=preset, weights=weights,
                 device=device, steps=steps, size=size, renders=not no_render, inline=inline)
    except MicrotomeError as exc:  # also when used outside the main group
        click.echo(f"error: {exc.message}", err=True)
        ctx.exit(2)


def _run(model: str, image: str, out: str, **options) -> None:
    """Inspect with a progress bar over the render steps, then print what was found."""
    from tqdm.auto import tqdm

    from microtome.inspect.folder import inspect_into_folder

    bars = []

    def started(model_id: str, layer_ids: list[str], total: int) -> None:
        bars.append(tqdm(total=total, desc=f"inspect {model_id} {','.join(layer_ids)}", unit="step",
                         file=sys.stderr, dynamic_ncols=True, disable=not options["renders"]))

    def progress(done: int, total: int) -> None:
        bars[0].update(done - bars[0].n)

    try:
        report = inspect_into_folder(model, image, out, progress=progress, started=started, **options)
    finally:
        for bar in bars:
            bar.close()
    if not report.trained:
        click.echo("note: untrained model (random weights)", err=True)
    top = report.result["predictions"][0] if report.result["predictions"] else None
    if top:
        click.echo(f"top class: {top['label']} ({top['p']:.3f})")
    for layer_id in report.layer_ids:
        entry = report.result["layers"][layer_id]
        click.echo(f"{layer_id}: {len(entry['groups'])} groups explain {entry['explained']:.0%}")
    click.echo(str(Path(report.page).resolve()))


COMMANDS = (inspect_command,)
