"""`microtome models`, `layers`, `render` and `sheet`: the zoo's models, their layers, and
feature visualizations of their units rendered as the build renders them (one PNG).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from microtome.cli.options import apply, device_option, preset_option, seed_option, store_option, weights_option
from microtome.errors import MicrotomeError


@click.command()
def models() -> None:
    """List the model zoo."""
    from microtome.zoo import get_card, list_models

    for name in list_models():
        spec = get_card(name)
        click.echo(f"{name:20s} {spec.title:20s} {spec.input_size:4d}px  {len(spec.layers):3d} layers  "
                   f"weights: {spec.weights_source}")
    from microtome.zoo.sources import HOW_TO_NAME

    click.echo(f"\nAlso by name: {HOW_TO_NAME}")


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print [{id, kind, units, size, module, aliases}].")
@click.option("--weights", default="default", help="Accepted as by build; the layers do not depend on it.")
def layers(model: str, as_json: bool, weights: str) -> None:
    """List MODEL's layers: id, kind, channels, output size, module path, aliases."""
    from microtome.zoo import get_card

    spec = get_card(model)
    if as_json:
        import json

        keys = ("id", "kind", "units", "size", "module", "aliases")
        click.echo(json.dumps([{k: layer.to_json()[k] for k in keys} for layer in spec.layers], indent=1))
        return
    click.echo(f"{'id':14s} {'kind':10s} {'units':>6s} {'size':>9s}  module")
    for layer in spec.layers:
        size = f"{layer.size[0]}x{layer.size[1]}"
        alias = f"  (alias: {', '.join(layer.aliases)})" if layer.aliases else ""
        click.echo(f"{layer.id:14s} {layer.kind:10s} {layer.channels:6d} {size:>9s}  {layer.module}{alias}")


