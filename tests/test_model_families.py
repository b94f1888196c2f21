"""One test per family the derive rules cover beyond plain ViTs and CNNs (docs/model-sources.md):
DINOv2 with registers, EVA-02 (a gated MLP), SigLIP (no class token, headless) and Swin
(channels-last stages). Each family is built by its timm name, narrowed with timm's own
keyword arguments (fewer, thinner blocks) so it runs in a second; the modules, and so the
rules, are the family's. Oracles: the model's own numbers (prefix tokens, widths, grids) and
its own forward pass."""

from __future__ import annotations

import torch

from microtome.zoo.derive import derive_layers, num_prefix_tokens
from microtome.zoo.grid import TOKENS
from microtome.zoo.hooks import forward_to
from microtome.zoo.timm_models import no_inplace


def _timm(name: str, **kwargs):
    import timm

    torch.manual_seed(0)
    return no_inplace(timm.create_model(name, pretrained=False, **kwargs).eval())


def _read(model, layers, ids, x):
    by_id = {layer.id: layer for layer in layers}
    with torch.no_grad():
        return forward_to(model, x, {i: by_id[i].module for i in ids})


def _block_output(model, path: str, x: torch.Tensor) -> torch.Tensor:
    seen = {}
    handle = model.get_submodule(path).register_forward_hook(lambda m, i, o: seen.update(out=o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen["out"]


def test_dinov2_registers_are_left_out_of_the_grid():
    model = _timm("vit_small_patch14_reg4_dinov2", img_size=56, depth=2, embed_dim=64, num_heads=2)
    assert num_prefix_tokens(model) == 5  # the class token and 4 registers, as the model says
    layers = derive_layers(model, 56, has_classes=False)
    assert [(la.id, la.kind, la.units, la.size) for la in layers] == [
        ("block0_mlp", TOKENS, 256, (4, 4)), ("block0", TOKENS, 64, (4, 4)),
        ("block1_mlp", TOKENS, 256, (4, 4)), ("block1", TOKENS, 64, (4, 4))]  # headless: no logits
    x = torch.rand(1, 3, 56, 56)
    tokens = _block_output(model, "blocks.1", x)  # [1, 5 + 16, 64]
    grid = _read(model, layers, ["block1"], x)["block1"]  # [1, 64, 4, 4]
    assert torch.equal(grid, tokens[:, 5:].transpose(1, 2).reshape(1, 64, 4, 4))


def test_eva02s_gated_mlp_hidden_is_what_reaches_fc2():
    model = _timm("eva02_tiny_patch14_224", img_size=56, depth=2)
    layers = derive_layers(model, 56, has_classes=False)
    mlp_layer = next(la for la in layers if la.id == "block1_mlp")
    mlp = model.blocks[1].mlp
    assert "Glu" in type(mlp).__name__ and mlp_layer.units == mlp.fc2.in_features  # the gated width (fc1 / 2)
    x = torch.rand(1, 3, 56, 56)
    hidden = _block_output(model, mlp_layer.aliases[0], x)  # [1, N, hidden]
    with torch.no_grad():
        assert torch.allclose(mlp.fc2(mlp.norm(hidden)), _block_output(model, "blocks.1.mlp", x), atol=1e-6)
    assert num_prefix_tokens(model) == 1 and mlp_layer.size == (4, 4)


def test_siglip_has_no_prefix_tokens_and_no_head():
    model = _timm("vit_base_patch16_siglip_224", img_size=64, depth=2, embed_dim=64, num_heads=2)
    assert num_prefix_tokens(model) == 0
    layers = derive_layers(model, 64, has_classes=False)
    assert [la.id for la in layers] == ["block0_mlp", "block0", "block1_mlp", "block1"]
    assert {la.size for la in layers} == {(4, 4)}  # all 16 tokens are patches
    x = torch.rand(1, 3, 64, 64)
    tokens = _block_output(model, "blocks.0", x)
    assert torch.equal(_read(model, layers, ["block0"], x)["block0"], tokens.transpose(1, 2).reshape(1, 64, 4, 4))


def test_swin_stages_are_channels_last_maps_permuted():
    model = _timm("swin_tiny_patch4_window7_224", embed_dim=24, depths=(1, 1, 2, 1), num_heads=(1, 2, 3, 6))
    layers = derive_layers(model, 224, has_classes=True)
    stages = [la for la in layers if la.kind == "stage"]
    assert [(s.id, s.units, s.size) for s in stages] == [
        (f"stage{i}", info["num_chs"], (224 // info["reduction"],) * 2) for i, info in enumerate(model.feature_info)]
    assert [la.id for la in layers if la.kind == "block"] == ["stage2_block0"]  # stage 2 has 2 blocks
    x = torch.rand(1, 3, 224, 224)
    nhwc = _block_output(model, "layers.2", x)  # [1, 14, 14, 96]
    assert torch.equal(_read(model, layers, ["stage2"], x)["stage2"], nhwc.permute(0, 3, 1, 2))
    assert layers[-1].id == "logits" and layers[-1].units == 1000
