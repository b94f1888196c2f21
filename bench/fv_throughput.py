"""Feature-visualization throughput: microtome against torch-lucent 0.1.8, in units/min.

Both visualize the same units (channels 0-7 of efficientnet_lite0's block10), 128 px, FFT + colour
decorrelation, the standard transforms, Adam lr 0.05, RGB in [0, 1] through the model's own
preprocessing. Lucent renders one unit per `render_vis` call, (a) as shipped (the model's
parameters require gradients, images are upsampled to 224) and (b) with the parameters frozen
and `fixed_image_size=128`. Lucent never removes the hooks it puts on every module; the bench
removes them after each call, so that no call pays for the previous ones.

Two comparisons:
- **the whole job** (default): what a user waits for to get a picture of each unit with each
  tool's own settings. Microtome: the build's feature-vis technique at the `standard` preset
  (its steps and schedule, one batch for the 8 units, the final measurement and the PNGs).
  Lucent: `render_vis` with its default length (`thresholds=(512,)`). Fewer steps are only a
  gain if the pictures are as good, so each side's result is measured the same way: the
  unit's mean activation (the objective both maximize) on the 8-bit image, through the model
  as it is; the median over units of microtome's value over lucent's is printed with the rate.
- **equal steps** (`--steps N`): both run N steps, the cost of a step (microtome's `render`).

Ratios are microtome's rate over lucent's, measured in the same run. Each run is timed in turn,
`--rounds` times in rotating order, and each rate is over its total time, so a change of
load on a shared machine falls on all. Wall-clock rates are what a user waits; the CPU
ratio (process time) is steadier when other processes compete for the cores.

OpenMP's wait policy changes both sides, and not alike: with OMP_WAIT_POLICY=PASSIVE threads
sleep while they wait, with OpenMP's default they spin for a while first (lucent, many small
kernels, gains 2.3x from it). Each side must be measured in its own best conditions, so the
bench runs the whole comparison once per policy, each in a process of its own (the policy is
read once, when torch loads OpenMP), and the target (issue 8: >= 5x lucent frozen, fixed size,
at 2 threads) is read from the default policy's lines. `--policy default` or `--policy PASSIVE`
runs one of them. Lucent as shipped is slow at 512 steps (about 7 min for 8 units): `--shipped`
adds it to the whole-job comparison; it is always in the equal-steps one.

The `microtome` command line makes glibc's malloc keep freed memory for reuse
(`runtime.keep_freed_memory`: without it a render step faults its pages in afresh, 1.5x slower
here). The bench sets it for its whole process, so lucent runs with it too; `--no-keep-freed`
runs both without it.

It also prints, per preset, the steps a unit needs to reach 90% of the activation it ends
with (median over the units, the preset's settings), from one render per preset.

    python bench/fv_throughput.py --threads 2           # whole job, both policies
    python bench/fv_throughput.py --threads 2 --steps 64 --no-steps   # equal steps
    python bench/fv_throughput.py --threads 1 --rounds 2 --policy PASSIVE
"""

from __future__ import annotations

import os
import subprocess
import sys

POLICIES = ("default", "PASSIVE")  # "default": OMP_WAIT_POLICY unset, OpenMP's own
if "--policy-child" in sys.argv:  # this process measures one policy, set by its parent
    os.environ.pop("OMP_WAIT_POLICY", None)
    if sys.argv[sys.argv.index("--policy-child") + 1] != "default":
        os.environ["OMP_WAIT_POLICY"] = sys.argv[sys.argv.index("--policy-child") + 1]

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from microtome.optvis import objectives as O  # noqa: E402
from microtome.optvis.param import ImageParam  # noqa: E402
from microtome.optvis.render import render  # noqa: E402
from microtome.techniques import feature_vis as fv  # noqa: E402
from microtome.zoo import load_model  # noqa: E402
from microtome.zoo.hooks import forward_to  # noqa: E402

MODEL, LAYER, SIZE, LR = "efficientnet_lite0", "block10", 128, 0.05
LUCENT_STEPS = 512  # render_vis's default `thresholds=(512,)`
Images = list[torch.Tensor]  # one [3, H, W] image in [0, 1] per unit


class Preprocess(nn.Module):
    """The spec's preprocessing as a module, so lucent sees the same input as microtome."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] in [0, 1] -> model input
        return self.spec.preprocess(x)


def run_microtome(model, spec, units: list[int], steps: int) -> Images:
    """All `units` as one batch, `steps` steps of `render`."""
    return list(render(model, [O.channel(LAYER, u) for u in units], ImageParam(SIZE, seed=0),
                       spec=spec, steps=steps, lr=LR).images)


def run_microtome_job(model, spec, units: list[int]) -> Images:
    """The build's feature-vis technique at the standard preset: the images as stored (PNG)."""
    from microtome.techniques.builtin import fv_params

    results = fv.feature_vis(model, spec, LAYER, units, [fv_params("standard", "positive")])
    return [png_image(r.files["image.png"]) for r in results]