def _progress_bar(total: int, desc: str):
    """A tqdm bar and a renderer progress callback that advances it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total or None, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)

    def callback(step: int, steps: int, values) -> None:
        if bar.total != steps:  # the layer schedule may change the steps
            bar.total = steps
            bar.refresh()
        bar.update(1)
        if step % 16 == 0 or step == steps:
            bar.set_postfix(objective=f"{float(values.mean()):.3g}")

    return bar, callback


OBJECTIVE_KINDS = ("channel", "neuron", "negative")
VARIANT_OF_KIND = {"channel": "positive", "neuron": "neuron", "negative": "negative"}


def _render_units(net, spec, layer_id: str, units, kind: str, preset: str | None,
                  steps: int | None, size: int | None, seed: int, schedule: bool, device: str):
    """Render `units` as the build's feature vis does: at `preset`, exactly its params (so the
    same images as the build at that preset and seed); otherwise at `steps`/`size` with the
    same layer schedule (`schedule=False`: none). A progress bar on stderr."""
    from microtome.optvis.param import ImageParam
    from microtome.optvis.render import render as run_render
    from microtome.optvis.schedule import SCHEDULE, Schedule
    from microtome.techniques.feature_vis import fv_params, render_variant, variant_objectives

    if preset is not None and (steps is not None or size is not None):
        raise MicrotomeError(f"--preset {preset} fixes steps and size; pass either --preset or "
                             "--steps/--size")
    bar, callback = _progress_bar(steps or 0, f"{spec.id}/{layer_id} x{len(units)}")
    with bar:
        if preset is not None:
            params = fv_params(preset, VARIANT_OF_KIND[kind], seed, spec.input_size, spec.fixed_size)
            return render_variant(net, spec, layer_id, units, params, schedule=schedule,
                                  device=device, progress=callback)
        objectives = variant_objectives(layer_id, units, VARIANT_OF_KIND[kind])
        side = size or (spec.input_size if spec.fixed_size else min(128, spec.input_size))  # fixed or small: its own
        return run_render(net, objectives, ImageParam(side, seed=seed), spec=spec,
                          steps=steps or 512, schedule=SCHEDULE if schedule else Schedule(layers=None),
                          device=device, progress=callback)


def _render_options(command):
    """The options `render` and `sheet` share: how the images are rendered."""
    options = [
        preset_option(default=None,
                      help="the build's feature-vis params (steps, size, schedule): the build's image"),
        click.option("--steps", default=None, type=click.IntRange(1),
                     help="optimization steps [default: 512; early layers take twice as many]"),
        click.option("--size", default=None, type=click.IntRange(16, 1024),
                     help="image side in px [default: 128]"),
        seed_option(),
        click.option("--no-schedule", "no_schedule", is_flag=True,
                     help="no layer schedule: exactly --steps, transforms to the last step"),
        device_option()]
    return apply(command, options)


@click.command()
@click.argument("model")
@click.argument("target", metavar="LAYER:UNIT[,UNIT...]")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@_render_options
@click.option("--objective", "kind", default="channel", show_default=True, type=click.Choice(OBJECTIVE_KINDS))
@weights_option()
@store_option(help="whose SAEs (layers like block10.sae) the model carries")
def render(model: str, target: str, out: str, preset: str | None, steps: int | None,
           size: int | None, seed: int, no_schedule: bool, device: str, kind: str, weights: str,
           store_root: str) -> None:
    """Render feature visualizations of units of one layer into one PNG (side by side), as the
    build renders them: the layer's schedule applies (early layers: more steps and a pixel
    polish), and `--preset` gives the build's very image."""
    from microtome.images import grid, png_bytes, write_atomic
    from microtome.pipeline.dictionaries import load_with_dictionaries, spec_with_dictionaries
    from microtome.pipeline.pipeline import existing_store
    from microtome.zoo import get_spec
    from microtome.zoo.spec import parse_units

    layer_name, sep, unit_text = target.rpartition(":")
    if not sep or not layer_name:
        raise MicrotomeError(f"target {target!r} is not LAYER:UNIT[,UNIT...], e.g. block10:5 or block10:0-7")
    store = existing_store(store_root)
    spec = spec_with_dictionaries(get_spec(model), store)  # validate names before loading anything
    layer = spec.layer(layer_name)
    units = parse_units(unit_text, layer.channels, f"{layer.id} of {spec.id}")
    if not out.lower().endswith(".png"):
        raise MicrotomeError(f"output {out!r} must be a .png file")
    net, spec = load_with_dictionaries(model, weights, store, device)
    result = _render_units(net, spec, layer.id, units, kind, preset, steps, size, seed,
                           not no_schedule, device)
    path = write_atomic(out, png_bytes(grid(result.images)))
    if not spec.trained:
        click.echo("note: untrained model (random weights)", err=True)
    if result.schedule:
        click.echo(f"{result.schedule} layer: {result.steps} steps, the last ones polishing "
                   "pixels (--no-schedule: none)", err=True)
    for u, v in zip(units, result.values.tolist()):
        click.echo(f"{model}/{layer.id}:{u}  {kind} {v:.4g}")
    click.echo(str(path))


@click.command()
@click.argument("model", default="efficientnet_lite0")
@click.argument("target", default="block10:0-15", metavar="LAYER:UNITS")
@click.option("--out", default="out/contact-sheet.png", show_default=True, type=click.Path(dir_okay=False))
@_render_options
@click.option("--columns", default=4, show_default=True, type=click.IntRange(1))
def sheet(model: str, target: str, out: str, preset: str | None, steps: int | None,
          size: int | None, seed: int, no_schedule: bool, device: str, columns: int) -> None:
    """A contact sheet (one PNG grid, captioned) of feature visualizations of a layer's units
    (default 256 steps), rendered as `render` renders them."""
    from microtome.images import grid, png_bytes, write_atomic
    from microtome.zoo import get_spec, load_model
    from microtome.zoo.spec import parse_units

    layer_name, _, unit_text = target.rpartition(":")
    spec = get_spec(model)
    layer = spec.layer(layer_name or target)
    units = parse_units(unit_text or "all", layer.channels, f"{layer.id} of {spec.id}")
    net, spec = load_model(model, device=device)
    if preset is None and steps is None:
        steps = 256
    result = _render_units(net, spec, layer.id, units, "channel", preset, steps, size, seed,
                           not no_schedule, device)
    sheet_image = grid(result.images, columns=columns, labels=[f"{layer.id}:{u}" for u in units])
    path = write_atomic(out, png_bytes(sheet_image))
    click.echo(f"contact sheet of {model}/{layer.id} ({len(units)} units): {Path(path).resolve()}")


COMMANDS = (models, layers, render, sheet)
