"""The renderer: `render(model, objectives) -> RenderResult(images [N, 3, S, S], values [N])`.

It only optimizes: saving, showing and progress belong to the caller (the `progress`
callback). N objectives are optimized together as one batch, image i for objective i; one
objective with `batch=k` gives k images of it (for diversity). The model's parameters are
frozen while it runs and its hooks removed afterwards, even on error; the forward pass stops
at the deepest layer the objectives read.
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
from microtome.zoo.hooks import hooked, run

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


def _paths(layers: set[str], spec, model: nn.Module) -> dict[str, str]:
    """{name used by the objectives: module path}. Names are resolved through the spec
    (ids, paths, aliases); without a spec they must be module paths."""
    out = {}
    for name in layers - {INPUT}:
        out[name] = spec.layer(name).module if spec is not None else name
    return out


def _values(objectives: list[Objective], acts: Acts) -> torch.Tensor:
    """Objective i's value on image i `[N]`; a single objective applies to every image."""
    if len(objectives) == 1:
        return objectives[0](acts)
    return torch.stack([obj(acts)[i] for i, obj in enumerate(objectives)])


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
        optimizer = torch.optim.Adam(params, lr=lr)
        with hooked(model, paths, stop=True) as captured:

            def evaluate(images: torch.Tensor) -> Acts:  # [N, 3, H, W] -> {layer: activations}
                acts = run(model, preprocess(images), captured) if paths else {}
                acts[INPUT] = images
                return acts

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
            with torch.no_grad():
                final = make_image().detach()
                final_values = _values(objs, evaluate(final)).detach()
    return RenderResult(final, final_values, snapshots, [o.name for o in objs], seed)
