"""The `microtome` command line: `models`, `layers`, `render`, `demo` (and the build/serve stages).

A `MicrotomeError` (bad model, layer, unit, path...) prints its message and exits with code 2;
nothing is written in that case.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

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


@main.command()
def models() -> None:
    """List the model zoo."""
    from microtome.zoo import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        click.echo(f"{name:20s} {spec.title:20s} {spec.input_size:4d}px  {len(spec.layers):3d} layers  "
                   f"weights: {spec.weights_source}")


@main.command()
@click.argument("model")
def layers(model: str) -> None:
    """List MODEL's layers: id, kind, channels, output size, module path, aliases."""
    from microtome.zoo import get_spec

    spec = get_spec(model)
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
PRESETS = ("quick", "standard", "full")


def _render_units(net, spec, layer_id: str, units, kind: str, preset: str | None,
                  steps: int | None, size: int | None, seed: int, schedule: bool, device: str):
    """Render `units` as the build's feature vis does: at `preset`, exactly its params (so the
    same images as the build at that preset and seed); otherwise at `steps`/`size` with the
    same layer schedule (`schedule=False`: none). A progress bar on stderr."""
    from microtome.optvis.render import render as run_render
    from microtome.optvis.schedule import LAYER_SCHEDULE
    from microtome.techniques.feature_vis import fv_params, render_variant, variant_objectives

    if preset is not None and (steps is not None or size is not None):
        raise MicrotomeError(f"--preset {preset} fixes steps and size; pass either --preset or "
                             "--steps/--size")
    bar, callback = _progress_bar(steps or 0, f"{spec.id}/{layer_id} x{len(units)}")
    with bar:
        if preset is not None:
            params = fv_params(preset, VARIANT_OF_KIND[kind], seed)
            return render_variant(net, spec, layer_id, units, params, schedule=schedule,
                                  device=device, progress=callback)
        objectives = variant_objectives(layer_id, units, VARIANT_OF_KIND[kind])
        return run_render(net, objectives, spec=spec, size=size or 128, steps=steps or 512,
                          seed=seed, schedule=LAYER_SCHEDULE if schedule else None,
                          device=device, progress=callback)


def _render_options(command):
    """The options `render` and `sheet` share: how the images are rendered."""
    options = [
        click.option("--preset", type=click.Choice(PRESETS), default=None,
                     help="the build's feature-vis params (steps, size, schedule): the build's image"),
        click.option("--steps", default=None, type=click.IntRange(1),
                     help="optimization steps [default: 512; early layers take twice as many]"),
        click.option("--size", default=None, type=click.IntRange(16, 1024),
                     help="image side in px [default: 128]"),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--no-schedule", "no_schedule", is_flag=True,
                     help="no layer schedule: exactly --steps, transforms to the last step"),
        click.option("--device", default="cpu", show_default=True)]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("model")
@click.argument("target", metavar="LAYER:UNIT[,UNIT...]")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@_render_options
@click.option("--objective", "kind", default="channel", show_default=True, type=click.Choice(OBJECTIVE_KINDS))
@click.option("--weights", default="default", show_default=True,
              help="default, random (untrained, explicit) or a local state dict file")
@click.option("--store", "store_root", default="./microtome-store", show_default=True,
              type=click.Path(file_okay=False), help="whose SAEs (layers like block10.sae) the model carries")
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


@main.command()
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


DEMO_MODEL = "efficientnet_lite0"
# the telling layers, where the labels, the SAE and the comparison point: a middle layer whole
# and the first units of a late one, each with the unit page's dataset sections and the grid's
# feature-vis variants (a unit's diversity set, 4 images, renders when its page is visited)
DEMO_LAYERS = "block10"
DEMO_LATE = ("block15", "0-63")
DEMO_TECHNIQUES = "dataset_examples,feature_vis,deepdream,connections,labels"
# then, where labels mean something: the logits' dataset examples and labels (cheap: no renders)
DEMO_LABELLED = ("logits", "dataset_examples,connections,labels")
# and the instrument's cross-cutting views, seconds each: block10's dictionary features
# (`block10.sae`, rendered on demand) and block10's similar units in efficientnet_lite1
DEMO_SAE = ("sae", DEMO_MODEL, "block10", "--epochs", "10")
DEMO_COMPARE = ("compare", DEMO_MODEL, "efficientnet_lite1", "--layers", "block10=block14", "--preset", "quick")


