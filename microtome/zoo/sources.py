"""Model sources by name, torch-free: `parse_source("timm:vit_tiny_patch16_224.augreg_in1k") -> Source`.

Shape: `Source(kind "timm"|"torchvision", name, tag)`; `source.id` is the canonical model id,
a path segment safe on every OS that keeps the source visible (`timm-vit_tiny_patch16_224`,
`torchvision-resnet18`), `source.ref` the name as typed (`timm:NAME[.TAG]`). The pretrained
TAG picks timm's (or torchvision's) weights and their config (input size, mean/std, head): it
is part of the weights' identity, recorded in the card, never of the id. The canonical id
parses back to its source (without a tag: the default weights), so `timm:NAME` and
`timm-NAME` resolve alike everywhere a model id is accepted. A `package.module:function`
entry point is any other name with a colon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from microtome.errors import MicrotomeError

KINDS = ("timm", "torchvision")
_NAME = re.compile(r"[A-Za-z0-9_]+")
HOW_TO_NAME = ("any timm model: timm:NAME or timm:NAME.TAG (e.g. timm:vit_tiny_patch16_224, "
               "timm:convnext_tiny.fb_in1k), id timm-NAME; any torchvision model: torchvision:NAME "
               "(e.g. torchvision:resnet18), id torchvision-NAME; your own: package.module:function "
               "returning nn.Module or (nn.Module, ModelSpec). Weights: --weights default|random|PATH")


@dataclass(frozen=True)
class Source:
    """A model named by its source: `kind` ("timm" or "torchvision"), `name`, pretrained `tag`."""

    kind: str
    name: str
    tag: str = ""

    @property
    def id(self) -> str:
        """The canonical model id: `KIND-NAME` (the tag is the weights', not the model's)."""
        return f"{self.kind}-{self.name}"

    @property
    def ref(self) -> str:
        """The name as the source knows it: `KIND:NAME[.TAG]`."""
        return f"{self.kind}:{self.name}" + (f".{self.tag}" if self.tag else "")

    @property
    def full_name(self) -> str:
        """The name the source's own factory takes: `NAME[.TAG]`."""
        return self.name + (f".{self.tag}" if self.tag else "")


def parse_source(text: str) -> Source | None:
    """The source `text` names (`timm:NAME[.TAG]`, `torchvision:NAME[.TAG]` or a canonical id
    `timm-NAME`), None for anything else (a registered id, an entry point)."""
    for kind in KINDS:
        for sep in (":", "-"):
            if text.startswith(kind + sep):
                name, _, tag = text[len(kind) + 1:].partition(".")
                if sep == "-" and tag:
                    raise MicrotomeError(f"{text!r}: a canonical id has no tag; write {kind}:{name}.{tag}")
                for part, what in ((name, "name"), (tag, "tag")):
                    if (part or what == "name") and not _NAME.fullmatch(part):
                        raise MicrotomeError(f"bad {kind} model {what} {part!r} in {text!r}: expected "
                                             f"letters, digits and _, e.g. {kind}:{_EXAMPLE[kind]}")
                return Source(kind, name, tag)
    return None


_EXAMPLE = {"timm": "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "torchvision": "resnet18"}


def is_entry_point(name: str) -> bool:
    """True for a `package.module:function` name (a colon, and not a source's)."""
    return ":" in name and parse_source(name) is None


def canonical_id(name: str) -> str | None:
    """The model id of `name` without loading anything: a source's canonical id, a registered
    (or any other colon-free) name itself; None for an entry point (its card says)."""
    source = parse_source(name)
    if source is not None:
        return source.id
    return None if ":" in name else name
