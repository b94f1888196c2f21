"""Batch-invariant gradients: `with batch_invariant(): model(x)` — image i's input gradient
`[1, C, H, W]` is the same whether it is alone or in any batch, bit for bit.

Measured on this machine (oneDNN, 1 or 2 threads): every op of the renderer's step computes image
i's values and gradients independently of its batch, except the input gradient of convolutions
with few input channels per group (a model's first conv, `[B, 3, H, W] -> ...`, 3x3): its kernel
for a batch of one rounds differently (1e-5) from the batched one, and 128 steps of optimization
amplify that to 20/255 per pixel. Depthwise convolutions (one input channel per group) are not
concerned: their batched input gradient is bitwise the per-image one (measured, 1 and 2 threads,
NCHW and channels_last), and computing it image by image cost a quarter of a step on
efficientnet_lite0. Inside the block (this thread only; nothing is patched) such
convolutions compute their input gradient one image at a time, as a batch of one does; their
forward values are untouched. Only convolutions whose weights need no gradient are concerned.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

SMALL_INPUT = 8  # input channels per group below which the backward kernel depends on the batch


class _PerImageInputGrad(torch.autograd.Function):
    """`conv2d(x, weight, bias, ...)`; backward: the input gradient image by image."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        return torch.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):  # grad [B, C_out, H', W'] -> [B, C_in, H, W]
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        parts = [torch.ops.aten.convolution_backward(
                     grad[i:i + 1], x[i:i + 1], weight, None, stride, padding, dilation, False,
                     [0] * len(stride), groups, [True, False, False])[0]
                 for i in range(x.shape[0])]
        return torch.cat(parts), None, None, None, None, None, None


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]


def _conv_args(args, kwargs):
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    defaults = (None, None, None, 1, 0, 1, 1)
    values = list(args) + [kwargs.get(n, d) for n, d in zip(names[len(args):], defaults[len(args):])]
    return values


class batch_invariant(TorchFunctionMode):
    """Inside the block (this thread only), a dense `conv2d` (groups 1) with fewer than
    `SMALL_INPUT` input channels, an input that needs a gradient and weights that do not,
    backpropagates to its input one image at a time."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not torch.conv2d or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x, weight, bias, stride, padding, dilation, groups = _conv_args(args, kwargs)
        if (not isinstance(x, torch.Tensor) or not x.requires_grad or x.dim() != 4
                or weight.requires_grad or (bias is not None and bias.requires_grad)
                or isinstance(padding, str) or weight.shape[1] >= SMALL_INPUT or groups != 1):
            return func(*args, **kwargs)
        return _PerImageInputGrad.apply(x, weight, bias, _pair(stride), _pair(padding),
                                        _pair(dilation), int(groups))
