"""Feature-visualization throughput: microtome's `render` against torch-lucent 0.1.8, in units/min.

Both render the same units (channels 0-7 of efficientnet_lite0's block10) at the same settings:
128 px, FFT + colour decorrelation, the standard transforms, Adam lr 0.05, the same number of
steps, and the same input (RGB in [0, 1] through the model's own preprocessing). Microtome
renders the units as one batch; lucent renders one unit per `render_vis` call, (a) as shipped
(the model's parameters require gradients, images are upsampled to 224) and (b) with the
parameters frozen and `fixed_image_size=128`. Lucent never removes the hooks it puts on every
module; the bench removes them after each call, so that no call pays for the previous ones.

Ratios are microtome's rate over lucent's, measured in the same run. The three are timed in
turn, `--rounds` times in rotating order, and each rate is over its total time, so a change of
load on a shared machine falls on all three. Wall-clock rates are what a user waits; the CPU
ratio (process time) is steadier when other processes compete for the cores, and with
`--threads 1` it is nearly independent of them.

OpenMP's wait policy changes both sides, and not alike: with OMP_WAIT_POLICY=PASSIVE threads
sleep while they wait (good for microtome on shared cores), with OpenMP's default they spin
for a while first (lucent, many small kernels, gains 2.3x from it). Each side must be measured
in its own best conditions, so the bench runs the whole comparison once per policy, each in a
process of its own (the policy is read once, when torch loads OpenMP), and the target (issue 8:
≥ 5x lucent frozen, fixed size, at 2 threads) is read from the default policy's lines.
`--policy default` or `--policy PASSIVE` runs one of them.

It also prints, per preset, the steps a unit needs to reach 90% of the activation it ends
with (median over the units, standard preset's lr), from one render per preset.

    python bench/fv_throughput.py --threads 2           # 64 steps, both policies
    python bench/fv_throughput.py --threads 1 --rounds 2 --policy PASSIVE
    python bench/fv_throughput.py --steps 512           # the renderer's default length
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
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from microtome.optvis import objectives as O  # noqa: E402
from microtome.optvis.render import render  # noqa: E402
from microtome.zoo import load_model  # noqa: E402

MODEL, LAYER, SIZE, LR = "efficientnet_lite0", "block10", 128, 0.05


class Preprocess(nn.Module):
    """The spec's preprocessing as a module, so lucent sees the same input as microtome."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] in [0, 1] -> model input
        return self.spec.preprocess(x)


def run_microtome(model, spec, units: list[int], steps: int) -> None:
    """All `units` as one batch."""
    render(model, [O.channel(LAYER, u) for u in units], spec=spec, size=SIZE, steps=steps, lr=LR,
           seed=0)


def run_lucent(model, spec, units: list[int], steps: int, frozen: bool) -> None:
    """One `render_vis` call per unit; lucent's hooks removed after each."""
    from lucent.optvis import param, render as lucent_render, transform

    wrapped = nn.Sequential(Preprocess(spec), model).eval()
    # lucent names a module by its path in named_modules() joined with "_"; the model is child "1"
    name = "1_" + spec.layer(LAYER).module.replace(".", "_")
    flags = [p.requires_grad for p in wrapped.parameters()]
    hooks = {m: dict(m._forward_hooks) for m in wrapped.modules()}
    np.random.seed(0)  # lucent's transforms draw from numpy
    torch.manual_seed(0)
    try:
        for p in wrapped.parameters():
            p.requires_grad_(not frozen)
        for unit in units:
            try:
                lucent_render.render_vis(
                    wrapped, f"{name}:{unit}",
                    param_f=lambda: param.image(SIZE, fft=True, decorrelate=True),
                    optimizer=lambda params: torch.optim.Adam(params, lr=LR),
                    transforms=transform.standard_transforms, thresholds=(steps,),
                    show_image=False, progress=False, preprocess=False,
                    fixed_image_size=SIZE if frozen else None)
            finally:
                for m, before in hooks.items():
                    m._forward_hooks.clear()
                    m._forward_hooks.update(before)
    finally:
        for p, flag in zip(wrapped.parameters(), flags):
            p.requires_grad_(flag)
            p.grad = None


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64, help="optimization steps per unit (64)")
    parser.add_argument("--units", type=int, default=8, help="channels 0..N-1 of block10 (8)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="timings of each, in rotating order (1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--policy", choices=POLICIES + ("both",), default="both",
                        help="OpenMP wait policy: default (unset), PASSIVE, or both in turn")
    parser.add_argument("--policy-child", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--no-steps", action="store_true", help="skip steps-to-90%% per preset")
    parser.add_argument("--steps-only", action="store_true",
                        help="only steps-to-90%% per preset (no timing, no lucent)")
    args = parser.parse_args(argv)
    if args.policy_child is None:  # the parent: one child process per policy
        forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
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
    policy = os.environ.get("OMP_WAIT_POLICY", "unset: OpenMP's default")
    print(f"{MODEL} {LAYER} units 0-{args.units - 1}, {SIZE} px, {args.steps} steps, "
          f"{torch.get_num_threads()} threads (OMP_WAIT_POLICY={policy}), "
          f"{args.rounds} round(s); ratio = microtome / lucent")
    if load >= 1.0:
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores before the bench started: "
              "other processes compete for them, so rates vary from run to run "
              "(--threads 1 varies least)")

    runs = {
        f"microtome (batch of {len(units)})": lambda: run_microtome(model, spec, units, args.steps),
        "lucent as shipped": lambda: run_lucent(model, spec, units, args.steps, frozen=False),
        "lucent frozen, fixed size":
            lambda: run_lucent(model, spec, units, args.steps, frozen=True),
    }
    # warm-up, so that one-time costs (lazy imports, oneDNN building kernels for each input
    # size) are not timed: lucent's model always sees one size (224 or 128), microtome's one
    # per drawn scale, so microtome warms up on the very draws it is then timed with
    run_microtome(model, spec, units, args.steps)
    run_lucent(model, spec, units[:1], 2, frozen=False)
    run_lucent(model, spec, units[:1], 2, frozen=True)

    totals = {label: [0.0, 0.0] for label in runs}
    labels = list(runs)
    for r in range(args.rounds):
        for label in labels[r % 3:] + labels[:r % 3]:
            wall, cpu = timed(runs[label])
            totals[label][0] += wall
            totals[label][1] += cpu
    work = len(units) * args.rounds * 60.0  # units x rounds, per minute
    first = labels[0]
    for label in labels:
        wall, cpu = totals[label]
        line = f"{label:<30}{work / wall:6.1f} units/min"
        if label != first:
            line += (f"   ratio {totals[label][0] / totals[first][0]:.2f}"
                     f"   (cpu ratio {totals[label][1] / totals[first][1]:.2f})")
        print(line, flush=True)
    if not args.no_steps:
        steps_to_90(model, spec, units)
    return 0


def steps_to_90(model, spec, units: list[int]) -> None:
    """Per preset: the median over `units` of the first step at which a unit's value reaches
    90% of its value at the last step (the objective, as the renderer reports it per step)."""
    from microtome.techniques.builtin import FV_PRESETS

    for preset, conf in FV_PRESETS.items():
        trace: list[torch.Tensor] = []
        render(model, [O.channel(LAYER, u) for u in units], spec=spec, size=conf["size"],
               steps=conf["steps"], lr=LR, seed=0,
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
