"""Every technique on token layers (`[B, N, D]` read as `[B, D, gh, gw]`), random weights:
`tests.toy_vit:tiny_timm_vit` (a 2-block timm ViT, 32 px, a 4×4 patch grid) and, where the
issue names it, `timm:vit_tiny_patch16_224`. Oracles: brute force for dataset examples, an
exactly linear token toy for the measured connections, a model against itself for CKA."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from microtome.cli import main
from microtome.data import get_dataset
from microtome.techniques.builtin import TUNING_PRESETS
from microtome.techniques.connections import connections, load_images
from microtome.techniques.examples import collect, spatial_max
from microtome.techniques.tuning import tuning
from microtome.zoo import load_model
from microtome.zoo.hooks import forward_to

TOY = "tests.toy_vit:tiny_timm_vit"
SIZE = 32


@pytest.fixture(scope="module")
def toy():
    return load_model(TOY, weights="random")


def test_the_toy_has_token_layers_on_a_4x4_grid(toy):
    _, spec = toy
    tokens = [layer for layer in spec.layers if layer.kind == "tokens"]
    assert [(t.id, t.units, t.size) for t in tokens] == [
        ("block0_mlp", 64, (4, 4)), ("block0", 32, (4, 4)), ("block1_mlp", 64, (4, 4)), ("block1", 32, (4, 4))]


def test_dataset_examples_on_token_layers_equal_brute_force(toy):
    model, spec = toy
    data = get_dataset("samples")
    stats = collect(model, spec, ["block1", "block0_mlp"], data, SIZE, batch_size=5, k=3)
    images = torch.stack([data.load(i, SIZE) for i in range(len(data))])  # [N, 3, 32, 32]
    for layer in ("block1", "block0_mlp"):
        with torch.no_grad():
            act = forward_to(model, spec.preprocess(images), {layer: spec.layer(layer).module})[layer]
        assert act.shape[2:] == (4, 4) and stats[layer].grid == (4, 4)  # the patch grid
        values, _ = spatial_max(act)  # [N, C]
        want = torch.topk(values.T, 3, dim=1)  # [C, 3]
        torch.testing.assert_close(stats[layer].top.values, want.values)


class LinearTokens(nn.Module):
    """Patch tokens = mean colour of each 8×8 patch (`[B, 16, 3]`) after one zero class token;
    block i: `x + mlp(x)`, `mlp` one bias-free linear map. So block1 = (I + W1) block0 exactly."""

    num_prefix_tokens = 1
    input_size = SIZE
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def __init__(self, w0: torch.Tensor, w1: torch.Tensor):
        super().__init__()
        self.blocks = nn.ModuleList([_Residual(w0), _Residual(w1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = nn.functional.avg_pool2d(x, 8).flatten(2).transpose(1, 2)  # [B, 16, 3]
        x = torch.cat([torch.zeros_like(patches[:, :1]), patches], 1)  # [B, 17, 3]
        for block in self.blocks:
            x = block(x)
        return x[:, 0]


class _Residual(nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, 3, bias=False))
        with torch.no_grad():
            self.mlp[0].weight.copy_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


def linear_tokens() -> nn.Module:
    w1 = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, -1.0], [0.0, 3.0, -0.5]])
    return LinearTokens(torch.zeros(3, 3), w1).eval()


def test_connections_between_token_layers_are_gradient_times_input_on_a_linear_toy():
    """No weight path between two blocks (a residual add): the measured attribution is used,
    A[j, i] = mean over images of sum over patches of a1[i] * d(mean of a2[j]) / d a1[i],
    which for block1 = (I + W1) block0 is (I + W1)[j, i] × block0's mean of channel i."""
    model, spec = load_model("tests.test_token_layers:linear_tokens", weights="default")
    assert [(layer.id, layer.size) for layer in spec.layers] == [("block0", (4, 4)), ("block1", (4, 4))]
    data = get_dataset("samples")
    images = load_images(data, 6, SIZE)  # the images connections reads
    colour = nn.functional.avg_pool2d(images, 8).mean((0, 2, 3))  # block0's mean per channel [3]
    oracle = (torch.eye(3) + model.blocks[1].mlp[0].weight) * colour  # [C2, C1]
    inputs = connections(model, spec, "block1", [0, 1, 2], {"images": 6, "top": 3}, dataset=data)
    outputs = connections(model, spec, "block0", [0, 1, 2], {"images": 6, "top": 3}, dataset=data)
    for j, result in enumerate(inputs):
        assert result.meta["method"]["inputs"] == "gradient"
        got = {e["unit"]: e["weight"] for e in result.meta["inputs"]}
        assert got == pytest.approx({i: float(oracle[j, i]) for i in range(3)}, rel=1e-4, abs=1e-6)
    for i, result in enumerate(outputs):  # forward mode (columns) agrees with reverse mode (rows)
        got = {e["unit"]: e["weight"] for e in result.meta["outputs"]}
        assert got == pytest.approx({j: float(oracle[j, i]) for j in range(3)}, rel=1e-4, abs=1e-6)


