"""ImageNet's 1000 class names in the standard order (sorted WordNet ids), as torchvision lists them.

Both tables are JSON files beside this module, so model cards read them without torch
(`imagenet_classes.json` is torchvision's `_IMAGENET_CATEGORIES`; a test checks it still is).
"""

from __future__ import annotations

from functools import cache


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 class names, index = class id."""
    import json
    from pathlib import Path

    return tuple(json.loads((Path(__file__).parent / "imagenet_classes.json").read_text()))


@cache
def imagenet_hierarchy() -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """WordNet's hypernyms of the 1000 classes: `(node names, per class index its ancestor
    node indices)`, e.g. every dog breed has the node "dog". From the table shipped beside this
    module (made by scripts/imagenet_hierarchy.py from WordNet 3.0); no torch, no nltk."""
    import json
    from pathlib import Path

    table = json.loads((Path(__file__).parent / "imagenet_hierarchy.json").read_text())
    names = tuple(node["name"] for node in table["nodes"])
    return names, tuple(tuple(c["ancestors"]) for c in table["classes"])
