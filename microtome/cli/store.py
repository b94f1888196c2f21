"""The commands that read or write a store: build, status, verify, gc, pack, unpack, note,
and `techniques` (what a build can make).

Every one takes `--store` (options.store_option). User errors exit with code 2 (through the
main group); an interrupted build exits with 130 after recording what it finished.
"""

from __future__ import annotations

import time

import click

from microtome.cli.options import (
    dataset_option,
    device_option,
    layers_option,
    preset_option,
    seed_option,
    store_option,
    threads_option,
    units_option,
    weights_option,
)
from microtome.errors import MicrotomeError
from microtome.store import Store
from microtome.techniques.registry import techniques as all_techniques
from microtome.techniques.registry import web_sections


def _open(store_root: str) -> Store:
    return Store(store_root, create=False)


@click.command()
@click.argument("model")
@layers_option("all", help="layer ids, comma-separated, or all")
@units_option()
@click.option("--techniques", default="all", show_default=True,
              help="comma-separated technique ids (`microtome techniques` lists them) or all")
@dataset_option()
@preset_option()
@store_option()
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]))
@click.option("--ray-address", default=None, help="a running Ray cluster (default: start one here)")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1), help="Ray actors")
@device_option()
@weights_option()
@seed_option()
@click.option("--compare-with", "compare_with", default="", help="other models, comma-separated, for the "
              "`similar` technique (this model's side; `microtome compare` records both)")
@threads_option(help="torch threads of the local executor (default: torch's); 1 leaves a core free")
@click.option("--variants", default="", help="only these variants of techniques that have them, "
              "comma-separated, e.g. positive for feature_vis (default: every variant)")
def build(model, layers, units, techniques, dataset, preset, store_root, executor, ray_address,
          workers, device, weights, seed, compare_with, threads, variants) -> None:
    """Precompute every missing artifact of MODEL into the store (resumable)."""
    from microtome.pipeline.executors import Execution
    from microtome.pipeline.pipeline import build as run_build

    execution = Execution(executor, device, threads, ray_address, workers)
    summary = run_build(store_root, model, layers=layers, units=units, techniques=techniques,
                        preset=preset, dataset=dataset, seed=seed, weights=weights, execution=execution,
                        compare=[m.strip() for m in compare_with.split(",") if m.strip()], variants=variants)
    for line in summary.lines():
        click.echo(line)
    if summary.interrupted:
        raise SystemExit(130)
    if summary.failed:
        raise SystemExit(1)


@click.command()
@click.argument("model", required=False)
@store_option()
def status(model: str | None, store_root: str) -> None:
    """Completion per model, layer and technique (units with artifacts / units in the layer)."""
    store = _open(store_root)
    models = store.models()
    if model is not None and model not in models:
        from microtome.errors import unknown
        raise unknown("model", model, list(models), where=f"the store {store_root}")
    units: dict[tuple[str, str, str], set] = {}
    for (m, layer, technique), _count in store.stats(model).items():
        found = store.find(model=m, layer=layer, technique=technique)
        units[(m, layer, technique)] = {a.key.unit for a in found}
    shown = web_sections()  # the order pages show them in
    for m, summary in models.items():
        if model and m != model:
            continue
        trained = "" if summary.get("trained", True) else "  [untrained: random weights]"
        click.echo(f"{m} — {summary.get('title', m)}{trained}")
        for line in _comparisons(store, m):
            click.echo(line)
        click.echo(f"  {'layer':14s} {'units':>6s} " + " ".join(f"{t.id:>16s}" for t in shown))
        for layer in summary["layers"]:
            cells = [_cell(units.get((m, layer["id"], t.id), set()), t.scope, layer["channels"]) for t in shown]
            click.echo(f"  {layer['id']:14s} {layer['channels']:6d} " + " ".join(f"{c:>16s}" for c in cells))
        _dictionaries(store, m)


