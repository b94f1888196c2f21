"""Inspections of photos for the web, one at a time: `InspectJobs().submit(InspectRequest) -> Inspection`.

A job runs `microtome.inspect.photo.inspect_photo` (torch, imported by the first job only) on a
thread of its own, one at a time (`busy.BusySlot`): a submission while one runs waits for it a
few seconds when it is about to finish (by its progress, or the mean duration before it has any),
and is otherwise refused with `InspectBusy` (HTTP 503, `retry_after`). The last `keep` finished
jobs are kept in memory with their result (JSON-ready, images named) and their PNGs (`files`:
name -> bytes); nothing is written to disk or to the store. Models are loaded by `load(model, weights) -> (nn.Module, ModelSpec)` into a
cache of this runner's own (never the render queue's: inspect puts hooks on its model).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from microtome.errors import MicrotomeError, NotFound
from microtome.inspect.presets import inspect_params
from microtome.web.jobs.busy import WAIT_S, BusySlot
from microtome.web.jobs.render_queue import QueueFull

log = logging.getLogger(__name__)

KEEP = 8  # finished inspections kept in memory (results and PNGs, ~1-3 MB each)
MODELS = 2  # loaded models kept for the next inspections
THREADS = 1  # torch threads of an inspection: the other core keeps serving pages
LoadFn = Callable[[str, str], tuple[Any, Any]]  # (model id, weights) -> (nn.Module, ModelSpec)


class InspectBusy(QueueFull):
    """Another photo is being inspected; retry after `retry_after` seconds (HTTP 503)."""


def _stopping() -> InspectBusy:
    return InspectBusy("the server is shutting down; inspecting is not available", retry_after=30)


class Cancelled(Exception):
    """The server stopped while the inspection ran."""


@dataclass
class InspectRequest:
    """What to inspect: a decoded photo (`image`, a PIL image) or a scikit-image sample's name."""

    model: str
    weights: str
    layers: list[str]
    groups: int
    preset: str
    image: Any = None
    sample: str | None = None


@dataclass
class Inspection:
    """One inspection; `state` is running, done or error. `done`/`total` count render steps."""

    id: str
    request: InspectRequest
    state: str = "running"
    phase: str = "loading the model"
    done: int = 0
    total: int = 0
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)


def zoo_loader(model: str, weights: str) -> tuple[Any, Any]:
    from microtome.zoo import load_model

    return load_model(model, weights=weights, device="cpu")


def store_loader(store: Any) -> LoadFn:
    """A loader whose models carry `store`'s SAEs (dictionary layers can be inspected)."""
    def load(model: str, weights: str) -> tuple[Any, Any]:
        from microtome.pipeline.dictionaries import load_with_dictionaries

        return load_with_dictionaries(model, weights, store)
    return load


def sample_photo(name: str):
    """A scikit-image sample photo by name (`microtome.data`'s `samples` dataset), as a PIL image."""
    from microtome.data.datasets import SAMPLE_NAMES, SamplesDataset

    if name not in SAMPLE_NAMES:
        raise NotFound(f"no sample photo {name!r}; valid: {', '.join(SAMPLE_NAMES)}")
    samples = SamplesDataset()
    return samples.open(samples.paths.index(name)).convert("RGB")


def _busy(retry_after: int) -> InspectBusy:
    return InspectBusy(f"another photo is being inspected; try again in about {retry_after} s",
                       retry_after=retry_after)


