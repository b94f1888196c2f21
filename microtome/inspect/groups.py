"""Neuron groups: `neuron_groups(acts [C, H, W], k) -> Groups(maps [K, H, W] >= 0, directions [K, C])`.

The layer's activations at one image, as positions × channels `[H*W, C]`, are factored by NMF
(`ChannelReducer`) into K groups so that `acts ≈ Σ_k maps[k] ⊗ directions[k]`: a group is a
direction in channel space (unit norm) and where in the image it is present (its map, in
activation units along the direction). NMF needs non-negative data; a layer whose values go
below zero (a residual block's linear output) is factored as `[relu(A), relu(-A)]` over 2C
channels, and a group's direction is its positive part minus its negative part, so the sum
above still reconstructs the signed activations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from microtome.errors import MicrotomeError
from microtome.optvis.reducer import ChannelReducer

NMF_ITERATIONS = 1000


@dataclass
class Groups:
    """K groups of one layer at one image, heaviest first (by the mass of their maps)."""

    maps: np.ndarray  # [K, H, W], >= 0
    directions: np.ndarray  # [K, C], unit norm, signed where the layer is
    explained: float  # 1 - |A - Σ maps ⊗ directions| / |A| (Frobenius), the fit's quality
    signed: bool  # whether the layer had negative values (factored as positive and negative parts)

    def parts(self) -> np.ndarray:
        """Each group's part of the activations: `[K, C, H, W]`."""
        return np.einsum("khw,kc->kchw", self.maps, self.directions)

    def top_units(self, k: int, n: int) -> list[dict]:
        """Group k's `n` units of largest weight in its direction (by magnitude, signed)."""
        d = self.directions[k]
        order = np.argsort(-np.abs(d), kind="stable")[:n]
        return [{"unit": int(u), "weight": round(float(d[u]), 5)} for u in order]


def neuron_groups(acts: torch.Tensor | np.ndarray, k: int, seed: int = 0) -> Groups:
    """NMF of one image's activations `[C, H, W]` into `k` groups (see the module docstring)."""
    a = acts.detach().float().cpu().numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts)
    if a.ndim != 3:
        raise MicrotomeError(f"neuron groups need activations [C, H, W], not shape {list(a.shape)}")
    c, h, w = a.shape
    if not 1 <= k <= min(h * w, c):
        raise MicrotomeError(f"cannot make {k} groups of a layer with {c} channels at {h}x{w} "
                             f"positions; ask for 1 to {min(h * w, c)}")
    flat = a.reshape(c, h * w).T.astype(np.float64)  # [HW, C]
    signed = bool((flat < 0).any())
    data = np.concatenate([np.maximum(flat, 0), np.maximum(-flat, 0)], 1) if signed else flat
    if not data.any():
        maps, directions = np.zeros((k, h, w)), np.zeros((k, c))
        return Groups(maps, directions, 1.0, signed)
    reducer = ChannelReducer(k, "NMF", init="nndsvda", random_state=seed, max_iter=NMF_ITERATIONS)
    with warnings.catch_warnings():  # the fit's quality is reported as `explained` instead
        warnings.filterwarnings("ignore", message=".*Maximum number of iterations.*")
        weights = reducer.fit_transform(data)  # [HW, K]
    components = reducer.components_  # [K, C] or [K, 2C]
    directions = components[:, :c] - components[:, c:] if signed else components  # [K, C]
    norms = np.linalg.norm(directions, axis=1)  # [K]
    maps = weights * norms[None, :]  # [HW, K]: activation units along the unit direction
    directions = directions / np.maximum(norms, 1e-12)[:, None]
    order = np.argsort(-maps.sum(0), kind="stable")
    maps, directions = maps[:, order], directions[order]
    residual = np.linalg.norm(flat - maps @ directions) / max(np.linalg.norm(flat), 1e-12)
    return Groups(maps.T.reshape(k, h, w), directions, float(1.0 - residual), signed)
