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
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)

    def callback(step: int, steps: int, values) -> None:
        bar.update(1)
        if step % 16 == 0 or step == steps:
            bar.set_postfix(objective=f"{float(values.mean()):.3g}")

    return bar, callback


OBJECTIVE_KINDS = ("channel", "neuron", "negative")


@main.command()
@click.argument("model")
@click.argument("target", metavar="LAYER:UNIT[,UNIT...]")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@click.option("--steps", default=512, show_default=True, type=click.IntRange(1))
@click.option("--size", default=128, show_default=True, type=click.IntRange(16, 1024), help="image side in px")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--objective", "kind", default="channel", show_default=True, type=click.Choice(OBJECTIVE_KINDS))
@click.option("--weights", default="default", show_default=True,
              help="default, random (untrained, explicit) or a local state dict file")
@click.option("--device", default="cpu", show_default=True)
@click.option("--store", "store_root", default="./microtome-store", show_default=True,
              type=click.Path(file_okay=False), help="whose SAEs (layers like block10.sae) the model carries")
def render(model: str, target: str, out: str, steps: int, size: int, seed: int, kind: str,
           weights: str, device: str, store_root: str) -> None:
    """Render feature visualizations of units of one layer into one PNG (side by side)."""
    from microtome.images import grid, png_bytes, write_atomic
    from microtome.optvis import objectives as O
    from microtome.optvis.render import render as run_render
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
    make = {"channel": lambda u: O.channel(layer.id, u), "neuron": lambda u: O.neuron(layer.id, u),
            "negative": lambda u: -O.channel(layer.id, u)}[kind]
    bar, callback = _progress_bar(steps, f"{model}/{layer.id} x{len(units)}")
    with bar:
        result = run_render(net, [make(u) for u in units], spec=spec, size=size, steps=steps,
                            seed=seed, device=device, progress=callback)
    path = write_atomic(out, png_bytes(grid(result.images)))
    if not spec.trained:
        click.echo("note: untrained model (random weights)", err=True)
    for u, v in zip(units, result.values.tolist()):
        click.echo(f"{model}/{layer.id}:{u}  {kind} {v:.4g}")
    click.echo(str(path))


@main.command()
@click.argument("model", default="efficientnet_lite0")
@click.argument("target", default="block10:0-15", metavar="LAYER:UNITS")
@click.option("--out", default="out/contact-sheet.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--steps", default=256, show_default=True, type=click.IntRange(1))
@click.option("--columns", default=4, show_default=True, type=click.IntRange(1))
@click.option("--device", default="cpu", show_default=True)
def sheet(model: str, target: str, out: str, steps: int, columns: int, device: str) -> None:
    """A contact sheet (one PNG grid, captioned) of feature visualizations of a layer's units."""
    from microtome.images import grid, png_bytes, write_atomic
    from microtome.optvis import objectives as O
    from microtome.optvis.render import render as run_render
    from microtome.zoo import get_spec, load_model
    from microtome.zoo.spec import parse_units

    layer_name, _, unit_text = target.rpartition(":")
    spec = get_spec(model)
    layer = spec.layer(layer_name or target)
    units = parse_units(unit_text or "all", layer.channels, f"{layer.id} of {spec.id}")
    net, spec = load_model(model, device=device)
    bar, callback = _progress_bar(steps, f"{model}/{layer.id} x{len(units)}")
    with bar:
        result = run_render(net, [O.channel(layer.id, u) for u in units], spec=spec, size=128,
                            steps=steps, device=device, progress=callback)
    sheet_image = grid(result.images, columns=columns, labels=[f"{layer.id}:{u}" for u in units])
    path = write_atomic(out, png_bytes(sheet_image))
    click.echo(f"contact sheet of {model}/{layer.id} ({len(units)} units): {Path(path).resolve()}")


DEMO_MODEL = "efficientnet_lite0"
DEMO_LAYERS = "stem,block2,block4"
# then, where labels mean something: the logits' dataset examples and labels (cheap: no renders)
DEMO_LABELLED = ("logits", "dataset_examples,connections,labels")
# and the instrument's cross-cutting views, seconds each: block10's dictionary features
# (`block10.sae`, rendered on demand) and block10's similar units in efficientnet_lite1
DEMO_SAE = ("sae", DEMO_MODEL, "block10", "--epochs", "10")
DEMO_COMPARE = ("compare", DEMO_MODEL, "efficientnet_lite1", "--layers", "block10=block14", "--preset", "quick")


@main.command()
@click.option("--store", "store_root", default="microtome-store", show_default=True, type=click.Path(file_okay=False))
@click.option("--layers", default=DEMO_LAYERS, show_default=True, help="layers built in the background")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="build in the foreground and exit (no web server)")
@click.pass_context
def demo(ctx: click.Context, store_root: str, layers: str, host: str, port: int, no_serve: bool) -> None:
    """The main job on the offline default: build efficientnet_lite0 (quick preset, sample
    photos) in the background and serve the microscope at once; unbuilt units render on demand."""
    import subprocess

    import shlex

    common = ["--preset", "quick", "--dataset", "samples", "--store", store_root, "--threads", "1"]
    cli = [sys.executable, "-m", "microtome.cli"]
    base = [*cli, "build", DEMO_MODEL]
    steps = [[*base, "--layers", layers, *common],
             [*base, "--layers", DEMO_LABELLED[0], "--techniques", DEMO_LABELLED[1], *common],
             [*cli, *DEMO_SAE, *common[2:]], [*cli, *DEMO_COMPARE, *common[2:]]]
    build_cmd = ["sh", "-c", " && ".join(shlex.join(step) for step in steps)]
    if no_serve:
        raise SystemExit(subprocess.call(build_cmd))
    from microtome.store import Store
    from microtome.web.cli import serve

    Store(store_root)
    log_path = Path(store_root) / "demo-build.log"
    with open(log_path, "ab") as log:
        builder = subprocess.Popen(build_cmd, stdout=log, stderr=log)
    click.echo(f"building {DEMO_MODEL} layers {layers}, then the labels of {DEMO_LABELLED[0]}, an SAE on "
               f"block10 and a comparison with efficientnet_lite1 (quick preset) in the background; "
               f"log: {log_path}")
    _announce_when_done(builder, log_path)
    click.echo(f"microtome is serving at http://{host}:{port}/models/{DEMO_MODEL}  (Ctrl-C stops)")
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
