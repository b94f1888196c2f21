"""Any model's card by name: `get_card(name) -> ModelCard`, torch-free for a registered model.

A registered id's card is data (`zoo.registry`); a `package.module:function` entry point's
comes from calling it (torch, `zoo.loading`), once per process.
"""

from __future__ import annotations

from microtome.zoo.card import ModelCard
from microtome.zoo.registry import is_registered, registered_card


def get_card(name: str) -> ModelCard:
    """The card of model `name` (NotFound listing close names for an unknown id)."""
    if is_registered(name) or ":" not in name:
        return registered_card(name)
    from microtome.zoo.loading import entry_point_card

    return entry_point_card(name)
