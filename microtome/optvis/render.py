"""The renderer: `render(model, objectives) -> RenderResult(images [N, 3, S, S], values [N])`.

It only optimizes: saving, showing and progress belong to the caller (the `progress`
callback). N objectives are optimized together as one batch, image i for objective i; one
objective with `batch=k` gives k images of it (for diversity). The forward pass stops at the
deepest layer the objectives read.

Each image is its own: its initial values and its transforms come from a generator of its own,
seeded from (seed, the objective's description, its occurrence) (`randomness.image_seeds`), so a
unit's image is the same alone or anywhere in any batch, up to float rounding. During the first
`redirect_steps` steps, and after them for any image whose value is still exactly 0, ReLU-family
activations backpropagate Lucid's redirected gradient (`redirect.redirected_relus`), so a unit
inactive at the initial image still gets a gradient.
The one batch-dependent kernel of a step, a first conv's input gradient, is computed image by
image (`invariant.batch_invariant`).

The caller's model is never modified: the renderer works on `private_copy(model)` (own modules
and hooks, shared weights), which it arranges for speed (`fast._fast_model`: BatchNorm folding,
channels_last) while the images are optimized; the final values are measured with the model as
it is. So two threads may render with one model at the same time.

The last `polish_steps` steps optimize the image's pixels themselves (`param.pixel_logits`), with
no transform: what the feature-vis technique does for layers whose receptive field is a few
pixels wide (`techniques.builtin.EARLY_LAYERS`), whose optimum has the highest frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.optvis import param as param_mod
from microtome.optvis.fast import _fast_model, private_copy
from microtome.optvis.invariant import batch_invariant
from microtome.optvis.objectives import INPUT, Acts, Objective, as_objective
from microtome.optvis.randomness import PerImage, image_seeds
from microtome.optvis.redirect import redirected_relus
from microtome.optvis.schedule import LAYER_SCHEDULE, LayerSchedule
from microtome.optvis.transforms import (Transform, apply, compose, sharp_transforms,
                                         standard_transforms)
from microtome.zoo.hooks import hooked, run

__all__ = ["render", "RenderResult", "Progress", "ParamF", "OptimizerF", "LayerSchedule",
           "LAYER_SCHEDULE", "_fast_model"]

Progress = Callable[[int, int, torch.Tensor], None]  # (step, steps, values [N]) -> None
ParamF = Callable[[], tuple[Iterable[torch.Tensor], Callable[[], torch.Tensor]]]
OptimizerF = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
REDIRECT_STEPS = 16  # Lucid's: the redirected gradient for the first 16 steps


@dataclass
class RenderResult:
    """Final images `[N, 3, S, S]` in [0, 1], their objective values `[N]` measured on the
    untransformed images, snapshots `{step: images}` at the requested thresholds, the objectives'
    descriptions, the render seed and each image's own seed `[N]`."""

    images: torch.Tensor
    values: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    objectives: list[str] = field(default_factory=list)
    seed: int = 0
    image_seeds: list[int] = field(default_factory=list)
    schedule: str | None = None  # the layer schedule's kind that ran ("early", "local")
    steps: int = 0  # the steps that ran (an early layer's schedule multiplies them)

    def _repr_png_(self) -> bytes:  # notebooks: the images in a captioned grid
        from microtome.display import render_figure
        return render_figure(self).png()

    def _repr_html_(self) -> str:
        from microtome.display import render_figure
        return render_figure(self).html()


def _paths(layers: set[str], spec, model: nn.Module) -> dict[str, str]:
    """{name used by the objectives: module path}. Names are resolved through the spec
    (ids, paths, aliases); without a spec they must be module paths."""
    out = {}
    for name in layers - {INPUT}:
        out[name] = spec.layer(name).module if spec is not None else name
    return out


def _runs(objectives: list[Objective]) -> list[tuple[slice, Objective]]:
    """The batch as runs of consecutive images with the same objective `[(slice, objective)]`:
    a diversity set (or one objective over the whole batch) is one run, every other image a run
    of its own. A run is the renderer's unit of computation: an image's gradient is computed
    with its run only, never with the rest of the batch, so it is the same in any batch."""
    runs: list[tuple[slice, Objective]] = []
    for i, obj in enumerate(objectives):
        if runs and runs[-1][1] is obj:
            runs[-1] = (slice(runs[-1][0].start, i + 1), obj)
        else:
            runs.append((slice(i, i + 1), obj))
    return runs


