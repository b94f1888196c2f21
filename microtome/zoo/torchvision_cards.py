"""torchvision families as cards (torch-free): googlenet, alexnet, vgg19, resnet50, inception_v3.

Input: `[B, 3, S, S]` RGB, ImageNet mean/std on [0, 1] (S = 224, or 299 for inception_v3);
every exposed layer gives a post-activation output `[B, C, H, W]` (logits `[B, 1000]`).
`WEIGHTS` names each model's torchvision weights (`torchvision.models.get_weight(name)`) and
their URL, so a card says where its weights come from without importing torchvision; the
torch side (torchvision_models.py) builds the architectures and loads those weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from microtome.zoo.card import LayerCard, ModelCard, chain_edges
from microtome.zoo.imagenet import imagenet_labels
from microtome.zoo.registry import register_model

# A layer row: (id, module path, kind, channels, side of the square output, aliases).
Row = tuple[str, str, str, int, int, tuple[str, ...]]
BUILDER = "microtome.zoo.torchvision_models:torch_side"
URL = "https://download.pytorch.org/models/"
WEIGHTS = {  # model id: (torchvision weights name, file under URL)
    "googlenet": ("GoogLeNet_Weights.IMAGENET1K_V1", "googlenet-1378be20.pth"),
    "alexnet": ("AlexNet_Weights.IMAGENET1K_V1", "alexnet-owt-7be5be79.pth"),
    "vgg19": ("VGG19_Weights.IMAGENET1K_V1", "vgg19-dcbb9e9d.pth"),
    "resnet50": ("ResNet50_Weights.IMAGENET1K_V2", "resnet50-11ad3fa6.pth"),
    "inception_v3": ("Inception_V3_Weights.IMAGENET1K_V1", "inception_v3_google-0cc3c7bd.pth"),
}
LOGITS = ("logits",)


def _card(model_id: str, title: str, input_size: int, rows: Sequence[Row], description: str) -> ModelCard:
    layers = tuple(LayerCard(i, path, kind, ch, (side, side), aliases) for i, path, kind, ch, side, aliases in rows)
    name, file = WEIGHTS[model_id]
    return ModelCard(
        id=model_id, title=title, source="zoo", input_size=input_size, layers=layers,
        edges=chain_edges([layer.id for layer in layers]), class_names=imagenet_labels(),
        weights_source=f"torchvision {name} ({URL}{file})", weights_sha256=None, description=description)


@register_model(BUILDER)
def googlenet() -> ModelCard:
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
    return _card("googlenet", "GoogLeNet (InceptionV1)", 224, rows,
                 "GoogLeNet / InceptionV1 (Szegedy et al. 2014), torchvision's ImageNet training; "
                 "the organism of the original Distill circuits work.")


@register_model(BUILDER)
def alexnet() -> ModelCard:
    # features: conv/relu pairs at (0,1), (3,4), (6,7), (8,9), (10,11); classifier relus 2, 5.
    rows: list[Row] = [("conv1", "features.1", "conv", 64, 55, ()),
                       ("conv2", "features.4", "conv", 192, 27, ()),
                       ("conv3", "features.7", "conv", 384, 13, ()),
                       ("conv4", "features.9", "conv", 256, 13, ()),
                       ("conv5", "features.11", "conv", 256, 13, ()),
                       ("fc6", "classifier.2", "linear", 4096, 1, ()),
                       ("fc7", "classifier.5", "linear", 4096, 1, ()),
                       ("fc8", "classifier.6", "logits", 1000, 1, LOGITS)]
    return _card("alexnet", "AlexNet", 224, rows, "AlexNet (Krizhevsky et al. 2012), torchvision's one-tower variant.")


@register_model(BUILDER)
def vgg19() -> ModelCard:
    rows: list[Row] = []
    index, side = 0, 224  # index into `features`: each conv is followed by its ReLU
    for stage, (convs, channels) in enumerate(((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)), start=1):
        for k in range(1, convs + 1):
            rows.append((f"conv{stage}_{k}", f"features.{index + 1}", "conv", channels, side, ()))
            index += 2
        index, side = index + 1, side // 2  # max pool
    rows += [("fc6", "classifier.1", "linear", 4096, 1, ()),
             ("fc7", "classifier.4", "linear", 4096, 1, ()),
             ("fc8", "classifier.6", "logits", 1000, 1, LOGITS)]
    return _card("vgg19", "VGG-19", 224, rows, "VGG-19 without batch norm (Simonyan & Zisserman 2014).")


@register_model(BUILDER)
def resnet50() -> ModelCard:
    # Each bottleneck ends in its ReLU; a stage's id (layer3) is an alias of its last block.
    rows: list[Row] = [("conv1", "relu", "conv", 64, 112, ())]
    for stage, (blocks, channels, side) in enumerate(((3, 256, 56), (4, 512, 28), (6, 1024, 14),
                                                      (3, 2048, 7)), start=1):
        for b in range(blocks):
            rows.append((f"layer{stage}_{b}", f"layer{stage}.{b}", "block", channels, side,
                         (f"layer{stage}",) if b == blocks - 1 else ()))
    rows.append(("fc", "fc", "logits", 1000, 1, LOGITS))
    return _card("resnet50", "ResNet-50", 224, rows, "ResNet-50 (He et al. 2015), torchvision's weights.")


@register_model(BUILDER)
def inception_v3() -> ModelCard:
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
    return _card("inception_v3", "Inception-v3", 299, rows,
                 "Inception-v3 (Szegedy et al. 2015), torchvision's weights; input 299 px.")
