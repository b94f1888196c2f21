"""The model zoo: one `ModelCard` per model organism (plain data), a registry, and the torch side.

`load_model(name, weights="default"|"random"|PATH) -> (frozen eval nn.Module, ModelSpec)`.
Importing the package registers the zoo's cards and imports no torch: `list_models()` and
`get_card(name)` are data (an entry point's card excepted); `load_model`, `get_spec` and
`ModelSpec` import the torch side on first use (PEP 562 `__getattr__`).
"""

from typing import Any

from microtome.zoo import efficientnet_lite_cards as _efficientnet_lite  # noqa: F401  (registers)
from microtome.zoo import torchvision_cards as _torchvision  # noqa: F401  (registers)
from microtome.zoo.card import LayerCard, ModelCard
from microtome.zoo.lookup import get_card
from microtome.zoo.registry import list_models, register_model, registered_card, registered_cards

_LAZY = {"load_model": "microtome.zoo.loading", "get_spec": "microtome.zoo.loading",
         "ModelSpec": "microtome.zoo.spec", "LayerSpec": "microtome.zoo.spec"}

__all__ = ["LayerCard", "LayerSpec", "ModelCard", "ModelSpec", "get_card", "get_spec", "list_models",
           "load_model", "register_model", "registered_card", "registered_cards"]


def __getattr__(name: str) -> Any:
    """The torch side's names, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'microtome.zoo' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
