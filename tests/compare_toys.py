"""Toys for the compare tests: `tiny_net_perm` is tests.toy_models' `tiny_net` with the same
weights and its units reordered (`CONV1_PERM`, `CONV2_PERM`): unit j of its conv1 is unit
`CONV1_PERM[j]` of tiny_net's, and the next layer reads its inputs in that order, so the two
compute the same function and every unit has an exact twin.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from microtome.zoo.spec import ModelSpec
from tests.toy_models import tiny_net

CONV1_PERM = (3, 7, 0, 5, 1, 6, 2, 4)  # of 8
CONV2_PERM = (9, 2, 14, 0, 11, 5, 7, 1, 15, 3, 12, 8, 4, 13, 6, 10)  # of 16


def tiny_net_perm(weights: str = "random") -> tuple[nn.Module, ModelSpec]:
    """tiny_net with conv1's and conv2's output channels permuted (and their readers' inputs)."""
    model, spec = tiny_net(weights)
    conv1, conv2, linear = model[0], model[2], model[6]
    p, q = list(CONV1_PERM), list(CONV2_PERM)
    with torch.no_grad():
        conv1.weight.copy_(conv1.weight[p])  # [8, 3, 3, 3]: out channels reordered
        conv1.bias.copy_(conv1.bias[p])
        conv2.weight.copy_(conv2.weight[q][:, p])  # [16, 8, 3, 3]: out reordered, in follow conv1
        conv2.bias.copy_(conv2.bias[q])
        linear.weight.copy_(linear.weight[:, q])  # [3, 16]: inputs follow conv2
    return model, dataclasses.replace(spec, id="tiny_net_perm", title="Tiny test net, units permuted")