def test_connections_through_attention_run_and_class_token_pooling_hides_patches(toy):
    """Through attention (torch's math kernel: the fused one has no forward mode). The last
    block's patch tokens do not reach the logits of a class-token head: their weights are 0."""
    model, spec = toy
    data = get_dataset("samples")
    mlp = connections(model, spec, "block1_mlp", [0, 1], {"images": 4}, dataset=data)
    for result in mlp:
        weights = [e["weight"] for e in result.meta["inputs"] + result.meta["outputs"]]
        assert result.meta["layer_methods"] == {"block0": "gradient", "block1": "gradient"}
        assert all(math.isfinite(w) for w in weights) and any(w != 0 for w in weights)
    (last,) = connections(model, spec, "block1", [0], {"images": 4}, dataset=data)
    assert last.meta["classes"] and all(c["weight"] == 0.0 for c in last.meta["classes"])


def test_tuning_on_a_token_layer_is_finite(toy):
    model, spec = toy
    results = tuning(model, spec, "block1_mlp", [0, 3], TUNING_PRESETS["quick"])
    assert [r.unit for r in results] == [0, 3]
    for r in results:
        curves = json.dumps(r.meta["families"])
        assert "NaN" not in curves and "Infinity" not in curves
        assert r.files["plot.png"][:4] == b"\x89PNG"


def test_build_of_every_unit_technique_on_token_layers(toy, tmp_path):
    out = CliRunner().invoke(main, ["build", TOY, "--weights", "random", "--layers", "block1", "--units", "0",
                                    "--techniques", "dataset_examples,connections,labels,tuning",
                                    "--preset", "quick", "--store", str(tmp_path), "--threads", "1"])
    assert out.exit_code == 0 and "failed" not in out.output, out.output
    from microtome.store import Store

    found = {a.key.technique: a.meta for a in Store(tmp_path).find(model="tiny_timm_vit")}
    assert set(found) == {"dataset_examples", "connections", "labels", "tuning"}
    assert found["dataset_examples"]["receptive_field"]["grid"] == [4, 4]
    assert isinstance(found["labels"]["labels"], list)


def test_sae_on_block_patch_tokens(tmp_path):
    out = CliRunner().invoke(main, ["sae", TOY, "block1", "--weights", "random", "--store", str(tmp_path),
                                    "--epochs", "2", "--features", "64", "--k", "4"])
    assert out.exit_code == 0, out.output
    from microtome.pipeline.sae import train_sae_into_store

    again = train_sae_into_store(tmp_path, TOY, "block1", features=64, k=4, epochs=2, weights="random")
    data = get_dataset("samples")
    assert again.stored_already and again.meta["vectors"] == 16 * (len(data) - len(data.skipped))  # patches only
    assert again.meta["explained_variance"] > 0


def test_compare_a_convnext_and_a_vit_gives_cka(tmp_path):
    out = CliRunner().invoke(main, ["compare", "timm:convnext_atto", "timm:vit_tiny_patch16_224", "--weights-a",
                                    "random", "--weights-b", "random", "--images", "4",
                                    "--layers", "stage2=block6", "--store", str(tmp_path), "--threads", "1"])
    assert out.exit_code == 0, out.output
    row = next(line.split() for line in out.output.splitlines() if line.startswith("stage2"))
    assert row[1] == "block6" and 0 < float(row[-1]) <= 1


def test_a_vit_against_itself_has_cka_one(tmp_path):
    from microtome.pipeline.compare import compare_into_store

    summary = compare_into_store(tmp_path, TOY, TOY, "block1=block1,block0_mlp=block0_mlp", images=5)
    assert [row["cka"] for row in summary.rows] == pytest.approx([1.0, 1.0], abs=1e-4)
    assert all(row["median_best_r"] == pytest.approx(1.0, abs=1e-4) for row in summary.rows)