def _redirected(step: int, redirect_steps: int, values: torch.Tensor) -> torch.Tensor | None:
    """The images `[N]` whose ReLU gradients are redirected at `step`: all during the first
    `redirect_steps`, then those whose value at the previous step was exactly 0; None for none.
    An image's own history decides, whatever its batch (a live image's gradient is unchanged)."""
    if redirect_steps <= 0:
        return None
    if step <= redirect_steps:
        return torch.ones(values.shape, dtype=torch.bool)
    dead = values.detach().cpu() == 0
    return dead if bool(dead.any()) else None


def _batch_objectives(objectives, batch: int | None, n_images: int | None) -> list[Objective]:
    """One objective per image `[N]` (a single objective repeated over the batch)."""
    objs = [as_objective(o) for o in (objectives if isinstance(objectives, (list, tuple))
                                      else [objectives])]
    if not objs:
        raise MicrotomeError("render needs at least one objective")
    n = n_images or batch or len(objs)
    if batch is not None and batch != n:
        raise MicrotomeError(f"batch={batch} but param_f makes {n} images")
    if len(objs) > 1 and len(objs) != n:
        raise MicrotomeError(f"{len(objs)} objectives for {n} images; with several objectives "
                             "the batch is one image each (pass batch= only with one objective)")
    return objs * n if len(objs) == 1 else objs


def _pass(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class _Loop:
    """The optimization loop of one render, on the renderer's private copy of the model."""

    model: nn.Module
    paths: dict[str, str]
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    transform: Transform
    rng: PerImage
    objectives: list[Objective]
    redirect_steps: int
    sharpen: tuple[int, Transform] = (0, _pass)  # (last steps, their transform)
    polish: int = 0  # the very last steps, untransformed
    lr_at: Callable[[int], float] | None = None  # step -> learning rate (None: the optimizer's)

    def __post_init__(self) -> None:
        self.runs = _runs(self.objectives)

    def transform_at(self, step: int, steps: int) -> Transform:
        """The transform of `step` (1-based) of `steps`: the standard set, then the sharpening
        set for the last `sharpen` steps, then none for the last `polish` steps."""
        if step > steps - self.polish:
            return _pass
        last, sharp = self.sharpen
        return sharp if step > steps - last else self.transform

    def optimize(self, probe: torch.Tensor, opt: torch.optim.Optimizer,
                 make_image: Callable[[], torch.Tensor], steps: range, total: int,
                 thresholds: Sequence[int], progress: Progress | None,
                 values: torch.Tensor | None = None) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Run `steps` (numbered 1..`total` over the whole render); the snapshots `{step: images}`
        at `thresholds` and the last step's values `[N]` (`values`: the previous step's)."""
        snapshots: dict[int, torch.Tensor] = {}
        if values is None:
            values = torch.zeros(len(self.objectives))  # [N] at the previous step
        with _fast_model(self.model, self.paths, probe) as channels_last, \
                hooked(self.model, self.paths, stop=True) as captured:
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            for step in steps:
                if self.lr_at is not None and step <= total - self.polish:
                    for group in opt.param_groups:
                        group["lr"] = self.lr_at(step)
                opt.zero_grad(set_to_none=True)
                images = make_image()  # [N, 3, H, W]
                pixels = images.detach().requires_grad_(True)  # each run's gradient lands here
                allow = _redirected(step, self.redirect_steps, values)
                transform = self.transform_at(step, total)
                values = torch.cat([self._run_step(pixels, sl, obj, transform, allow, captured,
                                                   memory_format)
                                    for sl, obj in self.runs])
                if pixels.grad is not None:  # through the parameterization, batch-wide
                    images.backward(pixels.grad)
                opt.step()
                if progress is not None:
                    progress(step, total, values)
                if step in thresholds:
                    snapshots[step] = make_image().detach().clone()
        return snapshots, values

    def _run_step(self, pixels: torch.Tensor, sl: slice, obj: Objective, transform: Transform,
                  allow: torch.Tensor | None, captured: dict,
                  memory_format: torch.memory_format) -> torch.Tensor:
        """One run's forward and backward (its gradient accumulates in `pixels.grad`); its
        values `[n]`. The run's images are computed as a batch of their own, so no kernel sees
        another run's images (oneDNN's kernels round differently by batch size)."""
        images = pixels[sl]  # [n, 3, H, W]
        rng = PerImage(self.rng.generators[sl])
        x = self.preprocess(apply(transform, images, rng)).contiguous(memory_format=memory_format)
        mask = allow[sl] if allow is not None else None
        with batch_invariant(), \
                redirected_relus(mask) if mask is not None and bool(mask.any()) else nullcontext():
            acts = run(self.model, x, captured) if self.paths else {}
        acts[INPUT] = images  # penalties see the untransformed image
        values = obj(acts)  # [n]
        (-values.sum()).backward()
        return values.detach()


def _custom_param(param_f: ParamF):
    """`param_f()`'s params and image function, its batch size and image side (from one image)."""
    params, make_image = param_f()
    with torch.no_grad():
        shape = make_image().shape  # [N, 3, H, W]
    return list(params), make_image, shape[0], max(shape[-2:])


