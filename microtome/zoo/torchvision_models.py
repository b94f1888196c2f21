"""torchvision families, the torch side: `torch_side(card) -> (build, load_default)` for the
cards of torchvision_cards.py (googlenet, alexnet, vgg19, resnet50, inception_v3).

The architectures are torchvision's, built with random weights; `load_default` fills them
through torchvision's weights API (a download, cached in torch hub's directory).

One setup per family, the one torchvision's pretrained weights expect:
- googlenet and inception_v3 are built with `transform_input=True` (they take ImageNet-
  normalized input and re-normalize it inside) and without auxiliary heads; the aux heads'
  keys (`aux1.`, `aux2.`, `AuxLogits.`) of a torchvision state dict are dropped on load, so
  a file of either kind loads strictly.
- every `nn.ReLU` is made non-inplace, so an exposed output is never overwritten later in
  the forward pass and always has its own autograd history.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial

from torch import nn
from torch.hub import get_dir
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from microtome.errors import MicrotomeError
from microtome.zoo.card import ModelCard
from microtome.zoo.loading import load_strict, sha256_file
from microtome.zoo.torchvision_cards import WEIGHTS


# ---- builders ------------------------------------------------------------------------
def _no_inplace_relu(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def _drop_keys_on_load(model: nn.Module, prefixes: Sequence[str]) -> nn.Module:
    """Make `model.load_state_dict` ignore keys under `prefixes` (heads we do not build)."""

    def hook(_module, state_dict, prefix, *_args) -> None:
        for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in prefixes))]:
            del state_dict[key]

    model.register_load_state_dict_pre_hook(hook)
    return model


def _build_googlenet() -> nn.Module:
    model = tvm.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)
    return _drop_keys_on_load(_no_inplace_relu(model), ("aux1.", "aux2."))


def _build_inception_v3() -> nn.Module:
    model = tvm.inception_v3(weights=None, aux_logits=False, transform_input=True,
                             init_weights=True)
    return _drop_keys_on_load(_no_inplace_relu(model), ("AuxLogits.",))


def _build_plain(factory: Callable[..., nn.Module]) -> nn.Module:
    return _no_inplace_relu(factory(weights=None))


# ---- default weights -----------------------------------------------------------------
def _torchvision_loader(model_id: str, weights: WeightsEnum) -> Callable[[nn.Module], str]:
    """A `load_default` reading torchvision's `weights` (a WeightsEnum member); returns sha256."""

    def load(model: nn.Module) -> str:
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - offline, proxy, HTTP or hash errors alike
            raise MicrotomeError(
                f"could not download the default weights of {model_id} ({weights}) from "
                f"{weights.url}: {exc}. This machine may be offline: pass weights=PATH (a local "
                f"state dict file, e.g. that file downloaded elsewhere) or weights='random' "
                f"(untrained)", status=503) from exc
        load_strict(model, state, weights.url)
        # sha256 of the file load_state_dict_from_url just read from torch hub's cache
        return sha256_file(os.path.join(get_dir(), "checkpoints", os.path.basename(weights.url)))

    return load


# ---- the registry's builder ------------------------------------------------------------
BUILDS: dict[str, Callable[[], nn.Module]] = {
    "googlenet": _build_googlenet, "inception_v3": _build_inception_v3,
    "alexnet": partial(_build_plain, tvm.alexnet), "vgg19": partial(_build_plain, tvm.vgg19),
    "resnet50": partial(_build_plain, tvm.resnet50),
}


def torch_side(card: ModelCard) -> tuple[Callable[[], nn.Module], Callable[[nn.Module], str]]:
    """`(build, load_default)` of the torchvision model `card` describes (its weights: `WEIGHTS`)."""
    return BUILDS[card.id], _torchvision_loader(card.id, tvm.get_weight(WEIGHTS[card.id][0]))
