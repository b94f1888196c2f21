"""Train a tiny timm ViT on Fashion-MNIST on the CPU: `(config) -> weights .safetensors + card .json`.

A trained transformer that can be checked offline (no pretrained ViT can be downloaded here).
Images are microtome's own view of the `fashion_mnist` data at 32 x 32 (gray as RGB, the
28 x 28 garment resized to 32; see microtome/data/fashion.py), so a model that reads this
dataset through microtome sees what it was trained on. Target: >= 85% test accuracy on
2 threads in <= 15 minutes (docs/tiny-vit.md has the measured figures).

    OMP_WAIT_POLICY=PASSIVE python bench/train_tiny_vit.py            # -> out/tiny_vit_fmnist.*
    python bench/train_tiny_vit.py --epochs 1 --limit 5000            # a quick smoke run

The card beside the weights (same stem, .json) is plain data: the timm name and keyword
arguments that rebuild the model (`timm.create_model(card["timm_name"], **card["timm_kwargs"])`),
the input size, mean/std, class names, and how it was trained and scored.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from microtome.data.fashion import CLASS_NAMES, FashionMnistDataset
from microtome.runtime import torch_threads

TIMM_NAME = "vit_tiny_patch16_224"  # the family; the card's kwargs make it tiny and 32 px
IMG_SIZE = 32
DEFAULT_OUT = Path("out/tiny_vit_fmnist.safetensors")


@dataclass
class Config:
    """What the run trains and how; every field is a command-line option."""

    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 2.0
    patch_size: int = 4
    epochs: int = 6
    batch_size: int = 64  # more, smaller steps: the run is short of steps, not of batch size
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps with a linear warm-up, then cosine to 0
    crop_pad: int = 0  # random-crop padding in pixels (0: no crop augmentation)
    flip: bool = True  # random horizontal flips
    threads: int = 2
    seed: int = 0
    limit: int = 0  # train on the first `limit` images only (0: all 60,000)


def timm_kwargs(cfg: Config) -> dict:
    """The keyword arguments that turn TIMM_NAME into this run's model."""
    return {"pretrained": False, "img_size": IMG_SIZE, "patch_size": cfg.patch_size,
            "num_classes": len(CLASS_NAMES), "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio,
            "class_token": False, "global_pool": "avg"}  # mean-pooled tokens learn faster here


def build_model(kwargs: dict) -> torch.nn.Module:
    """The model a card describes, with fresh weights."""
    import timm

    return timm.create_model(TIMM_NAME, **kwargs)