_SCHEDULED = ("steps", "polish_steps", "polish_lr", "saturation", "fft", "decorrelated",
              "transforms")  # the arguments a layer schedule may replace, in render's order


def _own_seeds(seed: int, seeds: Sequence[int] | None, objs: list[Objective]) -> list[int]:
    """Each image's seed `[N]`: `seeds` as given, else from (seed, objective, occurrence)."""
    own = list(seeds) if seeds is not None else image_seeds(seed, [o.name for o in objs])
    if len(own) != len(objs):
        raise MicrotomeError(f"{len(own)} seeds for {len(objs)} images")
    return own


def _probe(make_image, preprocess, seed: int, device: torch.device) -> torch.Tensor:
    """A random input `[1, 3, H, W]` of the images' size, from a generator of its own (the
    global one is not touched), for checking the fast model against the model."""
    with torch.no_grad():
        shape = make_image().shape[-2:]
    gen = torch.Generator().manual_seed(seed)
    return preprocess(torch.rand(1, 3, *shape, generator=gen).to(device))


def _layer_kind(model: nn.Module, spec, objs: list[Objective], side: int,
                schedule: LayerSchedule | None, device: torch.device) -> str | None:
    """The schedule's kind ("early", "local", None) for the layers `objs` read, from their
    receptive fields measured at `side` px: the widest field decides, so a layer of another
    kind in the mix keeps its transforms. None without a spec (paths, not layers)."""
    layers = set().union(*(o.layers for o in objs)) - {INPUT}
    if schedule is None or spec is None or not layers:
        return None
    from microtome.zoo.receptive import receptive_fields

    fields = receptive_fields(model, spec, sorted(layers), side, device)
    return schedule.kind(max(max(f.extent) for f in fields.values()))


def cosine_lr(lr: float, lr_final: float, steps: int) -> Callable[[int], float]:
    """Step (1-based) -> learning rate, annealed from `lr` at step 1 to `lr_final` at `steps`
    along half a cosine."""
    def lr_at(step: int) -> float:
        t = (step - 1) / max(steps - 1, 1)
        return lr_final + (lr - lr_final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return lr_at


def _polish(loop: "_Loop", probe: torch.Tensor, make_image, snapshots: dict, values, steps: int,
            polish: int, lr: float, saturation: float | None, thresholds: Sequence[int],
            progress: Progress | None, device: torch.device):
    """Optimize the last `polish` steps on the pixels' logits; returns the new `make_image`."""
    with torch.no_grad():
        start = make_image().detach()  # [N, 3, H, W]
    params, make_image = param_mod.pixel_logits(start, saturation)
    opt = torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))
    snapshots.update(loop.optimize(probe, opt, make_image, range(steps - polish + 1, steps + 1),
                                   steps, thresholds, progress, values)[0])
    return make_image


