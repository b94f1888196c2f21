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
