"""The renderer: `render(model, objective_f) -> RenderResult(images [N, 3, S, S], values [N])`.

Lucent's `render_vis` names and order: `render(model, objective_f, param_f, optimizer,
transforms, thresholds)`, then `spec`, `steps`, `lr`, `schedule`, `device`, `progress`. It only
optimizes: saving, showing and progress belong to the caller (the `progress` callback). N
objectives are optimized together as one batch, image i for objective i; one objective with
`param_f=ImageParam(size, batch=k)` gives k images of it (for diversity). The forward pass stops
at the deepest layer the objectives read.

Each image is its own: its initial values and its transforms come from a generator of its own,
seeded from (seed, the objective's description, its occurrence) (`param.ImageParam`), so a
unit's image is the same alone or anywhere in any batch, up to float rounding. During the first
`schedule.redirect_steps` steps, and after them for any image whose value is still exactly 0,
ReLU-family activations backpropagate Lucid's redirected gradient (`redirect.redirected_relus`),
so a unit inactive at the initial image still gets a gradient. A GELU whose output an objective
reads backpropagates, at every step, through its gate where an input is caught below GELU's
minimum while ascent wants its output larger (`redirect.gate_gelus`: GELU's trap).
The one batch-dependent kernel of a step, a first conv's input gradient, is computed image by
image (`invariant.batch_invariant`).

The caller's model is never modified: the renderer works on `private_copy(model)` (own modules
and hooks, shared weights), which it arranges for speed (`fast._fast_model`: BatchNorm folding,
channels_last) while the images are optimized; the final values are measured with the model as
it is. So two threads may render with one model at the same time.

The last `schedule.polish_steps` steps optimize the image's pixels themselves
(`param.pixel_logits`), with no transform: what the layer schedule does for layers whose
receptive field is a few pixels wide (`optvis.schedule`), whose optimum has the highest
frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from microtome.errors import MicrotomeError
from microtome.optvis import param as param_mod
from microtome.optvis.fast import _fast_model, private_copy
from microtome.optvis.invariant import batch_invariant
from microtome.optvis.objectives import INPUT, Objective, as_objective
from microtome.optvis.param import ImageParam
from microtome.optvis.randomness import PerImage, image_seeds
from microtome.optvis.redirect import gate_gelus, redirected_relus
from microtome.optvis.schedule import LAYER_SCHEDULE, REDIRECT_STEPS, SCHEDULE, LayerSchedule, Schedule
from microtome.optvis.transforms import Transform, apply, compose, sharp_transforms, standard_transforms
from microtome.zoo.hooks import hooked, run

__all__ = ["render", "RenderResult", "Progress", "ParamF", "OptimizerF", "ImageParam", "Schedule",
           "SCHEDULE", "LayerSchedule", "LAYER_SCHEDULE", "REDIRECT_STEPS", "_fast_model"]

Progress = Callable[[int, int, torch.Tensor], None]  # (step, steps, values [N]) -> None
ParamF = Callable[[], tuple[Iterable[torch.Tensor], Callable[[], torch.Tensor]]]
OptimizerF = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


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


def _batch_objectives(objective_f, batch: int | None, n_images: int | None) -> list[Objective]:
    """One objective per image `[N]` (a single objective repeated over the batch)."""
    objs = [as_objective(o) for o in (objective_f if isinstance(objective_f, (list, tuple))
                                      else [objective_f])]
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


def _for_layer(kind: str | None, steps: int, schedule: Schedule, image,
               transforms: Sequence[Transform] | None):
    """(steps, schedule, image, transforms) with the layer schedule's settings for `kind`
    (`LayerSchedule.render_kwargs`) in place of the caller's: the steps, the polish (into the
    schedule), the standard image's fft, decorrelated and saturation (into the `ImageParam`;
    for another `param_f` only the polish's saturation, returned last), the transforms."""
    changes = schedule.layers.render_kwargs(kind, steps) if kind is not None else {}
    schedule = replace(schedule, **{k: changes[k] for k in ("polish_steps", "polish_lr")
                                    if k in changes})
    if isinstance(image, ImageParam):
        image = replace(image, **{k: changes[k] for k in ("fft", "decorrelated", "saturation")
                                  if k in changes})
        saturation = image.saturation
    else:
        saturation = changes.get("saturation")
    return (changes.get("steps", steps), schedule, image, changes.get("transforms", transforms),
            saturation)


def _probe(make_image, preprocess, seed: int, device: torch.device) -> torch.Tensor:
    """A random input `[1, 3, H, W]` of the images' size, from a generator of its own (the
    global one is not touched), for checking the fast model against the model."""
    with torch.no_grad():
        shape = make_image().shape[-2:]
    gen = torch.Generator().manual_seed(seed)
    return preprocess(torch.rand(1, 3, *shape, generator=gen).to(device))


