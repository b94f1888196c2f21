"""Redirected gradients for ReLU-family activations: `with redirected_relus(): model(x)`.

A unit that is inactive (below the floor of its ReLU, ReLU6, hardtanh or clamp) at the initial
image gets no gradient and stays inactive: the visualization silently ends as flat grey. Lucid's
fix, reproduced here: during the first steps of optimization, where the ordinary gradient of an
activation is zero over a whole image `[C, H, W]`, the gradient is let through wherever it would
move the input back INTO the active range (and only there). Forward values are bitwise those of
the original functions; only the backward pass differs, and only for images whose ordinary
gradient through that activation is zero everywhere. The decision is per image, so an image's
gradient does not depend on the other images of its batch.

The functions are intercepted with a `TorchFunctionMode`, which is thread-local: the model is not
patched, and another thread running the same model meanwhile is not affected. Covered: `F.relu`,
`F.relu6`, `F.hardtanh` (so `nn.ReLU`, `nn.ReLU6`, `nn.Hardtanh`), `torch.relu`, `torch.clamp`,
`torch.clip` and their Tensor methods, with scalar bounds. `inplace=True` calls are computed out of
place (the same values, returned); the trailing-underscore in-place methods are not redirected.
The renderer redirects during the first steps (Lucid: 16) and, after them, for any image whose
objective is still exactly 0 (a unit not yet brought to life); see `render`.

GELU has a trap of its own: below its minimum (x < -0.75) its slope is negative, so a unit
whose pre-activations start there is pushed by ascent towards the flat 0 at -inf and never
lights up. `gate_gelus(model, paths)` makes the `nn.GELU`s whose outputs the objectives read (a
ViT's MLP neurons) backpropagate, where an input element lies below the minimum while the loss
asks for a larger output, through the gate instead,
`grad * Phi(x)` (the gradient of GELU's monotone envelope `x Phi(x) + phi(x)`), so ascent
raises it through the minimum; every other element keeps GELU's own gradient (asked for a
smaller output, the ordinary gradient already leads to the minimum). The decision is per
element, from its own value and gradient, so it needs no schedule and no batch: the renderer
gates its private copy's objective GELUs for the whole render (unless its redirect steps are
0). Only those: the trap is the unit's own nonlinearity, and gating every GELU of a ViT costs
15-17% of a render on the CPU (the extra elementwise passes), one GELU about a twelfth of that.
The modules are patched, not intercepted by a function mode, which would tax every operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

Bounds = tuple[float | None, float | None]  # (floor, ceiling) of the active range; None: open


def _relu(args, kwargs) -> Bounds:
    return 0.0, None


def _relu6(args, kwargs) -> Bounds:
    return 0.0, 6.0


def _hardtanh(args, kwargs) -> Bounds:
    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return lo, hi


def _clamp(args, kwargs) -> Bounds:
    lo = args[1] if len(args) > 1 else kwargs.get("min")
    hi = args[2] if len(args) > 2 else kwargs.get("max")
    return lo, hi


def _plain(fn):  # the function itself, out of place
    def call(x, lo, hi):
        return fn(x)
    return call


_RULES = {  # intercepted function -> (its bounds from its arguments, out-of-place call)
    F.relu: (_relu, lambda x, lo, hi: F.relu(x)),
    F.relu6: (_relu6, lambda x, lo, hi: F.relu6(x)),
    F.hardtanh: (_hardtanh, lambda x, lo, hi: F.hardtanh(x, lo, hi)),
    torch.relu: (_relu, _plain(torch.relu)),
    torch.Tensor.relu: (_relu, _plain(torch.relu)),
    torch.clamp: (_clamp, lambda x, lo, hi: torch.clamp(x, lo, hi)),
    torch.clip: (_clamp, lambda x, lo, hi: torch.clamp(x, lo, hi)),
    torch.Tensor.clamp: (_clamp, lambda x, lo, hi: torch.clamp(x, lo, hi)),
    torch.Tensor.clip: (_clamp, lambda x, lo, hi: torch.clamp(x, lo, hi)),
}


def _ordinary(x: torch.Tensor, grad: torch.Tensor, lo: float | None, hi: float | None
              ) -> torch.Tensor:
    """The gradient of `clamp(x, lo, hi)` as PyTorch's relu and hardtanh compute it: `grad`
    where lo < x < hi, else 0."""
    if hi is None:
        return torch.ops.aten.threshold_backward(grad, x, lo)
    if lo is None:
        return torch.where(x < hi, grad, torch.zeros_like(grad))
    return torch.ops.aten.hardtanh_backward(grad, x, lo, hi)


def redirected_grad(x: torch.Tensor, grad: torch.Tensor, lo: float | None, hi: float | None,
                    allow: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of the loss (to be MINIMIZED) w.r.t. the input `x` `[B, ...]` of
    `clamp(x, lo, hi)`, given `grad` w.r.t. its output `[B, ...]`.

    Per image: the ordinary gradient if it is non-zero anywhere in the image, else `grad` itself
    except where it would push `x` further out of the active range (below `lo` and positive, or
    above `hi` and negative: a descent step moves against the gradient). `allow` `[B]` bool:
    the images that may be redirected (all by default); the others get the ordinary gradient."""
    ordinary = _ordinary(x, grad, lo, hi)
    if x.dim() == 0:
        keep = ordinary.ne(0)
    else:
        keep = ordinary.ne(0).any(dim=tuple(range(1, x.dim()))) if x.dim() > 1 else ordinary.ne(0)
        if allow is not None and allow.shape == keep.shape:
            keep = keep | ~allow.to(keep.device)
    if bool(keep.all()):  # every image live (or not to be redirected): as PyTorch computes it
        return ordinary
    blocked = torch.zeros_like(x, dtype=torch.bool)
    if lo is not None:
        blocked |= (x <= lo) & (grad > 0)
    if hi is not None:
        blocked |= (x >= hi) & (grad < 0)
    redirected = grad.masked_fill(blocked, 0.0)
    return torch.where(keep.view(-1, *([1] * (x.dim() - 1))), ordinary, redirected)


