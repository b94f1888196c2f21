"""The busy slot shared by search by photo and inspect: a taker waits for a holder that is about
to finish, is refused with the caller's 503 error (its Retry-After) past the wait, at once when
the holder is not expected to finish within the wait or too many already wait."""

from __future__ import annotations

import threading
import time

import pytest

from microtome.errors import Busy
from microtome.web.jobs.busy import BusySlot


def refuse(retry_after: int) -> Busy:
    return Busy(f"busy; try again in {retry_after} s", retry_after=retry_after)


def release_later(slot: BusySlot, after: float) -> threading.Thread:
    thread = threading.Timer(after, slot.release)  # another thread than the taker's, as a job's worker does
    thread.start()
    return thread


def test_a_taker_waits_for_a_holder_that_finishes_within_the_wait():
    slot = BusySlot(refuse, wait_s=5.0, mean_s=0.5)
    slot.take()
    release_later(slot, 0.3)
    start = time.monotonic()
    slot.take()
    assert 0.25 <= time.monotonic() - start < 4.0
    slot.release()
    assert slot.mean_s < 0.5 and slot.left() == 0.0  # the mean learnt from the 0.3 s hold


def test_past_the_wait_the_callers_503_with_retry_after():
    slot = BusySlot(refuse, wait_s=0.2, mean_s=0.1, min_retry=3)
    slot.take()
    start = time.monotonic()
    with pytest.raises(Busy) as busy:
        slot.take()
    assert time.monotonic() - start >= 0.2
    assert busy.value.status == 503 and busy.value.retry_after == 3 and slot.waiting == 0
    slot.release()
    with slot.hold():  # free again
        assert slot.left() > 0


def test_refused_at_once_when_the_holder_will_not_finish_within_the_wait():
    slot = BusySlot(refuse, wait_s=5.0, mean_s=90.0)
    slot.take()
    start = time.monotonic()
    with pytest.raises(Busy) as busy:
        slot.take()
    assert time.monotonic() - start < 1.0 and 85 <= busy.value.retry_after <= 90
    with pytest.raises(Busy):
        slot.take(left=30.0)  # the caller's own estimate
    slot.release()


def test_at_most_max_waiting_wait():
    slot = BusySlot(refuse, wait_s=5.0, mean_s=1.0, max_waiting=2)
    slot.take()
    got: list[str] = []

    def wait_in_line() -> None:
        slot.take()
        got.append("slot")
        slot.release()
    line = [threading.Thread(target=wait_in_line) for _ in range(2)]
    for t in line:
        t.start()
    deadline = time.monotonic() + 5
    while slot.waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slot.waiting == 2
    with pytest.raises(Busy):
        slot.take()  # a third is refused at once
    slot.release()
    for t in line:
        t.join(10)
    assert got == ["slot", "slot"] and slot.waiting == 0
