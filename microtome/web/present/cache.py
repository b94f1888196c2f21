"""Values computed from the store, kept until the store changes: `StoreCache(root).get(key, compute)`.

The store's generation is the (mtime, size) of `index.sqlite` and its WAL file: every commit
changes one of them, so checking costs two `stat` calls instead of a query. A TTL backstops
the rare commit that lands in the same clock tick with the same file size.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
INDEX_FILES = ("index.sqlite-wal", "index.sqlite")


class StoreCache:
    """A thread-safe LRU of at most `maxsize` values, each valid for one store generation and `ttl` s."""

    def __init__(self, root: Path, maxsize: int = 1024, ttl: float = 5.0):
        self.root = root
        self._paths = [str(root / name) for name in INDEX_FILES]
        self.maxsize = maxsize
        self.ttl = ttl
        self._items: OrderedDict[Hashable, tuple[tuple, float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def generation(self) -> tuple:
        out = []
        for path in self._paths:
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def get(self, key: Hashable, compute: Callable[[], T], keep: Callable[[T], bool] | None = None) -> T:
        """The cached value of `key`, or `compute()` (cached unless `keep(value)` is False)."""
        gen, now = self.generation(), time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == gen and now - hit[1] < self.ttl:
                self._items.move_to_end(key)
                return hit[2]
        value = compute()
        if keep is None or keep(value):
            with self._lock:
                self._items[key] = (gen, now, value)
                self._items.move_to_end(key)
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
        return value