def _layer_kind(model: nn.Module, spec, objs: list[Objective], side: int,
                layers: LayerSchedule | None, device: torch.device) -> str | None:
    """The schedule's kind ("early", "local", None) for the layers `objs` read, from their
    receptive fields measured at `side` px: the widest field decides, so a layer of another
    kind in the mix keeps its transforms. None without a spec (paths, not layers)."""
    read = set().union(*(o.layers for o in objs)) - {INPUT}
    if layers is None or spec is None or not read:
        return None
    from microtome.zoo.receptive import receptive_fields

    fields = receptive_fields(model, spec, sorted(read), side, device)
    return layers.kind(max(max(f.extent) for f in fields.values()))


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


def render(model: nn.Module, objective_f: Objective | str | Sequence[Objective | str],
           param_f: ParamF | None = None, optimizer: OptimizerF | None = None,
           transforms: Sequence[Transform] | None = None, thresholds: Sequence[int] = (), *,
           spec=None, steps: int = 512, lr: float = 0.05, schedule: Schedule = SCHEDULE,
           device: str | torch.device = "cpu", progress: Progress | None = None) -> RenderResult:
    """Optimize images to maximize `objective_f` (one objective, a `"layer:unit"` string, or one
    per image); same seed, same images, in any batch.

    `param_f() -> (params, make_image)` makes the images (`make_image()` gives `[N, 3, H, W]` in
    [0, 1]); None is `ImageParam()`, the standard image (128 px, FFT, decorrelated colour, seed
    0), and `ImageParam(size, batch=, fft=, decorrelated=, decay=, saturation=, seed=, seeds=)`
    says otherwise. `optimizer(params)` replaces Adam at `lr`. `transforms=None` means the
    standard set, `[]` none. `thresholds`: the steps whose images are kept as snapshots.
    `spec` (a ModelSpec) resolves layer names and preprocesses [0, 1] RGB to the model's input;
    without it layer names are module paths and images go in as they are. `schedule` says what
    changes over the `steps` (`optvis.schedule.Schedule`: lr annealing, redirected gradients,
    sharpening, a pixel polish, and the layer schedule, which with a `spec` replaces these
    settings for layers of a few pixels' receptive field; the result's `schedule` says which
    kind ran). Anything else is the caller's: `progress(step, steps, values)` is called at every
    step."""
    device = torch.device(device)
    if not isinstance(schedule, Schedule):
        raise MicrotomeError(f"schedule={schedule!r}: render takes a Schedule "
                             "(optvis.schedule); Schedule(layers=None) renders without a layer "
                             "schedule, Schedule(layers=LayerSchedule(...)) with another")
    image = ImageParam() if param_f is None else param_f
    standard = isinstance(image, ImageParam)
    custom = None if standard else _custom_param(image)
    objs = _batch_objectives(objective_f, image.batch if standard else None,
                             None if standard else custom[2])
    kind = _layer_kind(model, spec, objs, image.size if standard else custom[3], schedule.layers,
                       device)
    steps, schedule, image, transforms, saturation = _for_layer(kind, steps, schedule, image,
                                                                transforms)
    names = [o.name for o in objs]
    seed = image.seed if standard else 0
    rng = PerImage.from_seeds(own_seeds := (image.image_seeds(names) if standard
                                            else image_seeds(0, names)))
    params, make_image = image.make(rng, device) if standard else custom[:2]
    opt = (optimizer(params) if optimizer is not None  # the fused kernel: one pass, same update
           else torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda")))
    paths = _paths(set().union(*(o.layers for o in objs)), spec, work := private_copy(model))
    if schedule.redirect_steps > 0:
        gate_gelus(work, paths.values())  # GELU's trap, at every step (the copy's; the caller's are untouched)
    preprocess = spec.preprocess if spec is not None else (lambda x: x)
    probe = _probe(make_image, preprocess, seed, device)
    polish = min(max(schedule.polish_steps, 0), steps)
    lr_at = (cosine_lr(lr, schedule.lr_final, steps - polish)
             if schedule.lr_final is not None and optimizer is None else None)
    loop = _Loop(work, paths, preprocess,
                 compose(standard_transforms() if transforms is None else transforms), rng, objs,
                 schedule.redirect_steps, (schedule.sharpen_steps, compose(sharp_transforms())),
                 polish, lr_at)
    snapshots, values = loop.optimize(probe, opt, make_image, range(1, steps - polish + 1), steps,
                                      thresholds, progress)
    if polish:  # the last steps in pixel space, on the image as it is measured
        make_image = _polish(loop, probe, make_image, snapshots, values, steps, polish,
                             schedule.polish_lr or lr, saturation, thresholds, progress, device)
    final, final_values = _measure(work, paths, preprocess, make_image, objs)
    return RenderResult(final, final_values, snapshots, names, seed, own_seeds, kind, steps)


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
