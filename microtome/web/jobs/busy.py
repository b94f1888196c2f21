"""One job at a time, with a short queue: `BusySlot(refuse).take()` / `.release()` / `with .hold()`.

A request that finds the slot held waits for it up to `wait_s` seconds (a photo search takes
about 0.1 s: six at once should all be answered, one after another) and only then is refused
with `refuse(retry_after)`, the caller's `errors.Busy` (503) saying what is busy,
whose `retry_after` is the holder's expected seconds left, at least `min_retry`. It is refused
at once, without waiting, when the holder is not expected to be done within `wait_s` (a long
inspection), or when `max_waiting` requests already wait (each waiter holds a server thread).
The expected duration is a running mean of how long the slot was held, starting at `mean_s`.
The slot may be released by another thread than the one that took it (a job's worker).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from microtome.errors import Busy

WAIT_S = 5.0  # the longest a request waits for the slot before it is refused
MAX_WAITING = 8  # requests waiting at once; more are refused at once (the server's threads are few)


class BusySlot:
    """A slot for one holder at a time; see the module docstring for when a taker waits."""

    def __init__(self, refuse: Callable[[int], Busy], *, wait_s: float = WAIT_S,
                 mean_s: float = 2.0, min_retry: int = 1, max_waiting: int = MAX_WAITING):
        self.refuse, self.wait_s, self.mean_s = refuse, wait_s, mean_s
        self.min_retry, self.max_waiting = min_retry, max_waiting
        self._slot = threading.Lock()
        self._state = threading.Lock()  # `_waiting` and `_since`
        self._waiting = 0
        self._since: float | None = None  # when the holder took the slot (monotonic), None when free

    @property
    def waiting(self) -> int:
        """How many requests wait for the slot now."""
        return self._waiting

    def left(self) -> float:
        """The holder's expected seconds left (the running mean less the time it has held the slot);
        0 when the slot is free."""
        since = self._since
        return 0.0 if since is None else self.mean_s - (time.monotonic() - since)

    def retry_after(self, left: float | None = None) -> int:
        """Seconds a refused request should wait: `left` (default `self.left()`), at least `min_retry`."""
        return max(self.min_retry, round(self.left() if left is None else left))

    def take(self, left: float | None = None) -> None:
        """Hold the slot, waiting up to `wait_s` for it when the holder should be done by then;
        `left` is the caller's own estimate of the holder's seconds left (default `self.left()`).
        Raises `refuse(retry_after)` when the slot stays held."""
        if self._slot.acquire(blocking=False):
            self._took()
            return
        expected = self.left() if left is None else left
        with self._state:
            queue = expected <= self.wait_s and self._waiting < self.max_waiting
            self._waiting += queue
        if not queue:
            raise self.refuse(self.retry_after(expected))
        try:
            got = self._slot.acquire(timeout=self.wait_s)
        finally:
            with self._state:
                self._waiting -= 1
        if not got:
            raise self.refuse(self.retry_after())
        self._took()

    def _took(self) -> None:
        with self._state:
            self._since = time.monotonic()

    def release(self, record: bool = True) -> None:
        """Free the slot; `record`: count how long it was held in the running mean (a failed
        job that ended early should not)."""
        with self._state:
            if record and self._since is not None:
                self.mean_s = 0.7 * self.mean_s + 0.3 * (time.monotonic() - self._since)
            self._since = None
        self._slot.release()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """`take()` on entry, `release()` on exit."""
        self.take()
        try:
            yield
        finally:
            self.release()
