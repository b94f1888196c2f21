"""The model page reads a transformer as blocks, and the landing page says whose weights each
model carries: the grouping rule (`present/graph.py: layer_groups`) on a ViT-shaped card and on every
registered CNN, the grouped graph SVG, and `/index.json`'s `weights_identity`."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from microtome.pipeline.pipeline import resolve
from microtome.store import Store
from microtome.web import create_app
from microtome.web.present.graph import GAP, LEFT, NODE_H, Group, graph_svg, group_edges, layer_groups
from microtome.zoo.card import chain_edges
from tests.web_fixtures import registry_summaries

# a 3-block ViT as zoo/derive.py lists it: the forward pass finishes each MLP before its block
VIT_IDS = ["block0_mlp", "block0", "block1_mlp", "block1", "block2_mlp", "block2", "logits"]
SHA = "ab" * 32


def layer(lid: str) -> dict:
    kind = "logits" if lid == "logits" else "tokens"
    units = 10 if lid == "logits" else 64 if lid.endswith("_mlp") else 32
    return {"id": lid, "kind": kind, "channels": units, "units": units, "module": lid,
            "size": [1, 1] if lid == "logits" else [4, 4], "aliases": []}


def vit_card(model_id: str, **fields) -> dict:
    return {"id": model_id, "title": model_id, "input_size": 32, "layers": [layer(i) for i in VIT_IDS],
            "edges": [list(e) for e in chain_edges(VIT_IDS)], **fields}


def test_a_transformer_groups_each_mlp_with_its_block_and_chains_the_residual_stream():
    groups = layer_groups(VIT_IDS)
    assert groups == [Group("block0", ("block0_mlp",)), Group("block1", ("block1_mlp",)),
                      Group("block2", ("block2_mlp",)), Group("logits")]
    drawn = group_edges(groups, chain_edges(VIT_IDS))
    # each MLP feeds its block (inside the group); the blocks are the chain, one link each
    assert drawn == [("block0_mlp", "block0"), ("block0", "block1"), ("block1_mlp", "block1"),
                     ("block1", "block2"), ("block2_mlp", "block2"), ("block2", "logits")]


def test_the_rule_is_a_letters_suffix_of_a_layer_that_exists():
    ids = ["stem", "stage0_block0", "stage0", "stage1_block0", "stage1", "conv1_2", "head_mlp", "x_attn", "x",
           "x_attn_out"]
    groups = layer_groups(ids)
    assert [g.main for g in groups if g.branches] == ["x"]  # head_mlp has no `head`; digits are parts
    assert Group("x", ("x_attn",)) in groups and Group("x_attn_out") in groups  # one level only


@pytest.mark.parametrize("model", sorted(registry_summaries()))
def test_a_cnn_graph_is_one_layer_per_row_with_the_cards_edges(model):
    card = registry_summaries()[model]
    ids = [entry["id"] for entry in card["layers"]]
    groups = layer_groups(ids)
    assert [g.layers for g in groups] == [(i,) for i in ids]
    assert group_edges(groups, card["edges"]) == [tuple(e) for e in card["edges"]]
    layers = [{**entry, "url": f"/models/{model}/{entry['id']}"} for entry in card["layers"]]
    svg = str(graph_svg(layers, card["edges"], href=lambda u: u))
    tops = [int(y) for y in re.findall(r'<a href="[^"]+" class="node"[^>]*><title>[^<]*</title><rect x="12" '
                                      r'y="(\d+)"', svg)]
    assert tops == [GAP // 2 + i * (NODE_H + GAP) for i in range(len(ids))]  # every node on the left, in order
    assert 'class="block"' not in svg and svg.count('class="edge') == len(card["edges"])


def test_the_vit_graph_draws_each_block_as_a_frame_with_its_mlp_beside_the_stream():
    layers = [{**layer(i), "url": f"/models/v/{i}"} for i in VIT_IDS]
    svg = str(graph_svg(layers, chain_edges(VIT_IDS), href=lambda u: u))
    place = {lid: (int(x), int(y)) for lid, x, y in re.findall(
        r'data-layer="([^"]+)"><title>[^<]*</title><rect x="(\d+)" y="(\d+)"', svg)}
    assert set(place) == set(VIT_IDS)
    for b in range(3):
        (xs, ys), (xm, ym) = place[f"block{b}"], place[f"block{b}_mlp"]
        assert xs == LEFT and ym == ys and xm > xs  # the MLP on the stream's row, to its right
    assert [place[f"block{b}"][1] for b in range(3)] + [place["logits"][1]] == sorted(
        {y for _, y in place.values()})  # one row per block, the stream's order, then logits
    boxes = re.findall(r'class="block" data-block="([^"]+)"><title>[^<]*</title><rect x="(-?\d+)" y="(-?\d+)" '
                       r'width="(\d+)" height="(\d+)"', svg)
    assert [b[0] for b in boxes] == ["block0", "block1", "block2"]
    width = int(re.search(r'<svg[^>]* width="(\d+)"', svg)[1])
    for main, *box in boxes:
        x, y, w, h = (int(v) for v in box)
        (xs, ys), (xm, _) = place[main], place[f"{main}_mlp"]
        assert 0 <= x < xs and 0 <= y < ys and ys + NODE_H < y + h < ys + NODE_H + GAP // 2  # frames both, not the next
        assert xm < x + w <= width
    assert svg.count('class="edge branch"') == 3 and svg.count('class="edge"') == 3  # chain: 2 links + logits
    assert 'class="edge skip"' not in svg


@pytest.fixture
def client(tmp_path):
    store = Store(tmp_path / "store")
    store.put_model("timm-vit_tiny_patch16_224", vit_card(
        "timm-vit_tiny_patch16_224", source="timm:vit_tiny_patch16_224", weights="random", trained=False,
        weights_source="hf-hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"))
    store.put_model("timm-deit_tiny_patch16_224", vit_card(
        "timm-deit_tiny_patch16_224", source="timm:deit_tiny_patch16_224.fb_in1k", weights="default",
        weights_source="hf-hub:timm/deit_tiny_patch16_224.fb_in1k", weights_sha256=SHA))
    store.put_model("tiny_vit", vit_card("tiny_vit", source="bench.train_tiny_vit:model",
                                         weights="/w/tiny_vit.safetensors", weights_sha256=SHA))
    store.put_model("toy", vit_card("toy", source="tests.toy_vit:tiny_timm_vit", weights="random", trained=False))
    store.close()
    with TestClient(create_app(tmp_path / "store", registry=lambda: registry_summaries(), on_demand=False)) as c:
        yield c


def test_the_landing_page_gives_every_built_models_source_and_weights(client):
    data = client.get("/index.json").json()
    models = {m["id"]: m for m in data["models"]}
    for m in models.values():  # the fields that were there before stay
        assert {"id", "title", "url", "trained", "weights", "built", "input_size", "num_classes",
                "weights_source", "layers", "units", "counts", "artifacts"} <= set(m)
    ident = {k: models[k]["weights_identity"] for k in models}
    vit = ident["timm-vit_tiny_patch16_224"]
    assert models["timm-vit_tiny_patch16_224"]["source"] == "timm:vit_tiny_patch16_224"
    assert vit["kind"] == "random" and vit["seed"] == 0 and vit["sha256"] is None and "untrained" in vit["label"]
    deit = ident["timm-deit_tiny_patch16_224"]
    assert deit["kind"] == "hub" and deit["hub_id"] == "timm/deit_tiny_patch16_224.fb_in1k" and deit["sha256"] == SHA
    assert deit["label"].startswith("hf-hub:timm/deit_tiny_patch16_224.fb_in1k") and SHA[:12] in deit["label"]
    tiny = ident["tiny_vit"]
    assert tiny["kind"] == "file" and tiny["path"] == "/w/tiny_vit.safetensors" and tiny["sha256"] == SHA
    assert tiny["label"] == f"file tiny_vit.safetensors (sha256 {SHA[:12]}\u2026)"
    assert ident["toy"]["kind"] == "random" and ident["toy"]["seed"] is None  # an entry point seeds itself
    lite = ident["efficientnet_lite0"]  # registered, not built: its package's weights
    assert lite["kind"] == "default" and lite["sha256"] == registry_summaries()["efficientnet_lite0"]["weights_sha256"]
    html = client.get("/").text
    assert "timm:deit_tiny_patch16_224.fb_in1k" in html and f"sha256 {SHA}" in html
    card = html[html.index('href="/models/timm-vit_tiny_patch16_224"'):][:900]
    assert "untrained: random weights, seed 0" in card


def test_the_model_page_json_lists_its_blocks(client):
    data = client.get("/models/timm-vit_tiny_patch16_224.json").json()
    assert data["edges"] == [list(e) for e in chain_edges(VIT_IDS)]  # the card's, as before
    assert data["groups"] == [{"id": f"block{b}", "layers": [f"block{b}", f"block{b}_mlp"]} for b in range(3)] + [
        {"id": "logits", "layers": ["logits"]}]
    assert data["model"]["weights_identity"]["kind"] == "random"


def test_an_entry_points_random_weights_are_untrained_in_the_build():
    spec = resolve("tests.toy_vit:tiny_timm_vit", "random").spec
    assert spec.weights == "random" and spec.trained is False
