"""The Ray executor: the same tasks on Ray actors, one model load per actor; the driver records.

`--ray-address` joins a running cluster; without it a local Ray instance is started (and shut
down afterwards). Actors request a GPU each when the cluster has GPUs and the device is cuda.
Tasks run in phases: a technique's tasks wait for the phase of every technique it `reads`
(dataset examples before feature visualization, whose quality figure reads them); within a
phase, as the actors free up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from microtome.errors import MicrotomeError
from microtome.pipeline.plan import Prepare, Task
from microtome.techniques.base import ArtifactResult
from microtome.techniques.registry import technique


class RayExecutor:
    """A pool of `Worker` actors; `run` yields (task, results or exception) as tasks finish."""

    def __init__(self, model: str, weights: str, device: str, address: str | None, workers: int,
                 dictionaries: tuple = ()):
        try:
            import ray
        except ImportError as exc:
            raise MicrotomeError("the ray executor needs Ray: pip install 'microtome[ray]'") from exc
        from microtome.pipeline.worker import Worker

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)
        gpus = ray.cluster_resources().get("GPU", 0) if device.startswith("cuda") else 0
        actor = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(Worker)
        self.actors = [actor.remote(model, weights, device, 1, dictionaries) for _ in range(max(workers, 1))]
        ray.get([a.ping.remote() for a in self.actors])  # fail here if a worker cannot load the model

    def run(self, tasks: Sequence[Task], prepare: Prepare,
            tick: Callable[[float], None]) -> Iterator[tuple[Task, list[ArtifactResult] | BaseException]]:
        phases: dict[int, list[Task]] = {}
        for task in tasks:
            phases.setdefault(_phase_of(task.technique), []).append(task)
        for number in sorted(phases):
            yield from self._phase(phases[number], prepare, tick)

    def skipped_files(self) -> list[tuple[str, str]]:
        found = self.ray.get([a.skipped.remote() for a in self.actors])
        return list(dict.fromkeys(entry for entries in found for entry in entries))

    def _phase(self, tasks: list[Task], prepare, tick) -> Iterator[tuple[Task, list | BaseException]]:
        ray = self.ray
        pending = list(tasks)
        running: dict = {}
        idle = list(self.actors)
        while pending or running:
            while pending and idle:
                task = pending.pop(0)
                prepared = prepare(task)  # claims the task's keys
                if prepared.skip:
                    tick(task.cost)
                    continue
                actor = idle.pop(0)
                running[actor.run.remote(task, prepared.inputs)] = (task, actor)
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


def _phase_of(technique_id: str) -> int:
    """0 for a technique that reads nothing, else one more than the deepest technique it reads."""
    reads = technique(technique_id).reads
    return 1 + max(_phase_of(r) for r in reads) if reads else 0