def test_inspect_a_photo_with_vit_tiny_gives_maps_on_the_14x14_grid(tmp_path):
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    out = CliRunner().invoke(main, ["inspect", "timm:vit_tiny_patch16_224", str(photo), "--weights", "random",
                                    "--layers", "block6,block10", "--groups", "2", "--no-render",
                                    "--out", str(tmp_path / "out"), "--threads", "1"])
    assert out.exit_code == 0, out.output
    layers = json.loads((tmp_path / "out" / "inspect.json").read_text())["layers"]
    assert layers["block6"]["shape"] == [192, 14, 14]
    assert all(np.shape(g["map"]) == (14, 14) for g in layers["block6"]["groups"])
    attribution = layers["block6"]["attribution"]
    assert attribution["next"] == "block10" and np.shape(attribution["groups"]) == (2, 2)
    assert np.shape(attribution["classes"][0]["map"]) == (14, 14)
    assert all(math.isfinite(v) for row in attribution["groups"] for v in row)


def test_search_by_photo_on_token_layers(toy):
    from PIL import Image

    from microtome.techniques.photo_search import search_photo

    model, spec = toy
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    histograms = {"block1": {u: ([0.0, 1.0, 2.0], [1, 1]) for u in range(4)}}
    found = search_photo(model, spec, image, histograms, top=2)
    assert len(found["predictions"]) == 5 and len(found["layers"]["block1"]) == 2
    from microtome.techniques.photo_search import photo_view

    with torch.no_grad():
        act = forward_to(model, spec.preprocess(photo_view(image, SIZE)), {"block1": spec.layer("block1").module})
    best = act["block1"][0, :4].flatten(1).amax(1)  # [4]: each unit's maximum over the 4×4 grid
    assert {r["unit"]: r["activation"] for r in found["layers"]["block1"]} == {
        u: pytest.approx(float(best[u]), abs=1e-4) for u in best.argsort(descending=True)[:2].tolist()}


def test_a_fixed_size_model_renders_at_any_size_through_its_input_size(tmp_path):
    model, spec = load_model("tests.toy_vit:tiny_fixed_vit", weights="random")
    assert spec.fixed_size and not load_model(TOY, weights="random")[1].fixed_size
    with pytest.raises(AssertionError):  # the model itself refuses other sizes
        model(torch.zeros(1, 3, 24, 24))
    x = torch.rand(2, 3, 24, 24)
    resized = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(spec.preprocess(x), spec.preprocess(resized))
    out = CliRunner().invoke(main, ["render", "tests.toy_vit:tiny_fixed_vit", "--weights", "random", "block1:0",
                                    "--steps", "2", "--size", "24", "--no-schedule", "-o", str(tmp_path / "a.png")])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["render", "tests.toy_vit:tiny_fixed_vit", "--weights", "random", "block1:0",
                                    "--preset", "quick", "-o", str(tmp_path / "b.png")])
    assert out.exit_code == 0, out.output


def test_a_token_layers_field_is_its_effective_field():
    """Oracle: with block0's attention and MLP outputs zeroed, block0's stream at a patch is its
    own patch embedding plus a constant, so its effective field is exactly that 8 x 8 patch;
    block1, whose attention (near uniform at random init) is made to outweigh its residual,
    sees well beyond its patch."""
    from microtome.zoo.receptive import receptive_fields

    model, spec = load_model(TOY, weights="random")
    block = spec.layer("block0").aliases[0]  # blocks.0
    with torch.no_grad():
        for name in (f"{block}.attn.proj", f"{block}.mlp.fc2"):
            model.get_submodule(name).weight.zero_()
            model.get_submodule(name).bias.zero_()
        model.get_submodule(spec.layer("block1").aliases[0] + ".attn.proj").weight.mul_(50)
    fields = receptive_fields(model, spec, ["block0", "block1"], SIZE)
    assert fields["block0"].extent == (8, 8) and fields["block0"].stride == (8.0, 8.0)
    assert fields["block0"].box(2, 1) == (16, 8, 24, 16)  # patch (2, 1): rows 16-23, columns 8-15
    assert fields["block1"].extent[0] > 16 and fields["block1"].extent[1] > 16


def test_feature_vis_gates_the_gelu_of_an_mlp_layer_only():
    """The renderer gates the GELU a unit's objective reads (an MLP layer's, through its grid
    view), not those of a residual-stream layer, and only on its private copy."""
    from microtome.optvis.fast import private_copy
    from microtome.optvis.redirect import gate_gelus

    model, spec = load_model(TOY, weights="random")
    work = private_copy(model)
    assert gate_gelus(work, [spec.layer("block1").module]) == 0
    assert gate_gelus(work, [spec.layer("block0_mlp").module]) == 1
    assert "forward" in vars(work.get_submodule(spec.layer("block0_mlp").aliases[0]))
    assert not any("forward" in vars(m) for m in model.modules() if isinstance(m, nn.GELU))
