"""The trained Fashion-MNIST ViT by name: `fashion_vit(weights) -> nn.Module` (bare, timm-described).

A `package.module:function` entry point (docs/model-sources.md), so every command takes it:

    microtome layers bench.tiny_vit:fashion_vit --json
    microtome build bench.tiny_vit:fashion_vit --weights out/tiny_vit_fmnist.safetensors \
        --layers block2 --units 0-3 --techniques feature_vis,dataset_examples --preset quick \
        --dataset fashion_mnist

(run from the repository root, or with it on PYTHONPATH: `bench` is a folder, not a package
that is installed). The architecture is read from the card bench/train_tiny_vit.py writes
beside the weights (`PATH.json`: `timm_name`, `timm_kwargs`, `input_size`, `mean`, `std`,
`class_names`), so a model trained with other options loads the same way. `weights`: a
weights file (its card beside it), "default" (`out/tiny_vit_fmnist.safetensors` under the
repository root) or "random" (the default card's architecture, or the training script's
defaults when there is none; seed 0). The weights are loaded strictly; their identity (the
file's sha256) is on the microtome card.

`timm:vit_tiny_patch16_224` cannot name this model: the timm name fixes 224 px, patch 16, width
192 and a 1000-class head, and the `timm:` form has no place for keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.zoo.weights_file import load_state_dict_file, load_strict

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT / "out" / "tiny_vit_fmnist.safetensors"
TRAIN = "python bench/train_tiny_vit.py"


def read_card(weights: Path) -> dict:
    """The training card beside `weights` (same stem, `.json`); a MicrotomeError saying how to
    make one when it is missing."""
    path = weights.with_suffix(".json")
    if not path.is_file():
        raise MicrotomeError(f"no card {str(path)!r} beside the weights {str(weights)!r}: the "
                             f"architecture is read from it (`{TRAIN} --out {weights}` writes both)")
    return json.loads(path.read_text())


def _default_card() -> dict:
    if DEFAULT_WEIGHTS.with_suffix(".json").is_file():
        return read_card(DEFAULT_WEIGHTS)
    from bench.train_tiny_vit import Config, make_card

    return make_card(Config(), mean=0.5, std=0.5, accuracy=float("nan"), seconds=0.0, cpu_seconds=0.0)


def fashion_vit(weights: str = "default") -> nn.Module:
    """The tiny ViT that bench/train_tiny_vit.py trains: `[B, 3, 32, 32]` (normalized by the card's
    mean/std, which microtome applies) -> `[B, 10]` Fashion-MNIST logits.

    Built with `dynamic_img_size` (renders at any size, the position embeddings resampled);
    timm's `pretrained_cfg` carries the card's input size, mean and std, and `class_names`
    the ten classes, so microtome describes it like a `timm:` model."""
    import timm

    if weights == "random":
        card = _default_card()
    else:
        path = DEFAULT_WEIGHTS if weights == "default" else Path(weights)
        if not path.is_file():
            raise MicrotomeError(f"weights file {str(path)!r} does not exist: train it with `{TRAIN}` "
                                 "(writes out/tiny_vit_fmnist.safetensors and its .json card), pass "
                                 "--weights PATH or --weights random")
        card = read_card(path)
    kwargs = {**card["timm_kwargs"], "pretrained": False, "dynamic_img_size": True, "dynamic_img_pad": True}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(card["timm_name"], **kwargs)
    if weights != "random":
        load_strict(model, load_state_dict_file(path), str(path))
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": tuple(card["input_size"]),
                            "mean": tuple(card["mean"]), "std": tuple(card["std"]),
                            "crop_pct": 224 / 256, "interpolation": "bilinear"}  # microtome's own view
    model.class_names = list(card["class_names"])
    return model.eval()
