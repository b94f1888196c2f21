"""Weights files: `load_state_dict_file(path) -> {name: tensor}` (`.safetensors`, or `.pth`/`.pt`/`.bin`
read with `torch.load(weights_only=True)`), `load_strict(module, state, source)` (a missing or
unexpected key is an error naming them) and `sha256_file(path)`, the file's identity.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from microtome.errors import MicrotomeError


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local `.safetensors`, or `.pth`/`.pt`/`.bin` file (tensors only, no
    pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise MicrotomeError(f"weights file {str(path)!r} does not exist; pass an existing "
                             "file, weights='default' or weights='random'")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MicrotomeError(f"cannot read weights file {str(path)!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MicrotomeError(f"weights file {str(path)!r} holds no state dict")
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module`; any missing or unexpected key is an error naming them."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # right keys, wrong shapes
        raise MicrotomeError(f"weights from {source} do not fit the architecture: {exc}") from exc
    if missing or unexpected:
        raise MicrotomeError(
            f"weights from {source} do not fit: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
