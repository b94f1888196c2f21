"""The model arranged for speed while images are optimized: `with _fast_model(model, paths, probe)`.

Eval-mode BatchNorms are folded into the convolutions before them and, on CPU, conv weights are
channels_last (oneDNN's native layout), checked against the model as it is on a probe image
`[1, 3, H, W]`; the model's own Parameters and modules are put back afterwards. The renderer
applies it to its private copy of the model (`private_copy`), never to the caller's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from microtome.optvis.objectives import Acts
from microtome.zoo.hooks import hooked, resolve_modules, run


def private_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree for one render: its own modules, hooks and Parameter objects
    (frozen), sharing the original's weight and buffer storage (no weights are copied). What the
    renderer patches and hooks is this copy, so two threads can render with one model at once
    and the caller's model is never touched."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b
    return copy.deepcopy(model, memo)


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as `x * scale + shift`, per channel: `([C], [C])`."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _probe_convs(model: nn.Module, forward: Callable[[], object]
                 ) -> tuple[list[nn.Module], list[tuple[nn.Module, nn.Module]]]:
    """The Conv2d modules that one pass of `forward` reaches, and the (conv, batch norm) pairs
    where an eval-mode BatchNorm2d read a conv's output; paired modules ran once and have no
    hooks or patched forward of their own."""
    calls: dict[nn.Module, int] = {}
    outputs: dict[int, tuple[nn.Module, torch.Tensor]] = {}  # id -> (conv, output, kept alive)
    pairs = []

    def on_conv(module, _inputs, output):
        calls[module] = calls.get(module, 0) + 1
        outputs[id(output)] = (module, output)

    def on_bn(module, inputs, _output):
        calls[module] = calls.get(module, 0) + 1
        source = outputs.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            pairs.append((source[0], module))

    plain = {m for m in model.modules()
             if not (m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__)}
    handles = []
    try:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                handles.append(m.register_forward_hook(on_conv))
            elif (isinstance(m, nn.BatchNorm2d) and not m.training
                  and m.running_mean is not None and m.running_var is not None):
                handles.append(m.register_forward_hook(on_bn))
        forward()
    finally:
        for handle in handles:
            handle.remove()
    convs = [m for m in calls if isinstance(m, nn.Conv2d) and "weight" in m._parameters]
    pairs = [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1 and {c, b} <= plain]
    return convs, pairs


def _pass_through(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def _swapped_weights(convs: list[nn.Module], pairs: list[tuple[nn.Module, nn.Module]],
                     channels_last: bool):
    """Inside the block each BatchNorm of `pairs` is folded into its conv (the conv's weight and
    bias absorb its scale and shift; the BatchNorm passes its input through) and, with
    `channels_last`, every conv of `convs` reads its weight in that memory format. The original
    Parameters are put back afterwards, untouched."""
    folded = dict(pairs)
    saved = [(c, c._parameters["weight"], c._parameters.get("bias")) for c in convs]
    try:
        for conv in convs:
            weight = conv.weight.detach()  # [C_out, C_in / groups, kh, kw]
            bias = None if conv.bias is None else conv.bias.detach()
            bn = folded.get(conv)
            if bn is not None:
                scale, shift = _bn_scale_shift(bn)
                weight = weight * scale.view(-1, 1, 1, 1)
                bias = shift if bias is None else bias * scale + shift
                bn.forward = _pass_through
            if channels_last:
                weight = weight.contiguous(memory_format=torch.channels_last)
            conv._parameters["weight"] = nn.Parameter(weight, requires_grad=False)
            conv._parameters["bias"] = (None if bias is None
                                        else nn.Parameter(bias, requires_grad=False))
        yield
    finally:
        for conv, weight, bias in saved:
            conv._parameters["weight"], conv._parameters["bias"] = weight, bias
        for bn in folded.values():
            bn.__dict__.pop("forward", None)


def _agree(fast: Acts, reference: Acts) -> bool:
    """Same layers, same values up to float rounding (relative to each layer's largest value)."""
    return fast.keys() == reference.keys() and all(
        torch.allclose(fast[k], ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()) + 1e-6)
        for k, ref in reference.items())


@contextmanager
def _fast_model(model: nn.Module, paths: dict[str, str], probe: torch.Tensor):
    """The model arranged for speed inside the block, computing the same function: eval-mode
    BatchNorms folded into the convolutions they follow and, on CPU, conv weights in
    channels_last (oneDNN's native layout, so no reordering at every call; on GPUs cuDNN picks
    its own). Yields whether the inputs should be channels_last too. `probe`: `[N, 3, H, W]`.

    A probe pass finds the pairs to fold, and the arrangement is kept only if the layers the
    objectives read come out the same with it (a conv output read elsewhere than by its
    BatchNorm, say, would not): it is only a speed-up, so otherwise the render goes on with the
    model as it is. A conv whose output an objective reads is not folded into. A model in
    training mode is left as it is: its BatchNorms use batch statistics."""
    if not paths or model.training:
        yield False
        return

    def forward(x: torch.Tensor) -> Acts:
        with torch.no_grad(), hooked(model, paths, stop=True) as captured:
            return run(model, x, captured)

    reference: Acts = {}
    convs, pairs = _probe_convs(model, lambda: reference.update(forward(probe)))
    targets = set(resolve_modules(model, paths).values())
    pairs = [(c, b) for c, b in pairs if c not in targets]
    channels_last = probe.device.type == "cpu"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with _swapped_weights(convs, pairs, channels_last):
        try:
            fast = forward(probe.contiguous(memory_format=memory_format))
        except RuntimeError:  # e.g. a .view() that channels_last activations do not allow
            fast = {}
        if _agree(fast, reference):
            yield channels_last
            return
    yield False
