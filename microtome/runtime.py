"""Process-wide state, changed only inside a context manager that puts it back.

`torch_threads(n)`: torch's intra-op thread count is one number per process, so every
caller that wants a different one (a build with `--threads`, the dataset pass's small
bookkeeping ops, the web's render jobs) goes through here. Nested and concurrent uses are
safe: the setting is reference-counted per requested value under a lock, and the count in
force when the first block began is restored when the last one ends. Two threads asking for
different counts at once get the most recent one while both run (torch has only one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active: list[int] = []  # requested counts of the blocks now open, oldest first
_outer: list[int] = []  # the count in force before the first open block


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count is `threads` inside the block (None: leave it as it is)."""
    if not threads:
        yield
        return
    import torch

    with _lock:
        if not _active:
            _outer[:] = [torch.get_num_threads()]
        _active.append(threads)
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        with _lock:
            _active.remove(threads)
            torch.set_num_threads(_active[-1] if _active else _outer[0])


def set_process_threads(threads: int) -> None:
    """Set torch's thread count for the rest of the process: only for a process that exists to
    run one worker (a Ray actor), never in a library call."""
    import torch

    torch.set_num_threads(threads)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the process's next allocations instead of
    handing it back to the system at every free; True if it took (False off glibc).

    By default, blocks over a threshold that glibc adjusts as it goes are mapped and unmapped
    at each allocation, and free memory at the top of the heap is returned as soon as it
    exceeds twice that threshold. A render step allocates and frees tensors of a few MB to a
    few tens of MB hundreds of times, so each step faults all its pages in afresh: measured on
    efficientnet_lite0, 8 images at 128 px, 2 threads, 5.3M page faults and 13 s of system time
    in 36 s, 124 ms a step, against 0.17M faults and 80 ms a step with this setting. The cost:
    the process keeps its peak heap until it exits. For a process that exists to do such work
    (the command line, a build worker), called once when it starts; never in a library call."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
