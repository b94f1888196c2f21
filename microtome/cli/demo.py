"""`microtome demo`: the main job on the offline default, as the commands it runs (`demo_steps`):
a background build of efficientnet_lite0's telling layers, an SAE and a comparison, while the
microscope serves the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from microtome.cli.options import host_option, layers_option, port_option, store_option
from microtome.cli.serve import serve

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
    from microtome.web.present.grid import GRID_VARIANTS

    common = ["--preset", "quick", "--dataset", "samples", "--store", store_root, "--threads", "1"]
    cli = [sys.executable, "-m", "microtome.cli"]
    base = [*cli, "build", DEMO_MODEL, "--techniques", DEMO_TECHNIQUES, "--variants", ",".join(GRID_VARIANTS)]
    late, late_units = DEMO_LATE
    return [[*base, "--layers", layers, *common],
            [*base, "--layers", late, "--units", late_units, *common],
            [*cli, "build", DEMO_MODEL, "--layers", DEMO_LABELLED[0], "--techniques", DEMO_LABELLED[1], *common],
            [*cli, *DEMO_SAE, *common[2:]], [*cli, *DEMO_COMPARE, *common[2:]]]


@click.command()
@store_option()
@layers_option(DEMO_LAYERS, help="layers built whole in the background")
@host_option()
@port_option()
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
        ctx.invoke(serve, store_root=store_root, host=host, port=port)
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


COMMANDS = (demo,)
