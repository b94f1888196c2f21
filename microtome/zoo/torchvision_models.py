"""torchvision families: googlenet, alexnet, vgg19, resnet50, inception_v3, as `ModelSpec`s.

Input: `[B, 3, S, S]` RGB, ImageNet mean/std on [0, 1] (S = 224, or 299 for inception_v3);
every exposed layer gives a post-activation output `[B, C, H, W]` (logits `[B, 1000]`).
The architectures are torchvision's, built with random weights; `load_default` fills them
through torchvision's weights API (a download, cached in torch hub's directory).

One setup per family, the one torchvision's pretrained weights expect:
- googlenet and inception_v3 are built with `transform_input=True` (they take ImageNet-
  normalized input and re-normalize it inside) and without auxiliary heads; the aux heads'
  keys (`aux1.`, `aux2.`, `AuxLogits.`) of a torchvision state dict are dropped on load, so
  a file of either kind loads strictly.
- every `nn.ReLU` is made non-inplace, so an exposed output is never overwritten later in
  the forward pass and always has its own autograd history.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial

from torch import nn
from torch.hub import get_dir
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from microtome.errors import MicrotomeError
from microtome.zoo.imagenet import imagenet_labels
from microtome.zoo.registry import load_strict, register_model, sha256_file
from microtome.zoo.spec import LayerSpec, ModelSpec, chain_edges

# A layer row: (id, module path, kind, channels, side of the square output, aliases).
Row = tuple[str, str, str, int, int, tuple[str, ...]]


# ---- builders ------------------------------------------------------------------------
def _no_inplace_relu(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def _drop_keys_on_load(model: nn.Module, prefixes: Sequence[str]) -> nn.Module:
    """Make `model.load_state_dict` ignore keys under `prefixes` (heads we do not build)."""

    def hook(_module, state_dict, prefix, *_args) -> None:
        for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in prefixes))]:
            del state_dict[key]

    model.register_load_state_dict_pre_hook(hook)
    return model


def _build_googlenet() -> nn.Module:
    model = tvm.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)
    return _drop_keys_on_load(_no_inplace_relu(model), ("aux1.", "aux2."))


def _build_inception_v3() -> nn.Module:
    model = tvm.inception_v3(weights=None, aux_logits=False, transform_input=True,
                             init_weights=True)
    return _drop_keys_on_load(_no_inplace_relu(model), ("AuxLogits.",))


def _build_plain(factory: Callable[..., nn.Module]) -> nn.Module:
    return _no_inplace_relu(factory(weights=None))


# ---- default weights -----------------------------------------------------------------
def _torchvision_loader(model_id: str, weights: WeightsEnum) -> Callable[[nn.Module], str]:
    """A `load_default` reading torchvision's `weights` (a WeightsEnum member); returns sha256."""

    def load(model: nn.Module) -> str:
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - offline, proxy, HTTP or hash errors alike
            raise MicrotomeError(
                f"could not download the default weights of {model_id} ({weights}) from "
                f"{weights.url}: {exc}. This machine may be offline: pass weights=PATH (a local "
                f"state dict file, e.g. that file downloaded elsewhere) or weights='random' "
                f"(untrained)", status=503) from exc
        load_strict(model, state, weights.url)
        # sha256 of the file load_state_dict_from_url just read from torch hub's cache
        return sha256_file(os.path.join(get_dir(), "checkpoints", os.path.basename(weights.url)))

    return load


# ---- specs ---------------------------------------------------------------------------
def _spec(model_id: str, title: str, build: Callable[[], nn.Module], weights: WeightsEnum,
          input_size: int, rows: Sequence[Row], description: str) -> ModelSpec:
    layers = tuple(LayerSpec(i, path, kind, ch, (side, side), aliases)
                   for i, path, kind, ch, side, aliases in rows)
    return ModelSpec(
        id=model_id, title=title, build=build, input_size=input_size, layers=layers,
        edges=chain_edges([layer.id for layer in layers]), labels=imagenet_labels(),
        weights_source=f"torchvision {weights} ({weights.url})", weights_sha256=None,
        load_default=_torchvision_loader(model_id, weights), description=description)


LOGITS = ("logits",)


@register_model
def googlenet() -> ModelSpec:
    # Lucid's InceptionV1 names (conv2d0, mixed4c, ...) are aliases.
    rows: list[Row] = [("conv1", "conv1", "conv", 64, 112, ("conv2d0",)),
                       ("conv2", "conv2", "conv", 64, 56, ("conv2d1",)),
                       ("conv3", "conv3", "conv", 192, 56, ("conv2d2",))]
    for name, channels, side in (("3a", 256, 28), ("3b", 480, 28), ("4a", 512, 14),
                                 ("4b", 512, 14), ("4c", 512, 14), ("4d", 528, 14),
                                 ("4e", 832, 14), ("5a", 832, 7), ("5b", 1024, 7)):
        rows.append((f"inception{name}", f"inception{name}", "inception", channels, side,
                     (f"mixed{name}",)))
    rows.append(("fc", "fc", "logits", 1000, 1, LOGITS + ("softmax2_pre_activation",)))
    return _spec("googlenet", "GoogLeNet (InceptionV1)", _build_googlenet,
                 tvm.GoogLeNet_Weights.DEFAULT, 224, rows,
                 "GoogLeNet / InceptionV1 (Szegedy et al. 2014), torchvision's ImageNet training; "
                 "the organism of the original Distill circuits work.")


