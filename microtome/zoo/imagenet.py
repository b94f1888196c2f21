"""ImageNet's 1000 class names in the standard order (sorted WordNet ids), as torchvision lists them."""

from __future__ import annotations

from functools import cache


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 class names, index = class id."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)
