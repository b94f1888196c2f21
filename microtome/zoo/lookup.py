"""Any model's card by name: `get_card(name) -> ModelCard`, torch-free for a registered model.

A registered id's card is data (`zoo.registry`); a source's (`timm:NAME`, `timm-NAME`,
`torchvision:NAME`: zoo/sources.py) is derived from its model built with random weights, and a
`package.module:function` entry point's comes from calling it (torch, `zoo.loading`), each
once per process.
"""

from __future__ import annotations

from microtome.zoo.card import ModelCard
from microtome.zoo.registry import is_registered, registered_card
from microtome.zoo.sources import parse_source


def get_card(name: str) -> ModelCard:
    """The card of model `name` (NotFound listing close names for an unknown id)."""
    if is_registered(name):
        return registered_card(name)
    if parse_source(name) is not None:
        from microtome.zoo.loading import get_spec

        return get_spec(name).card
    if ":" not in name:
        return registered_card(name)
    from microtome.zoo.loading import entry_point_card

    return entry_point_card(name)
