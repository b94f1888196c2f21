"""A build worker: loads the model once, then `run(task, inputs) -> [ArtifactResult]` for any task.

The same class runs in-process (local executor) and as a Ray actor (one model load per
worker). It never touches the store: the driver reads what a task's technique `reads` and
records what it returns. Which function runs a task is the technique's declaration's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microtome.pipeline.plan import Task
from microtome.techniques.base import ArtifactResult, Inputs, Job, frozen
from microtome.techniques.registry import technique

Tick = Callable[[float], None]  # progress: a fraction of the running task's cost done


class Worker:
    """Holds one loaded model (and datasets, loaded on first use) for many tasks.

    `threads` sets torch's thread count for this worker's process while it lives (a Ray
    actor's own process); in-process callers use `microtome.runtime.torch_threads` instead."""

    def __init__(self, model: str, weights: str = "default", device: str = "cpu", threads: int | None = None,
                 dictionaries: tuple = ()):
        from microtome.pipeline.dictionaries import attach_payloads
        from microtome.zoo import load_model

        if threads:  # a process of its own (see above)
            from microtome.runtime import keep_freed_memory, set_process_threads
            set_process_threads(threads)
            keep_freed_memory()
        self.device = device
        self.model, self.spec = load_model(model, weights=weights, device=device)
        # the store's SAEs, `(base, name, bytes)`: their features are layers like any other
        self.model, self.spec = attach_payloads(self.model, self.spec, dictionaries)
        self._datasets: dict[str, Any] = {}

    @classmethod
    def holding(cls, model: Any, spec: Any, device: str = "cpu") -> Worker:
        """A worker around a model loaded elsewhere (`(nn.Module, ModelSpec)`, SAEs attached)."""
        worker = cls.__new__(cls)
        worker.device, worker.model, worker.spec, worker._datasets = device, model, spec, {}
        return worker

    def dataset(self, name: str):
        if name not in self._datasets:
            from microtome.data import get_dataset
            self._datasets[name] = get_dataset(name)
        return self._datasets[name]

    def run(self, task: Task, inputs: Inputs | None = None, tick: Tick | None = None) -> list[ArtifactResult]:
        """Compute every artifact of `task`; results carry exactly the planned params."""
        job = Job(self.model, self.spec, self.device, task.technique, task.layers, list(task.items),
                  inputs or {}, self.dataset, tick or (lambda fraction: None))
        results = technique(task.technique).load_runner()(job)
        planned = {(item.layer, item.unit, frozen(item.params)) for item in task.items}
        got = [r for r in results if (r.layer, r.unit, frozen(r.params)) in planned]
        if len(got) != len(planned):
            made = {(r.layer, r.unit, frozen(r.params)) for r in results}
            lost = sorted(str(k[:2]) for k in planned - made)[:3]
            raise RuntimeError(f"{task.describe()}: the technique did not produce the planned "
                               f"artifacts (params differ?), e.g. {lost}")
        return got

    def skipped(self) -> list[tuple[str, str]]:
        """Unreadable files of the datasets this worker has read (reported by the build)."""
        return [entry for data in self._datasets.values() for entry in getattr(data, "skipped", [])]

    def ping(self) -> str:
        return f"{self.spec.id} on {self.device}"
