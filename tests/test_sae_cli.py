"""`microtome sae`: block10 of efficientnet_lite0 over the sample photos reconstructs well; a run
killed mid-training continues from its checkpoint to the same SAE; bad input exits 2 naming
what would be right; retraining a layer name is refused unless --force, which removes the old
features' artifacts; `build --techniques sae` trains one and its features build like a layer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from microtome.cli import main
from microtome.pipeline.dictionaries import stored_dictionaries
from microtome.pipeline.models import ModelService
from microtome.pipeline.pipeline import build_unit
from microtome.store import ArtifactKey, Store

ROOT = Path(__file__).resolve().parents[1]
TOY = "tests.toy_models:tiny_net"  # conv2: 16 channels, 8x8


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_block10_of_lite0_over_the_samples(tmp_path):
    store = str(tmp_path / "store")
    started = time.time()
    out = cli("sae", "efficientnet_lite0", "block10", "--store", store, "--threads", "1")
    assert out.exit_code == 0, out.output
    assert time.time() - started < 180
    [sae] = stored_dictionaries(Store(store), "efficientnet_lite0")
    assert sae.layer_id == "block10.sae"
    assert sae.meta["explained_variance"] >= 0.7
    assert (sae.meta["features"], sae.meta["k"], sae.meta["l0"]) == (448, 16, 16.0)
    assert sae.meta["dead_fraction"] < 0.5
    layers = [layer["id"] for layer in Store(store).model("efficientnet_lite0")["layers"]]
    assert layers[layers.index("block10") + 1] == "block10.sae"  # beside its layer
    again = cli("sae", "efficientnet_lite0", "block10", "--store", store)
    assert again.exit_code == 0 and "stored already" in again.output
    status = cli("status", "--store", store)
    assert "block10.sae" in status.output and "explained variance" in status.output


def test_unknown_layer_exits_2_with_close_names(tmp_path):
    out = CliRunner().invoke(main, ["sae", "efficientnet_lite0", "blok10", "--store", str(tmp_path / "s")])
    assert out.exit_code == 2
    assert "did you mean block10" in out.output
    assert not (tmp_path / "s").exists()  # nothing written
    out = CliRunner().invoke(main, ["sae", TOY, "conv2", "--k", "80", "--store", str(tmp_path / "s")])
    assert out.exit_code == 2 and "k must be in 1..64" in out.output


def _sae(store: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "microtome.cli", "sae", TOY, "conv2", "--store", store,
                             "--threads", "1", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_training_continues_from_its_checkpoint(tmp_path):
    args = ("--epochs", "300")
    whole = _sae(str(tmp_path / "whole"), *args)
    assert whole.wait(timeout=300) == 0, whole.stdout.read()
    store = str(tmp_path / "killed")
    run = _sae(store, *args)
    state = None
    deadline = time.time() + 120
    while time.time() < deadline and run.poll() is None:
        found = list(Path(store, "checkpoints").glob("*/state.pt"))
        if found:
            state = found[0]
            break
        time.sleep(0.05)
    assert state is not None and run.poll() is None, "training ended before a checkpoint was seen"
    run.send_signal(signal.SIGKILL)
    run.wait()
    rerun = _sae(store, *args)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output
    assert "continuing from the checkpoint" in output
    assert not list(Path(store, "checkpoints").glob("*/state.pt"))  # cleaned up once stored
    [a] = stored_dictionaries(Store(str(tmp_path / "whole")), "tiny_net")
    [b] = stored_dictionaries(Store(store), "tiny_net")
    assert a.meta["weights_sha256"] == b.meta["weights_sha256"]  # the same SAE as uninterrupted


def test_retraining_a_name_needs_force_and_drops_the_old_features(tmp_path):
    store = str(tmp_path / "store")
    assert cli("sae", TOY, "conv2", "--epochs", "2", "--store", store).exit_code == 0
    old = Store(store)
    old.put(ArtifactKey.for_params("tiny_net", "conv2.sae", 0, "labels", {"x": 1}), {"x": 1}, {}, {"labels": []})
    refused = CliRunner().invoke(main, ["sae", TOY, "conv2", "--epochs", "2", "--k", "8", "--store", store])
    assert refused.exit_code == 2 and "--force" in refused.output and "k" in refused.output
    forced = cli("sae", TOY, "conv2", "--epochs", "2", "--k", "8", "--store", store, "--force")
    assert forced.exit_code == 0, forced.output
    [sae] = stored_dictionaries(Store(store), "tiny_net")
    assert sae.meta["k"] == 8
    assert Store(store).find(model="tiny_net", layer="conv2.sae") == []  # no stale feature artifacts
    wider = cli("sae", TOY, "conv2", "--epochs", "2", "--features", "32", "--store", store)
    assert wider.exit_code == 0  # another width lives beside it
    assert [d.layer_id for d in stored_dictionaries(Store(store), "tiny_net")] == ["conv2.sae", "conv2.sae32"]


def test_build_trains_an_sae_and_builds_its_features(tmp_path):
    store = str(tmp_path / "store")
    common = ("--preset", "quick", "--store", store, "--threads", "1")
    out = cli("build", TOY, "--layers", "conv2", "--techniques", "sae", *common)
    assert out.exit_code == 0, out.output
    assert "conv2.sae" in [layer["id"] for layer in Store(store).model("tiny_net")["layers"]]
    out = cli("build", TOY, "--layers", "conv2.sae", "--units", "0-1",
              "--techniques", "dataset_examples,feature_vis,connections", *common)
    assert out.exit_code == 0, out.output
    built = Store(store).stats("tiny_net")
    assert built[("tiny_net", "conv2.sae", "feature_vis")] == 8  # 2 units x 4 variants
    assert built[("tiny_net", "conv2.sae", "dataset_examples")] == 2
    models = ModelService(Store(store))  # the web's on-demand renderer: its cached model carries the SAE
    summary = build_unit(store, TOY, "conv2.sae", 5, techniques=["feature_vis"], models=models, threads=1)
    assert summary.recorded == 4 and not summary.failed
    everything = cli("build", TOY, "--layers", "conv1", "--units", "0", "--techniques", "all", *common)
    assert everything.exit_code == 0
    assert [d.base for d in stored_dictionaries(Store(store), "tiny_net")] == ["conv2"]  # "all" trains none
