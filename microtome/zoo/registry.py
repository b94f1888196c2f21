"""The model registry, torch-free: `@register_model(builder)` adds a `() -> ModelCard` factory.

`builder` is the `"package.module:function"` of the model's torch side, `(ModelCard) ->
(build, load_default)`, imported only when a model is built (`zoo.loading.get_spec`), so
listing the registered models and reading their cards (`registered_card`, `registered_cards`)
never imports torch: the web and `microtome layers` read them so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from microtome.errors import unknown
from microtome.zoo.card import ModelCard

log = logging.getLogger(__name__)
CardFn = Callable[[], ModelCard]


@dataclass(frozen=True)
class Entry:
    """A registered model: its card's factory and where its torch side lives."""

    card: CardFn
    builder: str  # "package.module:function", (ModelCard) -> (build, load_default)


_REGISTRY: dict[str, Entry] = {}
# The registry is the one module-level table (as timm's): filled by decorators at import of
# the zoo's card modules, never mutated afterwards.


def register_model(builder: str) -> Callable[[CardFn], CardFn]:
    """Register a card factory under its function's name (the card's id); a duplicate name is
    an error. `builder` names the torch side that builds the model from the card."""

    def decorate(factory: CardFn) -> CardFn:
        name = factory.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = Entry(factory, builder)
        return factory

    return decorate


def list_models() -> list[str]:
    """The registered model ids, in registration order."""
    return list(_REGISTRY)


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def entry(name: str) -> Entry:
    """The registration of `name`; NotFound listing close names otherwise."""
    if name not in _REGISTRY:
        raise unknown("model", name, list_models(), hint="`microtome models` lists them")
    return _REGISTRY[name]


def registered_card(name: str) -> ModelCard:
    """The card of a registered model (with its default weights); no torch."""
    card = entry(name).card()
    if card.id != name:
        raise ValueError(f"model factory {name!r} returned a card with id {card.id!r}")
    return card


def registered_cards() -> dict[str, dict[str, Any]]:
    """`{id: card JSON}` of every registered model (one whose card fails is logged and skipped)."""
    out = {}
    for name in list_models():
        try:
            out[name] = registered_card(name).to_json()
        except Exception as exc:  # noqa: BLE001 - one broken card must not hide the others
            log.warning("skipping model %s: %s", name, exc)
    return out
