"""Models by name (`timm:NAME`, `torchvision:NAME`): derived cards, token layers on the patch
grid, weights from files, and the offline error for default weights. Random weights only."""

from __future__ import annotations

import json
import re

import pytest
import torch
from click.testing import CliRunner

from microtome.cli import main
from microtome.errors import MicrotomeError
from microtome.zoo import get_card, load_model
from microtome.zoo.hooks import forward_to, hooked
from microtome.zoo.sources import canonical_id, is_entry_point, parse_source

VIT = "timm:vit_tiny_patch16_224"
LAYER_ID = re.compile(r"[a-z0-9_]+")


def _layers_json(model: str) -> list[dict]:
    out = CliRunner().invoke(main, ["layers", model, "--weights", "random", "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_vit_tiny_has_residual_and_mlp_token_layers():
    layers = _layers_json(VIT)
    assert all(set(d) == {"id", "kind", "units", "size", "module", "aliases"} for d in layers)
    assert all(LAYER_ID.fullmatch(d["id"]) for d in layers)
    residual = [d for d in layers if re.fullmatch(r"block\d+", d["id"])]
    mlp = [d for d in layers if d["id"].endswith("_mlp")]
    assert [d["id"] for d in residual] == [f"block{i}" for i in range(12)]
    assert {(d["units"], tuple(d["size"]), d["kind"]) for d in residual} == {(192, (14, 14), "tokens")}
    assert {(d["units"], tuple(d["size"])) for d in mlp} == {(768, (14, 14))}
    assert residual[6]["aliases"] == ["blocks.6"] and mlp[6]["aliases"] == ["blocks.6.mlp.act"]
    assert layers[-1]["id"] == "logits" and layers[-1]["units"] == 1000
    card = get_card(VIT)
    assert len(card.class_names) == 1000 and card.class_names[0] == "tench"
    assert (card.input_size, card.mean, card.interpolation, card.crop_pct) == (224, (0.5,) * 3, "bicubic", 0.9)


def test_canonical_id_and_source_name_resolve_alike():
    source = parse_source("timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert (source.id, source.tag) == ("timm-vit_tiny_patch16_224", "augreg_in21k_ft_in1k")
    assert parse_source(source.id) == parse_source(VIT)
    assert canonical_id(VIT) == "timm-vit_tiny_patch16_224" and canonical_id("googlenet") == "googlenet"
    assert is_entry_point("tests.toy_models:tiny_net") and not is_entry_point(VIT)
    assert get_card("timm-vit_tiny_patch16_224") == get_card(VIT)
    assert get_card(VIT).id == "timm-vit_tiny_patch16_224"
    assert get_card(VIT).layer("blocks.6").id == "block6"  # a module path is an alias


def test_convnext_stages_and_blocks_match_feature_info():
    import timm

    reference = timm.create_model("convnext_atto")  # depths (2, 2, 6, 2), widths 40..320
    card = get_card("timm:convnext_atto")
    stages = [layer for layer in card.layers if layer.kind == "stage"]
    assert [(s.id, s.units, s.size) for s in stages] == [
        (f"stage{i}", info["num_chs"], (224 // info["reduction"],) * 2)
        for i, info in enumerate(reference.feature_info)]
    assert len([layer for layer in card.layers if layer.kind == "block"]) == 1 + 1 + 5 + 1
    assert card.layer("stages.2.blocks.5").id == "stage2"  # the last block is the stage's output
    assert card.layers[-1].id == "logits"


def test_clip_resnet_is_headless_layer_list_at_small_input():
    from microtome.zoo.derive import derive_layers
    from microtome.zoo.sources import Source
    from microtome.zoo.timm_models import class_names, create

    model = create(Source("timm", "resnet50x4_clip"))
    assert class_names(model) == ()
    layers = derive_layers(model, 64, has_classes=False)  # 64 px: the list, quickly
    ids = [layer.id for layer in layers]
    assert "logits" not in ids and ids[0] == "stem"
    assert [layer.units for layer in layers if layer.kind == "stage"] == [80, 320, 640, 1280, 2560]
    assert layers[-1].kind == "embedding" and layers[-1].units == 640  # CLIP's projection, not classes


def test_torchvision_resnet18_and_vit_b_16():
    resnet = get_card("torchvision:resnet18")
    assert [(s.id, s.units, s.size[0]) for s in resnet.layers if s.kind == "stage"] == [
        ("stage0", 64, 56), ("stage1", 128, 28), ("stage2", 256, 14), ("stage3", 512, 7)]
    assert resnet.layer("layer4").id == "stage3" and resnet.layers[-1].units == 1000
    assert resnet.class_names[0] == "tench" and resnet.interpolation == "bilinear"
    vit = get_card("torchvision-vit_b_16")
    tokens = [layer for layer in vit.layers if layer.kind == "tokens"]
    assert len(tokens) == 24 and {(t.units, t.size) for t in tokens[1::2]} == {(768, (14, 14))}
    assert {(t.units, t.size) for t in tokens[0::2]} == {(3072, (14, 14))}
    assert vit.layers[-1].id == "logits" and vit.layers[-1].units == 1000


def test_a_fixed_size_model_renders_feature_vis_at_its_input_size():
    from microtome.techniques.builtin import FV_PRESETS
    from microtome.techniques.declaration import Context
    from microtome.techniques.registry import technique

    fv = technique("feature_vis")
    vit, timm_vit = get_card("torchvision:vit_b_16"), get_card(VIT)
    assert vit.fixed_size and not timm_vit.fixed_size  # timm's takes any size (dynamic_img_size)
    sizes = {p["size"] for p in fv.params(Context("quick", input_size=224, fixed_size=True))}
    assert sizes == {224}  # not the preset's, resized
    assert {p["size"] for p in fv.params(Context("quick", input_size=224))} == {FV_PRESETS["quick"]["size"]}
    assert {p["size"] for p in fv.params(Context("quick", input_size=32))} == {32}


def test_token_layer_reads_patch_tokens_on_the_grid():
    model, spec = load_model(VIT, weights="random")
    assert spec.weights == "random" and spec.trained is False
    x = torch.rand(2, 3, 224, 224, requires_grad=True)
    with hooked(model, {"raw": "blocks.6", "block6": spec.layer("block6").module}) as captured:
        model(x)
    raw, got = captured["raw"], captured["block6"]
    assert torch.equal(forward_to(model, x, {"block6": spec.layer("block6").module})["block6"], got)
    oracle = raw[:, 1:].reshape(2, 14, 14, 192).permute(0, 3, 1, 2)  # class token dropped
    assert got.shape == (2, 192, 14, 14) and torch.equal(got, oracle)
    got[:, 5].mean().backward()  # a view: gradients reach the image
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_replacing_a_token_layer_replaces_the_patch_tokens():
    model, spec = load_model(VIT, weights="random")
    x = torch.rand(1, 3, 224, 224)
    view = model.get_submodule(spec.layer("block6").module)
    handle = view.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    with torch.no_grad():
        ablated = model(x)
    handle.remove()
    handle = model.blocks[6].register_forward_hook(
        lambda _m, _i, out: torch.cat([out[:, :1], torch.zeros_like(out[:, 1:])], 1))
    with torch.no_grad():
        oracle = model(x)
    handle.remove()
    with torch.no_grad():
        plain = model(x)
    assert torch.allclose(ablated, oracle) and not torch.allclose(plain, oracle)


def test_safetensors_weights_load_strictly(tmp_path):
    from safetensors.torch import save_file

    from microtome.zoo.loading import sha256_file

    model, _ = load_model("timm:convnext_atto", weights="random")
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    path = tmp_path / "atto.safetensors"
    save_file(state, str(path))
    loaded, spec = load_model("timm:convnext_atto", weights=str(path))
    model.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert (spec.weights, spec.trained, spec.weights_sha256) == (str(path), True, sha256_file(path))
    wrong = tmp_path / "vit.safetensors"
    save_file(load_model(VIT, weights="random")[0].state_dict(), str(wrong))
    with pytest.raises(MicrotomeError, match="do not fit"):
        load_model("timm:convnext_atto", weights=str(wrong))


def test_default_weights_offline_exit_2_and_store_untouched(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    store = tmp_path / "store"
    out = CliRunner().invoke(main, ["build", "timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                                    "--store", str(store), "--layers", "block6", "--units", "0"])
    assert out.exit_code == 2, out.output
    assert "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k" in out.output
    assert "--weights PATH" in out.output and "--weights random" in out.output
    assert "Traceback" not in out.output
    assert not store.exists() or not any(store.iterdir())


def test_sae_reads_a_token_layer_on_its_grid():
    from microtome.zoo.sae import TopKSAE, attach_dictionary

    model, spec = load_model(VIT, weights="random")
    sae = TopKSAE(192, 64, 8)
    model, spec = attach_dictionary(model, spec, "block6", sae)
    x = torch.rand(1, 3, 224, 224)
    out = forward_to(model, x, {name: spec.layer(name).module for name in ("block6", "block6.sae")})
    assert out["block6.sae"].shape == (1, 64, 14, 14)
    assert torch.allclose(out["block6.sae"], sae.encode(out["block6"]))  # the SAE of the patch grid