def png_image(data: bytes) -> torch.Tensor:
    """A PNG file's pixels as `[3, H, W]` in [0, 1]."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)


def unit_values(model, spec, units: list[int], images: Images) -> list[float]:
    """Image i's mean activation of unit units[i] (the objective both maximize), on the image
    rounded to 8 bits as a user gets it, through the model as it is."""
    x = torch.stack([(im.clamp(0, 1) * 255).round() / 255 for im in images])  # [N, 3, H, W]
    with torch.no_grad():
        act = forward_to(model, spec.preprocess(x), {LAYER: spec.layer(LAYER).module})[LAYER]
    return [float(act[i, u].mean()) for i, u in enumerate(units)]


def run_lucent(model, spec, units: list[int], steps: int, frozen: bool) -> Images:
    """One `render_vis` call per unit; lucent's hooks removed after each."""
    from lucent.optvis import param, transform
    from lucent.optvis import render as lucent_render

    wrapped = nn.Sequential(Preprocess(spec), model).eval()
    # lucent names a module by its path in named_modules() joined with "_"; the model is child "1"
    name = "1_" + spec.layer(LAYER).module.replace(".", "_")
    flags = [p.requires_grad for p in wrapped.parameters()]
    hooks = {m: dict(m._forward_hooks) for m in wrapped.modules()}
    out: Images = []
    np.random.seed(0)  # lucent's transforms draw from numpy
    torch.manual_seed(0)
    try:
        for p in wrapped.parameters():
            p.requires_grad_(not frozen)
        for unit in units:
            try:
                shown = lucent_render.render_vis(
                    wrapped, f"{name}:{unit}",
                    param_f=lambda: param.image(SIZE, fft=True, decorrelate=True),
                    optimizer=lambda params: torch.optim.Adam(params, lr=LR),
                    transforms=transform.standard_transforms, thresholds=(steps,),
                    show_image=False, progress=False, preprocess=False,
                    fixed_image_size=SIZE if frozen else None)
                out.append(torch.from_numpy(np.asarray(shown[-1][0])).permute(2, 0, 1))
            finally:
                for m, before in hooks.items():
                    m._forward_hooks.clear()
                    m._forward_hooks.update(before)
    finally:
        for p, flag in zip(wrapped.parameters(), flags):
            p.requires_grad_(flag)
            p.grad = None
    return out


