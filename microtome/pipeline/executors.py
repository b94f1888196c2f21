"""Executors: `run(tasks, prepare, tick)` yields `(task, results or exception)` as tasks finish.

`prepare(task) -> Prepared` claims a task's keys just before it runs and says whether to skip
it (another build holds them all) or what stored inputs it reads. The local executor runs
tasks one after another on one loaded model; the Ray one (ray_executor.py) on actors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from microtome.errors import MicrotomeError
from microtome.pipeline.plan import Prepare, Prepared, Task
from microtome.techniques.base import ArtifactResult

EXECUTORS = ("local", "ray")
__all__ = ["EXECUTORS", "Execution", "Prepare", "Prepared", "open_executor"]
Outcome = tuple[Task, "list[ArtifactResult] | BaseException"]


@dataclass(frozen=True)
class Execution:
    """How a build runs: where (`executor`, `device`), with how many torch threads (the local
    executor; Ray actors use one each), Ray's cluster and actors, and whether to show a bar."""

    executor: str = "local"
    device: str = "cpu"
    threads: int | None = None
    ray_address: str | None = None
    workers: int = 2
    progress: bool = True


class LocalExecutor:
    """Runs tasks one after another in this process, on one loaded model (or a given worker)."""

    def __init__(self, model: str, weights: str, device: str, worker=None, dictionaries: tuple = ()):
        from microtome.pipeline.worker import Worker
        self.worker = worker or Worker(model, weights, device, dictionaries=dictionaries)

    def run(self, tasks: Sequence[Task], prepare: Prepare, tick: Callable[[float], None]) -> Iterator[Outcome]:
        for task in tasks:
            prepared = prepare(task)
            if prepared.skip:
                tick(task.cost)
                continue
            done = 0.0

            def task_tick(fraction: float, task=task) -> None:
                nonlocal done
                step = min(fraction, 1.0 - done)
                done += step
                tick(step * task.cost)

            try:
                results: list[ArtifactResult] | BaseException = self.worker.run(task, prepared.inputs, task_tick)
            except MicrotomeError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failed task must not stop the build
                results = exc
            tick((1.0 - done) * task.cost)
            yield task, results

    def skipped_files(self) -> list[tuple[str, str]]:
        return self.worker.skipped()

    def close(self) -> None:
        pass


def open_executor(model: str, weights: str, execution: Execution, worker=None, dictionaries: tuple = ()):
    """The executor `execution` names, with its workers' models loaded (and the store's SAEs,
    `dictionaries`, attached)."""
    if execution.executor == "ray":
        from microtome.pipeline.ray_executor import RayExecutor
        return RayExecutor(model, weights, execution.device, execution.ray_address, execution.workers,
                           dictionaries)
    return LocalExecutor(model, weights, execution.device, worker, dictionaries)
