"""The build: plan the missing artifacts, run them (locally or on Ray), record them with provenance.

`build(store, model, ...) -> BuildSummary`. Validation happens before the store is touched;
each task's keys are claimed first, so two builds on one store never compute the same
artifact; results are recorded by this process only (the driver), each atomically, so a build
killed at any instant loses at most the task in flight and a rerun redoes only that.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from microtome import __version__
from microtome.build.plan import Task, check_preset, check_units, parse_layers, parse_techniques, plan
from microtome.errors import MicrotomeError
from microtome.store import ArtifactKey, PutEntry, Store
from microtome.techniques.base import DATASET_EXAMPLES, FEATURE_VIS, ArtifactResult
from microtome.zoo.spec import ModelSpec

EXECUTORS = ("local", "ray")


@dataclass
class BuildSummary:
    planned: int = 0  # artifacts missing when the build started
    recorded: int = 0
    elsewhere: int = 0  # claimed by another build running on the same store
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.recorded} of {self.planned} missing artifacts recorded in {self.seconds:.1f} s"]
        if self.elsewhere:
            out.append(f"{self.elsewhere} left to another build running on this store")
        if self.failed:
            out.append(f"{len(self.failed)} tasks failed: " + "; ".join(self.failed[:5]))
        if self.skipped_files:
            out.append(f"{len(self.skipped_files)} unreadable dataset files skipped: "
                       + ", ".join(p for p, _ in self.skipped_files[:5]))
        if self.interrupted:
            out.append("interrupted: rerun the same command to finish the rest")
        return out


def provenance(spec: ModelSpec, preset: str, seed: int) -> dict[str, Any]:
    return {"weights": spec.weights, "trained": spec.trained, "weights_sha256": spec.weights_sha256,
            "code_version": __version__, "seed": seed, "preset": preset, "created": time.time()}


def _check_weights(store: Store, spec: ModelSpec) -> None:
    """A store holds one set of weights per model: mixing them would mix their artifacts."""
    held = store.model(spec.id)
    if held and (held.get("weights_sha256"), held.get("trained")) != (spec.weights_sha256, spec.trained):
        raise MicrotomeError(
            f"the store at {store.root} holds {spec.id} built with weights {held.get('weights')!r} "
            f"(sha256 {held.get('weights_sha256')}); these are {spec.weights!r}: use another --store")


def _best_examples(store: Store, model: str, task: Task) -> dict[str, dict[int, float]]:
    """{layer: {unit: best dataset example's activation}} for a feature-vis task, from the store."""
    if task.technique != FEATURE_VIS:
        return {}
    out: dict[str, dict[int, float]] = {}
    for layer in task.layers:
        for art in store.find(model=model, layer=layer, technique=DATASET_EXAMPLES):
            top = art.meta.get("top") or []
            unit = art.key.unit
            if unit is not None and top and unit in task.units:
                out.setdefault(layer, {})[unit] = max(out.get(layer, {}).get(unit, float("-inf")),
                                                      float(top[0]["value"]))
    return out


class LocalExecutor:
    """Runs tasks one after another in this process, on one loaded model (or a given worker)."""

    def __init__(self, model: str, weights: str, device: str, worker=None, threads: int | None = None):
        import torch

        from microtome.build.worker import Worker
        self.threads_before = torch.get_num_threads()
        self.worker = worker or Worker(model, weights, device, threads)

    def run(self, tasks: Sequence[Task], prepare: Callable[[Task], dict | None],
            tick: Callable[[float], None]) -> Iterator[tuple[Task, list[ArtifactResult] | BaseException]]:
        for task in tasks:
            best = prepare(task)
            if best is None:
                tick(task.cost)
                continue
            done = 0.0

            def task_tick(fraction: float, task=task) -> None:
                nonlocal done
                step = min(fraction, 1.0 - done)
                done += step
                tick(step * task.cost)

            try:
                results: list[ArtifactResult] | BaseException = self.worker.run(task, best, task_tick)
            except MicrotomeError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failed task must not stop the build
                results = exc
            tick((1.0 - done) * task.cost)
            yield task, results

    def close(self) -> None:
        import torch
        torch.set_num_threads(self.threads_before)


def build(store: Store | str, model: str, layers: str | Sequence[str] = "all",
          units: str | Sequence[int] | None = None, techniques: str | Sequence[str] = "all",
          preset: str = "standard", dataset: str = "samples", executor: str = "local",
          device: str = "cpu", weights: str = "default", seed: int = 0,
          ray_address: str | None = None, workers: int = 2,
          progress: bool = True, worker=None, threads: int | None = None) -> BuildSummary:
    """Compute every missing artifact of `model` for the selection and record it in `store`.

    `worker` (a loaded `microtome.build.worker.Worker`) lets a long-lived caller, such as the
    web app's render queue, load the model once for many local builds. `threads` sets torch's
    thread count of the local executor (Ray actors use one each)."""
    from microtome.data import get_dataset
    from microtome.zoo import get_spec

    started = time.time()
    if executor not in EXECUTORS:
        raise MicrotomeError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    check_preset(preset)
    technique_ids = parse_techniques(techniques)
    spec = get_spec(model)
    layer_ids = parse_layers(spec, layers)
    check_units(spec, layer_ids, units)
    needs_data = any(t in technique_ids for t in (DATASET_EXAMPLES, "connections"))
    data = get_dataset(dataset) if needs_data else None  # bad paths fail before the store is touched
    if weights == "random":
        spec = spec.with_weights("random", trained=False)
    elif weights != "default":
        from microtome.zoo.registry import sha256_file
        import dataclasses
        spec = dataclasses.replace(spec.with_weights(str(weights), True), weights_sha256=sha256_file(weights))
    store = store if isinstance(store, Store) else Store(store)
    _check_weights(store, spec)
    dataset_name = data.name if data is not None else dataset
    tasks = plan(store, spec, layer_ids, units, technique_ids, preset, dataset_name, seed)
    summary = BuildSummary(planned=sum(len(t.items) for t in tasks))
    if not tasks:
        summary.seconds = time.time() - started
        return summary
    store.put_model(spec.id, spec.summary())
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def prepare(task: Task) -> dict | None:
        """Claim the task's keys just before it runs; None when another build holds them all."""
        _claim(store, spec.id, task, owner, summary)
        return _best_examples(store, spec.id, task) if task.items else None

    bar = _bar(sum(t.cost for t in tasks), f"{spec.id} {preset}", progress)
    # workers load the model by the name given (a registry id or a module:function entry point)
    runner = (LocalExecutor(model, weights, device, worker, threads) if executor == "local" else
              _ray_executor(model, weights, device, ray_address, workers))
    meta = provenance(spec, preset, seed)
    try:
        for task, results in runner.run(tasks, prepare, bar.update):
            if isinstance(results, BaseException):
                summary.failed.append(f"{task.describe()}: {type(results).__name__}: {results}")
            else:
                store.put_many(PutEntry(ArtifactKey.for_params(spec.id, r.layer, r.unit, r.technique, r.params),
                                        r.params, r.files, {**r.meta, "provenance": meta}) for r in results)
                summary.recorded += len(results)
            _release(store, spec.id, task, owner)
            bar.set_postfix_str(f"{summary.recorded}/{summary.planned} artifacts")
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        for task in tasks:
            _release(store, spec.id, task, owner)
        runner.close()
        bar.close()
    if data is not None:
        summary.skipped_files = list(data.skipped)
    summary.seconds = time.time() - started
    return summary


def build_unit(store: Store | str, model: str, layer: str, unit: int, preset: str = "quick",
               techniques: Sequence[str] = (FEATURE_VIS,), device: str = "cpu",
               weights: str | None = None, workers: dict | None = None,
               threads: int | None = None) -> BuildSummary:
    """Build one unit's artifacts (the web's on-demand render job).

    `weights` defaults to those the store already holds for the model (else "default");
    `workers` is the caller's cache of loaded models, keyed by (model, weights, device)."""
    from microtome.build.worker import Worker

    store = store if isinstance(store, Store) else Store(store)
    if weights is None:
        weights = (store.model(model) or {}).get("weights") or "default"
    worker = None
    if workers is not None:
        key = (model, weights, device)
        if key not in workers:
            workers[key] = Worker(model, weights, device, threads)
        worker = workers[key]
    return build(store, model, layers=[layer], units=[unit], techniques=list(techniques),
                 preset=preset, device=device, weights=weights, progress=False, worker=worker,
                 threads=threads)


def _claim(store: Store, model: str, task: Task, owner: str, summary: BuildSummary) -> Task:
    kept = [item for item, key in zip(task.items, task.keys(model)) if store.claim(key, owner)]
    summary.elsewhere += len(task.items) - len(kept)
    task.items = kept
    return task


def _release(store: Store, model: str, task: Task, owner: str) -> None:
    for key in task.keys(model):
        store.release(key, owner)


def _bar(total: float, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="work", disable=not enabled, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]", mininterval=0.5)


def _ray_executor(model: str, weights: str, device: str, address: str | None, workers: int):
    from microtome.build.ray_executor import RayExecutor
    return RayExecutor(model, weights, device, address, workers)