def timed(fn: Callable[[], Images]) -> tuple[float, float, Images]:
    """(wall seconds, CPU seconds of this process, the images) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, images


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="equal steps for both (default: the whole job, each its own)")
    parser.add_argument("--units", type=int, default=8, help="channels 0..N-1 of block10 (8)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="timings of each, in rotating order (1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--policy", choices=POLICIES + ("both",), default="both",
                        help="OpenMP wait policy: default (unset), PASSIVE, or both in turn")
    parser.add_argument("--shipped", action="store_true",
                        help="lucent as shipped in the whole-job comparison too (slow)")
    parser.add_argument("--no-keep-freed", action="store_true",
                        help="leave glibc's malloc as it is (the command line sets it)")
    parser.add_argument("--policy-child", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--no-steps", action="store_true", help="skip steps-to-90%% per preset")
    parser.add_argument("--steps-only", action="store_true",
                        help="only steps-to-90%% per preset (no timing, no lucent)")
    return parser.parse_args(argv)


def run_policies(args, argv: list[str] | None) -> int:
    """The parent: one child process per policy."""
    forwarded = list(argv if argv is not None else sys.argv[1:])
    policies = POLICIES if args.policy == "both" else (args.policy,)
    if args.steps_only:  # not a timing: one policy is enough
        policies = policies[-1:]
    for i, policy in enumerate(policies):
        extra = ["--no-steps"] if i > 0 else []
        code = subprocess.call([sys.executable, __file__, *forwarded, *extra,
                                "--policy-child", policy])
        if code:
            return code
    return 0


def runs_for(args, model, spec, units: list[int]) -> dict[str, Callable[[], Images]]:
    """{label: run} for the mode: microtome first, the ratios are against it."""
    if args.steps is not None:
        steps = args.steps
        return {
            f"microtome render (batch of {len(units)})":
                lambda: run_microtome(model, spec, units, steps),
            "lucent as shipped": lambda: run_lucent(model, spec, units, steps, frozen=False),
            "lucent frozen, fixed size":
                lambda: run_lucent(model, spec, units, steps, frozen=True)}
    runs = {"microtome feature vis, standard": lambda: run_microtome_job(model, spec, units),
            "lucent frozen, fixed size":
                lambda: run_lucent(model, spec, units, LUCENT_STEPS, frozen=True)}
    if args.shipped:
        runs["lucent as shipped"] = lambda: run_lucent(model, spec, units, LUCENT_STEPS, False)
    return runs


def header(args, units: list[int], load: float) -> None:
    from microtome.techniques.builtin import FV_PRESETS

    policy = os.environ.get("OMP_WAIT_POLICY", "unset: OpenMP's default")
    mode = (f"equal steps: {args.steps} each" if args.steps is not None else
            f"whole job: microtome standard preset ({FV_PRESETS['standard']['steps']} steps), "
            f"lucent {LUCENT_STEPS} steps")
    print(f"{MODEL} {LAYER} units 0-{len(units) - 1}, {SIZE} px, {mode}, "
          f"{torch.get_num_threads()} threads (OMP_WAIT_POLICY={policy}, malloc "
          f"{'as it is' if args.no_keep_freed else 'keeps freed memory'}), "
          f"{args.rounds} round(s); ratio = microtome / lucent")
    if load >= 1.0:
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores before the bench started: "
              "other processes compete for them, so rates vary from run to run "
              "(--threads 1 varies least)")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.policy_child is None:
        return run_policies(args, argv)
    if not args.no_keep_freed:
        from microtome.runtime import keep_freed_memory

        keep_freed_memory()
    if args.steps_only:
        if args.threads:
            torch.set_num_threads(args.threads)
        model, spec = load_model(MODEL)
        steps_to_90(model, spec, list(range(args.units)))
        return 0
    try:
        with warnings.catch_warnings():  # kornia 0.4 scripts functions with a deprecated API
            warnings.simplefilter("ignore", FutureWarning)
            import lucent.optvis.render  # noqa: F401
    except ImportError as exc:
        print(f"torch-lucent is not installed ({exc}), so there is nothing to compare with; "
              "install it (and what it imports) without letting pip touch torch:\n"
              "  pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1\n"
              "  pip install decorator ipython")
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # before the bench's own
    if args.threads:
        torch.set_num_threads(args.threads)
    model, spec = load_model(MODEL)
    units = list(range(args.units))
    header(args, units, load)
    runs = runs_for(args, model, spec, units)
    # warm-up, so that one-time costs (lazy imports, oneDNN building kernels for each input
    # size) are not timed: lucent's model always sees one size (224 or 128), microtome's one
    # per drawn scale, so microtome warms up on the very draws it is then timed with
    first = next(iter(runs))
    runs[first]()
    run_lucent(model, spec, units[:1], 2, frozen=False)
    run_lucent(model, spec, units[:1], 2, frozen=True)
    report(runs, units, args.rounds, lambda images: unit_values(model, spec, units, images))
    if not args.no_steps:
        steps_to_90(model, spec, units)
    return 0


def report(runs: dict[str, Callable[[], Images]], units: list[int], rounds: int,
           values: Callable[[Images], list[float]]) -> None:
    """Time each run `rounds` times in rotating order; print rates, ratios and the values the
    units reach (median of microtome's value over the peer's, unit by unit)."""
    totals = {label: [0.0, 0.0] for label in runs}
    reached: dict[str, list[float]] = {}
    labels = list(runs)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            wall, cpu, images = timed(runs[label])
            totals[label][0] += wall
            totals[label][1] += cpu
            reached[label] = values(images)
    work = len(units) * rounds * 60.0  # units x rounds, per minute
    first = labels[0]
    for label in labels:
        wall, cpu = totals[label]
        line = (f"{label:<34}{work / wall:6.1f} units/min   mean activation "
                f"{statistics.median(reached[label]):5.2f} (median)")
        if label != first:
            quality = statistics.median(a / b for a, b in zip(reached[first], reached[label]))
            line += (f"   ratio {totals[label][0] / totals[first][0]:.2f}"
                     f"   (cpu ratio {totals[label][1] / totals[first][1]:.2f};"
                     f" activation ratio {quality:.2f})")
        print(line, flush=True)


def steps_to_90(model, spec, units: list[int]) -> None:
    """Per preset: the median over `units` of the first step at which a unit's value reaches
    90% of its value at the last step (the objective, as the renderer reports it per step), with
    the preset's settings as the feature-vis technique renders them."""
    from microtome.techniques.builtin import FV_PRESETS, fv_params

    for preset, conf in FV_PRESETS.items():
        trace: list[torch.Tensor] = []
        render(model, [O.channel(LAYER, u) for u in units], spec=spec,
               **fv._render_kwargs(fv_params(preset, "positive")),
               progress=lambda step, steps, values: trace.append(values.clone()))
        values = torch.stack(trace)  # [steps, N]
        final = values[-1]
        first = [int(torch.nonzero(values[:, i] >= 0.9 * final[i])[0]) + 1
                 for i in range(len(units)) if final[i] > 0]
        print(f"steps to 90% of the final value, {preset:8} ({conf['steps']:4d} steps, "
              f"{conf['size']} px): median {statistics.median(first):.0f}, "
              f"max {max(first)} over {len(first)} units of {LAYER}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
