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
lights up. `gelus` marks the images whose GELUs backpropagate through the gate instead,
`grad * Phi(x)`: the gradient of GELU's monotone envelope `x Phi(x) + phi(x)`, so ascent always
raises x (the renderer: during the first steps, then while an image's objective is below 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def gated_gelu_grad(x: torch.Tensor, grad: torch.Tensor, approximate: str,
                    allow: torch.Tensor) -> torch.Tensor:
    """The gradient w.r.t. `x` `[B, ...]` of `gelu(x)` given `grad` w.r.t. its output: the gate's,
    `grad * Phi(x)` (never of the wrong sign), for the images `allow` `[B]` marks; GELU's own
    for the others."""
    ordinary = torch.ops.aten.gelu_backward(grad, x, approximate=approximate)
    gated = grad * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return torch.where(allow.to(x.device).view(-1, *([1] * (x.dim() - 1))), gated, ordinary)


class _GatedGelu(torch.autograd.Function):
    """`gelu(x)` forward as it is; `gated_gelu_grad` backward."""

    @staticmethod
    def forward(ctx, x, approximate, allow):
        ctx.save_for_backward(x)
        ctx.rest = (approximate, allow)
        return F.gelu(x, approximate=approximate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return gated_gelu_grad(x, grad, *ctx.rest), None, None


def _scalar(v) -> bool:
    return v is None or isinstance(v, (int, float))


class redirected_relus(TorchFunctionMode):
    """Inside the block (this thread only), ReLU-family activations backpropagate Lucid's
    redirected gradient for the images that `allow` `[B]` marks (all by default), and GELUs
    their gate's for the images that `gelus` `[B]` marks (none by default); everything else
    runs as usual."""

    def __init__(self, allow: torch.Tensor | None = None, gelus: torch.Tensor | None = None):
        super().__init__()
        self.allow, self.gelus = allow, gelus

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        x = args[0] if args else kwargs.get("input")
        if func is F.gelu and self.gelus is not None and isinstance(x, torch.Tensor) and x.requires_grad \
                and torch.is_grad_enabled() and x.dim() > 0 and x.shape[0] == self.gelus.shape[0]:
            approximate = args[1] if len(args) > 1 else kwargs.get("approximate", "none")
            return _GatedGelu.apply(x, approximate, self.gelus)
        if rule is None or not isinstance(x, torch.Tensor) or not x.requires_grad \
                or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        bounds, call = rule
        lo, hi = bounds(args, kwargs)
        if not (_scalar(lo) and _scalar(hi)):  # tensor bounds: left as they are
            return func(*args, **kwargs)
        return _Redirected.apply(x, call, lo, hi, self.allow)