def demo_steps(store_root: str, layers: str = DEMO_LAYERS) -> list[list[str]]:
    """The demo's build, as the commands it runs one after the other: `layers` whole, then
    `DEMO_LATE`'s first units, the logits' labels, block10's SAE and the comparison."""
    from microtome.web.views import GRID_VARIANTS

    common = ["--preset", "quick", "--dataset", "samples", "--store", store_root, "--threads", "1"]
    cli = [sys.executable, "-m", "microtome.cli"]
    base = [*cli, "build", DEMO_MODEL, "--techniques", DEMO_TECHNIQUES, "--variants", ",".join(GRID_VARIANTS)]
    late, late_units = DEMO_LATE
    return [[*base, "--layers", layers, *common],
            [*base, "--layers", late, "--units", late_units, *common],
            [*cli, "build", DEMO_MODEL, "--layers", DEMO_LABELLED[0], "--techniques", DEMO_LABELLED[1], *common],
            [*cli, *DEMO_SAE, *common[2:]], [*cli, *DEMO_COMPARE, *common[2:]]]


@main.command()
@click.option("--store", "store_root", default="microtome-store", show_default=True, type=click.Path(file_okay=False))
@click.option("--layers", default=DEMO_LAYERS, show_default=True, help="layers built whole in the background")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="build in the foreground and exit (no web server)")
@click.pass_context
def demo(ctx: click.Context, store_root: str, layers: str, host: str, port: int, no_serve: bool) -> None:
    """The main job on the offline default: build efficientnet_lite0's telling layers (quick
    preset, sample photos) in the background and serve the microscope at once; a unit not
    built renders on demand (feature vis, dataset examples, connections, labels) when visited."""
    import shlex
    import subprocess

    build_cmd = ["sh", "-c", " && ".join(shlex.join(step) for step in demo_steps(store_root, layers))]
    if no_serve:
        raise SystemExit(subprocess.call(build_cmd))
    from microtome.store import Store
    from microtome.web.cli import serve

    Store(store_root)
    log_path = Path(store_root) / "demo-build.log"
    with open(log_path, "ab") as log:
        builder = subprocess.Popen(build_cmd, stdout=log, stderr=log)
    click.echo(f"building {DEMO_MODEL}'s {layers} and the first units of {DEMO_LATE[0]} ({DEMO_LATE[1]}), "
               f"then the labels of {DEMO_LABELLED[0]}, an SAE on block10 and a comparison with "
               f"efficientnet_lite1 (quick preset) in the background; log: {log_path}")
    _announce_when_done(builder, log_path)
    first = layers.split(",")[0].strip()
    click.echo(f"microtome is serving at http://{host}:{port}/models/{DEMO_MODEL}/{first}  (Ctrl-C stops)")
    try:
        ctx.invoke(serve, store=store_root, host=host, port=port)
    finally:
        if builder.poll() is None:
            builder.terminate()
        builder.wait()  # reaped: no zombie left behind


def _announce_when_done(builder, log_path: Path) -> None:
    """Wait for the background build on a daemon thread (which reaps it) and say how it ended."""
    import threading

    def wait() -> None:
        code = builder.wait()
        lines = log_path.read_text(errors="replace").strip().splitlines()
        last = lines[-1] if lines else ""
        if code == 0:
            click.echo(f"background build finished: {last}", err=True)
        elif code > 0:
            click.echo(f"background build ended with exit code {code}; see {log_path}: {last}", err=True)
    threading.Thread(target=wait, name="demo-build-watch", daemon=True).start()


def _add_stage_commands() -> None:
    from microtome.inspect.cli import inspect_command
    from microtome.pipeline.atlas_command import atlas_command
    from microtome.pipeline.commands import COMMANDS
    from microtome.pipeline.compare import compare_command
    from microtome.pipeline.sae_command import sae_command
    from microtome.web.cli import export, serve

    for command in (*COMMANDS, sae_command, serve, export, inspect_command, compare_command,
                    atlas_command):
        main.add_command(command)


_add_stage_commands()

if __name__ == "__main__":
    main()
