"""The renderer: `render(model, objectives) -> RenderResult(images [N, 3, S, S], values [N])`.

It only optimizes: saving, showing and progress belong to the caller (the `progress`
callback). N objectives are optimized together as one batch, image i for objective i; one
objective with `batch=k` gives k images of it (for diversity). The model's parameters are
frozen while it runs and its hooks removed afterwards, even on error; the forward pass stops
at the deepest layer the objectives read.

For speed the model is borrowed, not copied: while the images are optimized its eval-mode
BatchNorms are folded into the convolutions before them and, on CPU, its conv weights are
channels_last (`_fast_model`, checked against the model as it is on a probe image); its own
Parameters and modules are put back afterwards, and the final values are measured with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.optvis import param as param_mod
from microtome.optvis.objectives import INPUT, Acts, Objective, as_objective
from microtome.optvis.transforms import Transform, compose, standard_transforms
from microtome.zoo.hooks import hooked, resolve_modules, run

Progress = Callable[[int, int, torch.Tensor], None]  # (step, steps, values [N]) -> None


@dataclass
class RenderResult:
    """Final images `[N, 3, S, S]` in [0, 1], their objective values `[N]` measured on the
    untransformed images, and snapshots `{step: images}` at the requested thresholds."""

    images: torch.Tensor
    values: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    objectives: list[str] = field(default_factory=list)
    seed: int = 0


@contextmanager
def frozen(model: nn.Module):
    """Parameters without gradients inside the block; their previous flags restored after."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


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


def _paths(layers: set[str], spec, model: nn.Module) -> dict[str, str]:
    """{name used by the objectives: module path}. Names are resolved through the spec
    (ids, paths, aliases); without a spec they must be module paths."""
    out = {}
    for name in layers - {INPUT}:
        out[name] = spec.layer(name).module if spec is not None else name
    return out


def _values(objectives: list[Objective], acts: Acts) -> torch.Tensor:
    """Objective i's value on image i `[N]`; a single objective applies to every image.

    A run of consecutive images with the same objective (e.g. a diversity set) is evaluated
    once on its own slice of the batch. Slicing goes through one `split` per layer, whose
    backward is one concatenation: evaluating N objectives on the whole batch and picking
    entry i would build N full-size gradients per layer (quadratic in N)."""
    if len(objectives) == 1:
        return objectives[0](acts)
    runs: list[list] = []  # [objective, number of consecutive images]
    for obj in objectives:
        if runs and runs[-1][0] is obj:
            runs[-1][1] += 1
        else:
            runs.append([obj, 1])
    chunks = {name: torch.split(t, [n for _, n in runs]) for name, t in acts.items()}
    return torch.cat([obj({name: c[j] for name, c in chunks.items()}) for j, (obj, _) in enumerate(runs)])


def render(model: nn.Module, objectives: Objective | str | Sequence[Objective | str], *,
           spec=None, size: int = 128, batch: int | None = None, steps: int = 512,
           lr: float = 0.05, fft: bool = True, decorrelated: bool = True, decay: float = 1.0,
           transforms: Sequence[Transform] | None = None, thresholds: Sequence[int] = (),
           seed: int = 0, device: str | torch.device = "cpu",
           progress: Progress | None = None) -> RenderResult:
    """Optimize images to maximize `objectives`; same seed, same images.

    `spec` (a ModelSpec) resolves layer names and preprocesses [0, 1] RGB to the model's
    input; without it layer names are module paths and images go in as they are.
    `transforms=None` means the standard set; pass `[]` for none."""
    objs = [as_objective(o) for o in (objectives if isinstance(objectives, (list, tuple))
                                      else [objectives])]
    if not objs:
        raise MicrotomeError("render needs at least one objective")
    if batch is not None and len(objs) > 1 and batch != len(objs):
        raise MicrotomeError(f"batch={batch} but {len(objs)} objectives were given; with several "
                             "objectives the batch is one image each")
    n = batch or len(objs)
    device = torch.device(device)
    paths = _paths(set().union(*(o.layers for o in objs)), spec, model)
    preprocess = spec.preprocess if spec is not None else (lambda x: x)
    transform = compose(standard_transforms() if transforms is None else transforms)
    snapshots: dict[int, torch.Tensor] = {}

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), frozen(model):
        torch.manual_seed(seed)
        params, make_image = param_mod.image(size, n, fft=fft, decorrelated=decorrelated,
                                             decay=decay, device=device)
        # the fused kernel: the same update as the default, in one pass over the parameters
        optimizer = torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))
        # a random image from a generator of its own: the global one draws what it always drew
        generator = torch.Generator().manual_seed(seed)
        probe = preprocess(torch.rand(1, 3, size, size, generator=generator).to(device))
        with _fast_model(model, paths, probe) as channels_last, \
                hooked(model, paths, stop=True) as captured:
            memory_format = torch.channels_last if channels_last else torch.contiguous_format

            def evaluate(images: torch.Tensor) -> Acts:  # [N, 3, H, W] -> {layer: activations}
                x = preprocess(images).contiguous(memory_format=memory_format)
                return run(model, x, captured) if paths else {}

            for step in range(1, steps + 1):
                optimizer.zero_grad(set_to_none=True)
                images = make_image()
                acts = evaluate(transform(images))
                acts[INPUT] = images  # penalties see the untransformed image
                values = _values(objs, acts)
                (-values.sum()).backward()
                optimizer.step()
                if progress is not None:
                    progress(step, steps, values.detach())
                if step in thresholds:
                    snapshots[step] = make_image().detach().clone()
        with torch.no_grad(), hooked(model, paths, stop=True) as captured:  # the model as it is
            final = make_image().detach()
            acts = run(model, preprocess(final), captured) if paths else {}
            acts[INPUT] = final
            final_values = _values(objs, acts).detach()
    return RenderResult(final, final_values, snapshots, [o.name for o in objs], seed)
