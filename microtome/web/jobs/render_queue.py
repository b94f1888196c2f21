"""On-demand rendering: a deduplicated, bounded queue of `(model, layer, unit)` jobs, one worker.

`RenderQueue(job).submit(key) -> RenderJob` enqueues `job(model, layer, unit)` (which computes and
stores the unit's artifacts) unless the same key is already queued or running, in which case
every caller shares that one job; a full queue raises `errors.Busy` (HTTP 503, `retry_after`).
One worker thread runs the jobs in order: rendering is CPU-bound and the machine is small.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from microtome.errors import Busy, MicrotomeError

log = logging.getLogger(__name__)

Key = tuple[str, str, int]  # (model, layer id, unit)
JobFn = Callable[[str, str, int], Any]
HISTORY = 1024  # finished jobs remembered (for status and to avoid re-running)
RETRY_AFTER_FINISHED_S = 60.0  # a finished job's unit is not re-queued sooner than this


@dataclass
class RenderJob:
    """One render job; `state` is queued, running, done or error."""

    key: Key
    state: str = "queued"
    error: str | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None


class RenderQueue:
    """Jobs run one at a time, in order, on a worker thread started by `start` and ended by `stop`."""

    def __init__(self, job: JobFn, maxsize: int = 64):
        if maxsize < 1:
            raise MicrotomeError(f"queue size must be at least 1, got {maxsize}")
        self.job = job
        self.maxsize = maxsize
        self._pending: OrderedDict[Key, RenderJob] = OrderedDict()
        self._running: RenderJob | None = None
        self._finished: OrderedDict[Key, RenderJob] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._mean_s = 5.0  # running mean of job durations, for Retry-After

    # -- lifecycle --

    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="microtome-render", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs and wait up to `timeout` s for the running one; queued jobs are dropped."""
        with self._cond:
            self._stopping = True
            for job in self._pending.values():
                self._finish(job, "error", "the server stopped before rendering it")
            self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("render job %s still running at shutdown", self._running and self._running.key)
            self._thread = None

    # -- submitting and asking --

    def submit(self, key: Key) -> RenderJob:
        """The job for `key`: the queued or running one, a recently finished one, or a new one."""
        with self._cond:
            if self._running is not None and self._running.key == key:
                return self._running
            if key in self._pending:
                return self._pending[key]
            done = self._finished.get(key)
            if done is not None and time.time() - (done.finished_at or 0) < RETRY_AFTER_FINISHED_S:
                return done
            if self._stopping:
                raise Busy("the server is shutting down; rendering is not available", retry_after=30)
            if len(self._pending) >= self.maxsize:
                wait = max(1, round(self._mean_s * (len(self._pending) + 1)))
                raise Busy(f"the render queue is full ({self.maxsize} units waiting); "
                                f"try again in about {wait} s", retry_after=wait)
            job = RenderJob(key, queued_at=time.time())
            self._pending[key] = job
            self._cond.notify_all()
            return job

    def get(self, key: Key) -> RenderJob | None:
        with self._cond:
            if self._running is not None and self._running.key == key:
                return self._running
            return self._pending.get(key) or self._finished.get(key)

    def status(self, key: Key) -> dict[str, Any]:
        """JSON-ready: state (queued, running, done, error, or none when no job is known) and
        position (jobs ahead of it, the running one included; 0 while it runs)."""
        with self._cond:
            job = self.get(key)
            position = None
            if job is not None and job.state == "queued":
                ahead = list(self._pending).index(key)
                position = ahead + (1 if self._running is not None else 0)
            elif job is not None and job.state == "running":
                position = 0
            return {"model": key[0], "layer": key[1], "unit": key[2],
                    "state": job.state if job else "none", "position": position,
                    "error": job.error if job else None, "queue_length": len(self._pending),
                    "url": f"/jobs/{key[0]}/{key[1]}/{key[2]}.json"}

    # -- the worker --

    def _finish(self, job: RenderJob, state: str, error: str | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()
        self._finished[job.key] = job
        self._finished.move_to_end(job.key)
        while len(self._finished) > HISTORY:
            self._finished.popitem(last=False)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                _, job = self._pending.popitem(last=False)
                job.state, job.started_at = "running", time.time()
                self._running = job
            error = None
            try:
                self.job(*job.key)
            except MicrotomeError as exc:
                error = exc.message
            except Exception as exc:  # noqa: BLE001 - a failed render must not kill the worker
                log.exception("render job %s failed", job.key)
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._running = None
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.time() - (job.started_at or time.time()))
                self._finish(job, "error" if error else "done", error)
                self._cond.notify_all()


def default_job(store: Any, models: Any = None) -> JobFn:
    """The real renderer: `microtome.pipeline.pipeline.build_unit` with the quick preset on CPU
    (the unit's dataset examples, feature vis, connections and labels, in the build's order,
    over the dataset the store's other artifacts were built with), imported (with torch) on the first
    job only, so a server that renders nothing never loads it. Each technique's artifacts are
    stored as soon as they are made, so a page polling the job can fill in step by step.
    `models` (a `pipeline.models.ModelService`) keeps the loaded models for the next jobs; by
    default one of this queue's own over `store`."""

    def job(model: str, layer: str, unit: int) -> None:
        try:
            from microtome.pipeline.pipeline import build_unit
        except ImportError as exc:
            raise MicrotomeError(f"on-demand rendering is not available in this installation "
                                 f"(microtome.pipeline.pipeline.build_unit: {exc}); run `microtome build`") from None
        nonlocal models
        if models is None:
            from microtome.pipeline.models import ModelService
            models = ModelService(store)
        summary = build_unit(store, model, layer, unit, preset="quick", device="cpu",
                             models=models, threads=1)  # one core; the other serves pages
        if summary.failed:
            raise MicrotomeError(f"{len(summary.failed)} of the unit's techniques failed: "
                                 + "; ".join(summary.failed[:3]))
    return job
