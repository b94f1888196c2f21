"""A build worker: loads the model once, then `run(task) -> [ArtifactResult]` for any task.

The same class runs in-process (local executor) and as a Ray actor (one model load per
worker). It never touches the store: the driver records what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from microtome.build.plan import Task
from microtome.techniques import feature_vis as fv
from microtome.techniques.base import (CONNECTIONS, DATASET_EXAMPLES, DEEPDREAM, FEATURE_VIS,
                                       TUNING, ArtifactResult)

Tick = Callable[[float], None]  # progress: a fraction of the running task's cost done


class Worker:
    """Holds one loaded model (and datasets, loaded on first use) for many tasks."""

    def __init__(self, model: str, weights: str = "default", device: str = "cpu", threads: int | None = None):
        from microtome.zoo import load_model

        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.model, self.spec = load_model(model, weights=weights, device=device)
        self._datasets: dict[str, Any] = {}

    def dataset(self, name: str):
        if name not in self._datasets:
            from microtome.data import get_dataset
            self._datasets[name] = get_dataset(name)
        return self._datasets[name]

    def run(self, task: Task, best_examples: Mapping[str, Mapping[int, float]] | None = None,
            tick: Tick | None = None) -> list[ArtifactResult]:
        """Compute every artifact of `task`; results carry exactly the planned params."""
        results = _RUNNERS[task.technique](self, task, best_examples or {}, tick)
        planned = {(layer, unit, _frozen(p)) for layer, unit, p in task.items}
        got = [r for r in results if (r.layer, r.unit, _frozen(r.params)) in planned]
        if len(got) != len(planned):
            made = {(r.layer, r.unit, _frozen(r.params)) for r in results}
            lost = sorted(str(k[:2]) for k in planned - made)[:3]
            raise RuntimeError(f"{task.describe()}: the technique did not produce the planned "
                               f"artifacts (params differ?), e.g. {lost}")
        return got

    def ping(self) -> str:
        return f"{self.spec.id} on {self.device}"


def _frozen(params: Mapping[str, Any]) -> str:
    import json
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _steps_tick(tick: Tick | None, total_steps: int):
    if tick is None:
        return None
    return lambda step, steps, values: tick(1.0 / total_steps)


def _feature_vis(w: Worker, task: Task, best, tick) -> list[ArtifactResult]:
    layer = task.layers[0]
    params_list = list({_frozen(p): p for _, _, p in task.items}.values())
    units = task.units
    steps = params_list[0]["steps"]
    return fv.feature_vis(w.model, w.spec, layer, units, params_list, device=w.device,
                          best_examples=best.get(layer), progress=_steps_tick(tick, steps))


def _deepdream(w: Worker, task: Task, best, tick) -> list[ArtifactResult]:
    layer, _, params = task.items[0]
    return [fv.deepdream(w.model, w.spec, layer, params, device=w.device,
                         progress=_steps_tick(tick, params["steps"]))]


def _examples(w: Worker, task: Task, best, tick) -> list[ArtifactResult]:
    from microtome.techniques.examples import dataset_examples

    params = task.items[0][2]
    dataset = w.dataset(params["dataset"])
    results = dataset_examples(w.model, w.spec, list(task.layers), dataset, size=params["size"],
                               k=params["k"], preset=params["preset"], device=w.device)
    if tick:
        tick(1.0)
    return results


def _tuning(w: Worker, task: Task, best, tick) -> list[ArtifactResult]:
    from microtome.techniques.tuning import tuning

    results = tuning(w.model, w.spec, task.layers[0], task.units, task.items[0][2], device=w.device)
    if tick:
        tick(1.0)
    return results


def _connections(w: Worker, task: Task, best, tick) -> list[ArtifactResult]:
    from microtome.techniques.connections import connections

    params = task.items[0][2]
    dataset = w.dataset(params["dataset"]) if params.get("dataset") else None
    results = connections(w.model, w.spec, task.layers[0], task.units, params,
                          dataset=dataset, device=w.device)
    if tick:
        tick(1.0)
    return results


_RUNNERS = {FEATURE_VIS: _feature_vis, DEEPDREAM: _deepdream, DATASET_EXAMPLES: _examples,
            TUNING: _tuning, CONNECTIONS: _connections}
