"""The command line: listing, rendering, and bad input (exit code 2, nothing written)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from microtome.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_models_and_layers(runner):
    out = runner.invoke(main, ["models"])
    assert out.exit_code == 0
    assert "efficientnet_lite0" in out.output and "googlenet" in out.output
    layers = runner.invoke(main, ["layers", "googlenet"])
    assert layers.exit_code == 0
    row = [line for line in layers.output.splitlines() if line.startswith("inception4c")][0]
    assert "512" in row and "14x14" in row and "mixed4c" in row


def test_render_writes_units_side_by_side_at_their_size(runner, tmp_path):
    out = tmp_path / "units.png"
    result = runner.invoke(main, ["render", "efficientnet_lite0", "block10:3,5", "-o", str(out),
                                  "--steps", "2", "--size", "48", "--seed", "1", "--objective", "negative"])
    assert result.exit_code == 0, result.output
    assert "efficientnet_lite0/block10:5" in result.output
    with Image.open(out) as image:
        assert image.size == (2 * 48 + 2, 48)


@pytest.mark.parametrize("args, message", [
    (["nosuchnet", "block10:1"], "no model 'nosuchnet'"),
    (["efficientnet_lite0", "blok10:1"], "did you mean block10"),
    (["efficientnet_lite0", "block10:112"], "block10 of efficientnet_lite0 has units 0-111"),
    (["efficientnet_lite0", "block10:x"], "bad unit list"),
    (["efficientnet_lite0", "block10"], "LAYER:UNIT"),
    (["googlenet", "mixed4c:600"], "inception4c of googlenet has units 0-511"),
])
def test_bad_input_exits_2_and_writes_nothing(runner, tmp_path, args, message):
    out = tmp_path / "nothing.png"
    result = runner.invoke(main, ["render", *args, "-o", str(out), "--steps", "1"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
