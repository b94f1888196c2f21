"""Attribution of one layer's groups, gradient × activation at one image:
`group_attribution(model, spec, x, layer, act [1, C, H, W], parts [K1, C, H, W], ...) -> dict`.

For a score `s` read downstream of the layer (a logit, or a group of the next inspected
layer), the attribution of group i is `Σ_{c,p} parts[i, c, p] · ∂s/∂a[c, p]`: the linear
estimate of how much of `s` comes from group i's part of the activations (their sum over the
groups is `Σ a · ∂s/∂a`, exact for a linear segment, up to the factorization's residual).
The score of group j of the next layer is its activation along its direction, summed over
positions: `s_j = Σ_p ⟨a2[:, p], u_j⟩`, the `direction` objective (a mean) times the number
of positions. Per class, the spatial attribution map `Σ_c a[c, p] · ∂logit/∂a[c, p]` `[H, W]`
is given too.

The layer's output is replaced, during one forward pass, by a leaf tensor holding `act`
(a copy of it, so in-place operations downstream are harmless), and each score's gradient is
taken with respect to that leaf: one forward and one backward per score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from microtome.zoo.hooks import hooked, resolve_modules
from microtome.zoo.spec import ModelSpec


@contextmanager
def output_replaced(model: nn.Module, path: str, value: torch.Tensor) -> Iterator[None]:
    """Within the block, the module at `path` outputs a copy of `value` (gradients flow to
    `value`); the hook is removed afterwards, even on error."""
    module = resolve_modules(model, {"layer": path})["layer"]
    handle = module.register_forward_hook(lambda _m, _i, _o: value.clone())
    try:
        yield
    finally:
        handle.remove()


def _gradients(scores: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """`∂scores[i]/∂leaf` for each score: `[N] -> [N, *leaf.shape[1:]]` (zeros where a score
    does not depend on the leaf)."""
    if not scores.requires_grad:  # no score reads the leaf (an SAE's features feed no logits)
        return leaf.new_zeros((scores.shape[0], *leaf.shape[1:]))
    grads = []
    for i in range(scores.shape[0]):
        (g,) = torch.autograd.grad(scores[i], leaf, retain_graph=True, allow_unused=True)
        grads.append(torch.zeros_like(leaf[0]) if g is None else g[0])
    return torch.stack(grads) if grads else leaf.new_zeros((0, *leaf.shape[1:]))


def group_attribution(model: nn.Module, spec: ModelSpec, x: torch.Tensor, layer_id: str,
                      act: torch.Tensor, parts: torch.Tensor, classes: Sequence[int],
                      next_layer: str | None = None, next_directions: torch.Tensor | None = None
                      ) -> dict:
    """Group i of `layer_id` to each class of `classes` and to each group j of `next_layer`.

    `x`: the model's input `[1, 3, S, S]` (preprocessed); `act`: the layer's output on it
    `[1, C, H, W]`; `parts`: the groups' parts of it `[K1, C, H, W]`; `next_directions`:
    the next layer's group directions `[K2, C2]`. Returns JSON-ready numbers:
    `{"next", "groups" [K1][K2], "next_total" [K2], "classes": [{"class", "groups" [K1],
    "total", "map" [H][W]}]}` where a `total` is `Σ a · ∂s/∂a`, what the groups share."""
    layer = spec.layer(layer_id)
    leaf = act.detach().clone().requires_grad_(True)  # [1, C, H, W]
    watch = {} if next_layer is None else {next_layer: spec.layer(next_layer).module}
    with torch.enable_grad(), output_replaced(model, layer.module, leaf), \
            hooked(model, watch) as captured:
        logits = model(x)  # [1, K]
        scores = [logits[0, list(classes)]]  # [n_classes]
        if next_layer is not None:
            a2 = captured[next_layer]  # [1, C2, H2, W2]
            u = next_directions.to(a2.device, a2.dtype)  # [K2, C2]
            scores.append(torch.einsum("bc...,kc->k", a2, u))  # [K2]
        grads = _gradients(torch.cat(scores), leaf).detach()  # [n_classes + K2, C, H, W]
    a = leaf.detach()[0]  # [C, H, W]
    parts = parts.to(a.device, a.dtype)
    by_group = torch.einsum("kchw,nchw->nk", parts, grads)  # [n_scores, K1]
    totals = (grads * a).flatten(1).sum(1)  # [n_scores]
    maps = (grads * a).sum(1)  # [n_scores, H, W]
    n = len(classes)
    out = {"next": next_layer,
           "groups": rounded(by_group[n:].T.tolist()) if next_layer else [],
           "next_total": rounded(totals[n:].tolist()) if next_layer else [],
           "classes": [{"class": int(c), "groups": rounded(by_group[i].tolist()),
                        "total": rounded(float(totals[i])), "map": rounded(maps[i].tolist())}
                       for i, c in enumerate(classes)]}
    return out


def rounded(value, digits: int = 5):
    """Floats (nested in lists) to `digits` significant digits, for compact JSON."""
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return float(f"{value:.{digits}g}")