@register_model
def alexnet() -> ModelSpec:
    # features: conv/relu pairs at (0,1), (3,4), (6,7), (8,9), (10,11); classifier relus 2, 5.
    rows: list[Row] = [("conv1", "features.1", "conv", 64, 55, ()),
                       ("conv2", "features.4", "conv", 192, 27, ()),
                       ("conv3", "features.7", "conv", 384, 13, ()),
                       ("conv4", "features.9", "conv", 256, 13, ()),
                       ("conv5", "features.11", "conv", 256, 13, ()),
                       ("fc6", "classifier.2", "linear", 4096, 1, ()),
                       ("fc7", "classifier.5", "linear", 4096, 1, ()),
                       ("fc8", "classifier.6", "logits", 1000, 1, LOGITS)]
    return _spec("alexnet", "AlexNet", partial(_build_plain, tvm.alexnet),
                 tvm.AlexNet_Weights.DEFAULT, 224, rows,
                 "AlexNet (Krizhevsky et al. 2012), torchvision's one-tower variant.")


@register_model
def vgg19() -> ModelSpec:
    rows: list[Row] = []
    index, side = 0, 224  # index into `features`: each conv is followed by its ReLU
    for stage, (convs, channels) in enumerate(((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
                                              start=1):
        for k in range(1, convs + 1):
            rows.append((f"conv{stage}_{k}", f"features.{index + 1}", "conv", channels, side, ()))
            index += 2
        index, side = index + 1, side // 2  # max pool
    rows += [("fc6", "classifier.1", "linear", 4096, 1, ()),
             ("fc7", "classifier.4", "linear", 4096, 1, ()),
             ("fc8", "classifier.6", "logits", 1000, 1, LOGITS)]
    return _spec("vgg19", "VGG-19", partial(_build_plain, tvm.vgg19),
                 tvm.VGG19_Weights.DEFAULT, 224, rows,
                 "VGG-19 without batch norm (Simonyan & Zisserman 2014).")


@register_model
def resnet50() -> ModelSpec:
    # Each bottleneck ends in its ReLU; a stage's id (layer3) is an alias of its last block.
    rows: list[Row] = [("conv1", "relu", "conv", 64, 112, ())]
    for stage, (blocks, channels, side) in enumerate(((3, 256, 56), (4, 512, 28), (6, 1024, 14),
                                                      (3, 2048, 7)), start=1):
        for b in range(blocks):
            rows.append((f"layer{stage}_{b}", f"layer{stage}.{b}", "block", channels, side,
                         (f"layer{stage}",) if b == blocks - 1 else ()))
    rows.append(("fc", "fc", "logits", 1000, 1, LOGITS))
    return _spec("resnet50", "ResNet-50", partial(_build_plain, tvm.resnet50),
                 tvm.ResNet50_Weights.DEFAULT, 224, rows,
                 "ResNet-50 (He et al. 2015), torchvision's weights.")


@register_model
def inception_v3() -> ModelSpec:
    rows: list[Row] = [("conv2d_1a", "Conv2d_1a_3x3", "conv", 32, 149, ()),
                       ("conv2d_2a", "Conv2d_2a_3x3", "conv", 32, 147, ()),
                       ("conv2d_2b", "Conv2d_2b_3x3", "conv", 64, 147, ()),
                       ("conv2d_3b", "Conv2d_3b_1x1", "conv", 80, 73, ()),
                       ("conv2d_4a", "Conv2d_4a_3x3", "conv", 192, 71, ())]
    for name, channels, side in (("5b", 256, 35), ("5c", 288, 35), ("5d", 288, 35),
                                 ("6a", 768, 17), ("6b", 768, 17), ("6c", 768, 17),
                                 ("6d", 768, 17), ("6e", 768, 17), ("7a", 1280, 8),
                                 ("7b", 2048, 8), ("7c", 2048, 8)):
        rows.append((f"mixed_{name}", f"Mixed_{name}", "inception", channels, side, ()))
    rows.append(("fc", "fc", "logits", 1000, 1, LOGITS))
    return _spec("inception_v3", "Inception-v3", _build_inception_v3,
                 tvm.Inception_V3_Weights.DEFAULT, 299, rows,
                 "Inception-v3 (Szegedy et al. 2015), torchvision's weights; input 299 px.")