def _dictionaries(store: Store, model: str) -> None:
    """One line per SAE layer of `model`: what it was trained on and how well it reconstructs."""
    from microtome.pipeline.dictionaries import stored_dictionaries

    for d in stored_dictionaries(store, model):
        s = d.summary()
        click.echo(f"  {d.layer_id}: SAE on {d.base}, {s['features']} features, k={s['k']}, explained variance "
                   f"{s['explained_variance']:.3f}, mean L0 {s['l0']:.1f}, dead {s['dead_fraction']:.1%}, "
                   f"trained on {s['dataset']}")


def _comparisons(store: Store, model: str) -> list[str]:
    """One line per model `model` was compared with."""
    from microtome.pipeline.compare import comparisons

    return [f"  similar: vs {other}, {len(rows)} paired layers "
            f"({', '.join(sorted({f'{n} images of {d}' for _, n, d in rows}))})"
            for other, rows in sorted(comparisons(store, model).items())]


def _cell(have: set, scope: str, channels: int) -> str:
    """"done"/"-" for a layer-level technique, "built/units" for a unit-level one."""
    if scope == "layer":
        return "done" if None in have else "-"
    return f"{len(have - {None})}/{channels}" if have - {None} else "-"


@click.command(name="techniques")
def techniques_command() -> None:
    """List the registered techniques: id, scope, variants, what the web calls them."""
    for t in all_techniques():
        variants = f"  variants: {', '.join(t.variants)}" if t.variants else ""
        click.echo(f"{t.id:18s} per {t.scope:5s}  {t.title}{variants}")


@click.command()
@store_option()
def verify(store_root: str) -> None:
    """Check every blob against its hash; report corrupt, missing and orphan blobs."""
    report = _open(store_root).verify()
    click.echo(f"checked {report.checked} blobs: {len(report.corrupt)} corrupt, {len(report.missing)} missing, "
               f"{len(report.orphans)} orphans, {len(report.temp_files)} temp files")
    for sha in report.corrupt[:10]:
        click.echo(f"  corrupt: {sha}")
    for sha in report.missing[:10]:
        click.echo(f"  missing: {sha}")
    if not report.ok:
        raise SystemExit(1)


@click.command()
@store_option()
def gc(store_root: str) -> None:
    """Remove orphan blobs and stale temp files left by interrupted writes."""
    report = _open(store_root).gc()
    click.echo(f"removed {len(report.orphans)} orphan blobs and {len(report.temp_files)} temp files "
               f"({report.bytes_freed} bytes)")


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@store_option()
def pack(archive: str, store_root: str) -> None:
    """Pack the store into one archive (.tar.gz, .tgz or .tar)."""
    click.echo(str(_open(store_root).pack(archive)))


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@store_option()
def unpack(archive: str, store_root: str) -> None:
    """Unpack an archive made by `pack` into a new (empty) store directory."""
    from pathlib import Path

    if not Path(archive).is_file():
        raise MicrotomeError(f"no archive at {archive!r}")
    store = Store.unpack(archive, store_root)
    click.echo(f"unpacked into {store.root}")


@click.command()
@click.argument("target", metavar="MODEL/LAYER:UNIT")
@click.argument("text", required=False)
@store_option()
def note(target: str, text: str | None, store_root: str) -> None:
    """Attach a note (a claim, a link) to a unit; without TEXT, list the unit's notes."""
    from microtome.store.notes import add_note, notes

    model, layer, unit = _unit_target(target)
    store = Store(store_root)
    if text is not None:
        add_note(store, model, layer, unit, text)
        click.echo(f"noted on {model}/{layer}:{unit}")
    for n in notes(store, model, layer, unit):
        click.echo(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(n.created))}  {n.text}")


def _unit_target(target: str) -> tuple[str, str, int]:
    """(model, canonical layer id, unit) of `MODEL/LAYER:UNIT`, checked against the zoo."""
    from microtome.zoo import get_spec

    model, slash, rest = target.partition("/")
    layer, colon, unit_text = rest.rpartition(":")
    if not slash or not colon or not unit_text.strip().isdigit():
        raise MicrotomeError(f"{target!r} is not MODEL/LAYER:UNIT, e.g. efficientnet_lite0/block10:5")
    spec = get_spec(model)
    found, unit = spec.unit(layer, int(unit_text))
    return spec.id, found.id, unit


COMMANDS = (build, status, verify, gc, pack, unpack, techniques_command, note)