def load_split(split: str, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(images [N, 1, 32, 32] in [0, 1], labels [N])`: microtome's view of one split.

    The three channels of a gray image are equal, so one is kept (a quarter of the memory);
    `to_rgb` repeats it when a batch goes into the model."""
    data = FashionMnistDataset(split)
    order = range(min(limit, len(data)) if limit else len(data))
    images = torch.empty(len(order), 1, IMG_SIZE, IMG_SIZE)
    for batch in data.batches(IMG_SIZE, 2000, indices=order):
        images[batch.indices] = batch.images[:, :1]  # [B, 3, 32, 32] -> [B, 1, 32, 32]
    return images, torch.tensor(data.labels[:len(order)])


def to_rgb(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """`[B, 1, H, W]` in [0, 1] -> the model's input `[B, 3, H, W]`, normalized."""
    return ((images - mean) / std).expand(-1, 3, -1, -1)


def augment(images: torch.Tensor, cfg: Config, gen: torch.Generator) -> torch.Tensor:
    """Random crops of the black-padded images and random horizontal flips: `[B, 1, H, W]`."""
    if cfg.crop_pad:
        p, (b, _, h, w) = cfg.crop_pad, images.shape
        padded = F.pad(images, (p, p, p, p))  # black, as the border of every image
        dy, dx = torch.randint(0, 2 * p + 1, (2, b), generator=gen).tolist()
        images = torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(zip(dy, dx))])
    if cfg.flip:
        flip = torch.rand(len(images), generator=gen) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             mean: float, std: float, batch_size: int = 1000) -> float:
    """Top-1 accuracy over `images [N, 1, H, W]`."""
    model.eval()
    right = 0
    for start in range(0, len(images), batch_size):
        logits = model(to_rgb(images[start:start + batch_size], mean, std))  # [B, 10]
        right += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    return right / max(len(images), 1)


def lr_at(step: int, total: int, cfg: Config) -> float:
    """Linear warm-up over the first `cfg.warmup` of the steps, then cosine decay to 0."""
    warm = max(1, round(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train(cfg: Config, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float,
          progress: bool = True) -> torch.nn.Module:
    """AdamW with warm-up and cosine decay over `cfg.epochs` passes of `images [N, 1, 32, 32]`."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(timm_kwargs(cfg))
    decay = [p for p in model.parameters() if p.ndim >= 2]  # no decay on norms, biases
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    per_epoch = math.ceil(len(images) / cfg.batch_size)
    total = cfg.epochs * per_epoch
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, file=sys.stdout)
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), cfg.batch_size):
            pick = order[start:start + cfg.batch_size]
            x = to_rgb(augment(images[pick], cfg, gen), mean, std)  # [B, 3, 32, 32]
            loss = F.cross_entropy(model(x), labels[pick])
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
            bar.update()
    bar.close()
    return model.eval()


def save(model: torch.nn.Module, out: Path, card: dict) -> tuple[Path, Path]:
    """Write the state dict (.safetensors, or .pth without safetensors) and the card (.json)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        weights = out.with_suffix(".pth")
        torch.save(state, weights)
    else:
        weights = out.with_suffix(".safetensors")
        save_file(state, str(weights), metadata={"timm_name": TIMM_NAME})
    card = {**card, "weights": weights.name}
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return weights, card_path


def load_saved(card_path: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a saved model from its card and weights (the round trip a loader will make)."""
    card = json.loads(card_path.read_text())
    model = build_model(card["timm_kwargs"])
    weights = card_path.with_name(card["weights"])
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, weights_only=True)
    model.load_state_dict(state)
    return model.eval(), card


def check_saved(card_path: Path, threads: int) -> float:
    """Test accuracy of a saved model read back from disk, through microtome's dataset view."""
    model, card = load_saved(card_path)
    mean, std = card["mean"][0], card["std"][0]
    with torch_threads(threads):
        images, labels = load_split("test")
        return evaluate(model, images, labels, mean, std)


def make_card(cfg: Config, mean: float, std: float, accuracy: float, seconds: float,
              cpu_seconds: float) -> dict:
    """The plain-data description that rebuilds, preprocesses and labels the model."""
    kwargs = timm_kwargs(cfg)
    return {"timm_name": TIMM_NAME, "timm_kwargs": kwargs,
            "input_size": [3, IMG_SIZE, IMG_SIZE], "mean": [mean] * 3, "std": [std] * 3,
            "view": "microtome dataset view (short side to round(S*256/224), centre crop S)",
            "dataset": "fashion_mnist", "class_names": list(CLASS_NAMES),
            "test_accuracy": round(accuracy, 4), "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu_seconds, 1),
            "train_config": asdict(cfg), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine()}


def parse_args(argv: list[str] | None) -> tuple[Config, Path, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field, default in asdict(Config()).items():
        flag = "--" + field.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"weights path; the card goes beside it as .json (default {DEFAULT_OUT})")
    parser.add_argument("--check", type=Path, default=None, metavar="CARD.json",
                        help="train nothing: read a saved model back and print its test accuracy")
    args = vars(parser.parse_args(argv))
    out, check = args.pop("out"), args.pop("check")
    return Config(**args), out, check


def main(argv: list[str] | None = None) -> int:
    cfg, out, check = parse_args(argv)
    if check is not None:
        print(f"{check}: test accuracy {check_saved(check, cfg.threads):.2%} read back from disk")
        return 0
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("note: OMP_WAIT_POLICY=PASSIVE keeps idle OpenMP threads from spinning on a "
              "shared machine; set it in the environment before Python starts")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch_threads(cfg.threads):
        images, labels = load_split("train", cfg.limit)
        test_images, test_labels = load_split("test")
        mean, std = float(images.mean()), float(images.std())
        print(f"data: {len(images)} train, {len(test_images)} test images at {IMG_SIZE} px "
              f"({time.perf_counter() - started:.1f} s); mean {mean:.4f} std {std:.4f}")
        model = train(cfg, images, labels, mean, std)
        accuracy = evaluate(model, test_images, test_labels, mean, std)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    weights, card = save(model, out, make_card(cfg, mean, std, accuracy, seconds, cpu))
    print(f"test accuracy {accuracy:.2%} on {len(test_images)} images; {seconds:.0f} s wall, "
          f"{cpu:.0f} s CPU on {cfg.threads} threads (load average {load:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end; CPU / threads is about the wall time on an idle machine)")
    print(f"saved {weights} and {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
