"""The Ray executor: the same tasks on Ray actors, one model load per actor; the driver records.

`--ray-address` joins a running cluster; without it a local Ray instance is started (and shut
down afterwards). Actors request a GPU each when the cluster has GPUs and the device is cuda.
Dataset examples run first (feature visualization's quality figure reads them), the rest as
the actors free up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from microtome.build.plan import Task
from microtome.errors import MicrotomeError
from microtome.techniques.base import DATASET_EXAMPLES, ArtifactResult


class RayExecutor:
    """A pool of `Worker` actors; `run` yields (task, results or exception) as tasks finish."""

    def __init__(self, model: str, weights: str, device: str, address: str | None, workers: int):
        try:
            import ray
        except ImportError as exc:
            raise MicrotomeError("the ray executor needs Ray: pip install 'microtome[ray]'") from exc
        from microtome.build.worker import Worker

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)
        gpus = ray.cluster_resources().get("GPU", 0) if device.startswith("cuda") else 0
        actor = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(Worker)
        self.actors = [actor.remote(model, weights, device, 1) for _ in range(max(workers, 1))]
        ray.get([a.ping.remote() for a in self.actors])  # fail here if a worker cannot load the model

    def run(self, tasks: Sequence[Task], prepare: Callable[[Task], dict | None],
            tick: Callable[[float], None]) -> Iterator[tuple[Task, list[ArtifactResult] | BaseException]]:
        first = [t for t in tasks if t.technique == DATASET_EXAMPLES]
        rest = [t for t in tasks if t.technique != DATASET_EXAMPLES]
        for phase in (first, rest):
            yield from self._phase(phase, prepare, tick)

    def _phase(self, tasks: list[Task], prepare, tick) -> Iterator[tuple[Task, list | BaseException]]:
        ray = self.ray
        pending = list(tasks)
        running: dict = {}
        idle = list(self.actors)
        while pending or running:
            while pending and idle:
                task = pending.pop(0)
                best = prepare(task)  # claims the task's keys
                if best is None:
                    tick(task.cost)
                    continue
                actor = idle.pop(0)
                running[actor.run.remote(task, best)] = (task, actor)
            if not running:
                break
            done, _ = ray.wait(list(running), num_returns=1)
            task, actor = running.pop(done[0])
            idle.append(actor)
            try:
                results: list[ArtifactResult] | BaseException = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - reported per task by the driver
                results = exc
            tick(task.cost)
            yield task, results

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()
