"""A 2-block timm ViT for tests: `toy_vit() -> model: images [B, 3, 32, 32] in [0, 1] -> logits
[B, 10]`, trained on Fashion-MNIST in seconds by `trained_toy_vit()`.

The small sibling of bench/train_tiny_vit.py (that one trains the real tiny ViT, minutes long):
patch 8 (16 tokens), width 32, two blocks, a few hundred Adam steps on a few thousand
images, no augmentation. Its normalization is inside the model, so it takes microtome's
dataset view as it is. Card-like facts are in `TOY_VIT`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from microtome.data.fashion import CLASS_NAMES, FashionMnistDataset
from microtome.runtime import torch_threads

TIMM_NAME = "vit_tiny_patch16_224"
TOY_VIT = {"timm_name": TIMM_NAME, "img_size": 32, "mean": 0.29, "std": 0.34,
           "class_names": CLASS_NAMES,
           "timm_kwargs": {"pretrained": False, "img_size": 32, "patch_size": 8,
                           "num_classes": len(CLASS_NAMES), "embed_dim": 32, "depth": 2,
                           "num_heads": 2, "mlp_ratio": 2.0, "class_token": False,
                           "global_pool": "avg"}}


class Normalized(nn.Module):
    """`(images - mean) / std`, then the ViT: `[B, 3, 32, 32]` in [0, 1] -> `[B, 10]`."""

    def __init__(self, vit: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std, self.vit = mean, std, vit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit((images - self.mean) / self.std)


def toy_vit(seed: int = 0) -> nn.Module:
    """The toy with random weights (seeded; the global RNG is left as it was)."""
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vit = timm.create_model(TIMM_NAME, **TOY_VIT["timm_kwargs"])
    return Normalized(vit, TOY_VIT["mean"], TOY_VIT["std"]).eval()


def fashion_views(split: str, count: int, root: str | Path | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` images of a split as microtome sees them: `([N, 3, 32, 32], [N])`."""
    data = FashionMnistDataset(split, root)
    count = min(count, len(data))
    images = torch.cat([b.images for b in data.batches(32, 1000, indices=range(count))])
    return images, torch.tensor(data.labels[:count])


def trained_toy_vit(train_images: int = 4000, epochs: int = 5, seed: int = 0,
                    root: str | Path | None = None) -> nn.Module:
    """The toy after `epochs` passes of Adam over the first `train_images` training images.

    On one thread: its matrices are too small to gain from two, and a second thread spinning
    on a busy machine costs ten times the work."""
    images, labels = fashion_views("train", train_images, root)  # [N, 3, 32, 32], [N]
    model = toy_vit(seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        for _ in range(epochs):
            for pick in torch.randperm(len(images), generator=gen).split(64):
                loss = nn.functional.cross_entropy(model(images[pick]), labels[pick])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of `model` on `images [N, 3, H, W]`."""
    return float((model(images).argmax(1) == labels).float().mean())


def tiny_timm_vit(weights: str = "random", dynamic: bool = True) -> nn.Module:
    """A bare 2-block timm ViT at 32 px (patch 8: a 4×4 grid, one class token, width 32, MLP 64),
    as a `tests.toy_vit:tiny_timm_vit` entry point: random weights (seed 0) or a state dict file.

    It keeps timm's `pretrained_cfg` (input size 32) and `dynamic_img_size`, so microtome
    describes it like a `timm:` model; `dynamic=False` is a fixed-size one (`tiny_fixed_vit`)."""
    import timm

    from microtome.zoo.weights_file import load_state_dict_file, load_strict

    with torch.random.fork_rng():
        torch.manual_seed(0)
        vit = timm.create_model(TIMM_NAME, pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                                depth=2, num_heads=2, mlp_ratio=2.0, num_classes=len(CLASS_NAMES),
                                dynamic_img_size=dynamic, dynamic_img_pad=dynamic)
    vit.class_names = CLASS_NAMES
    vit.pretrained_cfg = {**vit.pretrained_cfg, "input_size": (3, 32, 32)}  # timm keeps 224 there
    if weights not in ("random", "default"):
        load_strict(vit, load_state_dict_file(weights), str(weights))
    return vit.eval()


def tiny_fixed_vit(weights: str = "random") -> nn.Module:
    """`tiny_timm_vit` without a dynamic image size: it takes 32 px images only."""
    return tiny_timm_vit(weights, dynamic=False)
