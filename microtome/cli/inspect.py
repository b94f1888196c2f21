"""`microtome inspect MODEL IMAGE`: the building blocks of one photo, written to a folder.

`--out DIR` receives `inspect.json` (the result of `inspect_photo`, images named), the PNGs
and `index.html` (a self-contained page). IMAGE is an image file or the name of one of
scikit-image's sample photos (`chelsea`, `astronaut`, ...). A bad model, layer or image is a
message and exit code 2, before anything is loaded or written. Importing this module imports
no torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from microtome.errors import MicrotomeError
from microtome.inspect.presets import DEFAULT_PRESET, INSPECT_PRESETS


def open_image(source: str):
    """A PIL RGB image from a file path or a scikit-image sample name (`samples:NAME` too)."""
    from PIL import Image, UnidentifiedImageError

    from microtome.data.datasets import SAMPLE_NAMES, SamplesDataset

    path = Path(source)
    if path.is_file():
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise MicrotomeError(f"cannot read {source!r} as an image ({exc}); pass a PNG, JPEG "
                                 "or other image file") from None
    name = source.removeprefix("samples:")
    if name in SAMPLE_NAMES:
        samples = SamplesDataset()
        return samples.open(samples.paths.index(name))
    raise MicrotomeError(f"no image file {source!r}; pass an image file or a scikit-image sample "
                         f"name ({', '.join(SAMPLE_NAMES[:6])}, ...)")


def write_result(result: dict, out: Path, inline: bool = False) -> Path:
    """`inspect.json`, the PNGs and `index.html` into `out`; returns the page's path. With
    `inline`, the page carries its images itself (one file to share)."""
    from microtome.images import write_atomic
    from microtome.inspect.html import inspect_html

    files = result.pop("files", {})
    for name, data in files.items():
        write_atomic(out / name, data)
    write_atomic(out / "inspect.json", json.dumps(result, indent=1).encode())
    return write_atomic(out / "index.html", inspect_html(result, files if inline else None).encode())


def _run(model: str, image: str, layers: str | None, groups: int, preset: str, out: str,
         weights: str, device: str, steps: int | None, size: int | None, renders: bool,
         inline: bool) -> None:
    from microtome.inspect.photo import check_groups, check_layers, inspect_photo, render_steps
    from microtome.inspect.presets import inspect_params
    from microtome.zoo import get_spec, load_model

    params = inspect_params(preset, steps=steps, size=size)
    check_groups(groups)
    layer_ids = check_layers(get_spec(model), layers)  # names checked before loading weights
    photo = open_image(image)
    net, spec = load_model(model, weights=weights, device=device)
    total = render_steps(len(layer_ids), params) if renders else 0
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=f"inspect {spec.id} {','.join(layer_ids)}", unit="step",
              file=sys.stderr, dynamic_ncols=True, disable=not renders) as bar:
        result = inspect_photo(net, spec, photo, layer_ids, groups, preset, device,
                               renders=renders, progress=lambda done, _t: bar.update(done - bar.n),
                               steps=steps, size=size)
    page = write_result(result, Path(out), inline)
    if not spec.trained:
        click.echo("note: untrained model (random weights)", err=True)
    top = result["predictions"][0] if result["predictions"] else None
    if top:
        click.echo(f"top class: {top['label']} ({top['p']:.3f})")
    for layer_id in layer_ids:
        entry = result["layers"][layer_id]
        click.echo(f"{layer_id}: {len(entry['groups'])} groups explain {entry['explained']:.0%}")
    click.echo(str(Path(page).resolve()))


@click.command("inspect")
@click.argument("model")
@click.argument("image")
@click.option("--layers", default=None, help="layer ids, comma-separated (default: one ~60% up "
              "and the last spatial layer)")
@click.option("--groups", default=6, show_default=True, type=int, help="neuron groups per layer")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, type=click.Choice(list(INSPECT_PRESETS)))
@click.option("--steps", default=None, type=click.IntRange(1), help="render steps (default: the preset's)")
@click.option("--size", default=None, type=click.IntRange(16, 1024), help="group image side (default: the preset's)")
@click.option("--out", default="inspect-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--weights", default="default", show_default=True,
              help="default, random (untrained, explicit) or a local state dict file")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=None, type=click.IntRange(1),
              help="torch threads (default: torch's); 1 is much faster on a busy machine")
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
            _run(model, image, layers, groups, preset, out, weights, device, steps, size,
                 not no_render, inline)
    except MicrotomeError as exc:  # also when used outside the main group
        click.echo(f"error: {exc.message}", err=True)
        ctx.exit(2)