class InspectJobs:
    """One inspection at a time, each on its own thread; `stop` cancels a running one.
    `wait_s`: how long a submission waits for a running inspection that is about to finish;
    `mean_s`: the expected duration of an inspection until some have finished."""

    def __init__(self, load: LoadFn | None = None, keep: int = KEEP, threads: int | None = THREADS,
                 wait_s: float = WAIT_S, mean_s: float = 90.0, **overrides: Any):
        self.load = load or zoo_loader
        self.keep, self.threads, self.overrides = keep, threads, overrides
        self._jobs: OrderedDict[str, Inspection] = OrderedDict()  # finished, oldest first; plus the running one
        self._running: Inspection | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the jobs
        self._slot = BusySlot(_busy, wait_s=wait_s, mean_s=mean_s, min_retry=5)  # the running one's
        self._models: OrderedDict[tuple[str, str], tuple[Any, Any]] = OrderedDict()
        self._models_lock = threading.Lock()  # the cache of loaded models
        self._stopping = threading.Event()

    def submit(self, request: InspectRequest) -> Inspection:
        """Start inspecting `request` (after a running inspection that is about to finish);
        InspectBusy if one runs past the wait, or the server is stopping."""
        if self._stopping.is_set():
            raise _stopping()
        self._slot.take(self._left())
        try:
            with self._lock:
                if self._stopping.is_set():
                    raise _stopping()
                job = Inspection(secrets.token_hex(8), request, total=self.render_steps(request))
                self._running = job
                self._jobs[job.id] = job
                self._thread = threading.Thread(target=self._work, args=(job,), name="microtome-inspect",
                                                daemon=True)
                self._thread.start()
                return job
        except BaseException:
            self._slot.release(record=False)
            raise

    def _left(self) -> float | None:
        """The running inspection's expected seconds left from its progress (None before it has any)."""
        job = self._running
        if job is None or job.done <= 0 or job.total <= 0:
            return None
        return (time.time() - job.started_at) * (job.total - job.done) / job.done

    def render_steps(self, request: InspectRequest) -> int:
        """The render steps of an inspection (as `inspect_photo` counts them: two batches a layer)."""
        return 2 * len(request.layers) * inspect_params(request.preset, **self.overrides)["steps"]

    def get(self, job_id: str) -> Inspection | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, model: str | None = None) -> list[Inspection]:
        """The kept jobs (of `model`), newest first."""
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if model is None or j.request.model == model]

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs; the running one stops at its next render step."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the worker --

    def _model(self, model: str, weights: str) -> tuple[Any, Any]:
        with self._models_lock:
            key = (model, weights)
            if key not in self._models:
                self._models[key] = self.load(model, weights)
                while len(self._models) > MODELS:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return self._models[key]

    def _progress(self, job: Inspection) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            if self._stopping.is_set():
                raise Cancelled()
            job.phase, job.done, job.total = "rendering feature visualizations", done, total
        return progress

    def _inspect(self, job: Inspection) -> dict[str, Any]:
        from microtome.inspect.photo import inspect_photo
        from microtome.runtime import torch_threads

        req = job.request
        net, spec = self._model(req.model, req.weights)
        job.phase = "reading the photo"
        image = req.image if req.image is not None else sample_photo(str(req.sample))
        with torch_threads(self.threads):
            job.phase = "finding groups and attribution"
            return inspect_photo(net, spec, image, req.layers, req.groups, req.preset, "cpu",
                                 progress=self._progress(job), **self.overrides)

    def _work(self, job: Inspection) -> None:
        result, error = None, None
        try:
            result = self._inspect(job)
        except Cancelled:
            error = "the server stopped before the inspection finished"
        except MicrotomeError as exc:
            error = exc.message
        except Exception as exc:  # noqa: BLE001 - a failed inspection must be reported, not lost
            log.exception("inspect job %s failed", job.id)
            error = f"{type(exc).__name__}: {exc}"
        try:
            with self._lock:
                job.request.image = None  # the photo is not kept; its model view is in `files`
                if result is not None:
                    job.files = result.pop("files", {})
                    job.result, job.state, job.phase = result, "done", "done"
                else:
                    job.state, job.error, job.phase = "error", error, "failed"
                job.finished_at = time.time()
                self._running = None
                self._jobs.move_to_end(job.id)
                while len(self._jobs) > self.keep:
                    self._jobs.popitem(last=False)
        finally:
            self._slot.release(record=result is not None)  # the mean counts finished inspections
