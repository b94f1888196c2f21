"""Feature-visualization throughput of the build: local executor vs Ray executor, same run.

Builds the `feature_vis` technique (all four variants) for the same units of one layer of
efficientnet_lite0 into two fresh stores, once per executor, and prints units per minute and
the ratio. Usage: python bench/build_throughput.py [--preset standard] [--units 0-7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from microtome.pipeline.executors import Execution
from microtome.pipeline.pipeline import build
from microtome.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--layer", default="block10")
    parser.add_argument("--units", default="0-7")
    parser.add_argument("--preset", default="standard", choices=["quick", "standard", "full"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray is not installed (pip install 'microtome[ray]'): nothing to compare")
        return
    n_units = None
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for executor in ("local", "ray"):
            store = Store(Path(tmp) / executor)
            started = time.perf_counter()
            summary = build(store, args.model, layers=args.layer, units=args.units, techniques="feature_vis",
                            preset=args.preset,
                            execution=Execution(executor, workers=args.workers, progress=False))
            seconds = time.perf_counter() - started  # includes model loads and, for Ray, its start-up
            if summary.failed:
                sys.exit(f"{executor}: {summary.failed}")
            n_units = len({a.key.unit for a in store.find(model=args.model, technique="feature_vis")})
            rates[executor] = n_units / seconds * 60
            print(f"{executor:6s} executor  {rates[executor]:6.2f} units/min  ({n_units} units x 4 variants, "
                  f"{summary.recorded} artifacts, {seconds:.1f} s, preset {args.preset})", flush=True)
    print(f"ray ({args.workers} workers) / local: {rates['ray'] / rates['local']:.2f}x")


if __name__ == "__main__":
    main()
