"""Randomness of one image at a time: `PerImage(generators)` draws `[B]` values, row i from
generator i, so an image's initial values and transforms do not depend on its batch.

An image's seed comes from (render seed, objective description, occurrence): `image_seeds`. The
objective's description names its layer, unit and variant ("channel(stem, 14)", "-channel(...)",
"neuron(...)"), and the occurrence tells apart the images of one objective (a diversity set).
Without a `PerImage`, draws come from torch's global generator, batch-wide (`GlobalDraws`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from microtome.errors import MicrotomeError


def image_seed(seed: int, name: str, occurrence: int = 0) -> int:
    """A 63-bit seed for the `occurrence`-th image of objective `name` under render seed `seed`."""
    digest = hashlib.sha256(f"{seed}|{name}|{occurrence}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_seeds(seed: int, names: Sequence[str]) -> list[int]:
    """One seed per image, for images whose objectives are described by `names` `[B]`."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(image_seed(seed, name, k))
    return out


class PerImage:
    """One CPU `torch.Generator` per image; every draw returns one value per image `[B]`."""

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    @classmethod
    def from_seeds(cls, seeds: Sequence[int]) -> "PerImage":
        return cls([torch.Generator().manual_seed(int(s)) for s in seeds])

    def __len__(self) -> int:
        return len(self.generators)

    def integers(self, high: int) -> torch.Tensor:
        """`[B]` int64, each in [0, high)."""
        return torch.cat([torch.randint(high, (1,), generator=g) for g in self.generators])

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        """`[B, *shape]` standard normal, image i from generator i."""
        return torch.stack([torch.randn(*shape, generator=g) for g in self.generators])


class GlobalDraws:
    """The same draws as `PerImage` from torch's global generator (batch-wide, seeded by the
    caller), for transforms called on their own."""

    def __init__(self, batch: int):
        self.batch = batch

    def __len__(self) -> int:
        return self.batch

    def integers(self, high: int) -> torch.Tensor:
        return torch.randint(high, (self.batch,))

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(self.batch, *shape)


Draws = PerImage | GlobalDraws


def draws(rng: Draws | None, batch: int) -> Draws:
    """`rng`, checked against the batch, or global draws for that batch."""
    if rng is None:
        return GlobalDraws(batch)
    if len(rng) != batch:
        raise MicrotomeError(f"{len(rng)} image generators for a batch of {batch} images")
    return rng