class _Redirected(torch.autograd.Function):
    """`call(x, lo, hi)` forward as it is; `redirected_grad` backward."""

    @staticmethod
    def forward(ctx, x, call, lo, hi, allow):
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi, allow)
        return call(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return redirected_grad(x, grad, *ctx.bounds), None, None, None, None


GELU_ARGMIN = -0.7518  # where GELU is smallest (-0.170); its slope is negative below


def gated_gelu_grad(x: torch.Tensor, grad: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """The gradient w.r.t. `x` of `gelu(x)` given `grad` w.r.t. its output (of a loss to be
    MINIMIZED): the gate's, `grad * Phi(x)`, where x is below GELU's minimum and the loss asks
    for a larger output (`grad` < 0); GELU's own everywhere else.

    Below the minimum GELU's slope is negative and Phi(x) positive, so there the smaller of
    GELU's own and the gate's is the gate's exactly when `grad` < 0: one `minimum` decides."""
    ordinary = torch.ops.aten.gelu_backward(grad, x, approximate=approximate)
    return torch.where(x < GELU_ARGMIN, torch.minimum(ordinary, grad * torch.special.ndtr(x)), ordinary)


class _GatedGelu(torch.autograd.Function):
    """`gelu(x)` forward as it is; `gated_gelu_grad` backward."""

    @staticmethod
    def forward(ctx, x, approximate):
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        return F.gelu(x, approximate=approximate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return gated_gelu_grad(x, grad, ctx.approximate), None


def _gated_forward(module: nn.GELU, x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad and torch.is_grad_enabled():
        return _GatedGelu.apply(x, module.approximate)
    return F.gelu(x, approximate=module.approximate)


def gate_gelus(model: nn.Module, paths: Iterable[str]) -> int:
    """Make the `nn.GELU`s whose outputs the objectives read (a module at one of `paths`, or the
    parent of one, as a token layer's grid view is) backpropagate `gated_gelu_grad`; forward
    values are GELU's own. Returns how many. It patches the modules: call it on a private copy
    (`optvis.fast.private_copy`), never on a caller's model."""
    gelus: list[nn.Module] = []
    for path in paths:
        for candidate in (path, path.rpartition(".")[0]):
            try:
                module = model.get_submodule(candidate) if candidate else None
            except AttributeError:
                continue
            if isinstance(module, nn.GELU) and module not in gelus:
                gelus.append(module)
    for module in gelus:
        module.forward = partial(_gated_forward, module)
    return len(gelus)


def _scalar(v) -> bool:
    return v is None or isinstance(v, (int, float))


class redirected_relus(TorchFunctionMode):
    """Inside the block (this thread only), ReLU-family activations backpropagate Lucid's
    redirected gradient for the images that `allow` `[B]` marks (all by default); everything
    else runs as usual."""

    def __init__(self, allow: torch.Tensor | None = None):
        super().__init__()
        self.allow = allow

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        x = args[0] if args else kwargs.get("input")
        if rule is None or not isinstance(x, torch.Tensor) or not x.requires_grad \
                or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        bounds, call = rule
        lo, hi = bounds(args, kwargs)
        if not (_scalar(lo) and _scalar(hi)):  # tensor bounds: left as they are
            return func(*args, **kwargs)
        return _Redirected.apply(x, call, lo, hi, self.allow)
