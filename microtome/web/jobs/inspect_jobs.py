"""Inspections of photos for the web, one at a time: `InspectJobs().submit(InspectRequest) -> Inspection`.

A job runs `microtome.inspect.photo.inspect_photo` (torch, imported by the first job only) on a
thread of its own, one at a time (`busy.BusySlot`): a submission while one runs waits for it a
few seconds when it is about to finish (by its progress, or the mean duration before it has any),
and is otherwise refused with `errors.Busy` (HTTP 503, `retry_after`). The last `keep` finished
jobs are kept in memory with their result (JSON-ready, images named) and their PNGs (`files`:
name -> bytes); nothing is written to disk or to the store. Models come from the app's one
`pipeline.models.ModelService` (with the store's SAEs as they are now: a retrained SAE is a new
model); hooks are per thread (`zoo.hooks`), so the render queue may share a loaded model.
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

from microtome.errors import Busy, MicrotomeError, NotFound
from microtome.inspect.presets import inspect_params
from microtome.pipeline.models import LoadFn, ModelService
from microtome.web.jobs.busy import WAIT_S, BusySlot

log = logging.getLogger(__name__)

KEEP = 8  # finished inspections kept in memory (results and PNGs, ~1-3 MB each)
THREADS = 1  # torch threads of an inspection: the other core keeps serving pages


def _stopping() -> Busy:
    return Busy("the server is shutting down; inspecting is not available", retry_after=30)


def _with_device(load: Callable[..., tuple[Any, Any]]) -> LoadFn:
    """A `(model, weights) -> (nn.Module, ModelSpec)` loader as the service's `(model, weights, device)` one."""
    return lambda model, weights, device: load(model, weights)


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


def sample_photo(name: str):
    """A scikit-image sample photo by name (`microtome.data`'s `samples` dataset), as a PIL image."""
    from microtome.data.datasets import SAMPLE_NAMES, SamplesDataset

    if name not in SAMPLE_NAMES:
        raise NotFound(f"no sample photo {name!r}; valid: {', '.join(SAMPLE_NAMES)}")
    samples = SamplesDataset()
    return samples.open(samples.paths.index(name)).convert("RGB")


def _busy(retry_after: int) -> Busy:
    return Busy(f"another photo is being inspected; try again in about {retry_after} s",
                       retry_after=retry_after)


class InspectJobs:
    """One inspection at a time, each on its own thread; `stop` cancels a running one.
    `models`: where models come from (default: a service of its own with no store);
    `load(model, weights) -> (nn.Module, ModelSpec)`, if given, is that service's loader (toys);
    `wait_s`: how long a submission waits for a running inspection that is about to finish;
    `mean_s`: the expected duration of an inspection until some have finished."""

    def __init__(self, load: Callable[[str, str], tuple[Any, Any]] | None = None, keep: int = KEEP,
                 threads: int | None = THREADS, wait_s: float = WAIT_S, mean_s: float = 90.0,
                 models: ModelService | None = None, **overrides: Any):
        self.models = models or ModelService(load=_with_device(load) if load else None)
        self.keep, self.threads, self.overrides = keep, threads, overrides
        self._jobs: OrderedDict[str, Inspection] = OrderedDict()  # finished, oldest first; plus the running one
        self._running: Inspection | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the jobs
        self._slot = BusySlot(_busy, wait_s=wait_s, mean_s=mean_s, min_retry=5)  # the running one's
        self._stopping = threading.Event()

    def submit(self, request: InspectRequest) -> Inspection:
        """Start inspecting `request` (after a running inspection that is about to finish);
        Busy if one runs past the wait, or the server is stopping."""
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
        loaded = self.models.get(req.model, req.weights, "cpu")
        net, spec = loaded.model, loaded.spec
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