def render(model: nn.Module, objectives: Objective | str | Sequence[Objective | str], *,
           spec=None, size: int = 128, batch: int | None = None, steps: int = 512,
           lr: float = 0.05, lr_final: float | None = None, fft: bool = True,
           decorrelated: bool = True, decay: float = 1.0,
           transforms: Sequence[Transform] | None = None, thresholds: Sequence[int] = (),
           seed: int = 0, seeds: Sequence[int] | None = None, param_f: ParamF | None = None,
           optimizer: OptimizerF | None = None, redirect_steps: int = REDIRECT_STEPS,
           sharpen_steps: int = 0, schedule: LayerSchedule | None = LAYER_SCHEDULE,
           polish_steps: int = 0, polish_lr: float | None = None,
           saturation: float | None = None,
           device: str | torch.device = "cpu",
           progress: Progress | None = None) -> RenderResult:
    """Optimize images to maximize `objectives`; same seed, same images, in any batch.

    `spec` (a ModelSpec) resolves layer names and preprocesses [0, 1] RGB to the model's input;
    without it layer names are module paths and images go in as they are. `transforms=None`
    means the standard set; `[]` none. `seeds` overrides the images' own seeds `[N]`. `param_f() -> (params, make_image)` replaces the standard parameterization
    (`size`, `fft`, `decorrelated`, `decay` then unused; `make_image()` gives `[N, 3, H, W]` in
    [0, 1]); `optimizer(params)` replaces Adam(lr). `redirect_steps=0` turns the redirected
    ReLU gradient off. The last `sharpen_steps` steps use `sharp_transforms()` (whole-pixel
    shifts, no resampling) in place of the standard set, and the last `polish_steps` (counted
    within them) no transform at all: the image is then optimized exactly as it is measured.
    `saturation` bounds the standard parameterization's logits (see `param.to_valid_rgb`).
    `lr_final`: the default optimizer's rate goes from `lr` to it by `cosine_lr` until the polish.
    `schedule` (with a `spec`): the layers' receptive fields at the render size pick the
    schedule's kind, whose arguments (`_SCHEDULED`: an early layer takes twice the steps, in
    pixel space) replace the caller's; the result's `schedule` says which kind ran.
    `schedule=None` renders exactly as asked."""
    device = torch.device(device)
    custom = _custom_param(param_f) if param_f is not None else None
    objs = _batch_objectives(objectives, batch, custom[2] if custom else None)
    kind = _layer_kind(model, spec, objs, custom[3] if custom else size, schedule, device)
    if kind is not None:  # the schedule's arguments replace the caller's
        steps, polish_steps, polish_lr, saturation, fft, decorrelated, transforms = (
            {"polish_lr": polish_lr, "saturation": saturation, "fft": fft,
             "decorrelated": decorrelated, "transforms": transforms,
             **schedule.render_kwargs(kind, steps)}[k] for k in _SCHEDULED)
    rng = PerImage.from_seeds(own_seeds := _own_seeds(seed, seeds, objs))
    params, make_image = custom[:2] if custom else param_mod.image(
        size, len(rng), fft=fft, decorrelated=decorrelated, decay=decay, device=device, rng=rng,
        saturation=saturation)
    opt = (optimizer(params) if optimizer is not None  # the fused kernel: one pass, same update
           else torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda")))
    paths = _paths(set().union(*(o.layers for o in objs)), spec, work := private_copy(model))
    preprocess = spec.preprocess if spec is not None else (lambda x: x)
    probe = _probe(make_image, preprocess, seed, device)
    polish = min(max(polish_steps, 0), steps)
    lr_at = (cosine_lr(lr, lr_final, steps - polish)
             if lr_final is not None and optimizer is None else None)
    loop = _Loop(work, paths, preprocess,
                 compose(standard_transforms() if transforms is None else transforms), rng, objs,
                 redirect_steps, (sharpen_steps, compose(sharp_transforms())), polish, lr_at)
    snapshots, values = loop.optimize(probe, opt, make_image, range(1, steps - polish + 1), steps,
                                      thresholds, progress)
    if polish:  # the last steps in pixel space, on the image as it is measured
        make_image = _polish(loop, probe, make_image, snapshots, values, steps, polish,
                             polish_lr or lr, saturation, thresholds, progress, device)
    final, final_values = _measure(work, paths, preprocess, make_image, objs)
    return RenderResult(final, final_values, snapshots, [o.name for o in objs], seed, own_seeds,
                        kind, steps)


def _measure(model: nn.Module, paths: dict[str, str], preprocess, make_image,
             objs: list[Objective]) -> tuple[torch.Tensor, torch.Tensor]:
    """The final images `[N, 3, H, W]` and their values `[N]`, with the model as it is (run by
    run, as they were optimized)."""
    with torch.no_grad(), hooked(model, paths, stop=True) as captured:
        final = make_image().detach()
        values = []
        for sl, obj in _runs(objs):
            acts = run(model, preprocess(final[sl]), captured) if paths else {}
            acts[INPUT] = final[sl]
            values.append(obj(acts))
        return final, torch.cat(values).detach()
