"""The command line as one package of thin commands: `--store` declared once with the store's
default; a notebook call of the library function does what the command does (the command then
finds it stored); stages find techniques by role, not by id."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from microtome.cli import main
from microtome.errors import MicrotomeError
from microtome.pipeline.sae import train_sae_into_store
from microtome.store import DEFAULT_ROOT
from microtome.techniques.registry import Role, by_role

TOY = "tests.toy_models:tiny_net"  # conv2: 16 channels, 8x8
STORE_COMMANDS = {"atlas", "build", "compare", "demo", "export", "gc", "note", "pack", "render", "sae", "serve",
                  "status", "unpack", "verify"}


def test_every_store_option_has_the_stores_own_default():
    having = {name: [p for p in command.params if "--store" in getattr(p, "opts", ())]
              for name, command in main.commands.items()}
    assert {name for name, params in having.items() if params} == STORE_COMMANDS
    assert {(p.name, p.default) for params in having.values() for p in params} == {("store_root", DEFAULT_ROOT)}


def test_the_library_trains_what_the_command_then_finds_stored(tmp_path):
    store = str(tmp_path / "store")
    result = train_sae_into_store(store, TOY, "conv2", epochs=2)
    assert (result.model, result.layer_id, result.stored_already) == ("tiny_net", "conv2.sae", False)
    again = CliRunner().invoke(main, ["sae", TOY, "conv2", "--epochs", "2", "--store", store])
    assert again.exit_code == 0, again.output
    assert "tiny_net/conv2.sae is stored already" in again.output
    assert f"explained variance {result.meta['explained_variance']:.3f}" in again.output


def test_stages_find_the_builtin_techniques_by_role():
    assert [by_role(r).id for r in (Role.FEATURES, Role.SIMILAR_UNITS, Role.ATLAS_MAP)] == ["sae", "similar", "atlas"]
    with pytest.raises(MicrotomeError, match="no registered technique has the role"):
        by_role("weather")
